#ifndef LOGN_CALIBRATION_DRIFT_H_
#define LOGN_CALIBRATION_DRIFT_H_

// Live logit drift (docs/drift.md): a rolling window of per-column logit statistics, kept with
// the calibration accumulator, and scores of how far a window has moved from a reference.

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "calibration/accumulator.h"
#include "calibration/layout.h"
#include "calibration/statistics.h"

namespace logn {

// A window is time-based (the rows of the last `duration`) or count-based (the last `rows`
// rows): exactly one of the two is set (a count-based window sets duration to zero). It is kept
// as `buckets` sub-windows, so it slides by one bucket (duration / buckets, or ⌈rows / buckets⌉
// rows) at a time. A bucket leaves a time-based window once all of its rows are older than
// `duration`, so the window holds every row of the last `duration` plus the older rows of the
// bucket that straddles its start (at most duration / buckets more).
struct DriftWindowOptions {
  absl::Duration duration = absl::Minutes(10);  // time-based when > 0
  int64_t rows = 0;                             // count-based when > 0
  int32_t buckets = 10;                         // >= 1

  // INVALID_ARGUMENT unless exactly one of duration / rows is positive and the other is not
  // negative, buckets >= 1, a time-based window is finite and has at least 1 ns per bucket,
  // and a count-based window has at least one row per bucket.
  absl::Status Validate() const;
};

// The rows of the last window, per column, as ExactAccumulator statistics. Not thread-safe.
class DriftWindow {
 public:
  // INVALID_ARGUMENT for invalid options or layout. The window starts at the first time it is
  // given (Add, CountRequest or Reset): Create reads no clock, so tests can drive time.
  static absl::StatusOr<DriftWindow> Create(const LogitLayout& layout,
                                            const DriftWindowOptions& options);

  // Adds one batch observed at `now` (non-decreasing across calls; an earlier time counts as
  // `now` of the latest call). A time-based window first drops the buckets older than
  // `duration`; a count-based one puts the batch in the current bucket and starts a new bucket
  // once the current holds ⌈rows / buckets⌉ rows (a batch is never split), dropping the oldest
  // when more than `buckets` exist. INVALID_ARGUMENT (and no change) as ExactAccumulator::Add.
  absl::Status Add(const LogitBatchView& batch, absl::Time now);
  // Counts one request whose rows were (or will be) added: in the bucket of `now` when
  // time-based, in the current bucket when count-based (it never starts one there, so counting
  // a request never rotates rows out).
  void CountRequest(absl::Time now);

  // The queries below take `now` as Add does: a time before the latest call's counts as that.
  // The statistics of the rows in the window at `now` (provenance empty, method EXACT).
  // FAILED_PRECONDITION when the window holds no row.
  absl::StatusOr<Statistics> Snapshot(absl::Time now) const;
  int64_t rows(absl::Time now) const;
  int64_t requests(absl::Time now) const;
  // When the oldest bucket in the window started (now when empty).
  absl::Time start(absl::Time now) const;
  // Whether a whole window has been seen since the last Reset (or creation): `duration` has
  // elapsed, or `rows` rows were added. A reference is captured when its window is complete.
  bool Complete(absl::Time now) const;
  // Empties the window; `now` starts the next one.
  void Reset(absl::Time now);

  const DriftWindowOptions& options() const { return options_; }
  const LogitLayout& layout() const { return layout_; }

 private:
  struct Bucket {
    absl::Time start;
    ExactAccumulator rows;
    int64_t requests = 0;
  };
  DriftWindow(const LogitLayout& layout, const DriftWindowOptions& options);
  bool timed() const { return options_.duration > absl::ZeroDuration(); }
  // `now`, or the latest time given when it is earlier.
  absl::Time Clamp(absl::Time now) const { return std::max(now, latest_); }
  // Records `now` (already clamped) as the latest time, and as the start when there is none.
  void Advance(absl::Time now);
  // Where the time-based bucket holding `now` starts: the window's grid of duration / buckets
  // steps from started_ (from `now` itself before the window has started).
  absl::Time BucketStart(absl::Time now) const;
  // Whether rows added at `now` go into a new bucket.
  bool NeedsNewBucket(absl::Time now) const;
  // Drops the buckets that fell out of the window at `now` (time-based).
  void Expire(absl::Time now);
  bool Live(const Bucket& bucket, absl::Time now) const;

  LogitLayout layout_;
  DriftWindowOptions options_;
  std::deque<Bucket> buckets_;
  absl::Time started_ = absl::InfinitePast();  // InfinitePast until the first time given
  int64_t rows_since_reset_ = 0;
  absl::Time latest_ = absl::InfinitePast();
};

// How one class's logit moved: |μ_live − μ_ref| / σ_ref, ln(σ²_live / σ²_ref), and
// score = max(mean_shift, |log_variance_ratio|).
struct DriftScores {
  double mean_shift = 0.0;
  double log_variance_ratio = 0.0;
  double score = 0.0;
};

struct ClassDrift {
  int32_t class_index = 0;  // foreground class index (manifest order)
  DriftScores drift;
};

// Group indices of DriftReport::groups: rare, common, frequent (the manifest's frequency; a
// class with none counts only in `overall`).
enum class DriftGroup : int32_t { kRare = 0, kCommon = 1, kFrequent = 2 };
inline constexpr int32_t kDriftGroups = 3;

struct DriftAggregate {
  int32_t classes = 0;  // classes scored in the group
  // Means over the group's scored classes; log_variance_ratio is the mean of |ln ratio|.
  DriftScores drift;
};

struct DriftReport {
  DriftAggregate overall;
  std::array<DriftAggregate, kDriftGroups> groups;
  // Every scored foreground class, by score descending (ties: lower class index first).
  std::vector<ClassDrift> classes;
};

struct DriftScoreOptions {
  // A class whose reference variance is below this is not scored (a constant logit has no scale
  // to measure a shift in); the live variance is floored at it before the log ratio.
  double min_variance = 1e-12;
};

// Scores `live` against `reference` for every foreground class. `class_groups` has one entry per
// foreground class: 0 rare, 1 common, 2 frequent, -1 none. INVALID_ARGUMENT when the layouts
// differ, either statistics does not validate, or class_groups has another length.
absl::StatusOr<DriftReport> ComputeDrift(const Statistics& reference, const Statistics& live,
                                         absl::Span<const int32_t> class_groups,
                                         const DriftScoreOptions& options = {});

}  // namespace logn

#endif  // LOGN_CALIBRATION_DRIFT_H_
