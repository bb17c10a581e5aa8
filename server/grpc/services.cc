#include "server/grpc/services.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/grpc/grpc_status_util.h"

namespace logn {
namespace {

constexpr char kLoading[] = "the server is still loading its model and statistics store; retry";
constexpr char kQueueFull[] =
    "the server is at capacity (its work queue is full); retry with backoff";

// Why work for this call must not start: cancelled by the client, or past its deadline.
absl::Status CallAbandoned(grpc::CallbackServerContext* ctx) {
  if (ctx->deadline() < std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the deadline passed while the request was queued");
  }
  if (ctx->IsCancelled()) return absl::CancelledError("the call was cancelled");
  return absl::OkStatus();
}

// Which calls need the admin token (when the server has one).
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

// Runs `fn(core)` for a unary RPC on the executor and finishes the call with its status.
// `after` (may be empty) runs after a successful `fn`, still on the executor.
template <typename Fn>
grpc::ServerUnaryReactor* RunUnary(ServiceContext* context, grpc::CallbackServerContext* ctx,
                                   const char* method, Access access, Fn fn,
                                   std::function<void(ServerCore&)> after = nullptr) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time arrived = absl::Now();
  ServerCore* core = context->core.load();
  auto finish = [context, reactor, method, arrived](const absl::Status& status) {
    context->metrics->RecordRequest(method, status.code(), absl::Now() - arrived);
    reactor->Finish(ToGrpcStatus(status));
  };
  if (core == nullptr) {
    finish(absl::UnavailableError(kLoading));
    return reactor;
  }
  if (absl::Status allowed = Authorize(*context, *ctx, access); !allowed.ok()) {
    finish(allowed);
    return reactor;
  }
  const bool scheduled = context->executor->TrySchedule(
      [context, ctx, core, arrived, finish, fn = std::move(fn), after = std::move(after)]() {
        context->metrics->RecordQueue(absl::Now() - arrived);
        absl::Status status = CallAbandoned(ctx);
        if (status.ok()) status = fn(*core);
        if (status.ok() && after) after(*core);
        finish(status);
      });
  if (!scheduled) finish(absl::ResourceExhaustedError(kQueueFull));
  return reactor;
}

// What every successful Detect adds: its queue time in the response and as trailing metadata
// (for clients that time calls without parsing responses), and the inference metric.
void CompleteDetect(ServiceContext* context, grpc::CallbackServerContext* ctx,
                    absl::Duration queued, v1::DetectResponse* response) {
  v1::ServerTiming* timing = response->mutable_timing();
  timing->set_queue_seconds(absl::ToDoubleSeconds(queued));
  context->metrics->RecordInference(absl::Seconds(timing->inference_seconds()));
  if (ctx != nullptr) {
    ctx->AddTrailingMetadata(
        "logn-server-timing",
        absl::StrFormat("queue=%.6f;decode=%.6f;inference=%.6f;postprocess=%.6f",
                        timing->queue_seconds(), timing->decode_seconds(),
                        timing->inference_seconds(), timing->postprocess_seconds()));
  }
}

void RefreshActiveVersion(ServiceContext* context, ServerCore& core) {
  context->metrics->SetActiveVersion(core.model_key().name, core.ActiveVersion());
}

// DetectStream: one request at a time — read, detect on the executor, write, then read the
// next. Responses therefore leave in request order, there is never more than one outstanding
// write, and a client that stops reading stops the server from reading (memory stays bounded).
class DetectStreamReactor : public grpc::ServerBidiReactor<v1::DetectRequest, v1::DetectResponse> {
 public:
  DetectStreamReactor(ServiceContext* context, grpc::CallbackServerContext* ctx)
      : context_(context), ctx_(ctx), core_(context->core.load()), opened_(absl::Now()) {
    if (core_ == nullptr) {
      FinishWith(absl::UnavailableError(kLoading));
      return;
    }
    if (absl::Status allowed = Authorize(*context_, *ctx_, Access::kDetect); !allowed.ok()) {
      FinishWith(allowed);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call is over): every response was written
      FinishWith(absl::OkStatus());
      return;
    }
    arrived_ = absl::Now();
    response_.Clear();
    if (DetectBatcher* batcher = context_->batcher.load(); batcher != nullptr) {
      DetectBatcher::Call call;
      call.request = &request_;
      call.response = &response_;
      call.deadline = absl::FromChrono(ctx_->deadline());
      call.abandoned = [this] { return ctx_->IsCancelled(); };
      call.done = [this](const absl::Status& status, absl::Duration queued) {
        context_->metrics->RecordQueue(queued);
        Respond(status, queued);
      };
      batcher->Submit(std::move(call));
      return;
    }
    if (!context_->executor->TrySchedule([this] { Process(); })) {
      FinishWith(absl::ResourceExhaustedError(kQueueFull));
    }
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
  void Process() {
    const absl::Duration queued = absl::Now() - arrived_;
    context_->metrics->RecordQueue(queued);
    absl::Status status = CallAbandoned(ctx_);
    if (status.ok()) status = core_->Detect(request_, &response_);
    context_->metrics->RecordBatch(request_.images_size());
    Respond(status, queued);
  }

  // Writes the response (or ends the stream with the error); the next read follows the write.
  void Respond(const absl::Status& status, absl::Duration queued) {
    context_->metrics->RecordRequest("DetectStream.message", status.code(),
                                     absl::Now() - arrived_);
    if (!status.ok()) {
      FinishWith(status);
      return;
    }
    // No trailing metadata per message: a stream has one trailer.
    CompleteDetect(context_, nullptr, queued, &response_);
    StartWrite(&response_);
  }

  void FinishWith(const absl::Status& status) {
    context_->metrics->RecordRequest("DetectStream", status.code(), absl::Now() - opened_);
    Finish(ToGrpcStatus(status));
  }

  ServiceContext* const context_;
  grpc::CallbackServerContext* const ctx_;
  ServerCore* const core_;
  const absl::Time opened_;
  absl::Time arrived_;
  v1::DetectRequest request_;
  v1::DetectResponse response_;
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
        core_(context->core.load()),
        response_(response),
        opened_(absl::Now()) {
    if (core_ == nullptr) {
      FinishWith(absl::UnavailableError(kLoading));
      return;
    }
    if (absl::Status allowed = Authorize(*context_, *ctx_, Access::kAdmin); !allowed.ok()) {
      FinishWith(allowed);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    const absl::Time arrived = absl::Now();
    const bool scheduled = context_->executor->TrySchedule([this, ok, arrived] {
      context_->metrics->RecordQueue(absl::Now() - arrived);
      ok ? Process() : Commit();
    });
    if (!scheduled) FinishWith(absl::ResourceExhaustedError(kQueueFull));
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
      case v1::CalibrateRequest::kHeader: {
        if (job_) return absl::InvalidArgumentError("a calibration stream takes one header");
        auto job = core_->StartCalibration(request_.header());
        if (!job.ok()) return job.status();
        job_ = *std::move(job);
        context_->metrics->CalibrationJobStarted();
        return absl::OkStatus();
      }
      case v1::CalibrateRequest::kLogits:
      case v1::CalibrateRequest::kImages: {
        if (!job_) {
          return absl::InvalidArgumentError(
              "the first message of a calibration stream must be a CalibrateHeader");
        }
        const int64_t before = job_->rows();
        absl::Status status = request_.has_logits() ? job_->AddLogits(request_.logits())
                                                    : job_->AddImages(request_.images());
        context_->metrics->AddCalibrationRows(job_->rows() - before);
        return status;
      }
      case v1::CalibrateRequest::PAYLOAD_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("calibration message has no header, logits or images");
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
        RefreshActiveVersion(context_, *core_);
      } else {
        status = response.status();
      }
    }
    FinishWith(status);
  }

  void FinishWith(const absl::Status& status) {
    if (job_) context_->metrics->CalibrationJobEnded(committed_);
    context_->metrics->RecordRequest("Calibrate", status.code(), absl::Now() - opened_);
    Finish(ToGrpcStatus(status));
  }

  ServiceContext* const context_;
  grpc::CallbackServerContext* const ctx_;
  ServerCore* const core_;
  v1::CalibrateResponse* const response_;
  const absl::Time opened_;
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

grpc::ServerUnaryReactor* DetectionServiceImpl::Detect(grpc::CallbackServerContext* ctx,
                                                       const v1::DetectRequest* request,
                                                       v1::DetectResponse* response) {
  ServiceContext* context = context_;
  const absl::Time arrived = absl::Now();
  DetectBatcher* batcher = context->batcher.load();
  if (batcher == nullptr) {
    return RunUnary(context_, ctx, "Detect", Access::kDetect,
                    [request, response, context, ctx, arrived](ServerCore& core) {
                      const absl::Duration queued = absl::Now() - arrived;
                      absl::Status status = core.Detect(*request, response);
                      context->metrics->RecordBatch(request->images_size());
                      if (status.ok()) CompleteDetect(context, ctx, queued, response);
                      return status;
                    });
  }
  // Dynamic batching: the batcher answers on an executor thread, after the batch's forward.
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto finish = [context, reactor, arrived](const absl::Status& status) {
    context->metrics->RecordRequest("Detect", status.code(), absl::Now() - arrived);
    reactor->Finish(ToGrpcStatus(status));
  };
  if (context->core.load() == nullptr) {
    finish(absl::UnavailableError(kLoading));
    return reactor;
  }
  if (absl::Status allowed = Authorize(*context, *ctx, Access::kDetect); !allowed.ok()) {
    finish(allowed);
    return reactor;
  }
  DetectBatcher::Call call;
  call.request = request;
  call.response = response;
  call.deadline = absl::FromChrono(ctx->deadline());
  call.abandoned = [ctx] { return ctx->IsCancelled(); };
  call.done = [context, ctx, response, finish](const absl::Status& status,
                                               absl::Duration queued) {
    context->metrics->RecordQueue(queued);
    if (status.ok()) CompleteDetect(context, ctx, queued, response);
    finish(status);
  };
  batcher->Submit(std::move(call));
  return reactor;
}

grpc::ServerBidiReactor<v1::DetectRequest, v1::DetectResponse>*
DetectionServiceImpl::DetectStream(grpc::CallbackServerContext* ctx) {
  return new DetectStreamReactor(context_, ctx);
}

grpc::ServerUnaryReactor* DetectionServiceImpl::GetModelInfo(
    grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest* request,
    v1::GetModelInfoResponse* response) {
  return RunUnary(context_, ctx, "GetModelInfo", Access::kOpen,
                  [request, response](ServerCore& core) {
    return core.GetModelInfo(*request, response);
  });
}

grpc::ServerReadReactor<v1::CalibrateRequest>* CalibrationServiceImpl::Calibrate(
    grpc::CallbackServerContext* ctx, v1::CalibrateResponse* response) {
  return new CalibrateReactor(context_, ctx, response);
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Apply(grpc::CallbackServerContext* ctx,
                                                        const v1::ApplyRequest* request,
                                                        v1::ApplyResponse* response) {
  return RunUnary(context_, ctx, "Apply", Access::kDetect, [request, response](ServerCore& core) {
    return core.Apply(*request, response);
  });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::Merge(grpc::CallbackServerContext* ctx,
                                                        const v1::MergeRequest* request,
                                                        v1::MergeResponse* response) {
  ServiceContext* context = context_;
  return RunUnary(
      context_, ctx, "Merge", Access::kAdmin,
      [request, response](ServerCore& core) { return core.Merge(*request, response); },
      [context](ServerCore& core) { RefreshActiveVersion(context, core); });
}

grpc::ServerUnaryReactor* CalibrationServiceImpl::GetCalibrationJob(
    grpc::CallbackServerContext* ctx, const v1::GetCalibrationJobRequest* request,
    v1::CalibrationJob* response) {
  return RunUnary(context_, ctx, "GetCalibrationJob", Access::kOpen,
                  [request, response](ServerCore& core) {
                    return core.GetCalibrationJob(*request, response);
                  });
}

// The store RPCs: reads and writes hit the database, so they run on the executor as well.
#define LOGN_STORE_RPC(Method, Request, Response, mutates)                                    \
  grpc::ServerUnaryReactor* StatsStoreServiceImpl::Method(                                     \
      grpc::CallbackServerContext* ctx, const v1::Request* request, v1::Response* response) { \
    ServiceContext* context = context_;                                                       \
    std::function<void(ServerCore&)> after;                                                   \
    if (mutates) after = [context](ServerCore& core) { RefreshActiveVersion(context, core); }; \
    return RunUnary(                                                                          \
        context_, ctx, #Method, mutates ? Access::kAdmin : Access::kOpen,                     \
        [request, response](ServerCore& core) { return core.Method(*request, response); },    \
        std::move(after));                                                                    \
  }

LOGN_STORE_RPC(ListVersions, ListVersionsRequest, ListVersionsResponse, false)
LOGN_STORE_RPC(GetVersion, GetVersionRequest, GetVersionResponse, false)
LOGN_STORE_RPC(SetAlias, SetAliasRequest, SetAliasResponse, true)
LOGN_STORE_RPC(Activate, ActivateRequest, ActivateResponse, true)
LOGN_STORE_RPC(Rollback, RollbackRequest, RollbackResponse, true)
LOGN_STORE_RPC(DeleteVersion, DeleteVersionRequest, DeleteVersionResponse, true)
LOGN_STORE_RPC(ExportVersion, ExportVersionRequest, ExportVersionResponse, false)
LOGN_STORE_RPC(ImportVersion, ImportVersionRequest, ImportVersionResponse, true)

#undef LOGN_STORE_RPC

}  // namespace logn
