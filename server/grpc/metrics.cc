#include "server/grpc/metrics.h"

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
                      .Help("The served model (always 1)")
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

void ServerMetrics::SetActiveVersion(const std::string& model, int64_t version) {
  active_version_.Add({{"model", model}}).Set(static_cast<double>(version));
}

void ServerMetrics::SetModelInfo(const std::string& model, const std::string& sha256) {
  model_info_.Add({{"model", model}, {"sha256", sha256}}).Set(1);
}

}  // namespace logn
