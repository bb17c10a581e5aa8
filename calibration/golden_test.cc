// Compares the calibration core with fixtures written by tests/golden/make_golden.py: a literal
// torch implementation of the paper's Algorithm 1, and numpy's frequency-weighted moments.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
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

  // The continuous family: α·μ and (σ² + ε)^(γ/2), β = min μ, background untouched.
  const Array& family_params = fixture["family_params"];
  const Array& family_normed = fixture["family_normed"];
  ASSERT_EQ(family_params.cols, 2);
  ASSERT_EQ(family_normed.rows, family_params.rows * test.rows);
  for (int64_t p = 0; p < family_params.rows; ++p) {
    LogNOptions family = options;
    family.mean_weight = family_params.at(p, 0);
    family.std_exponent = family_params.at(p, 1);
    const Calibrator member = Calibrator::ForLogN(ema_stats, family).value();
    std::vector<float> out(test.values.begin(), test.values.end());
    ASSERT_TRUE(member.Apply(absl::MakeSpan(out)).ok());
    for (int64_t r = 0; r < test.rows; ++r) {
      for (int j = 0; j < layout.width(); ++j) {
        ExpectRelativelyNear(out[r * layout.width() + j],
                             family_normed.at(p * test.rows + r, j),
                             absl::StrCat("family alpha=", family.mean_weight,
                                          " gamma=", family.std_exponent));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values("golden_first.txt", "golden_last_official.txt"));

// |actual − expected| ≤ tolerance·max(1, |expected|).
void ExpectNear(double actual, double expected, double tolerance, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), tolerance * std::max(1.0, std::abs(expected)))
      << what << ": " << actual << " vs numpy " << expected;
}

class WeightedGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fixture_ = ReadFixture("golden_weighted.txt");
    const Array& config = fixture_["config"];
    ASSERT_EQ(config.cols, 4);
    layout_ = {static_cast<int32_t>(config.values[0]), BackgroundPosition::kLast};
    const Array& logits = fixture_["logits"];
    ASSERT_EQ(logits.cols, layout_.width());
    rows_.assign(logits.values.begin(), logits.values.end());  // float32 values, exactly
    weights_ = fixture_["weights"].values;
    ASSERT_EQ(static_cast<int64_t>(weights_.size()), logits.rows);
    int64_t start = 0;
    for (double n : fixture_["shard_rows"].values) {
      shards_.push_back({start, static_cast<int64_t>(n)});
      start += static_cast<int64_t>(n);
    }
    ASSERT_EQ(start, logits.rows);
  }

  LogitBatchView Rows(int64_t start, int64_t n) const {
    return {rows_.data() + start * layout_.width(), n, layout_.width()};
  }
  absl::Span<const double> Weights(int64_t start, int64_t n) const {
    return absl::MakeConstSpan(weights_).subspan(start, n);
  }

  // Mean to 1e-12 and variance to 1e-10 of numpy's float64 result (relative to max(1, |x|)):
  // column 0 (1e3 ± 0.05) would lose every digit of its variance to a naive sum of squares.
  void ExpectWeightedGolden(const Statistics& stats, const std::string& what) {
    EXPECT_EQ(stats.count, static_cast<int64_t>(weights_.size())) << what;
    ExpectNear(stats.total_weight, fixture_["total_weight"].values[0], 1e-12,
               what + " total weight");
    for (int j = 0; j < layout_.width(); ++j) {
      ExpectNear(stats.mean[j], fixture_["weighted_mean"].values[j], 1e-12,
                 what + " mean " + std::to_string(j));
      ExpectNear(stats.variance[j], fixture_["weighted_var"].values[j], 1e-10,
                 what + " variance " + std::to_string(j));
    }
  }

  std::map<std::string, Array> fixture_;
  LogitLayout layout_;
  std::vector<float> rows_;
  std::vector<double> weights_;
  std::vector<std::pair<int64_t, int64_t>> shards_;  // start, rows
};

TEST_F(WeightedGoldenTest, OnePassAndBatchesMatchNumpy) {
  ExactAccumulator one_pass(layout_);
  ASSERT_TRUE(one_pass.Add(Rows(0, weights_.size()), weights_).ok());
  ExpectWeightedGolden(one_pass.Snapshot().value(), "one pass");

  ExactAccumulator batched(layout_);
  for (const auto& [start, n] : shards_) {
    ASSERT_TRUE(batched.Add(Rows(start, n), Weights(start, n)).ok());
  }
  ExpectWeightedGolden(batched.Snapshot().value(), "sequential shards");

  ExactAccumulator unweighted(layout_);
  ASSERT_TRUE(unweighted.Add(Rows(0, weights_.size())).ok());
  const Statistics plain = unweighted.Snapshot().value();
  EXPECT_EQ(plain.total_weight, 0.0);  // unweighted
  for (int j = 0; j < layout_.width(); ++j) {
    ExpectNear(plain.mean[j], fixture_["unweighted_mean"].values[j], 1e-12, "unweighted mean");
    ExpectNear(plain.variance[j], fixture_["unweighted_var"].values[j], 1e-10, "unweighted var");
  }
}

TEST_F(WeightedGoldenTest, ShardsMergedInSeveralOrdersMatchNumpy) {
  std::vector<int> order(shards_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::vector<std::vector<int>> orders = {order, std::vector<int>(order.rbegin(), order.rend())};
  std::mt19937 gen(7);  // fixed: the orders are part of the test
  for (int k = 0; k < 4; ++k) {
    std::shuffle(order.begin(), order.end(), gen);
    orders.push_back(order);
  }
  for (const std::vector<int>& o : orders) {
    const std::string what = "order " + ::testing::PrintToString(o);
    // One accumulator per shard (one of them weighs 0 in total), folded left to right.
    std::vector<ExactAccumulator> parts;
    for (int i : o) {
      parts.emplace_back(layout_);
      const auto [start, n] = shards_[i];
      ASSERT_TRUE(parts.back().Add(Rows(start, n), Weights(start, n)).ok());
    }
    ExactAccumulator left(layout_);
    for (const ExactAccumulator& part : parts) ASSERT_TRUE(left.Merge(part).ok());
    ExpectWeightedGolden(left.Snapshot().value(), what + " (left fold)");
    // A balanced merge tree over the same order.
    while (parts.size() > 1) {
      std::vector<ExactAccumulator> next;
      for (size_t i = 0; i + 1 < parts.size(); i += 2) {
        ASSERT_TRUE(parts[i].Merge(parts[i + 1]).ok());
        next.push_back(std::move(parts[i]));
      }
      if (parts.size() % 2) next.push_back(std::move(parts.back()));
      parts = std::move(next);
    }
    ExpectWeightedGolden(parts[0].Snapshot().value(), what + " (tree)");
  }
}

TEST_F(WeightedGoldenTest, ShardSnapshotsMergedMatchNumpy) {
  // Through Statistics, as partial results of several jobs merge. The one-row shard weighs 0:
  // it has no statistics of its own, so it is folded in as an accumulator.
  ExactAccumulator merged(layout_);
  for (int i = static_cast<int>(shards_.size()) - 1; i >= 0; --i) {
    ExactAccumulator part(layout_);
    const auto [start, n] = shards_[i];
    ASSERT_TRUE(part.Add(Rows(start, n), Weights(start, n)).ok());
    const absl::StatusOr<Statistics> snapshot = part.Snapshot();
    if (part.total_weight() == 0) {
      EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kFailedPrecondition);
      ASSERT_TRUE(merged.Merge(part).ok());
      continue;
    }
    ASSERT_TRUE(merged.MergeSnapshot(snapshot.value()).ok());
  }
  ExpectWeightedGolden(merged.Snapshot().value(), "snapshots");
}

}  // namespace
}  // namespace logn
