#include "calibration/calibrator.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "calibration/softmax.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

// Statistics for 5 foreground classes with the background at `position`. Foreground means are
// -6, -3.5, -1, 1.5, 4 (min -6, max 4, avg -1); the background mean is 8.
Statistics MakeStats(BackgroundPosition position) {
  Statistics stats;
  stats.layout = {5, position};
  stats.count = 1000;
  const std::vector<double> fg_mean = {-6, -3.5, -1, 1.5, 4};
  const std::vector<double> fg_var = {0.25, 1, 2.25, 4, 9};
  stats.mean.assign(stats.layout.width(), 0);
  stats.variance.assign(stats.layout.width(), 0);
  for (int c = 0; c < 5; ++c) {
    stats.mean[stats.layout.foreground_column(c)] = fg_mean[c];
    stats.variance[stats.layout.foreground_column(c)] = fg_var[c];
  }
  if (stats.layout.has_background()) {
    stats.mean[stats.layout.background_column()] = 8;
    stats.variance[stats.layout.background_column()] = 16;
  }
  return stats;
}

std::vector<float> RandomLogits(int64_t rows, int32_t width) {
  absl::BitGen gen;
  std::vector<float> values(rows * width);
  for (float& v : values) v = static_cast<float>(absl::Gaussian<double>(gen, 0.0, 5.0));
  return values;
}

// The paper's Eq. 2 generalised (α·μ, (σ² + ε)^(γ/2)), in double, written independently of
// the calibrator.
double ExpectedLogN(double x, double mu, double var, double beta, const LogNOptions& o) {
  const double numerator = x - o.mean_weight * mu + (o.use_beta ? beta : 0);
  const double denominator = o.official_formula ? std::max(var, 1e-11) : var + o.epsilon;
  return numerator / std::pow(std::sqrt(denominator), o.std_exponent);
}

void ExpectLogN(const Statistics& stats, const LogNOptions& options, double expected_beta) {
  const Calibrator calibrator = Calibrator::ForLogN(stats, options).value();
  EXPECT_DOUBLE_EQ(calibrator.beta(), options.use_beta ? expected_beta : 0.0);
  const int32_t width = stats.layout.width();
  const std::vector<float> input = RandomLogits(64, width);
  std::vector<float> output = input;
  ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(output)).ok());
  const int bg = stats.layout.background_column();
  for (int64_t i = 0; i < static_cast<int64_t>(input.size()); ++i) {
    const int j = static_cast<int>(i % width);
    double expected, magnitude;
    if (j == bg) {
      LogNOptions no_beta = options;
      no_beta.use_beta = false;
      expected = options.normalize_background
                     ? ExpectedLogN(input[i], stats.mean[j], stats.variance[j], 0.0, no_beta)
                     : input[i];
      magnitude = ExpectedLogN(std::abs(input[i]), -std::abs(stats.mean[j]), stats.variance[j],
                               0.0, no_beta);
    } else {
      const double beta = options.use_beta ? expected_beta : 0.0;
      expected = ExpectedLogN(input[i], stats.mean[j], stats.variance[j], beta, options);
      magnitude = ExpectedLogN(std::abs(input[i]), -std::abs(stats.mean[j]), stats.variance[j],
                               std::abs(beta), options);
    }
    // float32 arithmetic: the error is relative to the operands' size, not to the result's
    // (x·scale and shift may cancel).
    EXPECT_NEAR(output[i], expected, 2e-6 * std::max(1.0, magnitude))
        << "column " << j << " of " << CalibrationSpec{CalibrationMethod::kLogN, options}.DebugString();
  }
}

TEST(LogNTest, EveryTableTwoSwitchCombinationFollowsTheFormula) {
  for (BackgroundPosition position :
       {BackgroundPosition::kFirst, BackgroundPosition::kLast}) {
    for (int mask = 0; mask < 8; ++mask) {
      LogNOptions options;
      options.mean_weight = mask & 1;
      options.std_exponent = (mask & 2) ? 1.0 : 0.0;
      options.use_beta = mask & 4;
      ExpectLogN(MakeStats(position), options, -6.0);
    }
  }
}

TEST(LogNTest, TheContinuousFamilyFollowsTheFormulaOnItsGrid) {
  for (BackgroundPosition position : {BackgroundPosition::kFirst, BackgroundPosition::kLast}) {
    for (double alpha : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      for (double gamma : {0.0, 0.25, 0.5, 0.75, 1.0}) {
        for (bool official : {false, true}) {
          LogNOptions options;
          options.mean_weight = alpha;
          options.std_exponent = gamma;
          options.official_formula = official;
          options.normalize_background = position == BackgroundPosition::kFirst;
          ExpectLogN(MakeStats(position), options, -6.0);
        }
      }
    }
  }
}

TEST(LogNTest, TheFamilyContainsTheSwitches) {
  const Statistics stats = MakeStats(BackgroundPosition::kLast);
  LogNOptions none;
  none.mean_weight = 0;
  none.std_exponent = 0;
  none.use_beta = false;
  const Calibrator identity_like = Calibrator::ForLogN(stats, none).value();
  std::vector<float> logits = RandomLogits(16, stats.layout.width());
  std::vector<float> calibrated = logits;
  ASSERT_TRUE(identity_like.Apply(absl::MakeSpan(calibrated)).ok());
  EXPECT_EQ(calibrated, logits);  // x − 0 times 1 plus 0: exact
}

TEST(LogNTest, AlphaAndGammaOutsideTheUnitIntervalAreRefused) {
  const Statistics stats = MakeStats(BackgroundPosition::kLast);
  for (auto [alpha, gamma] : {std::pair{-0.1, 1.0}, std::pair{1.0, 1.5},
                              std::pair{std::nan(""), 1.0}, std::pair{1.0, std::nan("")}}) {
    LogNOptions options;
    options.mean_weight = alpha;
    options.std_exponent = gamma;
    const auto calibrator = Calibrator::ForLogN(stats, options);
    EXPECT_EQ(calibrator.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(calibrator.status().message(), HasSubstr("[0, 1]"));
  }
}

TEST(LogNTest, EveryTableThreeBetaPolicy) {
  const Statistics stats = MakeStats(BackgroundPosition::kLast);
  LogNOptions options;
  options.beta_policy = BetaPolicy::kMinForegroundMean;
  ExpectLogN(stats, options, -6.0);
  options.beta_policy = BetaPolicy::kAvgForegroundMean;
  ExpectLogN(stats, options, -1.0);
  options.beta_policy = BetaPolicy::kMaxForegroundMean;
  ExpectLogN(stats, options, 4.0);
  options.beta_policy = BetaPolicy::kBackgroundMean;
  ExpectLogN(stats, options, 8.0);
  options.beta_policy = BetaPolicy::kConstant;
  options.beta_constant = -12;
  ExpectLogN(stats, options, -12.0);
  options.beta_constant = -4;
  ExpectLogN(stats, options, -4.0);
}

TEST(LogNTest, OfficialFormulaClampsVarianceWithoutEpsilon) {
  Statistics stats = MakeStats(BackgroundPosition::kLast);
  stats.variance[2] = 0.0;  // a class whose logit never moved
  LogNOptions options;
  options.official_formula = true;
  const Calibrator calibrator = Calibrator::ForLogN(stats, options).value();
  EXPECT_FLOAT_EQ(calibrator.scale()[2], static_cast<float>(1 / std::sqrt(1e-11)));
  EXPECT_FLOAT_EQ(calibrator.scale()[4], 1.0f / 3.0f);  // no ε: exactly 1/σ
  ExpectLogN(stats, options, -6.0);
}

TEST(LogNTest, ZeroVarianceWithZeroEpsilonIsRefused) {
  Statistics stats = MakeStats(BackgroundPosition::kLast);
  stats.variance[0] = 0.0;
  LogNOptions options;
  options.epsilon = 0;
  EXPECT_EQ(Calibrator::ForLogN(stats, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LogNTest, NormalizeBackgroundIsPlainBatchNormInference) {
  const Statistics stats = MakeStats(BackgroundPosition::kFirst);
  LogNOptions options;
  options.use_beta = false;
  options.normalize_background = true;
  const Calibrator calibrator = Calibrator::ForLogN(stats, options).value();
  for (int j = 0; j < stats.layout.width(); ++j) {
    EXPECT_FLOAT_EQ(calibrator.scale()[j],
                    static_cast<float>(1 / std::sqrt(stats.variance[j] + 1e-5)));
    // shift is the centre (here μ), shift_lo what float32 rounding left of it.
    EXPECT_EQ(calibrator.shift()[j], static_cast<float>(stats.mean[j]));
    EXPECT_EQ(static_cast<double>(calibrator.shift()[j]) + calibrator.shift_lo()[j],
              stats.mean[j]);
  }
  ExpectLogN(stats, options, 0.0);
}

TEST(LogNTest, BackgroundFirstAndLastAgreeAfterPermutation) {
  const Statistics first = MakeStats(BackgroundPosition::kFirst);
  const Statistics last = MakeStats(BackgroundPosition::kLast);
  const Calibrator a = Calibrator::ForLogN(first, LogNOptions()).value();
  const Calibrator b = Calibrator::ForLogN(last, LogNOptions()).value();
  std::vector<float> rows_first = RandomLogits(32, 6);
  std::vector<float> rows_last(rows_first.size());
  for (int r = 0; r < 32; ++r) {  // move the background from column 0 to column 5
    for (int c = 0; c < 5; ++c) rows_last[r * 6 + c] = rows_first[r * 6 + c + 1];
    rows_last[r * 6 + 5] = rows_first[r * 6];
  }
  ASSERT_TRUE(a.Apply(absl::MakeSpan(rows_first)).ok());
  ASSERT_TRUE(b.Apply(absl::MakeSpan(rows_last)).ok());
  for (int r = 0; r < 32; ++r) {
    for (int c = 0; c < 5; ++c) EXPECT_EQ(rows_last[r * 6 + c], rows_first[r * 6 + c + 1]);
    EXPECT_EQ(rows_last[r * 6 + 5], rows_first[r * 6]);
  }
}

TEST(LogNTest, NoBackgroundLayoutNormalisesEveryColumn) {
  const Statistics stats = MakeStats(BackgroundPosition::kNone);
  ASSERT_EQ(stats.layout.width(), 5);
  // Eq. 1: no β without a background, whatever the adaptive policy...
  ExpectLogN(stats, LogNOptions(), 0.0);
  for (BetaPolicy policy : {BetaPolicy::kAvgForegroundMean, BetaPolicy::kMaxForegroundMean}) {
    LogNOptions options;
    options.beta_policy = policy;
    ExpectLogN(stats, options, 0.0);
  }
  // ...unless a constant is asked for.
  LogNOptions constant;
  constant.beta_policy = BetaPolicy::kConstant;
  constant.beta_constant = -4;
  ExpectLogN(stats, constant, -4.0);
  LogNOptions background_beta;
  background_beta.beta_policy = BetaPolicy::kBackgroundMean;
  const auto status = Calibrator::ForLogN(stats, background_beta).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("background"));
}

int Argmax(const std::vector<float>& row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

TEST(LogNTest, NoBackgroundFollowsEquationOneAndKeepsItsArgmax) {
  // A 3-way classifier without background. An adaptive β = min μ = −6, divided by each class's
  // σ, would give (−10, −2, −5) and move the argmax to class 1; Eq. 1 gives (2, 1, 1).
  Statistics stats;
  stats.layout = {3, BackgroundPosition::kNone};
  stats.count = 100;
  stats.mean = {-6, 0, 2};
  stats.variance = {0.25, 4, 1};
  const Calibrator calibrator = Calibrator::ForLogN(stats, LogNOptions()).value();
  EXPECT_EQ(calibrator.beta(), 0.0);
  std::vector<float> row = {-5, 2, 3};
  ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(row)).ok());
  EXPECT_NEAR(row[0], 1 / std::sqrt(0.25 + 1e-5), 1e-6);
  EXPECT_NEAR(row[1], 2 / std::sqrt(4 + 1e-5), 1e-6);
  EXPECT_NEAR(row[2], 1 / std::sqrt(1 + 1e-5), 1e-6);
  EXPECT_EQ(Argmax(row), 0);

  // An explicit constant β is still applied.
  LogNOptions constant;
  constant.beta_policy = BetaPolicy::kConstant;
  constant.beta_constant = -6;
  const Calibrator with_beta = Calibrator::ForLogN(stats, constant).value();
  EXPECT_EQ(with_beta.beta(), -6.0);
  row = {-5, 2, 3};
  ASSERT_TRUE(with_beta.Apply(absl::MakeSpan(row)).ok());
  EXPECT_NEAR(row[0], -5 / std::sqrt(0.25 + 1e-5), 1e-5);
  EXPECT_NEAR(row[1], -4 / std::sqrt(4 + 1e-5), 1e-5);
  EXPECT_NEAR(row[2], -5 / std::sqrt(1 + 1e-5), 1e-5);
  EXPECT_EQ(Argmax(row), 1);

  // With a background the default β still applies (Eq. 2).
  EXPECT_EQ(Calibrator::ForLogN(MakeStats(BackgroundPosition::kLast), LogNOptions()).value().beta(),
            -6.0);
}

// Sweeps |μ|/σ over 1…1e3 with random x near μ and near μ − β (where x̂ cancels to ~0):
// Apply stays within 1e-6·(1 + |x̂|) of the float64 formula on the float32 input, for both
// background positions, with and without β, with ε and under the official formula; so does the
// portable clone's arithmetic (emulated). The old x·scale + shift kernel is checked to fail the
// same sweep, so the sweep has teeth.
TEST(LogNTest, ApplyIsAccurateForLargeMeanOverSigma) {
  std::mt19937 gen(11);  // fixed: the sweep is deterministic
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double worst = 0, worst_fused = 0;
  for (BackgroundPosition position : {BackgroundPosition::kFirst, BackgroundPosition::kLast}) {
    for (int variant = 0; variant < 4; ++variant) {
      LogNOptions options;
      options.use_beta = variant & 1;
      options.official_formula = variant & 2;
      for (double ratio = 1; ratio <= 1000.0 * 1.0001; ratio *= std::pow(10.0, 0.25)) {
        Statistics stats;
        stats.layout = {8, position};
        stats.count = 1000;
        for (int j = 0; j < stats.layout.width(); ++j) {
          // σ from 0.01 to 10 (official: no ε); |μ|/σ = ratio, either sign.
          const double sigma = options.official_formula ? std::pow(10.0, -2 + 3 * unit(gen))
                                                        : std::pow(10.0, -1 + 2 * unit(gen));
          stats.variance.push_back(sigma * sigma);
          stats.mean.push_back((unit(gen) < 0.5 ? -1 : 1) * ratio * sigma);
        }
        const Calibrator calibrator = Calibrator::ForLogN(stats, options).value();
        const double beta = calibrator.beta();
        const int width = stats.layout.width();
        const int bg = stats.layout.background_column();
        std::vector<float> input;
        for (int r = 0; r < 64; ++r) {
          for (int j = 0; j < width; ++j) {
            const double sigma = std::sqrt(stats.variance[j]);
            const double centre = r % 2 ? stats.mean[j] : stats.mean[j] - (j == bg ? 0 : beta);
            input.push_back(static_cast<float>(centre + sigma * 3 * (2 * unit(gen) - 1)));
          }
        }
        std::vector<float> output = input;
        ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(output)).ok());
        for (size_t i = 0; i < input.size(); ++i) {
          const int j = static_cast<int>(i % width);
          double exact = input[i];
          if (j != bg) {
            const double var = stats.variance[j];
            exact = (static_cast<double>(input[i]) - stats.mean[j] + beta) /
                    (options.official_formula ? std::sqrt(std::max(var, 1e-11))
                                              : std::sqrt(var + options.epsilon));
          }
          const double error = std::abs(output[i] - exact) / (1 + std::abs(exact));
          worst = std::max(worst, error);
          ASSERT_LE(error, 1e-6) << "ratio " << ratio << " column " << j << " x " << input[i]
                                 << " got " << output[i] << " want " << exact;
          // The portable (no FMA) clone rounds the product before adding the tail; volatile
          // keeps the compiler from fusing the two here.
          const float tail = static_cast<float>(-static_cast<double>(calibrator.shift_lo()[j]) *
                                                calibrator.scale()[j]);
          volatile float product = (input[i] - calibrator.shift()[j]) * calibrator.scale()[j];
          const float portable = product + tail;
          ASSERT_LE(std::abs(portable - exact) / (1 + std::abs(exact)), 1e-6)
              << "portable clone, ratio " << ratio << " column " << j << " x " << input[i];
          // The old kernel: x·scale + shift with shift = (β − μ)·scale in float32.
          const double scale = calibrator.scale()[j];
          const float shift = static_cast<float>(
              -(static_cast<double>(calibrator.shift()[j]) + calibrator.shift_lo()[j]) * scale);
          const float fused = std::fma(input[i], calibrator.scale()[j], shift);
          worst_fused = std::max(worst_fused, std::abs(fused - exact) / (1 + std::abs(exact)));
        }
      }
    }
  }
  EXPECT_GT(worst_fused, 1e-5);  // what the sweep catches
  EXPECT_LT(worst, 1e-6);
  RecordProperty("worst_relative_error", absl::StrCat(worst));
  RecordProperty("worst_relative_error_fused", absl::StrCat(worst_fused));
}

TEST(LogNTest, InvalidStatisticsAreRefused) {
  Statistics stats = MakeStats(BackgroundPosition::kLast);
  stats.mean.pop_back();
  EXPECT_EQ(Calibrator::ForLogN(stats, LogNOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  stats = MakeStats(BackgroundPosition::kLast);
  stats.variance[1] = -1;
  EXPECT_EQ(Calibrator::ForLogN(stats, LogNOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  stats = MakeStats(BackgroundPosition::kLast);
  stats.mean[1] = std::nan("");
  EXPECT_EQ(Calibrator::ForLogN(stats, LogNOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LogATest, SubtractsTauLogPriorFromForegroundOnly) {
  const LogitLayout layout{3, BackgroundPosition::kFirst};
  const std::vector<double> counts = {1, 10, 89};  // priors .01, .1, .89
  LogAOptions options;
  options.tau = 0.5;
  const Calibrator calibrator = Calibrator::ForLogA(layout, counts, options).value();
  std::vector<float> row = {2.0f, 1.0f, 1.0f, 1.0f};
  ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(row)).ok());
  EXPECT_FLOAT_EQ(row[0], 2.0f);  // background untouched
  EXPECT_FLOAT_EQ(row[1], static_cast<float>(1 - 0.5 * std::log(0.01)));
  EXPECT_FLOAT_EQ(row[2], static_cast<float>(1 - 0.5 * std::log(0.1)));
  EXPECT_FLOAT_EQ(row[3], static_cast<float>(1 - 0.5 * std::log(0.89)));
}

TEST(LogATest, RefusesBadCounts) {
  const LogitLayout layout{3, BackgroundPosition::kLast};
  EXPECT_EQ(Calibrator::ForLogA(layout, std::vector<double>{1, 2}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const auto zero = Calibrator::ForLogA(layout, std::vector<double>{1, 0, 2}, {}).status();
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.message()), HasSubstr("class 1"));
  LogAOptions huge_tau;
  huge_tau.tau = 1e39;  // τ·log(1/3) is beyond float32
  EXPECT_EQ(Calibrator::ForLogA(layout, std::vector<double>{1, 1, 1}, huge_tau).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CalibratorTest, ApplyRefusesPartialRows) {
  const Calibrator identity = Calibrator::Identity({5, BackgroundPosition::kLast});
  std::vector<float> values(13);
  EXPECT_EQ(identity.Apply(absl::MakeSpan(values)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CalibratorTest, IdentityChangesNothing) {
  const Calibrator identity = Calibrator::Identity({5, BackgroundPosition::kLast});
  std::vector<float> values = RandomLogits(4, 6);
  const std::vector<float> before = values;
  ASSERT_TRUE(identity.Apply(absl::MakeSpan(values)).ok());
  EXPECT_EQ(values, before);
}

TEST(CalibratorTest, MakeCalibratorChecksItsInputs) {
  const LogitLayout layout{5, BackgroundPosition::kLast};
  CalibrationSpec spec;
  EXPECT_EQ(MakeCalibrator(spec, layout, nullptr, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const Statistics other = MakeStats(BackgroundPosition::kFirst);
  EXPECT_EQ(MakeCalibrator(spec, layout, &other, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const Statistics same = MakeStats(BackgroundPosition::kLast);
  EXPECT_TRUE(MakeCalibrator(spec, layout, &same, {}).ok());
  spec.method = CalibrationMethod::kNone;
  EXPECT_EQ(MakeCalibrator(spec, layout, nullptr, {}).value().method(), CalibrationMethod::kNone);
}

TEST(CalibratorTest, ParsersRoundTripNames) {
  for (BetaPolicy p : {BetaPolicy::kMinForegroundMean, BetaPolicy::kAvgForegroundMean,
                       BetaPolicy::kMaxForegroundMean, BetaPolicy::kBackgroundMean,
                       BetaPolicy::kConstant}) {
    BetaPolicy parsed;
    ASSERT_TRUE(ParseBetaPolicy(BetaPolicyName(p), &parsed).ok());
    EXPECT_EQ(parsed, p);
  }
  for (CalibrationMethod m :
       {CalibrationMethod::kNone, CalibrationMethod::kLogN, CalibrationMethod::kLogA}) {
    CalibrationMethod parsed;
    ASSERT_TRUE(ParseCalibrationMethod(CalibrationMethodName(m), &parsed).ok());
    EXPECT_EQ(parsed, m);
  }
  BetaPolicy policy;
  EXPECT_EQ(ParseBetaPolicy("smallest", &policy).code(), absl::StatusCode::kInvalidArgument);
  CalibrationMethod method;
  EXPECT_EQ(ParseCalibrationMethod("LOGN", &method).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SoftmaxTest, RowsSumToOneAndMatchTheDefinition) {
  const std::vector<float> logits = RandomLogits(16, 9);
  std::vector<float> probs(logits.size());
  SoftmaxRows(logits.data(), probs.data(), 16, 9);
  for (int r = 0; r < 16; ++r) {
    double denom = 0;
    for (int j = 0; j < 9; ++j) denom += std::exp(static_cast<double>(logits[r * 9 + j]));
    double sum = 0;
    for (int j = 0; j < 9; ++j) {
      const double expected = std::exp(static_cast<double>(logits[r * 9 + j])) / denom;
      EXPECT_NEAR(probs[r * 9 + j], expected, 1e-6 * std::max(expected, 1e-3));
      sum += probs[r * 9 + j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST(SoftmaxTest, StableForLargeLogitsAndInPlace) {
  std::vector<float> row = {1000.0f, 1001.0f, -1000.0f};
  SoftmaxRows(row.data(), row.data(), 1, 3);
  EXPECT_NEAR(row[0], 1 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(row[1], 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(row[2], 0.0f);
}

}  // namespace
}  // namespace logn
