#ifndef LOGN_SERVER_GRPC_METRICS_H_
#define LOGN_SERVER_GRPC_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace logn {

// The service's Prometheus metrics (names in base units, counters ending in _total).
// Thread-safe. Exposed over HTTP by MetricsExposer, or read by tests through registry().
class ServerMetrics {
 public:
  ServerMetrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // One finished RPC: logn_requests_total{method,code} and logn_request_duration_seconds{method}.
  void RecordRequest(const std::string& method, absl::StatusCode code, absl::Duration duration);
  // Time a request waited in the executor's queue.
  void RecordQueue(absl::Duration wait);
  // Forward pass (decode excluded).
  void RecordInference(absl::Duration forward);
  // Images in one Detect forward pass (logn_batch_images).
  void RecordBatch(int64_t images);
  void AddCalibrationRows(int64_t rows);
  // Detect candidates dropped for a NaN / ±Inf logit (logn_nonfinite_candidates_total{stage}):
  // in the model's raw outputs, or made so by calibration.
  void AddNonFiniteCandidates(int64_t raw, int64_t calibrated);
  // Calibration jobs by state: running (gauge up/down), committed / failed (gauges that only grow).
  void CalibrationJobStarted();
  void CalibrationJobEnded(bool committed);
  void SetActiveVersion(const std::string& model, int64_t version);
  void SetModelInfo(const std::string& model, const std::string& sha256);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Histogram& queue_duration_;
  prometheus::Histogram& inference_duration_;
  prometheus::Histogram& batch_images_;
  prometheus::Counter& calibration_rows_;
  prometheus::Counter& nonfinite_raw_;
  prometheus::Counter& nonfinite_calibrated_;
  prometheus::Family<prometheus::Gauge>& calibration_jobs_;
  prometheus::Family<prometheus::Gauge>& active_version_;
  prometheus::Family<prometheus::Gauge>& model_info_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> duration_by_method_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_METRICS_H_
