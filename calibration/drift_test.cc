// Tests of calibration/drift.h: the window against an ExactAccumulator over exactly the rows it
// should hold, and the scores against hand-computed values and numpy
// (tests/golden/drift_golden.json, written by tests/golden/make_drift_golden.py).
#include "calibration/drift.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr LogitLayout kLayout{3, BackgroundPosition::kLast};  // width 4

absl::Time T(double seconds) { return absl::FromUnixSeconds(1700000000) + absl::Seconds(seconds); }

DriftWindowOptions TimeOptions(absl::Duration duration, int32_t buckets) {
  DriftWindowOptions options;
  options.duration = duration;
  options.buckets = buckets;
  return options;
}

DriftWindowOptions CountOptions(int64_t rows, int32_t buckets) {
  DriftWindowOptions options;
  options.duration = absl::ZeroDuration();
  options.rows = rows;
  options.buckets = buckets;
  return options;
}

// `rows` rows of kLayout with values that differ from row to row and batch to batch.
std::vector<float> Rows(std::mt19937& gen, int64_t rows) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> values(rows * kLayout.width());
  for (int64_t i = 0; i < static_cast<int64_t>(values.size()); ++i) {
    values[i] = static_cast<float>((i % kLayout.width()) - 2.0 + normal(gen));
  }
  return values;
}

LogitBatchView View(const std::vector<float>& values) {
  return LogitBatchView::Of(values, kLayout.width());
}

// |actual − expected| ≤ tolerance·max(1, |expected|).
void ExpectNear(double actual, double expected, double tolerance, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), tolerance * std::max(1.0, std::abs(expected)))
      << what << ": " << actual << " vs " << expected;
}

// Mean to 1e-12 and variance to 1e-10 (relative to max(1, |x|)): the window merges its buckets
// in another order than one accumulator adds the rows, which rounds differently, no more.
void ExpectSameStatistics(const Statistics& actual, const Statistics& expected,
                          const std::string& what) {
  EXPECT_EQ(actual.count, expected.count) << what;
  ASSERT_EQ(actual.mean.size(), expected.mean.size()) << what;
  for (size_t j = 0; j < expected.mean.size(); ++j) {
    ExpectNear(actual.mean[j], expected.mean[j], 1e-12, absl::StrCat(what, " mean ", j));
    ExpectNear(actual.variance[j], expected.variance[j], 1e-10,
               absl::StrCat(what, " variance ", j));
  }
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(DriftWindowOptionsTest, DefaultsAndEitherKindValidate) {
  EXPECT_TRUE(DriftWindowOptions().Validate().ok());  // ten minutes, ten buckets
  EXPECT_TRUE(TimeOptions(absl::Seconds(1), 1).Validate().ok());
  EXPECT_TRUE(CountOptions(10, 10).Validate().ok());
  EXPECT_TRUE(CountOptions(1, 1).Validate().ok());
}

TEST(DriftWindowOptionsTest, RefusesBothKindsOrNeither) {
  DriftWindowOptions both = CountOptions(100, 10);
  both.duration = absl::Minutes(1);
  EXPECT_THAT(both.Validate().message(), HasSubstr("exactly one"));
  const absl::Status neither = CountOptions(0, 10).Validate();
  EXPECT_EQ(neither.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(neither.message(), HasSubstr("exactly one"));
}

TEST(DriftWindowOptionsTest, RefusesBadValues) {
  const std::vector<std::pair<DriftWindowOptions, std::string>> bad = {
      {TimeOptions(absl::Minutes(1), 0), "at least one bucket"},
      {TimeOptions(absl::Minutes(1), -3), "at least one bucket"},
      {TimeOptions(absl::Seconds(-1), 10), "negative"},
      {CountOptions(-5, 1), "negative"},
      {TimeOptions(absl::InfiniteDuration(), 10), "finite"},
      {TimeOptions(absl::Nanoseconds(9), 10), "too short"},
      {CountOptions(9, 10), "at least one row"},
  };
  for (const auto& [options, message] : bad) {
    const absl::Status status = options.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(status.message(), HasSubstr(message));
  }
  // The smallest windows that are still valid: one nanosecond, one row per bucket.
  EXPECT_TRUE(TimeOptions(absl::Nanoseconds(10), 10).Validate().ok());
  EXPECT_TRUE(CountOptions(10, 10).Validate().ok());
}

TEST(DriftWindowTest, CreateRefusesBadLayoutOrOptions) {
  EXPECT_EQ(DriftWindow::Create(LogitLayout{0, BackgroundPosition::kLast}, DriftWindowOptions())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DriftWindow::Create(kLayout, CountOptions(5, 10)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<DriftWindow> window = DriftWindow::Create(kLayout, CountOptions(5, 5));
  ASSERT_TRUE(window.ok());
  EXPECT_EQ(window->layout(), kLayout);
  EXPECT_EQ(window->options().rows, 5);
}

// ---------------------------------------------------------------------------------------------
// The window over time and rows

TEST(DriftWindowTest, EmptyBeforeAnyTime) {
  DriftWindow window = DriftWindow::Create(kLayout, DriftWindowOptions()).value();
  EXPECT_EQ(window.rows(T(0)), 0);
  EXPECT_EQ(window.requests(T(0)), 0);
  EXPECT_EQ(window.start(T(5)), T(5));
  EXPECT_FALSE(window.Complete(T(1e6)));
  EXPECT_EQ(window.Snapshot(T(0)).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DriftWindowTest, TimeBasedBucketsExpireOnceAllTheirRowsAreOlderThanTheDuration) {
  std::mt19937 gen(1);
  // 60 s in six buckets of 10 s, starting at T(0).
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(absl::Seconds(60), 6)).value();
  window.Reset(T(0));
  ASSERT_TRUE(window.Add(View(Rows(gen, 5)), T(1)).ok());   // bucket [0, 10)
  ASSERT_TRUE(window.Add(View(Rows(gen, 7)), T(15)).ok());  // bucket [10, 20)
  EXPECT_EQ(window.rows(T(15)), 12);
  EXPECT_EQ(window.start(T(15)), T(0));
  // A row of T(1) is younger than 60 s until T(61), and its bucket stays until every row it may
  // hold (up to T(10)) is older than 60 s: until T(70).
  EXPECT_EQ(window.rows(T(61)), 12);
  EXPECT_EQ(window.rows(T(69.999)), 12);
  EXPECT_EQ(window.rows(T(70)), 7);
  EXPECT_EQ(window.start(T(70)), T(10));
  EXPECT_EQ(window.rows(T(80)), 0);
  EXPECT_EQ(window.start(T(80)), T(80));  // empty: now
  EXPECT_EQ(window.Snapshot(T(80)).status().code(), absl::StatusCode::kFailedPrecondition);

  // A batch at T(75) drops the first bucket for good: asking about an earlier time counts as
  // T(75), the latest time given.
  ASSERT_TRUE(window.Add(View(Rows(gen, 3)), T(75)).ok());
  EXPECT_EQ(window.rows(T(75)), 10);
  EXPECT_EQ(window.rows(T(20)), 10);
  EXPECT_EQ(window.start(T(20)), T(10));
  // So does a batch given an earlier time: it lands in the bucket of T(75), [70, 80).
  ASSERT_TRUE(window.Add(View(Rows(gen, 2)), T(30)).ok());
  EXPECT_EQ(window.rows(T(80)), 5);
  EXPECT_EQ(window.rows(T(139.9)), 5);
  EXPECT_EQ(window.rows(T(140)), 0);
}

TEST(DriftWindowTest, TimeBasedWindowIsCompleteOnceTheDurationElapsed) {
  std::mt19937 gen(2);
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(absl::Minutes(1), 4)).value();
  window.Reset(T(0));
  EXPECT_FALSE(window.Complete(T(59.9)));
  EXPECT_TRUE(window.Complete(T(60)));  // with no row at all: the caller checks rows()
  ASSERT_TRUE(window.Add(View(Rows(gen, 4)), T(1)).ok());
  ASSERT_TRUE(window.Add(View(Rows(gen, 4)), T(59)).ok());
  // The window that has just completed still holds every row since the reset.
  EXPECT_TRUE(window.Complete(T(60)));
  EXPECT_EQ(window.rows(T(60)), 8);

  window.Reset(T(61));
  EXPECT_FALSE(window.Complete(T(120)));
  EXPECT_TRUE(window.Complete(T(121)));
}

TEST(DriftWindowTest, WithoutResetTheFirstTimeGivenStartsTheWindow) {
  std::mt19937 gen(3);
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(absl::Seconds(60), 6)).value();
  ASSERT_TRUE(window.Add(View(Rows(gen, 2)), T(3)).ok());
  EXPECT_EQ(window.start(T(3)), T(3));  // the bucket grid starts there too
  ASSERT_TRUE(window.Add(View(Rows(gen, 2)), T(14)).ok());
  EXPECT_EQ(window.rows(T(73)), 2);  // [3, 13) left at 73; [13, 23) stays
  EXPECT_EQ(window.start(T(73)), T(13));
  EXPECT_FALSE(window.Complete(T(62.9)));
  EXPECT_TRUE(window.Complete(T(63)));
}

TEST(DriftWindowTest, CountBasedWindowRotatesWholeBuckets) {
  std::mt19937 gen(4);
  // 10 rows in five buckets of two; a batch is never split, time plays no part.
  DriftWindow window = DriftWindow::Create(kLayout, CountOptions(10, 5)).value();
  window.Reset(T(0));
  // Batches at T(0) .. T(5) fill buckets {1+1} (T(0)), {3} (T(2)), {2} (T(3)), {1+1} (T(4)):
  // 9 rows, not yet complete.
  int t = 0;
  for (int64_t n : {1, 1, 3, 2, 1, 1}) ASSERT_TRUE(window.Add(View(Rows(gen, n)), T(t++)).ok());
  EXPECT_EQ(window.rows(T(5)), 9);
  EXPECT_FALSE(window.Complete(T(5)));
  ASSERT_TRUE(window.Add(View(Rows(gen, 2)), T(6)).ok());  // the fifth bucket
  EXPECT_EQ(window.rows(T(6)), 11);
  EXPECT_TRUE(window.Complete(T(6)));
  EXPECT_EQ(window.start(T(6)), T(0));
  // A sixth bucket drops the first: whole buckets leave, oldest first.
  ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(7)).ok());
  EXPECT_EQ(window.rows(T(7)), 10);
  EXPECT_EQ(window.start(T(7)), T(2));
  ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(8)).ok());  // fills the sixth
  EXPECT_EQ(window.rows(T(8)), 11);
  ASSERT_TRUE(window.Add(View(Rows(gen, 5)), T(9)).ok());  // a seventh drops {3}
  EXPECT_EQ(window.rows(T(9)), 13);
  EXPECT_EQ(window.start(T(9)), T(3));
  EXPECT_EQ(window.rows(T(1e9)), 13);  // no expiry with time
  EXPECT_EQ(window.start(T(1e9)), T(3));
  EXPECT_TRUE(window.Complete(T(9)));

  window.Reset(T(10));
  EXPECT_EQ(window.rows(T(10)), 0);
  EXPECT_FALSE(window.Complete(T(10)));
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(11)).ok());
  EXPECT_FALSE(window.Complete(T(11)));
  ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(11)).ok());
  EXPECT_TRUE(window.Complete(T(11)));
}

TEST(DriftWindowTest, CountBasedBucketsRoundUpSoACompleteWindowHoldsEveryRow) {
  std::mt19937 gen(5);
  // 10 rows in 3 buckets: 4 rows per bucket (4 + 4 + 2), not 3 (which would hold 9 at most).
  DriftWindow window = DriftWindow::Create(kLayout, CountOptions(10, 3)).value();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(i)).ok());
  EXPECT_TRUE(window.Complete(T(10)));
  EXPECT_EQ(window.rows(T(10)), 10);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(10)).ok());
  EXPECT_EQ(window.rows(T(10)), 12);
  ASSERT_TRUE(window.Add(View(Rows(gen, 1)), T(11)).ok());  // a fourth bucket drops the first
  EXPECT_EQ(window.rows(T(11)), 9);
  EXPECT_EQ(window.start(T(11)), T(4));
}

TEST(DriftWindowTest, CountsRequestsPerBucket) {
  std::mt19937 gen(6);
  DriftWindow timed = DriftWindow::Create(kLayout, TimeOptions(absl::Seconds(60), 6)).value();
  timed.Reset(T(0));
  timed.CountRequest(T(1));  // a request with no row yet opens its bucket
  EXPECT_EQ(timed.requests(T(1)), 1);
  EXPECT_EQ(timed.rows(T(1)), 0);
  ASSERT_TRUE(timed.Add(View(Rows(gen, 3)), T(2)).ok());
  timed.CountRequest(T(12));
  timed.CountRequest(T(13));
  EXPECT_EQ(timed.requests(T(13)), 3);
  EXPECT_EQ(timed.requests(T(70)), 2);  // the first bucket's request left with it
  EXPECT_EQ(timed.rows(T(70)), 0);
  EXPECT_EQ(timed.requests(T(80)), 0);
  timed.Reset(T(80));
  EXPECT_EQ(timed.requests(T(80)), 0);

  // Count-based: a request never starts a bucket once there is one, so counting it after its
  // rows filled the current bucket rotates nothing out.
  DriftWindow counted = DriftWindow::Create(kLayout, CountOptions(4, 2)).value();
  counted.CountRequest(T(0));
  EXPECT_EQ(counted.start(T(0)), T(0));
  ASSERT_TRUE(counted.Add(View(Rows(gen, 2)), T(1)).ok());
  ASSERT_TRUE(counted.Add(View(Rows(gen, 2)), T(2)).ok());
  counted.CountRequest(T(2));
  EXPECT_EQ(counted.requests(T(2)), 2);
  EXPECT_EQ(counted.rows(T(2)), 4);
  counted.CountRequest(T(3));
  EXPECT_EQ(counted.rows(T(3)), 4);
  EXPECT_EQ(counted.requests(T(3)), 3);
  ASSERT_TRUE(counted.Add(View(Rows(gen, 1)), T(4)).ok());  // drops the first bucket
  EXPECT_EQ(counted.rows(T(4)), 3);
  EXPECT_EQ(counted.requests(T(4)), 2);
}

TEST(DriftWindowTest, ResetEmptiesTheWindowAndStartsTheNext) {
  std::mt19937 gen(7);
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(absl::Seconds(60), 6)).value();
  window.Reset(T(0));
  ASSERT_TRUE(window.Add(View(Rows(gen, 5)), T(1)).ok());
  window.CountRequest(T(1));
  window.Reset(T(25));
  EXPECT_EQ(window.rows(T(25)), 0);
  EXPECT_EQ(window.requests(T(25)), 0);
  EXPECT_EQ(window.start(T(25)), T(25));
  EXPECT_EQ(window.Snapshot(T(25)).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(window.Complete(T(84)));
  // The bucket grid now starts at T(25): T(36) falls in [35, 45).
  ASSERT_TRUE(window.Add(View(Rows(gen, 2)), T(36)).ok());
  EXPECT_EQ(window.start(T(36)), T(35));
  EXPECT_TRUE(window.Complete(T(85)));
  EXPECT_EQ(window.rows(T(104.9)), 2);
  EXPECT_EQ(window.rows(T(105)), 0);
}

TEST(DriftWindowTest, RefusedBatchesLeaveTheWindowUnchanged) {
  std::mt19937 gen(8);
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(absl::Seconds(60), 6)).value();
  window.Reset(T(0));
  const std::vector<float> good = Rows(gen, 5);
  ASSERT_TRUE(window.Add(View(good), T(1)).ok());
  window.CountRequest(T(1));
  const Statistics before = window.Snapshot(T(1)).value();

  std::vector<float> nan_row = Rows(gen, 3);
  nan_row[6] = std::nanf("");
  std::vector<float> inf_row = Rows(gen, 3);
  inf_row[11] = -INFINITY;
  const std::vector<float> wide(10, 1.0f);
  const std::vector<LogitBatchView> refused = {View(nan_row),
                                               View(inf_row),
                                               LogitBatchView{wide.data(), 2, 5},
                                               LogitBatchView{},
                                               LogitBatchView{nullptr, 2, kLayout.width()},
                                               LogitBatchView{good.data(), 0, 4}};
  // At T(100) a good batch would have dropped the first bucket; a refused one moves nothing.
  for (const LogitBatchView& batch : refused) {
    EXPECT_EQ(window.Add(batch, T(100)).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(window.Add(View(nan_row), T(100)).message(), HasSubstr("non-finite"));
  EXPECT_EQ(window.rows(T(1)), 5);
  EXPECT_EQ(window.requests(T(1)), 1);
  EXPECT_EQ(window.start(T(1)), T(0));
  EXPECT_FALSE(window.Complete(T(1)));
  const Statistics after = window.Snapshot(T(1)).value();
  EXPECT_EQ(after.count, before.count);
  EXPECT_EQ(after.mean, before.mean);
  EXPECT_EQ(after.variance, before.variance);

  // Count-based, with the current bucket full: a refused batch starts no bucket, so the next
  // good one rotates exactly one bucket out.
  DriftWindow counted = DriftWindow::Create(kLayout, CountOptions(4, 2)).value();
  ASSERT_TRUE(counted.Add(View(Rows(gen, 2)), T(0)).ok());
  ASSERT_TRUE(counted.Add(View(Rows(gen, 2)), T(0)).ok());
  for (const LogitBatchView& batch : refused) EXPECT_FALSE(counted.Add(batch, T(0)).ok());
  EXPECT_EQ(counted.rows(T(0)), 4);
  ASSERT_TRUE(counted.Add(View(Rows(gen, 1)), T(0)).ok());
  EXPECT_EQ(counted.rows(T(0)), 3);
}

// A batch the tests add, and when.
struct Added {
  absl::Time time;
  std::vector<float> values;
};

// An accumulator over `batches` in order; its snapshot, or nullopt with no rows.
std::optional<Statistics> Reference(const std::vector<const Added*>& batches) {
  ExactAccumulator all(kLayout);
  for (const Added* added : batches) EXPECT_TRUE(all.Add(View(added->values)).ok());
  if (all.count() == 0) return std::nullopt;
  return all.Snapshot().value();
}

void ExpectWindowHolds(const DriftWindow& window, absl::Time now,
                       const std::vector<const Added*>& expected, const std::string& what) {
  int64_t rows = 0;
  for (const Added* added : expected) rows += added->values.size() / kLayout.width();
  EXPECT_EQ(window.rows(now), rows) << what;
  const std::optional<Statistics> reference = Reference(expected);
  const absl::StatusOr<Statistics> snapshot = window.Snapshot(now);
  if (!reference) {
    EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kFailedPrecondition) << what;
    return;
  }
  ASSERT_TRUE(snapshot.ok()) << what << ": " << snapshot.status();
  EXPECT_EQ(snapshot->method, AccumulationMethod::kExact);
  EXPECT_EQ(snapshot->layout, kLayout);
  EXPECT_EQ(snapshot->provenance.batches_seen, 0);  // provenance empty
  EXPECT_EQ(snapshot->total_weight, 0.0);
  ExpectSameStatistics(*snapshot, *reference, what);
}

TEST(DriftWindowTest, TimeBasedSnapshotIsTheStatisticsOfExactlyTheRowsInTheWindow) {
  std::mt19937 gen(9);
  const absl::Duration duration = absl::Seconds(60);
  const absl::Duration step = absl::Seconds(15);  // four buckets
  DriftWindow window = DriftWindow::Create(kLayout, TimeOptions(duration, 4)).value();
  window.Reset(T(0));
  std::uniform_int_distribution<int> rows(1, 20);
  std::uniform_int_distribution<int> millis(0, 7000);
  std::vector<Added> added;
  added.reserve(300);
  absl::Time now = T(0);
  for (int i = 0; i < 300; ++i) {
    now += absl::Milliseconds(millis(gen));
    added.push_back({now, Rows(gen, rows(gen))});
    ASSERT_TRUE(window.Add(View(added.back().values), now).ok());
    if (i % 7 != 0) continue;
    // Now and a little later: the rows whose bucket of the grid from T(0) has not wholly
    // fallen out of the last `duration`, that is every row younger than `duration` and none
    // older than duration + step.
    for (absl::Duration ahead : {absl::ZeroDuration(), absl::Seconds(9), absl::Seconds(31)}) {
      const absl::Time at = now + ahead;
      std::vector<const Added*> expected;
      for (const Added& a : added) {
        const absl::Time bucket_end = T(0) + step * ((a.time - T(0)) / step + 1);
        const bool in = bucket_end + duration > at;
        EXPECT_TRUE(in || a.time <= at - duration) << "a row younger than the window left it";
        EXPECT_FALSE(in && a.time <= at - duration - step) << "a row a bucket too old stayed";
        if (in) expected.push_back(&a);
      }
      ExpectWindowHolds(window, at, expected,
                        absl::StrCat("batch ", i, " +", absl::FormatDuration(ahead)));
    }
  }
}

TEST(DriftWindowTest, CountBasedSnapshotIsTheStatisticsOfExactlyTheRowsInTheWindow) {
  std::mt19937 gen(10);
  const int64_t per_bucket = 25;  // ⌈100 / 4⌉
  DriftWindow window = DriftWindow::Create(kLayout, CountOptions(100, 4)).value();
  std::uniform_int_distribution<int> rows(1, 30);
  std::vector<Added> added;
  added.reserve(200);
  // The documented rule: batches go into the current bucket until it holds per_bucket rows,
  // then into a new one; the last four buckets are the window.
  std::vector<std::vector<const Added*>> buckets;
  std::vector<int64_t> bucket_rows;
  for (int i = 0; i < 200; ++i) {
    added.push_back({T(i), Rows(gen, rows(gen))});
    ASSERT_TRUE(window.Add(View(added.back().values), T(i)).ok());
    if (buckets.empty() || bucket_rows.back() >= per_bucket) {
      buckets.emplace_back();
      bucket_rows.push_back(0);
    }
    buckets.back().push_back(&added.back());
    bucket_rows.back() += added.back().values.size() / kLayout.width();
    std::vector<const Added*> expected;
    for (size_t b = buckets.size() > 4 ? buckets.size() - 4 : 0; b < buckets.size(); ++b) {
      expected.insert(expected.end(), buckets[b].begin(), buckets[b].end());
    }
    ExpectWindowHolds(window, T(i), expected, absl::StrCat("batch ", i));
  }
}

// ---------------------------------------------------------------------------------------------
// Scores

Statistics MakeStatistics(const LogitLayout& layout, std::vector<double> mean,
                          std::vector<double> variance) {
  Statistics stats;
  stats.layout = layout;
  stats.count = 100;
  stats.mean = std::move(mean);
  stats.variance = std::move(variance);
  return stats;
}

TEST(ComputeDriftTest, ScoresEachClassInReferenceStandardDeviations) {
  // Background last (column 3), which moves a lot and must not count.
  const Statistics reference = MakeStatistics(kLayout, {0, 1, 2, 5}, {4, 1, 0, 1});
  const Statistics live = MakeStatistics(kLayout, {1, 1, 7, 50}, {4, 4, 9, 100});
  const DriftReport report = ComputeDrift(reference, live, {0, 2, 1}).value();
  // Class 0: |1 − 0| / 2 = 0.5, ln(4/4) = 0. Class 1: 0, ln 4. Class 2: constant reference, not
  // scored. By score, descending.
  ASSERT_EQ(report.classes.size(), 2u);
  EXPECT_EQ(report.classes[0].class_index, 1);
  EXPECT_DOUBLE_EQ(report.classes[0].drift.mean_shift, 0.0);
  EXPECT_DOUBLE_EQ(report.classes[0].drift.log_variance_ratio, std::log(4.0));
  EXPECT_DOUBLE_EQ(report.classes[0].drift.score, std::log(4.0));
  EXPECT_EQ(report.classes[1].class_index, 0);
  EXPECT_DOUBLE_EQ(report.classes[1].drift.mean_shift, 0.5);
  EXPECT_DOUBLE_EQ(report.classes[1].drift.log_variance_ratio, 0.0);
  EXPECT_DOUBLE_EQ(report.classes[1].drift.score, 0.5);

  EXPECT_EQ(report.overall.classes, 2);
  EXPECT_DOUBLE_EQ(report.overall.drift.mean_shift, 0.25);
  EXPECT_DOUBLE_EQ(report.overall.drift.log_variance_ratio, std::log(4.0) / 2);
  EXPECT_DOUBLE_EQ(report.overall.drift.score, (0.5 + std::log(4.0)) / 2);
  const DriftAggregate& rare = report.groups[static_cast<int>(DriftGroup::kRare)];
  EXPECT_EQ(rare.classes, 1);
  EXPECT_DOUBLE_EQ(rare.drift.score, 0.5);
  const DriftAggregate& common = report.groups[static_cast<int>(DriftGroup::kCommon)];
  EXPECT_EQ(common.classes, 0);  // class 2 was not scored: the group is empty, all zeros
  EXPECT_EQ(common.drift.score, 0.0);
  const DriftAggregate& frequent = report.groups[static_cast<int>(DriftGroup::kFrequent)];
  EXPECT_EQ(frequent.classes, 1);
  EXPECT_DOUBLE_EQ(frequent.drift.log_variance_ratio, std::log(4.0));
}

TEST(ComputeDriftTest, AggregatesTakeTheAbsoluteLogRatioAndSkipNoGroupClasses) {
  const Statistics reference = MakeStatistics(kLayout, {0, 0, 0, 0}, {1, 1, 1, 1});
  // Class 0: variance / 4 (ln = −1.386); class 1: × 4; class 2: mean + 3 sd, in no group.
  const Statistics live = MakeStatistics(kLayout, {0, 0, -3, 0}, {0.25, 4, 1, 1});
  const DriftReport report = ComputeDrift(reference, live, {0, 0, -1}).value();
  EXPECT_THAT(report.classes, testing::SizeIs(3));
  EXPECT_EQ(report.classes[0].class_index, 2);
  EXPECT_DOUBLE_EQ(report.classes[0].drift.score, 3.0);
  EXPECT_DOUBLE_EQ(report.classes[1].drift.log_variance_ratio, -std::log(4.0));  // a tie: 0 first
  EXPECT_EQ(report.classes[1].class_index, 0);
  EXPECT_EQ(report.classes[2].class_index, 1);
  EXPECT_DOUBLE_EQ(report.overall.drift.log_variance_ratio, 2 * std::log(4.0) / 3);
  EXPECT_DOUBLE_EQ(report.overall.drift.mean_shift, 1.0);
  EXPECT_DOUBLE_EQ(report.overall.drift.score, (3 + 2 * std::log(4.0)) / 3);
  const DriftAggregate& rare = report.groups[0];
  EXPECT_EQ(rare.classes, 2);
  EXPECT_DOUBLE_EQ(rare.drift.log_variance_ratio, std::log(4.0));  // mean of |±ln 4|
  EXPECT_DOUBLE_EQ(rare.drift.mean_shift, 0.0);
  EXPECT_EQ(report.groups[1].classes + report.groups[2].classes, 0);
}

TEST(ComputeDriftTest, TiesKeepTheLowerClassFirst) {
  const LogitLayout layout{5, BackgroundPosition::kNone};
  const Statistics reference = MakeStatistics(layout, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1});
  const Statistics live = MakeStatistics(layout, {1, 2, 1, 0, 2}, {1, 1, 1, 1, 1});
  const DriftReport report = ComputeDrift(reference, live, {0, 1, 2, 0, 1}).value();
  std::vector<int32_t> order;
  for (const ClassDrift& c : report.classes) order.push_back(c.class_index);
  EXPECT_THAT(order, ElementsAre(1, 4, 0, 2, 3));
}

TEST(ComputeDriftTest, FloorsTheLiveVarianceAndSkipsConstantReferences) {
  const LogitLayout layout{2, BackgroundPosition::kFirst};  // class c in column c + 1
  const Statistics reference = MakeStatistics(layout, {9, 0, 0}, {0, 2, 1e-7});
  const Statistics live = MakeStatistics(layout, {-9, 0, 5}, {100, 0, 1});
  DriftScoreOptions options;
  options.min_variance = 1e-6;
  const DriftReport report = ComputeDrift(reference, live, {1, 1}, options).value();
  // Class 1's reference variance (1e-7) is under the floor: not scored. Class 0's constant live
  // logit scores ln(1e-6 / 2), finite.
  ASSERT_EQ(report.classes.size(), 1u);
  EXPECT_EQ(report.classes[0].class_index, 0);
  EXPECT_DOUBLE_EQ(report.classes[0].drift.log_variance_ratio, std::log(1e-6 / 2));
  EXPECT_DOUBLE_EQ(report.classes[0].drift.score, -std::log(1e-6 / 2));
  EXPECT_EQ(report.groups[1].classes, 1);
  // With the default floor (1e-12) class 1 is scored: its mean moved 5 / sqrt(1e-7) sd.
  const DriftReport fine = ComputeDrift(reference, live, {1, 1}).value();
  ASSERT_EQ(fine.classes.size(), 2u);
  EXPECT_EQ(fine.classes[0].class_index, 1);
  EXPECT_DOUBLE_EQ(fine.classes[0].drift.mean_shift, 5 / std::sqrt(1e-7));
}

TEST(ComputeDriftTest, RefusesMismatchedOrInvalidInputs) {
  const Statistics reference = MakeStatistics(kLayout, {0, 1, 2, 5}, {4, 1, 1, 1});
  const std::vector<int32_t> groups = {0, 1, 2};
  auto expect_invalid = [&](const Statistics& ref, const Statistics& live,
                            const std::vector<int32_t>& g, const std::string& message,
                            DriftScoreOptions options = {}) {
    const absl::StatusOr<DriftReport> report = ComputeDrift(ref, live, g, options);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(report.status().message(), HasSubstr(message));
  };
  const Statistics other_layout =
      MakeStatistics({3, BackgroundPosition::kFirst}, {0, 1, 2, 5}, {4, 1, 1, 1});
  expect_invalid(reference, other_layout, groups, "against a reference");
  expect_invalid(reference, reference, {0, 1}, "one frequency group per foreground class");
  expect_invalid(reference, reference, {0, 1, 3}, "frequency group 3");
  expect_invalid(reference, reference, {0, -2, 1}, "frequency group -2");
  expect_invalid(MakeStatistics(kLayout, {0, 1, 2}, {4, 1, 1}), reference, groups,
                 "drift reference statistics");
  expect_invalid(reference, MakeStatistics(kLayout, {0, 1, 2, 5}, {4, -1, 1, 1}), groups,
                 "live drift statistics");
  expect_invalid(reference, MakeStatistics(kLayout, {0, NAN, 2, 5}, {4, 1, 1, 1}), groups,
                 "live drift statistics");
  DriftScoreOptions zero;
  zero.min_variance = 0;
  expect_invalid(reference, reference, groups, "min_variance", zero);
  DriftScoreOptions nan;
  nan.min_variance = NAN;
  expect_invalid(reference, reference, groups, "min_variance", nan);
  EXPECT_TRUE(ComputeDrift(reference, reference, groups).ok());
}

TEST(ComputeDriftTest, IdenticalStatisticsScoreZero) {
  const Statistics stats = MakeStatistics(kLayout, {0, 1, 2, 5}, {4, 1, 1, 1});
  const DriftReport report = ComputeDrift(stats, stats, {0, 1, 2}).value();
  EXPECT_EQ(report.overall.classes, 3);
  EXPECT_EQ(report.overall.drift.score, 0.0);
  for (const ClassDrift& c : report.classes) EXPECT_EQ(c.drift.score, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Against numpy: tests/golden/drift_golden.json

class DriftGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(std::string(LOGN_GOLDEN_DIR) + "/drift_golden.json");
    ASSERT_TRUE(in.good()) << "cannot open drift_golden.json";
    std::stringstream text;
    text << in.rdbuf();
    const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &fixture_);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ASSERT_EQ(Get(fixture_, "background").string_value(), "first");
    layout_ = {static_cast<int32_t>(Get(fixture_, "num_classes").number_value()),
               BackgroundPosition::kFirst};
    for (double g : Numbers(Get(fixture_, "class_groups"))) {
      groups_.push_back(static_cast<int32_t>(g));
    }
    options_.min_variance = Get(fixture_, "min_variance").number_value();
    expected_ = Get(fixture_, "expected").struct_value();
    reference_ = Batches("reference");
    live_ = Batches("live");
  }

  static const google::protobuf::Value& Get(const google::protobuf::Struct& s,
                                            const std::string& key) {
    static const google::protobuf::Value* const kMissing = new google::protobuf::Value();
    const auto it = s.fields().find(key);
    EXPECT_NE(it, s.fields().end()) << "the fixture has no " << key;
    return it == s.fields().end() ? *kMissing : it->second;
  }

  static std::vector<double> Numbers(const google::protobuf::Value& list) {
    std::vector<double> out;
    for (const google::protobuf::Value& v : list.list_value().values()) {
      out.push_back(v.number_value());
    }
    return out;
  }

  // The rows of fixture[name].logits (float32, as C++ reads them), split as batch_rows says.
  std::vector<std::vector<float>> Batches(const std::string& name) {
    const google::protobuf::Struct& part = Get(fixture_, name).struct_value();
    std::vector<float> rows;
    for (const google::protobuf::Value& row : Get(part, "logits").list_value().values()) {
      EXPECT_EQ(row.list_value().values_size(), layout_.width());
      for (double v : Numbers(row)) rows.push_back(static_cast<float>(v));
    }
    std::vector<std::vector<float>> batches;
    size_t offset = 0;
    for (double n : Numbers(Get(part, "batch_rows"))) {
      const size_t size = static_cast<size_t>(n) * layout_.width();
      batches.emplace_back(rows.begin() + offset, rows.begin() + offset + size);
      offset += size;
    }
    EXPECT_EQ(offset, rows.size());
    return batches;
  }

  LogitBatchView View(const std::vector<float>& batch) const {
    return LogitBatchView::Of(batch, layout_.width());
  }

  void ExpectStatistics(const Statistics& stats, const std::string& prefix) {
    const std::vector<double> mean = Numbers(Get(expected_, prefix + "_mean"));
    const std::vector<double> variance = Numbers(Get(expected_, prefix + "_variance"));
    ASSERT_EQ(stats.mean.size(), mean.size());
    for (size_t j = 0; j < mean.size(); ++j) {
      ExpectNear(stats.mean[j], mean[j], 1e-12, absl::StrCat(prefix, " mean ", j));
      ExpectNear(stats.variance[j], variance[j], 1e-10, absl::StrCat(prefix, " variance ", j));
    }
  }

  static void ExpectAggregate(const DriftAggregate& actual, const google::protobuf::Struct& want,
                              const std::string& what) {
    EXPECT_EQ(actual.classes, Get(want, "classes").number_value()) << what;
    ExpectNear(actual.drift.mean_shift, Get(want, "mean_shift").number_value(), 1e-9,
               what + " mean_shift");
    ExpectNear(actual.drift.log_variance_ratio, Get(want, "log_variance_ratio").number_value(),
               1e-9, what + " log_variance_ratio");
    ExpectNear(actual.drift.score, Get(want, "score").number_value(), 1e-9, what + " score");
  }

  // Scores to 1e-9 of numpy's (relative to max(1, |x|)), in numpy's order.
  void ExpectReport(const DriftReport& report) {
    const auto& classes = Get(expected_, "classes").list_value().values();
    ASSERT_EQ(static_cast<int>(report.classes.size()), classes.size());
    for (int i = 0; i < classes.size(); ++i) {
      const google::protobuf::Struct& want = classes[i].struct_value();
      const ClassDrift& got = report.classes[i];
      const std::string what = absl::StrCat("rank ", i, " class ", got.class_index);
      EXPECT_EQ(got.class_index, Get(want, "class_index").number_value()) << what;
      ExpectNear(got.drift.mean_shift, Get(want, "mean_shift").number_value(), 1e-9,
                 what + " mean_shift");
      ExpectNear(got.drift.log_variance_ratio, Get(want, "log_variance_ratio").number_value(), 1e-9,
                 what + " log_variance_ratio");
      ExpectNear(got.drift.score, Get(want, "score").number_value(), 1e-9, what + " score");
    }
    ExpectAggregate(report.overall, Get(expected_, "overall").struct_value(), "overall");
    const google::protobuf::Struct& groups = Get(expected_, "groups").struct_value();
    const char* const names[kDriftGroups] = {"rare", "common", "frequent"};
    for (int g = 0; g < kDriftGroups; ++g) {
      ExpectAggregate(report.groups[g], Get(groups, names[g]).struct_value(), names[g]);
    }
  }

  google::protobuf::Struct fixture_;
  google::protobuf::Struct expected_;
  LogitLayout layout_;
  std::vector<int32_t> groups_;
  DriftScoreOptions options_;
  std::vector<std::vector<float>> reference_;
  std::vector<std::vector<float>> live_;
};

TEST_F(DriftGoldenTest, AccumulatedStatisticsAndScoresMatchNumpy) {
  ExactAccumulator reference(layout_);
  for (const auto& batch : reference_) ASSERT_TRUE(reference.Add(View(batch)).ok());
  ExactAccumulator live(layout_);
  for (const auto& batch : live_) ASSERT_TRUE(live.Add(View(batch)).ok());
  const Statistics reference_stats = reference.Snapshot().value();
  const Statistics live_stats = live.Snapshot().value();
  ExpectStatistics(reference_stats, "reference");
  ExpectStatistics(live_stats, "live");
  ExpectReport(ComputeDrift(reference_stats, live_stats, groups_, options_).value());
}

TEST_F(DriftGoldenTest, WindowsMatchNumpy) {
  // The reference as the server captures it: a count-based window that completes on exactly
  // its rows (1,500 in five buckets of 300; batches are not split, so three buckets hold them).
  DriftWindow reference = DriftWindow::Create(layout_, CountOptions(1500, 5)).value();
  reference.Reset(T(0));
  for (const auto& batch : reference_) {
    EXPECT_FALSE(reference.Complete(T(0)));
    ASSERT_TRUE(reference.Add(View(batch), T(0)).ok());
  }
  EXPECT_TRUE(reference.Complete(T(0)));
  const Statistics reference_stats = reference.Snapshot(T(0)).value();
  ExpectStatistics(reference_stats, "reference");

  // The live window: a minute in six buckets, first fed the reference rows, which have all
  // expired by the time the live rows (one batch every 5 s from T(300)) are scored.
  DriftWindow live = DriftWindow::Create(layout_, TimeOptions(absl::Seconds(60), 6)).value();
  live.Reset(T(0));
  double t = 0;
  for (const auto& batch : reference_) ASSERT_TRUE(live.Add(View(batch), T(t++)).ok());
  t = 300;
  for (const auto& batch : live_) {
    ASSERT_TRUE(live.Add(View(batch), T(t)).ok());
    live.CountRequest(T(t));
    t += 5;
  }
  EXPECT_EQ(live.requests(T(t)), static_cast<int64_t>(live_.size()));
  const Statistics live_stats = live.Snapshot(T(t)).value();
  ExpectStatistics(live_stats, "live");
  ExpectReport(ComputeDrift(reference_stats, live_stats, groups_, options_).value());
}

}  // namespace
}  // namespace logn
