// Compares the calibration core with fixtures written by tests/golden/make_golden.py, a literal
// torch implementation of the paper's Algorithm 1.
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "calibration/accumulator.h"
#include "calibration/calibrator.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

struct Array {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> values;
  double at(int64_t r, int64_t c) const { return values[r * cols + c]; }
};

std::map<std::string, Array> ReadFixture(const std::string& name) {
  std::ifstream in(std::string(LOGN_GOLDEN_DIR) + "/" + name);
  EXPECT_TRUE(in.good()) << "cannot open fixture " << name;
  std::map<std::string, Array> arrays;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream header(line);
    std::string key;
    Array array;
    header >> key >> array.rows >> array.cols;
    array.values.resize(array.rows * array.cols);
    for (double& v : array.values) in >> v;
    arrays[key] = array;
  }
  return arrays;
}

// |actual − expected| ≤ 1e-6·|expected|, with a 1e-6 floor for values that are nearly 0.
void ExpectRelativelyNear(double actual, double expected, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), 1e-6 * std::max(1.0, std::abs(expected)))
      << what << ": " << actual << " vs golden " << expected;
}

class GoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTest, MatchesAlgorithmOne) {
  auto fixture = ReadFixture(GetParam());
  const Array& config = fixture["config"];
  ASSERT_EQ(config.cols, 4);
  const LogitLayout layout{static_cast<int32_t>(config.values[0]),
                           config.values[1] == 0 ? BackgroundPosition::kFirst
                                                 : BackgroundPosition::kLast};
  const double momentum = config.values[2];
  const bool official = config.values[3] != 0;
  const Array& logits = fixture["logits"];
  ASSERT_EQ(logits.cols, layout.width());
  const std::vector<float> rows(logits.values.begin(), logits.values.end());

  EmaAccumulator ema = EmaAccumulator::Create(layout, momentum).value();
  ExactAccumulator exact(layout);
  int64_t offset = 0;
  for (double n : fixture["batch_rows"].values) {
    const LogitBatchView batch{rows.data() + offset * layout.width(), static_cast<int64_t>(n),
                               layout.width()};
    ASSERT_TRUE(ema.Add(batch).ok());
    ASSERT_TRUE(exact.Add(batch).ok());
    offset += static_cast<int64_t>(n);
  }
  ASSERT_EQ(offset, logits.rows);

  const Statistics ema_stats = ema.Snapshot();
  const Statistics exact_stats = exact.Snapshot().value();
  for (int j = 0; j < layout.width(); ++j) {
    ExpectRelativelyNear(ema_stats.mean[j], fixture["ema_mean"].values[j], "ema mean");
    ExpectRelativelyNear(ema_stats.variance[j], fixture["ema_var"].values[j], "ema var");
    ExpectRelativelyNear(exact_stats.mean[j], fixture["exact_mean"].values[j], "exact mean");
    ExpectRelativelyNear(exact_stats.variance[j], fixture["exact_var"].values[j], "exact var");
  }

  LogNOptions options;
  options.official_formula = official;
  const Calibrator calibrator = Calibrator::ForLogN(ema_stats, options).value();
  ExpectRelativelyNear(calibrator.beta(), fixture["beta"].values[0], "beta");

  const Array& test = fixture["test_logits"];
  const Array& normed = fixture["normed"];
  std::vector<float> calibrated(test.values.begin(), test.values.end());
  ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(calibrated)).ok());
  const int bg = layout.background_column();
  for (int64_t r = 0; r < test.rows; ++r) {
    for (int j = 0; j < layout.width(); ++j) {
      const double ours = calibrated[r * layout.width() + j];
      if (j == bg) {
        // We leave the background untouched (Eq. 2). Algorithm 1 sets its statistics to
        // mean 0 / var 1, which divides it by sqrt(1 + eps): 5e-6 relative with eps = 1e-5.
        EXPECT_EQ(ours, static_cast<float>(test.at(r, j)));
        const double literal_scale = official ? 1.0 : std::sqrt(1.0 + 1e-5);
        ExpectRelativelyNear(normed.at(r, j) * literal_scale, ours, "background");
      } else {
        ExpectRelativelyNear(ours, normed.at(r, j), "normalised foreground logit");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values("golden_first.txt", "golden_last_official.txt"));

}  // namespace
}  // namespace logn
