#include "calibration/drift.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace logn {
namespace {

// Rows per bucket of a count-based window, rounded up so that `buckets` buckets can hold all
// `rows` rows: a complete window then still holds every row since the reset. Written without
// rows + buckets − 1, which could overflow for a huge `rows`.
int64_t RowsPerBucket(const DriftWindowOptions& options) {
  return options.rows / options.buckets + (options.rows % options.buckets != 0 ? 1 : 0);
}

}  // namespace

absl::Status DriftWindowOptions::Validate() const {
  if (buckets < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a drift window needs at least one bucket, got ", buckets));
  }
  if (duration < absl::ZeroDuration() || rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("a drift window's duration (",
                                                   absl::FormatDuration(duration), ") and rows (",
                                                   rows, ") cannot be negative"));
  }
  const bool timed = duration > absl::ZeroDuration();
  if (timed == (rows > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a drift window is time-based (duration > 0) or count-based (rows > 0): set exactly one, "
        "got duration ",
        absl::FormatDuration(duration), " and rows ", rows));
  }
  if (timed && duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("a time-based drift window needs a finite duration");
  }
  // The bucket grid steps by duration / buckets; absl would divide below a nanosecond, down to
  // a step of zero that never moves, and no clock we are given ticks that finely anyway.
  if (timed && duration / buckets < absl::Nanoseconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a drift window of ", absl::FormatDuration(duration), " is too short for ",
                     buckets, " buckets: each needs at least 1ns"));
  }
  if (!timed && rows < buckets) {
    return absl::InvalidArgumentError(absl::StrCat("a count-based drift window of ", rows,
                                                   " rows cannot have ", buckets,
                                                   " buckets: each needs at least one row"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// DriftWindow

DriftWindow::DriftWindow(const LogitLayout& layout, const DriftWindowOptions& options)
    : layout_(layout), options_(options) {}

absl::StatusOr<DriftWindow> DriftWindow::Create(const LogitLayout& layout,
                                                const DriftWindowOptions& options) {
  LOGN_RETURN_IF_ERROR(layout.Validate());
  LOGN_RETURN_IF_ERROR(options.Validate());
  return DriftWindow(layout, options);
}

void DriftWindow::Advance(absl::Time now) {
  latest_ = now;
  if (started_ == absl::InfinitePast()) started_ = now;
}

absl::Time DriftWindow::BucketStart(absl::Time now) const {
  const absl::Time origin = started_ == absl::InfinitePast() ? now : started_;
  const absl::Duration step = options_.duration / options_.buckets;
  return origin + step * ((now - origin) / step);  // now >= origin: Clamp keeps time monotone
}

bool DriftWindow::NeedsNewBucket(absl::Time now) const {
  if (buckets_.empty()) return true;
  if (timed()) return buckets_.back().start < BucketStart(now);
  return buckets_.back().rows.count() >= RowsPerBucket(options_);
}

bool DriftWindow::Live(const Bucket& bucket, absl::Time now) const {
  if (!timed()) return true;  // a count-based window rotates in Add, not with time
  // A bucket stays while any row it may hold is younger than `duration`: no row of the last
  // `duration` is ever dropped, and a window that has just completed still holds every row.
  return bucket.start + options_.duration / options_.buckets + options_.duration > now;
}

void DriftWindow::Expire(absl::Time now) {
  while (!buckets_.empty() && !Live(buckets_.front(), now)) buckets_.pop_front();
}

absl::Status DriftWindow::Add(const LogitBatchView& batch, absl::Time now) {
  now = Clamp(now);
  if (NeedsNewBucket(now)) {
    // The batch goes into the new bucket's accumulator before anything else changes, so a
    // refused batch leaves neither an empty bucket nor a moved clock behind.
    Bucket bucket{now, ExactAccumulator(layout_)};
    LOGN_RETURN_IF_ERROR(bucket.rows.Add(batch));
    Advance(now);
    if (timed()) bucket.start = BucketStart(now);
    buckets_.push_back(std::move(bucket));
    if (!timed() && buckets_.size() > static_cast<size_t>(options_.buckets)) {
      buckets_.pop_front();
    }
  } else {
    LOGN_RETURN_IF_ERROR(buckets_.back().rows.Add(batch));
    Advance(now);
  }
  Expire(now);
  rows_since_reset_ += batch.rows;
  return absl::OkStatus();
}

void DriftWindow::CountRequest(absl::Time now) {
  now = Clamp(now);
  Advance(now);
  // A count-based window only starts a bucket for rows: a request counted after its rows
  // filled the current bucket must not rotate the oldest rows out.
  const bool new_bucket = buckets_.empty() || (timed() && buckets_.back().start < BucketStart(now));
  if (new_bucket) {
    buckets_.push_back(Bucket{timed() ? BucketStart(now) : now, ExactAccumulator(layout_)});
  }
  ++buckets_.back().requests;
  Expire(now);
}

absl::StatusOr<Statistics> DriftWindow::Snapshot(absl::Time now) const {
  now = Clamp(now);
  ExactAccumulator window(layout_);
  for (const Bucket& bucket : buckets_) {
    if (Live(bucket, now)) LOGN_RETURN_IF_ERROR(window.Merge(bucket.rows));
  }
  if (window.count() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the drift window holds no logits at ", absl::FormatTime(now)));
  }
  LOGN_ASSIGN_OR_RETURN(Statistics stats, window.Snapshot());
  // Where the rows came from is the caller's to say (model, window times); the merge's batch
  // count would only mislead.
  stats.provenance = StatisticsProvenance();
  return stats;
}

int64_t DriftWindow::rows(absl::Time now) const {
  now = Clamp(now);
  int64_t total = 0;
  for (const Bucket& bucket : buckets_) {
    if (Live(bucket, now)) total += bucket.rows.count();
  }
  return total;
}

int64_t DriftWindow::requests(absl::Time now) const {
  now = Clamp(now);
  int64_t total = 0;
  for (const Bucket& bucket : buckets_) {
    if (Live(bucket, now)) total += bucket.requests;
  }
  return total;
}

absl::Time DriftWindow::start(absl::Time now) const {
  now = Clamp(now);
  for (const Bucket& bucket : buckets_) {
    if (Live(bucket, now)) return bucket.start;
  }
  return now;
}

bool DriftWindow::Complete(absl::Time now) const {
  if (started_ == absl::InfinitePast()) return false;
  if (timed()) return Clamp(now) - started_ >= options_.duration;
  return rows_since_reset_ >= options_.rows;
}

void DriftWindow::Reset(absl::Time now) {
  now = Clamp(now);
  buckets_.clear();
  rows_since_reset_ = 0;
  latest_ = now;
  started_ = now;
}

// ---------------------------------------------------------------------------------------------
// Scores

namespace {

absl::Status CheckDriftInputs(const Statistics& reference, const Statistics& live,
                              absl::Span<const int32_t> class_groups,
                              const DriftScoreOptions& options) {
  if (absl::Status status = reference.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift reference statistics: ", status.message()));
  }
  if (absl::Status status = live.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("live drift statistics: ", status.message()));
  }
  if (reference.layout != live.layout) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot score live statistics for ", live.layout.DebugString(),
                     " against a reference for ", reference.layout.DebugString()));
  }
  if (static_cast<int64_t>(class_groups.size()) != reference.layout.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift needs one frequency group per foreground class (",
                     reference.layout.num_classes, "), got ", class_groups.size()));
  }
  for (size_t c = 0; c < class_groups.size(); ++c) {
    if (class_groups[c] < -1 || class_groups[c] >= kDriftGroups) {
      return absl::InvalidArgumentError(absl::StrCat("class ", c, " has frequency group ",
                                                     class_groups[c],
                                                     ": expected -1 (none), 0, 1 or 2"));
    }
  }
  // The floor divides nothing itself, but a zero floor would score a constant reference logit
  // with a division by zero.
  if (!(options.min_variance > 0) || !std::isfinite(options.min_variance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift min_variance must be a finite value > 0, got ", options.min_variance));
  }
  return absl::OkStatus();
}

void Accumulate(const DriftScores& scores, DriftAggregate* aggregate) {
  ++aggregate->classes;
  aggregate->drift.mean_shift += scores.mean_shift;
  aggregate->drift.log_variance_ratio += std::abs(scores.log_variance_ratio);
  aggregate->drift.score += scores.score;
}

void Average(DriftAggregate* aggregate) {
  if (aggregate->classes == 0) return;  // nothing scored: all zeros, and classes says why
  const double n = aggregate->classes;
  aggregate->drift.mean_shift /= n;
  aggregate->drift.log_variance_ratio /= n;
  aggregate->drift.score /= n;
}

}  // namespace

absl::StatusOr<DriftReport> ComputeDrift(const Statistics& reference, const Statistics& live,
                                         absl::Span<const int32_t> class_groups,
                                         const DriftScoreOptions& options) {
  LOGN_RETURN_IF_ERROR(CheckDriftInputs(reference, live, class_groups, options));
  DriftReport report;
  const LogitLayout& layout = reference.layout;
  for (int32_t c = 0; c < layout.num_classes; ++c) {
    const int32_t column = layout.foreground_column(c);
    const double reference_variance = reference.variance[column];
    if (reference_variance < options.min_variance) continue;
    ClassDrift drift;
    drift.class_index = c;
    // In reference standard deviations, so that one threshold fits every class whatever the
    // scale of its logit; the live variance is floored so that a constant live logit scores a
    // large but finite ratio.
    drift.drift.mean_shift =
        std::abs(live.mean[column] - reference.mean[column]) / std::sqrt(reference_variance);
    drift.drift.log_variance_ratio =
        std::log(std::max(live.variance[column], options.min_variance) / reference_variance);
    drift.drift.score = std::max(drift.drift.mean_shift, std::abs(drift.drift.log_variance_ratio));
    Accumulate(drift.drift, &report.overall);
    if (class_groups[c] >= 0) Accumulate(drift.drift, &report.groups[class_groups[c]]);
    report.classes.push_back(drift);
  }
  Average(&report.overall);
  for (DriftAggregate& group : report.groups) Average(&group);
  std::stable_sort(
      report.classes.begin(), report.classes.end(),
      [](const ClassDrift& a, const ClassDrift& b) { return a.drift.score > b.drift.score; });
  return report;
}

}  // namespace logn
