#include "calibration/accumulator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

constexpr LogitLayout kLayout{32, BackgroundPosition::kLast};  // width 33

// Rows with per-column means bounded away from 0, so relative errors are meaningful.
std::vector<float> RandomRows(absl::BitGen& gen, int64_t rows, int32_t width) {
  std::vector<double> mean(width), stddev(width);
  for (int j = 0; j < width; ++j) {
    mean[j] = (j % 2 ? 1.0 : -1.0) * absl::Uniform<double>(gen, 1.0, 8.0);
    stddev[j] = absl::Uniform<double>(gen, 0.2, 3.0);
  }
  std::vector<float> values(rows * width);
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < width; ++j) {
      values[r * width + j] = static_cast<float>(absl::Gaussian<double>(gen, mean[j], stddev[j]));
    }
  }
  return values;
}

// Textbook two-pass reference in long double.
void TwoPass(const std::vector<float>& values, int32_t width, std::vector<double>* mean,
             std::vector<double>* variance) {
  const int64_t rows = static_cast<int64_t>(values.size()) / width;
  mean->assign(width, 0);
  variance->assign(width, 0);
  for (int j = 0; j < width; ++j) {
    long double sum = 0;
    for (int64_t r = 0; r < rows; ++r) sum += values[r * width + j];
    const long double m = sum / rows;
    long double ss = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const long double d = values[r * width + j] - m;
      ss += d * d;
    }
    (*mean)[j] = static_cast<double>(m);
    (*variance)[j] = static_cast<double>(ss / (rows - 1));
  }
}

double RelativeError(double actual, double expected) {
  return std::abs(actual - expected) / std::abs(expected);
}

TEST(ExactAccumulatorTest, AnySplitMergedInAnyOrderEqualsOnePassAndTwoPass) {
  absl::BitGen gen;
  constexpr int64_t kRows = 100000;
  const std::vector<float> values = RandomRows(gen, kRows, kLayout.width());
  std::vector<double> ref_mean, ref_var;
  TwoPass(values, kLayout.width(), &ref_mean, &ref_var);

  ExactAccumulator one_pass(kLayout);
  ASSERT_TRUE(one_pass.Add({values.data(), kRows, kLayout.width()}).ok());
  const Statistics one = one_pass.Snapshot().value();
  EXPECT_EQ(one.count, kRows);

  for (int trial = 0; trial < 5; ++trial) {
    // Random batch boundaries, one accumulator per batch, merged in a random order.
    std::vector<ExactAccumulator> parts;
    for (int64_t start = 0; start < kRows;) {
      const int64_t n = std::min<int64_t>(kRows - start, absl::Uniform<int64_t>(gen, 1, 5000));
      ExactAccumulator part(kLayout);
      ASSERT_TRUE(part.Add({values.data() + start * kLayout.width(), n, kLayout.width()}).ok());
      parts.push_back(std::move(part));
      start += n;
    }
    std::shuffle(parts.begin(), parts.end(), gen);
    while (parts.size() > 1) {  // random pairwise merges: a random merge tree
      const size_t i = absl::Uniform<size_t>(gen, 0, parts.size() - 1);
      ASSERT_TRUE(parts[i].Merge(parts.back()).ok());
      parts.pop_back();
      std::swap(parts[i], parts[absl::Uniform<size_t>(gen, 0, parts.size())]);
    }
    const Statistics merged = parts[0].Snapshot().value();
    ASSERT_EQ(merged.count, kRows);
    for (int j = 0; j < kLayout.width(); ++j) {
      EXPECT_LE(RelativeError(merged.mean[j], one.mean[j]), 1e-12) << "column " << j;
      EXPECT_LE(RelativeError(merged.variance[j], one.variance[j]), 1e-12) << "column " << j;
    }
  }
  for (int j = 0; j < kLayout.width(); ++j) {
    EXPECT_LE(RelativeError(one.mean[j], ref_mean[j]), 1e-12) << "column " << j;
    EXPECT_LE(RelativeError(one.variance[j], ref_var[j]), 1e-12) << "column " << j;
  }
}

TEST(ExactAccumulatorTest, SequentialBatchesEqualOnePass) {
  absl::BitGen gen;
  const std::vector<float> values = RandomRows(gen, 20000, kLayout.width());
  ExactAccumulator one_pass(kLayout), batched(kLayout);
  ASSERT_TRUE(one_pass.Add(LogitBatchView::Of(values, kLayout.width())).ok());
  for (int64_t start = 0; start < 20000; start += 333) {
    const int64_t n = std::min<int64_t>(333, 20000 - start);
    ASSERT_TRUE(batched.Add({values.data() + start * kLayout.width(), n, kLayout.width()}).ok());
  }
  const Statistics a = one_pass.Snapshot().value(), b = batched.Snapshot().value();
  for (int j = 0; j < kLayout.width(); ++j) {
    EXPECT_LE(RelativeError(b.mean[j], a.mean[j]), 1e-12);
    EXPECT_LE(RelativeError(b.variance[j], a.variance[j]), 1e-12);
  }
  EXPECT_EQ(batched.batches(), (20000 + 332) / 333);
}

TEST(ExactAccumulatorTest, LargeOffsetSmallVarianceStaysAccurate) {
  // Logits offset by 1e4 with variance 1e-2: naive Σx² − (Σx)²/n would lose every digit.
  absl::BitGen gen;
  constexpr int64_t kRows = 50000;
  std::vector<float> values(kRows * kLayout.width());
  for (float& v : values) v = static_cast<float>(1e4 + absl::Gaussian<double>(gen, 0.0, 0.1));
  std::vector<double> ref_mean, ref_var;
  TwoPass(values, kLayout.width(), &ref_mean, &ref_var);
  ExactAccumulator accumulator(kLayout);
  for (int64_t start = 0; start < kRows; start += 4096) {
    const int64_t n = std::min<int64_t>(4096, kRows - start);
    ASSERT_TRUE(
        accumulator.Add({values.data() + start * kLayout.width(), n, kLayout.width()}).ok());
  }
  const Statistics stats = accumulator.Snapshot().value();
  for (int j = 0; j < kLayout.width(); ++j) {
    EXPECT_NEAR(ref_var[j], 1e-2, 1e-3);  // the data really has that variance
    EXPECT_LE(RelativeError(stats.variance[j], ref_var[j]), 1e-6) << "column " << j;
    EXPECT_LE(RelativeError(stats.mean[j], ref_mean[j]), 1e-12) << "column " << j;
  }
}

TEST(ExactAccumulatorTest, MergeSnapshotEqualsMergeOfAccumulators) {
  absl::BitGen gen;
  const std::vector<float> a = RandomRows(gen, 1000, kLayout.width());
  const std::vector<float> b = RandomRows(gen, 700, kLayout.width());
  ExactAccumulator left(kLayout), right(kLayout), via_snapshot(kLayout);
  ASSERT_TRUE(left.Add(LogitBatchView::Of(a, kLayout.width())).ok());
  ASSERT_TRUE(right.Add(LogitBatchView::Of(b, kLayout.width())).ok());
  ASSERT_TRUE(via_snapshot.Add(LogitBatchView::Of(a, kLayout.width())).ok());
  ASSERT_TRUE(via_snapshot.MergeSnapshot(right.Snapshot().value()).ok());
  ASSERT_TRUE(left.Merge(right).ok());
  const Statistics x = left.Snapshot().value(), y = via_snapshot.Snapshot().value();
  EXPECT_EQ(x.count, 1700);
  EXPECT_EQ(y.count, 1700);
  for (int j = 0; j < kLayout.width(); ++j) {
    EXPECT_LE(RelativeError(y.mean[j], x.mean[j]), 1e-12);
    EXPECT_LE(RelativeError(y.variance[j], x.variance[j]), 1e-12);
  }
}

TEST(ExactAccumulatorTest, RefusesMismatchedOrEmaMerges) {
  ExactAccumulator a(kLayout), b(LogitLayout{32, BackgroundPosition::kFirst});
  EXPECT_EQ(a.Merge(b).code(), absl::StatusCode::kInvalidArgument);
  Statistics ema;
  ema.layout = kLayout;
  ema.mean.assign(kLayout.width(), 0);
  ema.variance.assign(kLayout.width(), 1);
  ema.method = AccumulationMethod::kEma;
  ema.momentum = 0.1;
  ema.count = 10;
  EXPECT_EQ(a.MergeSnapshot(ema).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExactAccumulatorTest, EmptySnapshotIsFailedPrecondition) {
  ExactAccumulator a(kLayout);
  EXPECT_EQ(a.Snapshot().status().code(), absl::StatusCode::kFailedPrecondition);
}

std::vector<double> RandomWeights(absl::BitGen& gen, int64_t rows) {
  std::vector<double> weights(rows);
  for (double& w : weights) w = absl::Uniform<double>(gen, 0.0, 4.0);
  return weights;
}

TEST(ExactAccumulatorWeightsTest, WeightsOfOneGiveExactlyTheUnweightedResult) {
  absl::BitGen gen;
  constexpr int64_t kRows = 3000;  // several blocks
  const std::vector<float> values = RandomRows(gen, kRows, kLayout.width());
  ExactAccumulator plain(kLayout), ones(kLayout);
  ASSERT_TRUE(plain.Add(LogitBatchView::Of(values, kLayout.width())).ok());
  ASSERT_TRUE(ones.Add(LogitBatchView::Of(values, kLayout.width()),
                       std::vector<double>(kRows, 1.0)).ok());
  const Statistics a = plain.Snapshot().value(), b = ones.Snapshot().value();
  EXPECT_EQ(a.mean, b.mean);  // bit for bit: w·d = d when w = 1
  EXPECT_EQ(a.variance, b.variance);
  EXPECT_EQ(a.count, b.count);
  EXPECT_FALSE(plain.weighted());
  EXPECT_EQ(a.total_weight, 0.0);  // unweighted: the weight is the count
  EXPECT_TRUE(ones.weighted());
  EXPECT_EQ(b.total_weight, static_cast<double>(kRows));
  EXPECT_EQ(a.effective_weight(), b.effective_weight());
}

TEST(ExactAccumulatorWeightsTest, IntegerWeightsEqualRepeatedRowsAndZeroWeightsEqualNoRow) {
  absl::BitGen gen;
  constexpr int64_t kRows = 700;
  const int32_t width = kLayout.width();
  const std::vector<float> values = RandomRows(gen, kRows, width);
  std::vector<double> weights(kRows);
  std::vector<float> repeated;
  for (int64_t r = 0; r < kRows; ++r) {
    weights[r] = static_cast<double>(absl::Uniform<int>(gen, 0, 4));  // 0, 1, 2 or 3
    for (int k = 0; k < weights[r]; ++k) {
      repeated.insert(repeated.end(), values.begin() + r * width,
                      values.begin() + (r + 1) * width);
    }
  }
  ExactAccumulator weighted(kLayout), expanded(kLayout);
  // In uneven batches, to cross block and batch boundaries.
  for (int64_t start = 0; start < kRows; start += 333) {
    const int64_t n = std::min<int64_t>(333, kRows - start);
    ASSERT_TRUE(weighted
                    .Add({values.data() + start * width, n, width},
                         absl::MakeConstSpan(weights).subspan(start, n))
                    .ok());
  }
  ASSERT_TRUE(expanded.Add(LogitBatchView::Of(repeated, width)).ok());
  const Statistics w = weighted.Snapshot().value(), e = expanded.Snapshot().value();
  EXPECT_EQ(w.count, kRows);  // rows, whatever their weights
  EXPECT_EQ(w.total_weight, static_cast<double>(e.count));
  for (int j = 0; j < width; ++j) {
    EXPECT_LE(RelativeError(w.mean[j], e.mean[j]), 1e-12) << "column " << j;
    EXPECT_LE(RelativeError(w.variance[j], e.variance[j]), 1e-12) << "column " << j;
  }
}

TEST(ExactAccumulatorWeightsTest, ZeroWeightBatchesCountRowsButNoWeight) {
  absl::BitGen gen;
  const std::vector<float> values = RandomRows(gen, 20, kLayout.width());
  const LogitBatchView batch = LogitBatchView::Of(values, kLayout.width());
  ExactAccumulator accumulator(kLayout);
  ASSERT_TRUE(accumulator.Add(batch, std::vector<double>(20, 0.0)).ok());
  EXPECT_EQ(accumulator.count(), 20);
  EXPECT_EQ(accumulator.total_weight(), 0.0);
  const auto empty = accumulator.Snapshot().status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(empty.message()), HasSubstr("weight 0"));

  // Then weighted rows: the zero-weight ones changed nothing but the row count.
  std::vector<double> weights = RandomWeights(gen, 20);
  ASSERT_TRUE(accumulator.Add(batch, weights).ok());
  ExactAccumulator reference(kLayout);
  ASSERT_TRUE(reference.Add(batch, weights).ok());
  const Statistics a = accumulator.Snapshot().value(), b = reference.Snapshot().value();
  EXPECT_EQ(a.count, 40);
  EXPECT_EQ(a.total_weight, b.total_weight);
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_EQ(a.variance, b.variance);
}

TEST(ExactAccumulatorWeightsTest, VarianceDividesByTotalWeightMinusOne) {
  const LogitLayout layout{1, BackgroundPosition::kFirst};
  const std::vector<float> rows = {1, 10, 3, 20, 8, 60};  // 3 rows x 2
  ExactAccumulator accumulator(layout);
  ASSERT_TRUE(accumulator.Add(LogitBatchView::Of(rows, 2), std::vector<double>{0.5, 2, 1.5}).ok());
  const Statistics stats = accumulator.Snapshot().value();
  // W = 4; column 0: mean (0.5 + 6 + 12) / 4 = 4.625, M2 = Σw(x − mean)².
  const double mean = (0.5 * 1 + 2 * 3 + 1.5 * 8) / 4;
  const double m2 = 0.5 * (1 - mean) * (1 - mean) + 2 * (3 - mean) * (3 - mean) +
                    1.5 * (8 - mean) * (8 - mean);
  EXPECT_EQ(stats.total_weight, 4.0);
  EXPECT_DOUBLE_EQ(stats.mean[0], mean);
  EXPECT_DOUBLE_EQ(stats.variance[0], m2 / 3);

  // W <= 1: the variance is 0 (as with one unweighted row).
  ExactAccumulator light(layout);
  ASSERT_TRUE(light.Add(LogitBatchView::Of(rows, 2), std::vector<double>{0.25, 0.5, 0.25}).ok());
  const Statistics small = light.Snapshot().value();
  EXPECT_EQ(small.total_weight, 1.0);
  EXPECT_DOUBLE_EQ(small.mean[0], (0.25 * 1 + 0.5 * 3 + 0.25 * 8) / 1.0);
  EXPECT_EQ(small.variance[0], 0.0);
}

TEST(ExactAccumulatorWeightsTest, WeightedSnapshotsMergeLikeAccumulators) {
  absl::BitGen gen;
  const std::vector<float> a = RandomRows(gen, 1000, kLayout.width());
  const std::vector<float> b = RandomRows(gen, 700, kLayout.width());
  const std::vector<double> wa = RandomWeights(gen, 1000), wb = RandomWeights(gen, 700);
  ExactAccumulator left(kLayout), right(kLayout), via_snapshot(kLayout), unweighted(kLayout);
  ASSERT_TRUE(left.Add(LogitBatchView::Of(a, kLayout.width()), wa).ok());
  ASSERT_TRUE(right.Add(LogitBatchView::Of(b, kLayout.width()), wb).ok());
  ASSERT_TRUE(unweighted.Add(LogitBatchView::Of(b, kLayout.width())).ok());
  ASSERT_TRUE(via_snapshot.MergeSnapshot(left.Snapshot().value()).ok());
  EXPECT_TRUE(via_snapshot.weighted());
  ASSERT_TRUE(via_snapshot.MergeSnapshot(right.Snapshot().value()).ok());
  ASSERT_TRUE(left.Merge(right).ok());
  const Statistics x = left.Snapshot().value(), y = via_snapshot.Snapshot().value();
  EXPECT_EQ(y.count, 1700);
  EXPECT_LE(RelativeError(y.total_weight, x.total_weight), 1e-15);
  for (int j = 0; j < kLayout.width(); ++j) {
    EXPECT_LE(RelativeError(y.mean[j], x.mean[j]), 1e-12);
    EXPECT_LE(RelativeError(y.variance[j], x.variance[j]), 1e-12);
  }
  // Weighted and unweighted rows mix: unweighted rows weigh 1.
  ASSERT_TRUE(left.MergeSnapshot(unweighted.Snapshot().value()).ok());
  EXPECT_EQ(left.count(), 2400);
  EXPECT_LE(RelativeError(left.total_weight(), x.total_weight + 700), 1e-15);
}

// Every refused batch names the problem and leaves the accumulator exactly as it was.
class BadBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::BitGen gen;
    good_ = RandomRows(gen, 10, kLayout.width());
    ASSERT_TRUE(exact_.Add(LogitBatchView::Of(good_, kLayout.width())).ok());
    ASSERT_TRUE(ema_.Add(LogitBatchView::Of(good_, kLayout.width())).ok());
    exact_before_ = exact_.Snapshot().value();
    ema_before_ = ema_.Snapshot();
  }

  void ExpectRefused(const LogitBatchView& batch, const std::string& message_part) {
    for (const absl::Status& status :
         {exact_.Add(batch), ema_.Add(batch), ValidateLogitBatch(kLayout, batch)}) {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(status.message()), HasSubstr(message_part));
    }
    ExpectUnchanged();
  }

  void ExpectWeightsRefused(const LogitBatchView& batch, const std::vector<double>& weights,
                            const std::string& message_part) {
    for (const absl::Status& status : {exact_.Add(batch, weights), ema_.Add(batch, weights)}) {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(status.message()), HasSubstr(message_part));
    }
    ExpectUnchanged();
  }

  void ExpectUnchanged() {
    const Statistics exact_after = exact_.Snapshot().value();
    const Statistics ema_after = ema_.Snapshot();
    EXPECT_EQ(exact_after.count, exact_before_.count);
    EXPECT_EQ(exact_after.mean, exact_before_.mean);
    EXPECT_EQ(exact_after.variance, exact_before_.variance);
    EXPECT_EQ(exact_.batches(), 1);
    EXPECT_EQ(ema_after.count, ema_before_.count);
    EXPECT_EQ(ema_after.mean, ema_before_.mean);
    EXPECT_EQ(ema_after.variance, ema_before_.variance);
  }

  std::vector<float> good_;
  ExactAccumulator exact_{kLayout};
  EmaAccumulator ema_ = EmaAccumulator::Create(kLayout, 0.1).value();
  Statistics exact_before_, ema_before_;
};

TEST_F(BadBatchTest, NaNNamesFirstOffendingRowAndColumn) {
  std::vector<float> bad = good_;
  bad[7 * kLayout.width() + 5] = std::numeric_limits<float>::quiet_NaN();
  bad[8 * kLayout.width() + 1] = std::numeric_limits<float>::quiet_NaN();
  ExpectRefused(LogitBatchView::Of(bad, kLayout.width()), "row 7, column 5");
}

TEST_F(BadBatchTest, InfinityIsRefused) {
  std::vector<float> bad = good_;
  bad[3 * kLayout.width()] = -std::numeric_limits<float>::infinity();
  ExpectRefused(LogitBatchView::Of(bad, kLayout.width()), "row 3, column 0");
  bad[3 * kLayout.width()] = std::numeric_limits<float>::infinity();
  ExpectRefused(LogitBatchView::Of(bad, kLayout.width()), "row 3, column 0");
}

TEST_F(BadBatchTest, WrongWidthIsRefused) {
  ExpectRefused({good_.data(), 10, kLayout.width() - 1}, "width 32");
  ExpectRefused({good_.data(), 5, kLayout.width() + 1}, "needs 33");
}

TEST_F(BadBatchTest, ZeroRowsAreRefused) {
  ExpectRefused({good_.data(), 0, kLayout.width()}, "0 rows");
}

TEST_F(BadBatchTest, BadRowWeightsAreRefusedNamingTheRow) {
  const LogitBatchView batch = LogitBatchView::Of(good_, kLayout.width());
  ExpectWeightsRefused(batch, std::vector<double>(9, 1.0), "9 row weights");
  ExpectWeightsRefused(batch, std::vector<double>(11, 1.0), "11 row weights");
  std::vector<double> weights(10, 1.0);
  weights[4] = -0.5;
  ExpectWeightsRefused(batch, weights, "at row 4");
  weights[4] = 1.0;
  weights[6] = std::numeric_limits<double>::quiet_NaN();
  ExpectWeightsRefused(batch, weights, "at row 6");
  weights[6] = std::numeric_limits<double>::infinity();
  ExpectWeightsRefused(batch, weights, "at row 6");
  weights[6] = 1e308;  // finite, but Σw·(x − shift)² overflows
  ExpectWeightsRefused(batch, weights, "overflow");
}

TEST_F(BadBatchTest, NonFiniteLogitsAreRefusedEvenWithWeightZero) {
  std::vector<float> bad = good_;
  bad[2 * kLayout.width() + 3] = std::numeric_limits<float>::infinity();
  std::vector<double> weights(10, 1.0);
  weights[2] = 0.0;
  ExpectWeightsRefused(LogitBatchView::Of(bad, kLayout.width()), weights, "row 2, column 3");
}

TEST(EmaAccumulatorTest, FollowsBatchNormRunningStatistics) {
  // momentum 1 keeps exactly the last batch's mean and unbiased variance.
  const std::vector<float> rows = {1, 10, 3, 20, 8, 60};  // 3 rows x 2
  const LogitLayout layout{1, BackgroundPosition::kFirst};
  EmaAccumulator ema = EmaAccumulator::Create(layout, 1.0).value();
  ASSERT_TRUE(ema.Add(LogitBatchView::Of(rows, 2)).ok());
  Statistics stats = ema.Snapshot();
  EXPECT_DOUBLE_EQ(stats.mean[0], 4.0);
  EXPECT_DOUBLE_EQ(stats.mean[1], 30.0);
  EXPECT_DOUBLE_EQ(stats.variance[0], 13.0);   // ((−3)² + 1² + 4²) / 2
  EXPECT_DOUBLE_EQ(stats.variance[1], 700.0);  // (400 + 100 + 900) / 2

  // momentum 0.25 from mean 0 / var 1.
  EmaAccumulator slow = EmaAccumulator::Create(layout, 0.25).value();
  ASSERT_TRUE(slow.Add(LogitBatchView::Of(rows, 2)).ok());
  stats = slow.Snapshot();
  EXPECT_DOUBLE_EQ(stats.mean[0], 0.25 * 4.0);
  EXPECT_DOUBLE_EQ(stats.variance[0], 0.75 * 1.0 + 0.25 * 13.0);
  EXPECT_EQ(stats.method, AccumulationMethod::kEma);
  EXPECT_EQ(stats.count, 3);
}

TEST(EmaAccumulatorTest, WeightedBatchStatisticsAreFrequencyWeighted) {
  const std::vector<float> rows = {1, 10, 3, 20, 8, 60};  // 3 rows x 2
  const LogitLayout layout{1, BackgroundPosition::kFirst};
  // Weights {1, 2, 1} are the batch {row 0, row 1, row 1, row 2}.
  EmaAccumulator weighted = EmaAccumulator::Create(layout, 1.0).value();
  ASSERT_TRUE(weighted.Add(LogitBatchView::Of(rows, 2), std::vector<double>{1, 2, 1}).ok());
  const std::vector<float> expanded = {1, 10, 3, 20, 3, 20, 8, 60};
  EmaAccumulator reference = EmaAccumulator::Create(layout, 1.0).value();
  ASSERT_TRUE(reference.Add(LogitBatchView::Of(expanded, 2)).ok());
  const Statistics a = weighted.Snapshot(), b = reference.Snapshot();
  EXPECT_DOUBLE_EQ(a.mean[0], 3.75);
  for (int j = 0; j < 2; ++j) {
    EXPECT_DOUBLE_EQ(a.mean[j], b.mean[j]);
    EXPECT_DOUBLE_EQ(a.variance[j], b.variance[j]);
  }
  EXPECT_EQ(a.count, 3);  // rows
  EXPECT_EQ(a.total_weight, 0.0);  // EMA statistics are not weighted sums

  // Weights summing to 1 or less leave the unbiased variance undefined.
  const absl::Status light =
      weighted.Add(LogitBatchView::Of(rows, 2), std::vector<double>{0.5, 0.25, 0.25});
  EXPECT_EQ(light.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(light.message()), HasSubstr("more than 1"));
  EXPECT_EQ(weighted.count(), 3);
}

TEST(EmaAccumulatorTest, StartsFromSnapshot) {
  const LogitLayout layout{1, BackgroundPosition::kFirst};
  Statistics initial;
  initial.layout = layout;
  initial.count = 100;
  initial.mean = {2.0, -1.0};
  initial.variance = {4.0, 9.0};
  EmaAccumulator ema = EmaAccumulator::CreateFrom(initial, 0.5).value();
  const std::vector<float> rows = {1, 10, 3, 20, 8, 60};
  ASSERT_TRUE(ema.Add(LogitBatchView::Of(rows, 2)).ok());
  const Statistics stats = ema.Snapshot();
  EXPECT_DOUBLE_EQ(stats.mean[0], 0.5 * 2.0 + 0.5 * 4.0);
  EXPECT_DOUBLE_EQ(stats.variance[1], 0.5 * 9.0 + 0.5 * 700.0);
  EXPECT_EQ(stats.count, 103);
}

TEST(EmaAccumulatorTest, RefusesBadMomentumAndSingleRowBatches) {
  EXPECT_EQ(EmaAccumulator::Create(kLayout, 0.0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmaAccumulator::Create(kLayout, 1.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmaAccumulator::Create(LogitLayout{0, BackgroundPosition::kLast}, 0.1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EmaAccumulator ema = EmaAccumulator::Create(kLayout, 0.1).value();
  std::vector<float> row(kLayout.width(), 1.0f);
  EXPECT_EQ(ema.Add(LogitBatchView::Of(row, kLayout.width())).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ema.count(), 0);
}

}  // namespace
}  // namespace logn
