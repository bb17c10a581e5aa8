#include "server/core/drift_monitor.h"

#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace logn {

absl::Status DriftMonitorOptions::Validate() const {
  if (!(sample_rate >= 0.0 && sample_rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift sample rate must be in [0, 1], got ", sample_rate));
  }
  if (gauge_top_k < 0 || gauge_top_k > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift gauge top-k must be in [0, 20], got ", gauge_top_k));
  }
  return window.Validate();
}

std::vector<int32_t> DriftClassGroups(const v1::ModelManifest& manifest) {
  std::vector<int32_t> groups;
  groups.reserve(manifest.classes_size());
  for (const v1::ClassInfo& c : manifest.classes()) {
    switch (c.frequency()) {
      case v1::FREQUENCY_GROUP_RARE:
        groups.push_back(static_cast<int32_t>(DriftGroup::kRare));
        break;
      case v1::FREQUENCY_GROUP_COMMON:
        groups.push_back(static_cast<int32_t>(DriftGroup::kCommon));
        break;
      case v1::FREQUENCY_GROUP_FREQUENT:
        groups.push_back(static_cast<int32_t>(DriftGroup::kFrequent));
        break;
      default:
        groups.push_back(-1);
    }
  }
  return groups;
}

DriftMonitor::DriftMonitor(const v1::ModelManifest& manifest, const LogitLayout& layout,
                           const DriftMonitorOptions& options, StoreFn store)
    : options_(options),
      store_(std::move(store)),
      class_groups_(DriftClassGroups(manifest)),
      live_(*DriftWindow::Create(layout, options.window)),
      collecting_(*DriftWindow::Create(layout, options.window)) {
  const absl::Time now = absl::Now();
  live_.Reset(now);
  collecting_.Reset(now);
}

bool DriftMonitor::Sample() {
  // Evenly spaced: request n is sampled when floor((n+1)·r) > floor(n·r), so exactly a fraction
  // r of requests is, with no random state to share.
  const uint64_t n = requests_.fetch_add(1, std::memory_order_relaxed);
  const double r = options_.sample_rate;
  return std::floor(static_cast<double>(n + 1) * r) > std::floor(static_cast<double>(n) * r);
}

void DriftMonitor::Observe(absl::Span<const float* const> logits,
                           absl::Span<const int64_t> rows) {
  // Never make a request wait for another's accumulation: skip it instead.
  if (!mu_.TryLock()) return;
  const absl::Time now = absl::Now();
  const int64_t width = live_.layout().width();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (rows[i] == 0) continue;
    const LogitBatchView batch{logits[i], rows[i], width};
    // A batch with a non-finite logit is refused whole (those candidates are dropped from the
    // detections too, and counted in logn_nonfinite_candidates_total).
    if (!live_.Add(batch, now).ok()) continue;
    if (collecting_reference_) (void)collecting_.Add(batch, now);
  }
  live_.CountRequest(now);
  std::optional<Statistics> reference;
  if (collecting_reference_) {
    collecting_.CountRequest(now);
    if (collecting_.Complete(now) && collecting_.rows(now) > 1) {
      absl::StatusOr<Statistics> taken = TakeReferenceLocked(now);
      if (taken.ok()) reference = *std::move(taken);
    }
  }
  mu_.Unlock();
  // Stored after the lock is released: GetDrift and other requests never wait on the database.
  // A failure leaves the reference in memory, unstored (reference_version 0).
  if (reference.has_value()) {
    (void)StoreReference(*reference, "drift reference: the first window of served traffic");
  }
}

absl::StatusOr<Statistics> DriftMonitor::TakeReferenceLocked(absl::Time now) {
  DriftWindow& source = collecting_reference_ ? collecting_ : live_;
  LOGN_ASSIGN_OR_RETURN(Statistics reference, source.Snapshot(now));
  reference_requests_ = source.requests(now);
  reference_start_ = source.start(now);
  reference_end_ = now;
  collecting_reference_ = false;
  collecting_.Reset(now);
  reference_ = reference;
  reference_version_ = 0;
  ++reference_generation_;
  return reference;
}

absl::StatusOr<int64_t> DriftMonitor::StoreReference(const Statistics& reference,
                                                     const std::string& description) {
  if (!store_) return 0;
  int64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = reference_generation_;
  }
  LOGN_ASSIGN_OR_RETURN(const int64_t version, store_(reference, description));
  absl::MutexLock lock(&mu_);
  // Unless a newer reference was taken while this one was being written.
  if (reference_generation_ == generation) reference_version_ = version;
  return version;
}

DriftStatusReport DriftMonitor::Report() {
  DriftStatusReport out;
  std::optional<Statistics> reference;
  std::optional<Statistics> live;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    out.state = collecting_reference_ ? v1::DRIFT_STATE_COLLECTING_REFERENCE
                                      : v1::DRIFT_STATE_MONITORING;
    out.reference_version = reference_version_;
    out.live_rows = live_.rows(now);
    out.live_requests = live_.requests(now);
    out.live_start = live_.start(now);
    out.live_end = now;
    if (reference_.has_value()) {
      out.reference_rows = reference_->count;
      out.reference_requests = reference_requests_;
      out.reference_start = reference_start_;
      out.reference_end = reference_end_;
      reference = reference_;
      absl::StatusOr<Statistics> snapshot = live_.Snapshot(now);
      if (snapshot.ok()) live = *std::move(snapshot);
    }
  }
  // Scoring (every class) outside the lock: requests keep accumulating meanwhile.
  if (reference.has_value() && live.has_value()) {
    absl::StatusOr<DriftReport> report = ComputeDrift(*reference, *live, class_groups_);
    if (report.ok()) out.report = *std::move(report);
  }
  return out;
}

absl::StatusOr<Statistics> DriftMonitor::LiveStatistics() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statistics> live = live_.Snapshot(absl::Now());
  if (!live.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the live window holds no logits yet (sample rate ", options_.sample_rate,
        "): send Detect traffic first"));
  }
  return live;
}

absl::StatusOr<int64_t> DriftMonitor::CaptureReference(bool from_next_window,
                                                       const std::string& description) {
  absl::StatusOr<Statistics> reference;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (from_next_window) {
      collecting_reference_ = true;
      collecting_.Reset(now);
      return 0;
    }
    if (live_.rows(now) < 2) {
      return absl::FailedPreconditionError(
          "the live window holds fewer than 2 rows: send Detect traffic first, or capture from "
          "the next window");
    }
    collecting_reference_ = false;
    reference = TakeReferenceLocked(now);
  }
  LOGN_RETURN_IF_ERROR(reference.status());
  absl::StatusOr<int64_t> stored = StoreReference(
      *reference, description.empty() ? "drift reference captured on demand" : description);
  if (!stored.ok()) {
    // Scores still work from the reference in memory.
    return absl::UnavailableError(absl::StrCat(
        "the reference is in use but could not be stored: ", stored.status().message()));
  }
  return stored;
}

}  // namespace logn
