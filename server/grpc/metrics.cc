#include "server/grpc/metrics.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "logn/build_info.h"

namespace logn {
namespace {

// Seconds, from 1 ms to 30 s (a forward pass on CPU is tens to hundreds of ms).
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// Registering a family twice with the same name and help returns the same family.
prometheus::Family<prometheus::Counter>& NonFiniteFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("logn_nonfinite_candidates_total")
      .Help("Detect candidates that gave no detection because a logit was NaN or Inf, by stage "
            "(raw: the model's output; calibrated: made non-finite by calibration)")
      .Register(registry);
}

}  // namespace

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("logn_requests_total")
                    .Help("RPCs finished, by method and status code")
                    .Register(*registry_)),
      request_duration_(prometheus::BuildHistogram()
                            .Name("logn_request_duration_seconds")
                            .Help("RPC latency from arrival to the final status, by method")
                            .Register(*registry_)),
      queue_duration_(prometheus::BuildHistogram()
                          .Name("logn_queue_duration_seconds")
                          .Help("Time work waited in the executor queue")
                          .Register(*registry_)
                          .Add({}, LatencyBuckets())),
      inference_duration_(prometheus::BuildHistogram()
                              .Name("logn_inference_duration_seconds")
                              .Help("Forward pass time (preprocessing and model), per call")
                              .Register(*registry_)
                              .Add({}, LatencyBuckets())),
      batch_images_(prometheus::BuildHistogram()
                        .Name("logn_batch_images")
                        .Help("Images per forward pass (Detect; several requests when batching)")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64})),
      calibration_rows_(prometheus::BuildCounter()
                            .Name("logn_calibration_rows_total")
                            .Help("Logit rows accumulated by Calibrate jobs")
                            .Register(*registry_)
                            .Add({})),
      nonfinite_raw_(NonFiniteFamily(*registry_).Add({{"stage", "raw"}})),
      nonfinite_calibrated_(NonFiniteFamily(*registry_).Add({{"stage", "calibrated"}})),
      calibration_jobs_(prometheus::BuildGauge()
                            .Name("logn_calibration_jobs")
                            .Help("Calibrate jobs by state (running now; committed and failed "
                                  "since start)")
                            .Register(*registry_)),
      active_version_(prometheus::BuildGauge()
                          .Name("logn_stats_active_version")
                          .Help("Statistics version the alias 'active' points at (0: none)")
                          .Register(*registry_)),
      model_info_(prometheus::BuildGauge()
                      .Name("logn_model_info")
                      .Help("Each hosted model version (always 1)")
                      .Register(*registry_)),
      model_state_(prometheus::BuildGauge()
                       .Name("logn_model_version_state")
                       .Help("1 for the state each hosted model version is in")
                       .Register(*registry_)),
      model_memory_(prometheus::BuildGauge()
                        .Name("logn_model_memory_bytes")
                        .Help("Bytes of each loaded model version's parameters and buffers")
                        .Register(*registry_)),
      model_images_(prometheus::BuildCounter()
                        .Name("logn_model_detect_images_total")
                        .Help("Images detected, by model version")
                        .Register(*registry_)),
      fallback_(prometheus::BuildCounter()
                    .Name("logn_calibration_fallback_total")
                    .Help("Detect requests whose model default calibration fell back (no "
                          "active statistics), by model version")
                    .Register(*registry_)),
      drift_score_(prometheus::BuildGauge()
                       .Name("logn_drift_score")
                       .Help("Logit drift score (max of mean shift and |log variance ratio|), "
                             "mean over the group's classes")
                       .Register(*registry_)),
      drift_mean_shift_(prometheus::BuildGauge()
                            .Name("logn_drift_mean_shift")
                            .Help("|mu_live - mu_ref| / sigma_ref, mean over the group's classes")
                            .Register(*registry_)),
      drift_log_variance_(prometheus::BuildGauge()
                              .Name("logn_drift_log_variance_ratio")
                              .Help("|ln(var_live / var_ref)|, mean over the group's classes")
                              .Register(*registry_)),
      drift_top_class_(prometheus::BuildGauge()
                           .Name("logn_drift_top_class_score")
                           .Help("Drift score of the most drifting classes, by rank")
                           .Register(*registry_)),
      drift_reference_ready_(prometheus::BuildGauge()
                                 .Name("logn_drift_reference_ready")
                                 .Help("1 once the model version has a drift reference")
                                 .Register(*registry_)),
      drift_live_rows_(prometheus::BuildGauge()
                           .Name("logn_drift_live_rows")
                           .Help("Logit rows in the live drift window")
                           .Register(*registry_)) {
  prometheus::BuildGauge()
      .Name("logn_build_info")
      .Help("Build of the server (always 1)")
      .Register(*registry_)
      .Add({{"version", kLognVersion}})
      .Set(1);
  for (const char* state : {"running", "committed", "failed"}) {
    calibration_jobs_.Add({{"state", state}}).Set(0);
  }
}

void ServerMetrics::RecordRequest(const std::string& method, absl::StatusCode code,
                                  absl::Duration duration) {
  requests_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
  prometheus::Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    auto it = duration_by_method_.find(method);
    if (it == duration_by_method_.end()) {
      it = duration_by_method_
               .emplace(method, &request_duration_.Add({{"method", method}}, LatencyBuckets()))
               .first;
    }
    histogram = it->second;
  }
  histogram->Observe(absl::ToDoubleSeconds(duration));
}

void ServerMetrics::RecordQueue(absl::Duration wait) {
  queue_duration_.Observe(absl::ToDoubleSeconds(wait));
}

void ServerMetrics::RecordBatch(int64_t images) {
  batch_images_.Observe(static_cast<double>(images));
}

void ServerMetrics::RecordInference(absl::Duration forward) {
  inference_duration_.Observe(absl::ToDoubleSeconds(forward));
}

void ServerMetrics::AddCalibrationRows(int64_t rows) {
  calibration_rows_.Increment(static_cast<double>(rows));
}

void ServerMetrics::AddNonFiniteCandidates(int64_t raw, int64_t calibrated) {
  nonfinite_raw_.Increment(static_cast<double>(raw));
  nonfinite_calibrated_.Increment(static_cast<double>(calibrated));
}

void ServerMetrics::CalibrationJobStarted() {
  calibration_jobs_.Add({{"state", "running"}}).Increment();
}

void ServerMetrics::CalibrationJobEnded(bool committed) {
  calibration_jobs_.Add({{"state", "running"}}).Decrement();
  calibration_jobs_.Add({{"state", committed ? "committed" : "failed"}}).Increment();
}

void ServerMetrics::RemoveGauges(GaugeList& list) {
  for (auto& [family, gauge] : list) family->Remove(gauge);
  list.clear();
}

void ServerMetrics::SetGauge(GaugeList& list, prometheus::Family<prometheus::Gauge>& family,
                             const std::map<std::string, std::string>& labels, double value) {
  prometheus::Gauge& gauge = family.Add(labels);
  gauge.Set(value);
  list.emplace_back(&family, &gauge);
}

void ServerMetrics::SetModels(const std::vector<ModelSeries>& models) {
  absl::MutexLock lock(&mu_);
  RemoveGauges(model_gauges_);
  model_series_.clear();
  const auto set = [&](prometheus::Family<prometheus::Gauge>& family,
                       const std::map<std::string, std::string>& labels, double value) {
    SetGauge(model_gauges_, family, labels, value);
  };
  for (const ModelSeries& m : models) {
    if (model_series_.size() >= kMaxModelSeries) break;
    model_series_.emplace_back(m.name, m.version);
    const std::string version = std::to_string(m.version);
    set(model_state_, {{"model", m.name}, {"model_version", version}, {"state", m.state}}, 1);
    if (m.state != "available") continue;
    set(model_info_, {{"model", m.name}, {"model_version", version}, {"sha256", m.sha256}}, 1);
    set(active_version_, {{"model", m.name}, {"model_version", version}},
        static_cast<double>(m.active_statistics));
    set(model_memory_, {{"model", m.name}, {"model_version", version}},
        static_cast<double>(m.memory_bytes));
  }
}

void ServerMetrics::RecordModelDetect(const std::string& model, int64_t version, int64_t images,
                                      bool fallback) {
  {
    absl::MutexLock lock(&mu_);
    const auto key = std::make_pair(model, version);
    // Counters only for versions with series: a bounded label set.
    if (std::find(model_series_.begin(), model_series_.end(), key) == model_series_.end()) return;
  }
  const std::map<std::string, std::string> labels = {{"model", model},
                                                     {"model_version", std::to_string(version)}};
  model_images_.Add(labels).Increment(static_cast<double>(images));
  if (fallback) fallback_.Add(labels).Increment();
}

void ServerMetrics::SetDrift(const std::vector<DriftSeries>& drift) {
  static constexpr const char* kGroupNames[4] = {"overall", "rare", "common", "frequent"};
  absl::MutexLock lock(&mu_);
  RemoveGauges(drift_gauges_);
  const auto set = [&](prometheus::Family<prometheus::Gauge>& family,
                       const std::map<std::string, std::string>& labels, double value) {
    SetGauge(drift_gauges_, family, labels, value);
  };
  size_t series = 0;
  for (const DriftSeries& d : drift) {
    if (++series > kMaxModelSeries) break;
    const std::string version = std::to_string(d.version);
    set(drift_reference_ready_, {{"model", d.name}, {"model_version", version}},
        d.reference_ready ? 1 : 0);
    set(drift_live_rows_, {{"model", d.name}, {"model_version", version}},
        static_cast<double>(d.live_rows));
    if (!d.scored) continue;
    for (int g = 0; g < 4; ++g) {
      const std::map<std::string, std::string> labels = {
          {"model", d.name}, {"model_version", version}, {"group", kGroupNames[g]}};
      set(drift_score_, labels, d.groups[g].score);
      set(drift_mean_shift_, labels, d.groups[g].mean_shift);
      set(drift_log_variance_, labels, d.groups[g].log_variance_ratio);
    }
    for (size_t rank = 0; rank < d.top_classes.size(); ++rank) {
      set(drift_top_class_,
          {{"model", d.name}, {"model_version", version}, {"rank", std::to_string(rank + 1)},
           {"class", d.top_classes[rank].first}},
          d.top_classes[rank].second);
    }
  }
}

}  // namespace logn
