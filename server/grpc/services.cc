#include "server/grpc/services.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/core/proto_convert.h"
#include "server/grpc/grpc_status_util.h"

namespace logn {
namespace {

constexpr char kLoading[] = "the server is still loading its model and statistics store; retry";
constexpr char kQueueFull[] =
    "the server is at capacity (its work queue is full); retry with backoff";

// Which calls need the admin token (when the server has one). Admin calls are exactly the ones
// that write the store, so a successful one also refreshes the active-version gauge.
enum class Access { kOpen, kDetect, kAdmin };

// OK when the call may proceed: UNAUTHENTICATED without a bearer token, PERMISSION_DENIED with
// a wrong one. The token is compared in constant time and never echoed.
absl::Status Authorize(const ServiceContext& context, const grpc::CallbackServerContext& ctx,
                       Access access) {
  if (context.admin_token.empty() || access == Access::kOpen) return absl::OkStatus();
  if (access == Access::kDetect && !context.require_token_for_detect) return absl::OkStatus();
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  constexpr absl::string_view kBearer = "Bearer ";
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "this call needs an admin token: send metadata 'authorization: Bearer <token>' "
        "(logn --token)");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
  }
  if (!ConstantTimeEquals(value.substr(kBearer.size()), context.admin_token)) {
    return absl::PermissionDeniedError("the bearer token is not the server's admin token");
  }
  return absl::OkStatus();
}

// The gate every RPC passes, unary or streaming: the model must be loaded (UNAVAILABLE until
// then) and the caller authorised for `access`. It is also the one place a call's outcome is
// recorded (logn_requests_total, logn_request_duration_seconds): Close() records and converts.
//
// A helper rather than a grpc::experimental::ServerInterceptor: a server interceptor cannot end
// a call with its own status (it only observes or rewrites metadata and messages), so refusing
// UNAVAILABLE or UNAUTHENTICATED would still take code in every handler; it would also have to
// map method names back to their access level, and the interceptor API is still experimental.
class Admission {
 public:
  Admission(ServiceContext* context, const grpc::CallbackServerContext& ctx, const char* method,
            Access access)
      : context_(context), method_(method), arrived_(absl::Now()), core_(context->core.load()) {
    if (core_ == nullptr) {
      status_ = absl::UnavailableError(kLoading);
    } else {
      status_ = Authorize(*context, ctx, access);
    }
  }

  // Whether the call may proceed; if not, status() is what it must finish with.
  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  // The core that serves the call (only when ok()).
  ServerCore* core() const { return core_; }

  // One message of an admitted stream, recorded under its own method name from now on.
  Admission Message(const char* method) const {
    Admission message = *this;
    message.method_ = method;
    message.arrived_ = absl::Now();
    return message;
  }

  // Records the call's outcome (code and time since arrival).
  void Record(const absl::Status& status) const {
    context_->metrics->RecordRequest(method_, status.code(), absl::Now() - arrived_);
  }
  // Records the outcome and returns the status to finish the call with.
  grpc::Status Close(const absl::Status& status) const {
    Record(status);
    return ToGrpcStatus(status);
  }

 private:
  ServiceContext* context_;
  const char* method_;
  absl::Time arrived_;
  ServerCore* core_;
  absl::Status status_;
};

using Done = std::function<void(const absl::Status&)>;

// Why work for this call must not start: cancelled by the client, or past its deadline.
absl::Status CallAbandoned(grpc::CallbackServerContext* ctx) {
  if (ctx->deadline() < std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the deadline passed while the request was queued");
  }
  if (ctx->IsCancelled()) return absl::CancelledError("the call was cancelled");
  return absl::OkStatus();
}

// Queues `task` on the executor (a reactor thread never blocks), recording how long it waited;
// RESOURCE_EXHAUSTED, and `task` never runs, when the queue is full.
absl::Status Schedule(ServiceContext* context, std::function<void(absl::Duration queued)> task) {
  const absl::Time queued_at = absl::Now();
  const bool scheduled =
      context->executor->TrySchedule([context, queued_at, task = std::move(task)] {
        const absl::Duration queued = absl::Now() - queued_at;
        context->metrics->RecordQueue(queued);
        task(queued);
      });
  return scheduled ? absl::OkStatus() : absl::ResourceExhaustedError(kQueueFull);
}

// An admin call may have moved an alias or changed the hosted versions.
void RefreshActiveVersion(ServiceContext* context, ServerCore& core) {
  PublishModelState(context, core);
}

// Admits a unary call and, if admitted, hands `start` the core and the function that finishes
// the call; `start` must see that it is called exactly once.
template <typename Start>
grpc::ServerUnaryReactor* Unary(ServiceContext* context, grpc::CallbackServerContext* ctx,
                                const char* method, Access access, Start start) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Admission admission(context, *ctx, method, access);
  Done finish = [reactor, admission](const absl::Status& status) {
    reactor->Finish(admission.Close(status));
  };
  if (!admission.ok()) {
    finish(admission.status());
  } else {
    start(*admission.core(), std::move(finish));
  }
  return reactor;
}

// A unary RPC that ServerCore implements as `rpc`: admitted, then run on the executor (unless
// the call was abandoned while queued); a successful admin call refreshes the active version.
template <typename Request, typename Response>
grpc::ServerUnaryReactor* RunUnary(ServiceContext* context, grpc::CallbackServerContext* ctx,
                                   const char* method, Access access,
                                   absl::Status (ServerCore::*rpc)(const Request&, Response*),
                                   const Request* request, Response* response) {
  return Unary(context, ctx, method, access, [=](ServerCore& core, Done finish) {
    const absl::Status scheduled = Schedule(context, [=, &core](absl::Duration) {
      absl::Status status = CallAbandoned(ctx);
      if (status.ok()) status = (core.*rpc)(*request, response);
      if (status.ok() && access == Access::kAdmin) RefreshActiveVersion(context, core);
      finish(status);
    });
    if (!scheduled.ok()) finish(scheduled);
  });
}

// Candidates a Detect dropped for non-finite logits: counted, and said in the log, because the
// model or the statistics are broken and the detections are incomplete.
void ReportNonFinite(ServiceContext* context, const v1::DetectResponse& response) {
  const int64_t raw = response.nonfinite_raw_candidates();
  const int64_t calibrated = response.nonfinite_calibrated_candidates();
  if (raw == 0 && calibrated == 0) return;
  context->metrics->AddNonFiniteCandidates(raw, calibrated);
  std::cerr << absl::StrFormat(
      "logn_server: Detect request '%s': dropped %d candidates with NaN/Inf raw logits and %d "
      "made non-finite by calibration (statistics version %d)\n",
      response.request_id(), raw, calibrated, response.version());
}

// Runs one Detect request off the reactor thread: through the batcher when dynamic batching is
// on, else alone on the executor. `done` is called exactly once (on a worker or the batching
// thread, or inline when the request is refused); on success the response carries its queue
// time and the inference metric is recorded.
void SubmitDetect(ServiceContext* context, ServerCore* core, grpc::CallbackServerContext* ctx,
                  const v1::DetectRequest* request, v1::DetectResponse* response, Done done) {
  auto complete = [context, response, done](const absl::Status& status, absl::Duration queued) {
    if (status.ok()) {
      *response->mutable_timing()->mutable_queue_duration() = DurationToProto(queued);
      context->metrics->RecordInference(
          DurationFromProto(response->timing().inference_duration()));
      ReportNonFinite(context, *response);
    }
    done(status);
  };
  if (DetectBatcher* batcher = context->batcher.load(); batcher != nullptr) {
    DetectBatcher::Call call;
    call.request = request;
    call.response = response;
    call.deadline = absl::FromChrono(ctx->deadline());
    call.abandoned = [ctx] { return ctx->IsCancelled(); };
    call.done = [context, complete](const absl::Status& status, absl::Duration queued) {
      context->metrics->RecordQueue(queued);
      complete(status, queued);
    };
    batcher->Submit(std::move(call));
    return;
  }
  const absl::Status scheduled = Schedule(context, [=](absl::Duration queued) {
    absl::Status status = CallAbandoned(ctx);
    if (status.ok()) {
      status = core->Detect(*request, response);
      context->metrics->RecordBatch(request->images_size());
    }
    complete(status, queued);
  });
  if (!scheduled.ok()) done(scheduled);
}

// A unary Detect's timing as trailing metadata too, for clients that time calls without parsing
// responses (streams have one trailer, so their messages carry the timing in the response only).
void AddTimingTrailer(grpc::CallbackServerContext* ctx, const v1::ServerTiming& timing) {
  auto seconds = [](const google::protobuf::Duration& d) {
    return absl::ToDoubleSeconds(DurationFromProto(d));
  };
  ctx->AddTrailingMetadata(
      "logn-server-timing",
      absl::StrFormat("queue=%.6f;decode=%.6f;inference=%.6f;postprocess=%.6f",
                      seconds(timing.queue_duration()), seconds(timing.decode_duration()),
                      seconds(timing.inference_duration()),
                      seconds(timing.postprocess_duration())));
}

// DetectStream: one request at a time — read, detect off the reactor thread, write, then read
// the next. Responses therefore leave in request order, there is never more than one
// outstanding write, and a client that stops reading stops the server from reading (memory
// stays bounded). Each message's inner DetectRequest is detected in place, exactly as Detect's
// (no copy of the image bytes), into the inner DetectResponse of the message written back.
class DetectStreamReactor
    : public grpc::ServerBidiReactor<v1::DetectStreamRequest, v1::DetectStreamResponse> {
 public:
  DetectStreamReactor(ServiceContext* context, grpc::CallbackServerContext* ctx)
      : context_(context), ctx_(ctx), admission_(context, *ctx, "DetectStream", Access::kDetect) {
    if (!admission_.ok()) {
      FinishWith(admission_.status());
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call is over): every response was written
      FinishWith(absl::OkStatus());
      return;
    }
    response_.Clear();
    const Admission message = admission_.Message("DetectStream.message");
    SubmitDetect(context_, admission_.core(), ctx_, &request_.request(),
                 response_.mutable_response(),
                 [this, message](const absl::Status& status) {
                   message.Record(status);
                   if (!status.ok()) {
                     FinishWith(status);
                     return;
                   }
                   StartWrite(&response_);  // the next read follows the write
                 });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      FinishWith(absl::CancelledError("the client stopped reading responses"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void FinishWith(const absl::Status& status) { Finish(admission_.Close(status)); }

  ServiceContext* const context_;
  grpc::CallbackServerContext* const ctx_;
  const Admission admission_;
  v1::DetectStreamRequest request_;
  v1::DetectStreamResponse response_;
};

// Calibrate: a header, then batches, each processed on the executor before the next read;
// half-close commits. Cancellation, a deadline or any error before the commit leaves nothing
// behind (the job's accumulators die with the reactor).
class CalibrateReactor : public grpc::ServerReadReactor<v1::CalibrateRequest> {
 public:
  CalibrateReactor(ServiceContext* context, grpc::CallbackServerContext* ctx,
                   v1::CalibrateResponse* response)
      : context_(context),
        ctx_(ctx),
        response_(response),
        admission_(context, *ctx, "Calibrate", Access::kAdmin) {
    if (!admission_.ok()) {
      FinishWith(admission_.status());
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    const absl::Status scheduled =
        Schedule(context_, [this, ok](absl::Duration) { ok ? Process() : Commit(); });
    if (!scheduled.ok()) FinishWith(scheduled);
  }

  void OnDone() override { delete this; }

 private:
  void Process() {
    absl::Status status = CallAbandoned(ctx_);
    if (status.ok()) status = Consume();
    if (!status.ok()) {
      FinishWith(status);
      return;
    }
    StartRead(&request_);
  }

  absl::Status Consume() {
    switch (request_.payload_case()) {
      case v1::CalibrateRequest::kHeader:
        return Start(request_.header());
      case v1::CalibrateRequest::kLogitBatch:
      case v1::CalibrateRequest::kImageBatch:
        return Accumulate();
      case v1::CalibrateRequest::PAYLOAD_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(
        "calibration message has no header, logit_batch or image_batch");
  }

  absl::Status Start(const v1::CalibrateHeader& header) {
    if (job_) return absl::InvalidArgumentError("a calibration stream takes one header");
    auto job = admission_.core()->StartCalibration(header);
    if (!job.ok()) return job.status();
    job_ = *std::move(job);
    context_->metrics->CalibrationJobStarted();
    return absl::OkStatus();
  }

  absl::Status Accumulate() {
    if (!job_) {
      return absl::InvalidArgumentError(
          "the first message of a calibration stream must be a CalibrateHeader");
    }
    const int64_t before = job_->rows();
    absl::Status status = request_.has_logit_batch() ? job_->AddLogits(request_.logit_batch())
                                                     : job_->AddImages(request_.image_batch());
    context_->metrics->AddCalibrationRows(job_->rows() - before);
    return status;
  }

  void Commit() {
    absl::Status status = CallAbandoned(ctx_);
    if (status.ok() && !job_) {
      status = absl::InvalidArgumentError(
          "the calibration stream was empty: send a CalibrateHeader, then batches");
    }
    if (status.ok()) {
      auto response = job_->Commit();
      if (response.ok()) {
        *response_ = *std::move(response);
        committed_ = true;
        RefreshActiveVersion(context_, *admission_.core());
      } else {
        status = response.status();
      }
    }
    FinishWith(status);
  }

  void FinishWith(const absl::Status& status) {
    if (job_) context_->metrics->CalibrationJobEnded(committed_);
    Finish(admission_.Close(status));
  }

  ServiceContext* const context_;
  grpc::CallbackServerContext* const ctx_;
  v1::CalibrateResponse* const response_;
  const Admission admission_;
  v1::CalibrateRequest request_;
  std::unique_ptr<CalibrationJob> job_;
  bool committed_ = false;
};

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte of the longer string is read whatever matches, so timing reveals only lengths.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

// DetectionService.

grpc::ServerUnaryReactor* DetectionServiceImpl::Detect(grpc::CallbackServerContext* ctx,
                                                       const v1::DetectRequest* request,
                                                       v1::DetectResponse* response) {
  ServiceContext* context = context_;
  return Unary(context_, ctx, "Detect", Access::kDetect, [=](ServerCore& core, Done finish) {
    SubmitDetect(context, &core, ctx, request, response, [=](const absl::Status& status) {
      if (status.ok()) AddTimingTrailer(ctx, response->timing());
      finish(status);
    });
  });
}

grpc::ServerBidiReactor<v1::DetectStreamRequest, v1::DetectStreamResponse>*
DetectionServiceImpl::DetectStream(grpc::CallbackServerContext* ctx) {
  return new DetectStreamReactor(context_, ctx);
}

grpc::ServerUnaryReactor* DetectionServiceImpl::GetModelInfo(
    grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest* request,
    v1::GetModelInfoResponse* response) {
  return RunUnary(context_, ctx, "GetModelInfo", Access::kOpen, &ServerCore::GetModelInfo,
                  request, response);
}

// CalibrationService.

grpc::ServerReadReactor<v1::CalibrateRequest>* CalibrationServiceImpl::Calibrate(
    grpc::CallbackServerContext* ctx, v1::CalibrateResponse* response) {
  return new CalibrateReactor(context_, ctx, response);
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Apply(grpc::CallbackServerContext* ctx,
                                                        const v1::ApplyRequest* request,
                                                        v1::ApplyResponse* response) {
  return RunUnary(context_, ctx, "Apply", Access::kDetect, &ServerCore::Apply, request, response);
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Merge(grpc::CallbackServerContext* ctx,
                                                        const v1::MergeRequest* request,
                                                        v1::MergeResponse* response) {
  return RunUnary(context_, ctx, "Merge", Access::kAdmin, &ServerCore::Merge, request, response);
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::GetCalibrationJob(
    grpc::CallbackServerContext* ctx, const v1::GetCalibrationJobRequest* request,
    v1::GetCalibrationJobResponse* response) {
  return RunUnary(context_, ctx, "GetCalibrationJob", Access::kOpen,
                  &ServerCore::GetCalibrationJob, request, response);
}

// StatsStoreService: reads and writes hit the database, so they run on the executor as well.

grpc::ServerUnaryReactor* StatsStoreServiceImpl::ListVersions(
    grpc::CallbackServerContext* ctx, const v1::ListVersionsRequest* request,
    v1::ListVersionsResponse* response) {
  return RunUnary(context_, ctx, "ListVersions", Access::kOpen, &ServerCore::ListVersions,
                  request, response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::GetVersion(grpc::CallbackServerContext* ctx,
                                                            const v1::GetVersionRequest* request,
                                                            v1::GetVersionResponse* response) {
  return RunUnary(context_, ctx, "GetVersion", Access::kOpen, &ServerCore::GetVersion, request,
                  response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::SetAlias(grpc::CallbackServerContext* ctx,
                                                          const v1::SetAliasRequest* request,
                                                          v1::SetAliasResponse* response) {
  return RunUnary(context_, ctx, "SetAlias", Access::kAdmin, &ServerCore::SetAlias, request,
                  response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::Activate(grpc::CallbackServerContext* ctx,
                                                          const v1::ActivateRequest* request,
                                                          v1::ActivateResponse* response) {
  return RunUnary(context_, ctx, "Activate", Access::kAdmin, &ServerCore::Activate, request,
                  response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::Rollback(grpc::CallbackServerContext* ctx,
                                                          const v1::RollbackRequest* request,
                                                          v1::RollbackResponse* response) {
  return RunUnary(context_, ctx, "Rollback", Access::kAdmin, &ServerCore::Rollback, request,
                  response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::DeleteVersion(
    grpc::CallbackServerContext* ctx, const v1::DeleteVersionRequest* request,
    v1::DeleteVersionResponse* response) {
  return RunUnary(context_, ctx, "DeleteVersion", Access::kAdmin, &ServerCore::DeleteVersion,
                  request, response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::ExportVersion(
    grpc::CallbackServerContext* ctx, const v1::ExportVersionRequest* request,
    v1::ExportVersionResponse* response) {
  return RunUnary(context_, ctx, "ExportVersion", Access::kOpen, &ServerCore::ExportVersion,
                  request, response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::ImportVersion(
    grpc::CallbackServerContext* ctx, const v1::ImportVersionRequest* request,
    v1::ImportVersionResponse* response) {
  return RunUnary(context_, ctx, "ImportVersion", Access::kAdmin, &ServerCore::ImportVersion,
                  request, response);
}

grpc::ServerUnaryReactor* StatsStoreServiceImpl::SetCalibrationProfile(
    grpc::CallbackServerContext* ctx, const v1::SetCalibrationProfileRequest* request,
    v1::SetCalibrationProfileResponse* response) {
  return RunUnary(context_, ctx, "SetCalibrationProfile", Access::kAdmin,
                  &ServerCore::SetCalibrationProfile, request, response);
}

// ModelService: loads take seconds, so they run on the executor like every other call.

grpc::ServerUnaryReactor* ModelServiceImpl::ListModels(grpc::CallbackServerContext* ctx,
                                                       const v1::ListModelsRequest* request,
                                                       v1::ListModelsResponse* response) {
  return RunUnary(context_, ctx, "ListModels", Access::kOpen, &ServerCore::ListModels, request,
                  response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::LoadModel(grpc::CallbackServerContext* ctx,
                                                      const v1::LoadModelRequest* request,
                                                      v1::LoadModelResponse* response) {
  return RunUnary(context_, ctx, "LoadModel", Access::kAdmin, &ServerCore::LoadModel, request,
                  response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::UnloadModel(grpc::CallbackServerContext* ctx,
                                                        const v1::UnloadModelRequest* request,
                                                        v1::UnloadModelResponse* response) {
  return RunUnary(context_, ctx, "UnloadModel", Access::kAdmin, &ServerCore::UnloadModel,
                  request, response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::ReloadModels(grpc::CallbackServerContext* ctx,
                                                         const v1::ReloadModelsRequest* request,
                                                         v1::ReloadModelsResponse* response) {
  return RunUnary(context_, ctx, "ReloadModels", Access::kAdmin, &ServerCore::ReloadModels,
                  request, response);
}

// DriftService.

grpc::ServerUnaryReactor* DriftServiceImpl::GetDrift(grpc::CallbackServerContext* ctx,
                                                     const v1::GetDriftRequest* request,
                                                     v1::GetDriftResponse* response) {
  return RunUnary(context_, ctx, "GetDrift", Access::kOpen, &ServerCore::GetDrift, request,
                  response);
}

grpc::ServerUnaryReactor* DriftServiceImpl::CaptureDriftReference(
    grpc::CallbackServerContext* ctx, const v1::CaptureDriftReferenceRequest* request,
    v1::CaptureDriftReferenceResponse* response) {
  return RunUnary(context_, ctx, "CaptureDriftReference", Access::kAdmin,
                  &ServerCore::CaptureDriftReference, request, response);
}

grpc::ServerUnaryReactor* DriftServiceImpl::SnapshotLiveStatistics(
    grpc::CallbackServerContext* ctx, const v1::SnapshotLiveStatisticsRequest* request,
    v1::SnapshotLiveStatisticsResponse* response) {
  return RunUnary(context_, ctx, "SnapshotLiveStatistics", Access::kAdmin,
                  &ServerCore::SnapshotLiveStatistics, request, response);
}

// ---------------------------------------------------------------------------------------------
// Model state and drift, published

std::string ModelHealthName(const std::string& model) { return absl::StrCat("logn.model.", model); }

namespace {

// MODEL_VERSION_STATE_AVAILABLE -> "available".
std::string StateLabel(v1::ModelVersionState state) {
  return absl::AsciiStrToLower(
      absl::StripPrefix(v1::ModelVersionState_Name(state), "MODEL_VERSION_STATE_"));
}

void PublishHealth(ServiceContext* context, const std::vector<ModelVersionInfo>& versions) {
  if (context->health == nullptr) return;
  std::set<std::string> serving;
  std::set<std::string> known;
  for (const ModelVersionInfo& v : versions) {
    known.insert(v.name);
    if (v.state == v1::MODEL_VERSION_STATE_AVAILABLE) serving.insert(v.name);
  }
  absl::MutexLock lock(&context->health_mu);
  context->health_models.insert(known.begin(), known.end());
  for (const std::string& name : context->health_models) {
    context->health->SetServingStatus(ModelHealthName(name), serving.count(name) > 0);
  }
}

}  // namespace

void PublishModelState(ServiceContext* context, ServerCore& core) {
  absl::StatusOr<std::vector<ModelVersionInfo>> versions = core.models().List("");
  if (!versions.ok()) return;
  std::vector<ServerMetrics::ModelSeries> series;
  for (const ModelVersionInfo& v : *versions) {
    if (v.version == 0) continue;  // a model whose config failed: no version to label
    ServerMetrics::ModelSeries& s = series.emplace_back();
    s.name = v.name;
    s.version = v.version;
    s.state = StateLabel(v.state);
    if (v.model != nullptr) {
      s.sha256 = v.model->key().sha256;
      s.memory_bytes = v.model->memory_bytes();
      if (v.state == v1::MODEL_VERSION_STATE_AVAILABLE) {
        s.active_statistics = core.ActiveVersion(*v.model);
      }
    }
  }
  context->metrics->SetModels(series);
  PublishHealth(context, *versions);
}

void PublishDrift(ServiceContext* context, ServerCore& core) {
  std::vector<ServerMetrics::DriftSeries> all;
  for (const std::shared_ptr<const LoadedModel>& model : core.models().Available()) {
    DriftMonitor* drift = model->drift();
    if (drift == nullptr) continue;
    const DriftStatusReport report = drift->Report();
    ServerMetrics::DriftSeries& d = all.emplace_back();
    d.name = model->name();
    d.version = model->version();
    d.reference_ready = report.state == v1::DRIFT_STATE_MONITORING;
    d.live_rows = report.live_rows;
    if (!report.report.has_value()) continue;
    const DriftReport& r = *report.report;
    d.scored = true;
    const auto scores = [](const DriftScores& s) {
      return ServerMetrics::DriftSeries::Scores{s.score, s.mean_shift, s.log_variance_ratio};
    };
    d.groups[0] = scores(r.overall.drift);
    for (int g = 0; g < kDriftGroups; ++g) d.groups[g + 1] = scores(r.groups[g].drift);
    const v1::ModelManifest& manifest = model->runtime().manifest();
    const size_t k = std::min<size_t>(drift->options().gauge_top_k, r.classes.size());
    for (size_t i = 0; i < k; ++i) {
      d.top_classes.emplace_back(manifest.classes(r.classes[i].class_index).name(),
                                 r.classes[i].drift.score);
    }
  }
  context->metrics->SetDrift(all);
}

}  // namespace logn
