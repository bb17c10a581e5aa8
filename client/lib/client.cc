#include "client/lib/client.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/lib/grpc_status.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace logn {
namespace {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message = absl::StrCat(what, " '", path, "': ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::NotFoundError(message);
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::chrono::system_clock::time_point DeadlineFromNow(absl::Duration timeout) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(absl::ToInt64Microseconds(timeout));
}

}  // namespace

absl::Status ValidateClientOptions(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("ClientOptions.target is empty");
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.deadline must be > 0");
  }
  if (options.stream_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.stream_deadline must be > 0");
  }
  const RetryPolicy& retry = options.retry;
  if (retry.max_attempts < 1) {
    return absl::InvalidArgumentError("RetryPolicy.max_attempts must be >= 1");
  }
  if (retry.initial_backoff < absl::ZeroDuration() || retry.max_backoff < retry.initial_backoff) {
    return absl::InvalidArgumentError("RetryPolicy needs 0 <= initial_backoff <= max_backoff");
  }
  if (!(retry.multiplier >= 1.0)) {
    return absl::InvalidArgumentError("RetryPolicy.multiplier must be >= 1");
  }
  if (!(retry.jitter >= 0.0 && retry.jitter <= 1.0)) {
    return absl::InvalidArgumentError("RetryPolicy.jitter must be in [0, 1]");
  }
  if (options.tls.cert_chain_file.empty() != options.tls.private_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TlsOptions: cert_chain_file and private_key_file go together (mutual TLS)");
  }
  if (!options.tls.enabled &&
      (!options.tls.root_ca_file.empty() || !options.tls.cert_chain_file.empty())) {
    return absl::InvalidArgumentError("TlsOptions: certificate files given but TLS is disabled");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError("ClientOptions.max_message_bytes must be > 0");
  }
  return absl::OkStatus();
}

// ----- CalibrationWriter -----

CalibrationWriter::~CalibrationWriter() { Cancel(); }

absl::Status CalibrationWriter::FinishWithError() {
  // Write failed: the stream is dead; Finish carries the server's reason.
  done_ = true;
  const grpc::Status status = writer_->Finish();
  error_ = status.ok() ? absl::UnavailableError("Calibrate stream closed by the server")
                       : GrpcToAbslStatus(status);
  return error_;
}

absl::Status CalibrationWriter::Write(const v1::CalibrateRequest& batch) {
  if (!error_.ok()) return error_;
  if (done_)
    return absl::FailedPreconditionError("Calibrate stream already committed or cancelled");
  if (batch.payload_case() == v1::CalibrateRequest::kHeader) {
    return absl::InvalidArgumentError(
        "the header was already sent; write a logit_batch or an image_batch");
  }
  if (!writer_->Write(batch)) return FinishWithError();
  ++batches_written_;
  return absl::OkStatus();
}

absl::Status CalibrationWriter::WriteLogits(const float* values, int64_t rows, int32_t width) {
  if (rows < 0 || width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad logits shape ", rows, " x ", width));
  }
  v1::CalibrateRequest request;
  v1::LogitBatch* logits = request.mutable_logit_batch();
  logits->set_rows(rows);
  logits->set_width(width);
  logits->set_data(reinterpret_cast<const char*>(values),
                   static_cast<size_t>(rows) * width * sizeof(float));
  return Write(request);
}

absl::Status CalibrationWriter::WriteImages(const v1::ImageBatch& images) {
  v1::CalibrateRequest request;
  *request.mutable_image_batch() = images;
  return Write(request);
}

absl::StatusOr<v1::CalibrateResponse> CalibrationWriter::Commit() {
  if (!error_.ok()) return error_;
  if (done_)
    return absl::FailedPreconditionError("Calibrate stream already committed or cancelled");
  done_ = true;
  writer_->WritesDone();
  const grpc::Status status = writer_->Finish();
  if (!status.ok()) {
    error_ = GrpcToAbslStatus(status);
    return error_;
  }
  return response_;
}

void CalibrationWriter::Cancel() {
  if (done_ || writer_ == nullptr) return;
  done_ = true;
  context_.TryCancel();
  (void)writer_->Finish();
  error_ = absl::CancelledError("Calibrate stream cancelled by the client");
}

// ----- DetectStream -----

DetectStream::~DetectStream() {
  if (!finished_ && stream_ != nullptr) {
    context_.TryCancel();
    (void)stream_->Finish();
  }
}

bool DetectStream::Write(const v1::DetectRequest& request) {
  return Write(v1::DetectRequest(request));
}

bool DetectStream::Write(v1::DetectRequest&& request) {
  if (writes_done_ || finished_) return false;
  v1::DetectStreamRequest wrapped;
  wrapped.mutable_request()->Swap(&request);
  return stream_->Write(wrapped);
}

std::optional<v1::DetectResponse> DetectStream::Read() {
  if (finished_) return std::nullopt;
  v1::DetectStreamResponse wrapped;
  if (!stream_->Read(&wrapped)) return std::nullopt;
  return std::move(*wrapped.mutable_response());
}

void DetectStream::WritesDone() {
  if (writes_done_ || finished_) return;
  writes_done_ = true;
  stream_->WritesDone();
}

absl::Status DetectStream::Finish() {
  if (finished_) return absl::FailedPreconditionError("DetectStream already finished");
  finished_ = true;
  return GrpcToAbslStatus(stream_->Finish());
}

// ----- Client -----

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      detection_(v1::DetectionService::NewStub(channel_)),
      calibration_(v1::CalibrationService::NewStub(channel_)),
      stats_(v1::StatsStoreService::NewStub(channel_)),
      models_(v1::ModelService::NewStub(channel_)),
      drift_(v1::DriftService::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  LOGN_RETURN_IF_ERROR(ValidateClientOptions(options));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls.root_ca_file.empty()) {
      LOGN_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadPemFile(options.tls.root_ca_file, "TLS root CA file"));
    }
    if (!options.tls.cert_chain_file.empty()) {
      LOGN_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                            ReadPemFile(options.tls.cert_chain_file, "TLS certificate file"));
      LOGN_ASSIGN_OR_RETURN(ssl.pem_private_key,
                            ReadPemFile(options.tls.private_key_file, "TLS private key file"));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls.server_name_override.empty()) {
      args.SetSslTargetNameOverride(options.tls.server_name_override);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a channel to '", options.target, "'"));
  }
  return std::unique_ptr<Client>(new Client(std::move(channel), options));
}

absl::StatusOr<std::unique_ptr<Client>> Client::FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                            const ClientOptions& options) {
  if (channel == nullptr) return absl::InvalidArgumentError("null channel");
  ClientOptions checked = options;
  checked.tls = TlsOptions();
  if (checked.target.empty()) checked.target = "(channel)";
  LOGN_RETURN_IF_ERROR(ValidateClientOptions(checked));
  return std::unique_ptr<Client>(new Client(std::move(channel), std::move(checked)));
}

void Client::Prepare(grpc::ClientContext* context, absl::Duration deadline) const {
  if (deadline != absl::InfiniteDuration()) context->set_deadline(DeadlineFromNow(deadline));
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
}

absl::Duration Client::Backoff(int attempt) {
  const RetryPolicy& retry = options_.retry;
  const double base = absl::ToDoubleSeconds(retry.initial_backoff) *
                      std::pow(retry.multiplier, std::max(0, attempt - 2));
  const double capped = std::min(base, absl::ToDoubleSeconds(retry.max_backoff));
  double factor = 1.0;
  if (retry.jitter > 0) {
    absl::MutexLock lock(&jitter_mu_);
    factor = absl::Uniform<double>(jitter_gen_, 1.0 - retry.jitter, 1.0 + retry.jitter);
  }
  return absl::Seconds(capped * factor);
}

absl::Status Client::WithRetries(absl::string_view method, bool idempotent,
                                 const std::function<absl::Status()>& attempt) {
  const int max_attempts = idempotent ? options_.retry.max_attempts : 1;
  absl::Status status;
  for (int n = 1; n <= max_attempts; ++n) {
    if (n > 1) {
      if (options_.on_retry) options_.on_retry(method, n, status);
      absl::SleepFor(Backoff(n));
    }
    status = attempt();
    if (status.code() != absl::StatusCode::kUnavailable) return status;
  }
  return status;
}

// One unary RPC; a fresh context per attempt (a context cannot be reused).
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Client::Unary(absl::string_view method, bool idempotent, Stub& stub,
                                       grpc::Status (Stub::*rpc)(grpc::ClientContext*,
                                                                 const Request&, Response*),
                                       const Request& request) {
  Response response;
  const absl::Status status = WithRetries(method, idempotent, [&]() {
    grpc::ClientContext context;
    Prepare(&context, options_.deadline);
    response.Clear();
    return GrpcToAbslStatus((stub.*rpc)(&context, request, &response));
  });
  if (!status.ok()) return status;
  return response;
}

// Reads may be retried; calls that change state may not (the server may have applied one whose
// response was lost).
constexpr bool kIdempotent = true;
constexpr bool kMutation = false;

absl::StatusOr<v1::DetectResponse> Client::Detect(const v1::DetectRequest& request) {
  return Unary("Detect", kIdempotent, *detection_, &v1::DetectionService::Stub::Detect, request);
}

absl::StatusOr<v1::GetModelInfoResponse> Client::GetModelInfo(
    const v1::GetModelInfoRequest& request) {
  return Unary("GetModelInfo", kIdempotent, *detection_, &v1::DetectionService::Stub::GetModelInfo,
               request);
}

absl::StatusOr<v1::ApplyResponse> Client::Apply(const v1::ApplyRequest& request) {
  return Unary("Apply", kIdempotent, *calibration_, &v1::CalibrationService::Stub::Apply, request);
}

absl::StatusOr<v1::MergeResponse> Client::Merge(const v1::MergeRequest& request) {
  return Unary("Merge", kMutation, *calibration_, &v1::CalibrationService::Stub::Merge, request);
}

absl::StatusOr<v1::GetCalibrationJobResponse> Client::GetCalibrationJob(
    const v1::GetCalibrationJobRequest& request) {
  return Unary("GetCalibrationJob", kIdempotent, *calibration_,
               &v1::CalibrationService::Stub::GetCalibrationJob, request);
}

absl::StatusOr<v1::ListVersionsResponse> Client::ListVersions(
    const v1::ListVersionsRequest& request) {
  return Unary("ListVersions", kIdempotent, *stats_, &v1::StatsStoreService::Stub::ListVersions,
               request);
}

absl::StatusOr<v1::GetVersionResponse> Client::GetVersion(const v1::GetVersionRequest& request) {
  return Unary("GetVersion", kIdempotent, *stats_, &v1::StatsStoreService::Stub::GetVersion,
               request);
}

absl::StatusOr<v1::SetAliasResponse> Client::SetAlias(const v1::SetAliasRequest& request) {
  return Unary("SetAlias", kMutation, *stats_, &v1::StatsStoreService::Stub::SetAlias, request);
}

absl::StatusOr<v1::ActivateResponse> Client::Activate(const v1::ActivateRequest& request) {
  return Unary("Activate", kMutation, *stats_, &v1::StatsStoreService::Stub::Activate, request);
}

absl::StatusOr<v1::RollbackResponse> Client::Rollback(const v1::RollbackRequest& request) {
  return Unary("Rollback", kMutation, *stats_, &v1::StatsStoreService::Stub::Rollback, request);
}

absl::StatusOr<v1::DeleteVersionResponse> Client::DeleteVersion(
    const v1::DeleteVersionRequest& request) {
  return Unary("DeleteVersion", kMutation, *stats_, &v1::StatsStoreService::Stub::DeleteVersion,
               request);
}

absl::StatusOr<v1::ExportVersionResponse> Client::ExportVersion(
    const v1::ExportVersionRequest& request) {
  return Unary("ExportVersion", kIdempotent, *stats_, &v1::StatsStoreService::Stub::ExportVersion,
               request);
}

absl::StatusOr<v1::ImportVersionResponse> Client::ImportVersion(
    const v1::ImportVersionRequest& request) {
  return Unary("ImportVersion", kMutation, *stats_, &v1::StatsStoreService::Stub::ImportVersion,
               request);
}

absl::StatusOr<v1::SetCalibrationProfileResponse> Client::SetCalibrationProfile(
    const v1::SetCalibrationProfileRequest& request) {
  // Idempotent: setting the same profile twice leaves the same state.
  return Unary("SetCalibrationProfile", kIdempotent, *stats_,
               &v1::StatsStoreService::Stub::SetCalibrationProfile, request);
}

absl::StatusOr<v1::ListModelsResponse> Client::ListModels(const v1::ListModelsRequest& request) {
  return Unary("ListModels", kIdempotent, *models_, &v1::ModelService::Stub::ListModels, request);
}

absl::StatusOr<v1::LoadModelResponse> Client::LoadModel(const v1::LoadModelRequest& request) {
  return Unary("LoadModel", kMutation, *models_, &v1::ModelService::Stub::LoadModel, request);
}

absl::StatusOr<v1::UnloadModelResponse> Client::UnloadModel(const v1::UnloadModelRequest& request) {
  return Unary("UnloadModel", kMutation, *models_, &v1::ModelService::Stub::UnloadModel, request);
}

absl::StatusOr<v1::ReloadModelsResponse> Client::ReloadModels(
    const v1::ReloadModelsRequest& request) {
  return Unary("ReloadModels", kMutation, *models_, &v1::ModelService::Stub::ReloadModels, request);
}

absl::StatusOr<v1::GetDriftResponse> Client::GetDrift(const v1::GetDriftRequest& request) {
  return Unary("GetDrift", kIdempotent, *drift_, &v1::DriftService::Stub::GetDrift, request);
}

absl::StatusOr<v1::CaptureDriftReferenceResponse> Client::CaptureDriftReference(
    const v1::CaptureDriftReferenceRequest& request) {
  return Unary("CaptureDriftReference", kMutation, *drift_,
               &v1::DriftService::Stub::CaptureDriftReference, request);
}

absl::StatusOr<v1::SnapshotLiveStatisticsResponse> Client::SnapshotLiveStatistics(
    const v1::SnapshotLiveStatisticsRequest& request) {
  return Unary("SnapshotLiveStatistics", kMutation, *drift_,
               &v1::DriftService::Stub::SnapshotLiveStatistics, request);
}

absl::StatusOr<ServingStatus> Client::Health(const std::string& service) {
  ServingStatus serving = ServingStatus::kUnknown;
  absl::Status status = WithRetries("Health", true, [&]() -> absl::Status {
    // CheckHealth builds its own context, so the token cannot ride along; health checks are
    // unauthenticated by convention (Kubernetes / Docker probes carry no credentials).
    absl::StatusOr<ServingStatus> result = CheckHealth(channel_, service, options_.deadline);
    if (!result.ok()) return result.status();
    serving = *result;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return serving;
}

std::unique_ptr<DetectStream> Client::OpenDetectStream() {
  std::unique_ptr<DetectStream> stream(new DetectStream());
  Prepare(&stream->context_, options_.stream_deadline);
  stream->stream_ = detection_->DetectStream(&stream->context_);
  return stream;
}

absl::StatusOr<std::unique_ptr<CalibrationWriter>> Client::Calibrate(
    const v1::CalibrateHeader& header) {
  std::unique_ptr<CalibrationWriter> writer(new CalibrationWriter());
  Prepare(&writer->context_, options_.stream_deadline);
  writer->writer_ = calibration_->Calibrate(&writer->context_, &writer->response_);
  v1::CalibrateRequest first;
  *first.mutable_header() = header;
  if (!writer->writer_->Write(first)) return writer->FinishWithError();
  return writer;
}

}  // namespace logn
