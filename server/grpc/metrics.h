#ifndef LOGN_SERVER_GRPC_METRICS_H_
#define LOGN_SERVER_GRPC_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

  // One hosted model version, as the per-model series describe it.
  struct ModelSeries {
    std::string name;
    int64_t version = 0;
    std::string state;  // loading, available, unloading, failed
    std::string sha256;
    int64_t active_statistics = 0;
    int64_t memory_bytes = 0;
  };
  // Replaces the per-model-version series: logn_model_info, logn_model_version_state,
  // logn_model_memory_bytes, logn_stats_active_version (labels model, model_version). Series of
  // versions no longer hosted are removed, and at most kMaxModelSeries versions get series, so
  // the label sets stay bounded by what the server hosts.
  void SetModels(const std::vector<ModelSeries>& models);
  // One Detect request served by a model version: logn_model_detect_images_total and, when its
  // model default calibration fell back, logn_calibration_fallback_total.
  void RecordModelDetect(const std::string& model, int64_t version, int64_t images,
                         bool fallback);

  // One model version's drift (docs/drift.md): score, mean shift and log variance ratio by group
  // (overall, rare, common, frequent), the top classes by rank, the reference state and the
  // live window's rows. `groups` is ordered overall, rare, common, frequent.
  struct DriftSeries {
    std::string name;
    int64_t version = 0;
    bool reference_ready = false;
    int64_t live_rows = 0;
    bool scored = false;  // groups and top_classes are set
    struct Scores {
      double score = 0, mean_shift = 0, log_variance_ratio = 0;
    };
    Scores groups[4];
    std::vector<std::pair<std::string, double>> top_classes;  // (class name, score), by rank
  };
  // Replaces every drift series (versions not listed lose theirs).
  void SetDrift(const std::vector<DriftSeries>& drift);

  static constexpr size_t kMaxModelSeries = 64;

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
  prometheus::Family<prometheus::Gauge>& model_state_;
  prometheus::Family<prometheus::Gauge>& model_memory_;
  prometheus::Family<prometheus::Counter>& model_images_;
  prometheus::Family<prometheus::Counter>& fallback_;
  prometheus::Family<prometheus::Gauge>& drift_score_;
  prometheus::Family<prometheus::Gauge>& drift_mean_shift_;
  prometheus::Family<prometheus::Gauge>& drift_log_variance_;
  prometheus::Family<prometheus::Gauge>& drift_top_class_;
  prometheus::Family<prometheus::Gauge>& drift_reference_ready_;
  prometheus::Family<prometheus::Gauge>& drift_live_rows_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> duration_by_method_
      ABSL_GUARDED_BY(mu_);
  // The gauges SetModels / SetDrift set last time, to remove those of versions gone.
  using GaugeList =
      std::vector<std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>>;
  // Removes every gauge of `list` from its family, and empties it.
  static void RemoveGauges(GaugeList& list);
  // Sets the gauge of `labels` in `family` to `value`, recorded in `list`.
  static void SetGauge(GaugeList& list, prometheus::Family<prometheus::Gauge>& family,
                       const std::map<std::string, std::string>& labels, double value);
  GaugeList model_gauges_ ABSL_GUARDED_BY(mu_);
  GaugeList drift_gauges_ ABSL_GUARDED_BY(mu_);
  // The (model, model_version) pairs with series, bounded by kMaxModelSeries.
  std::vector<std::pair<std::string, int64_t>> model_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_METRICS_H_
