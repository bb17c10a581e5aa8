#ifndef LOGN_SERVER_CORE_DRIFT_MONITOR_H_
#define LOGN_SERVER_CORE_DRIFT_MONITOR_H_

// Live logit drift of one model version (docs/drift.md): a sample of the Detect traffic's
// candidate logits (all candidates of the forward pass, before thresholding) goes into a rolling
// DriftWindow; the first complete window after the version starts serving becomes the reference
// (or one captured on demand), and GetDrift scores the live window against it.
//
// Overhead is bounded by sampling: a request is sampled with probability sample_rate, and a
// sampled request whose monitor is busy (another request accumulating) is skipped rather than
// made to wait, so no request ever blocks on the monitor.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "calibration/drift.h"
#include "calibration/statistics.h"
#include "logn/v1/drift_service.pb.h"
#include "logn/v1/model.pb.h"

namespace logn {

struct DriftMonitorOptions {
  // Fraction of Detect requests whose candidates are accumulated, in [0, 1]; 0 turns drift
  // monitoring off (no monitor is made).
  double sample_rate = 0.05;
  DriftWindowOptions window;
  // Classes ranked in the Prometheus gauges (bounded label set).
  int32_t gauge_top_k = 5;

  absl::Status Validate() const;
};

// What GetDrift reports, without the transport.
struct DriftStatusReport {
  v1::DriftState state = v1::DRIFT_STATE_UNSPECIFIED;
  int64_t reference_version = 0;
  int64_t reference_rows = 0;
  int64_t reference_requests = 0;
  absl::Time reference_start, reference_end;
  int64_t live_rows = 0;
  int64_t live_requests = 0;
  absl::Time live_start, live_end;
  std::optional<DriftReport> report;  // when monitoring and the live window has rows
};

class DriftMonitor {
 public:
  // Stores a reference or snapshot as a statistics version; returns its number.
  using StoreFn = std::function<absl::StatusOr<int64_t>(const Statistics& statistics,
                                                        const std::string& description)>;

  // `manifest` gives the layout's classes and their frequency groups.
  DriftMonitor(const v1::ModelManifest& manifest, const LogitLayout& layout,
               const DriftMonitorOptions& options, StoreFn store);

  const DriftMonitorOptions& options() const { return options_; }

  // Whether this request's candidates should be observed (the sampling decision).
  bool Sample();
  // Adds one sampled request's candidate logits (row-major, layout width), unless another
  // request is being added (then skipped). Captures the reference when its window completes.
  void Observe(absl::Span<const float* const> logits, absl::Span<const int64_t> rows);

  DriftStatusReport Report();
  // The live window's statistics (FAILED_PRECONDITION when empty).
  absl::StatusOr<Statistics> LiveStatistics();
  // Makes the live window the reference now (stored, its version returned), or restarts
  // reference collection over the next window (returns 0).
  absl::StatusOr<int64_t> CaptureReference(bool from_next_window, const std::string& description);

 private:
  // Makes the reference window (or, on demand, the live one) the reference; returns it to store.
  absl::StatusOr<Statistics> TakeReferenceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores `reference` (without mu_ held: a database write) and records its version, unless a
  // newer reference was taken meanwhile; 0 without a store.
  absl::StatusOr<int64_t> StoreReference(const Statistics& reference,
                                         const std::string& description)
      ABSL_LOCKS_EXCLUDED(mu_);

  const DriftMonitorOptions options_;
  const StoreFn store_;
  std::vector<int32_t> class_groups_;
  absl::Mutex mu_;
  DriftWindow live_ ABSL_GUARDED_BY(mu_);
  // The reference collection: a window of its own, started at creation (or on demand).
  DriftWindow collecting_ ABSL_GUARDED_BY(mu_);
  bool collecting_reference_ ABSL_GUARDED_BY(mu_) = true;
  std::optional<Statistics> reference_ ABSL_GUARDED_BY(mu_);
  int64_t reference_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reference_requests_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time reference_start_ ABSL_GUARDED_BY(mu_);
  absl::Time reference_end_ ABSL_GUARDED_BY(mu_);
  int64_t reference_generation_ ABSL_GUARDED_BY(mu_) = 0;  // references taken so far
  std::atomic<uint64_t> requests_{0};  // Detect requests seen, sampled or not
};

// The groups ComputeDrift takes, from the manifest's frequencies.
std::vector<int32_t> DriftClassGroups(const v1::ModelManifest& manifest);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_DRIFT_MONITOR_H_
