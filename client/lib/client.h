#ifndef LOGN_CLIENT_LIB_CLIENT_H_
#define LOGN_CLIENT_LIB_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/lib/health_client.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"
#include "logn/v1/calibration_service.grpc.pb.h"
#include "logn/v1/detection_service.grpc.pb.h"
#include "logn/v1/drift_service.grpc.pb.h"
#include "logn/v1/model_service.grpc.pb.h"
#include "logn/v1/stats_service.grpc.pb.h"

namespace logn {

// Retries of idempotent calls (GetModelInfo, Detect, Apply, GetCalibrationJob, ListVersions,
// GetVersion, ExportVersion, ListModels, GetDrift, Health) that fail with UNAVAILABLE: attempt n
// (n >= 2) waits min(max_backoff, initial_backoff * multiplier^(n-2)) scaled by a uniform factor
// in [1 - jitter, 1 + jitter] so that many clients do not retry in lockstep. Calls that change
// state (Calibrate, Merge, SetAlias, Activate, Rollback, DeleteVersion, ImportVersion, LoadModel,
// UnloadModel, ReloadModels, CaptureDriftReference, SnapshotLiveStatistics) and streams are never
// retried: the server may have applied them before the connection broke. SetCalibrationProfile
// is retried: setting the same profile twice leaves the same state.
struct RetryPolicy {
  // Total attempts including the first; 1 disables retries. Must be >= 1.
  int max_attempts = 4;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;  // >= 1
  double jitter = 0.2;      // in [0, 1]
};

// Transport security. Disabled: plaintext (insecure credentials).
struct TlsOptions {
  bool enabled = false;
  // PEM file with the CAs that sign the server's certificate; empty: gRPC's default roots.
  std::string root_ca_file;
  // PEM client certificate chain and private key for mutual TLS; both or neither.
  std::string cert_chain_file;
  std::string private_key_file;
  // Overrides the name checked against the server certificate (tests, IP targets).
  std::string server_name_override;
};

struct ClientOptions {
  // gRPC target, e.g. "127.0.0.1:8500" or "dns:///logn.example.com:443". Required.
  std::string target;
  // Deadline of each attempt of a unary call. Must be > 0.
  absl::Duration deadline = absl::Seconds(30);
  // Deadline of a whole stream (Calibrate, DetectStream); infinite by default because a
  // calibration pass over a training set takes as long as it takes.
  absl::Duration stream_deadline = absl::InfiniteDuration();
  TlsOptions tls;
  // Sent as "authorization: Bearer <token>" metadata on every call when non-empty.
  std::string bearer_token;
  RetryPolicy retry;
  // Largest message sent or received, bytes; the server's default limit is 64 MiB.
  int max_message_bytes = 64 << 20;
  // Called before each retry with the method name, the attempt about to start (>= 2) and the
  // status that caused it; for logging and tests. May be empty.
  std::function<void(absl::string_view method, int attempt, const absl::Status& cause)> on_retry;
};

// Checks `options` without connecting: INVALID_ARGUMENT naming the bad field.
absl::Status ValidateClientOptions(const ClientOptions& options);

// One Calibrate stream: the header is sent when the writer is created, then batches of the
// header's source. Write blocks until gRPC has accepted the message for sending (HTTP/2 flow
// control), so a producer never runs ahead of the network or of a server that has stopped
// reading. Commit half-closes and returns the committed version; Cancel (or destroying an
// uncommitted writer) abandons the job, and the server commits nothing. Not thread-safe: one
// producer thread per writer.
class CalibrationWriter {
 public:
  ~CalibrationWriter();
  CalibrationWriter(const CalibrationWriter&) = delete;
  CalibrationWriter& operator=(const CalibrationWriter&) = delete;

  // Sends one batch (a CalibrateRequest with `logit_batch` or `image_batch` set). After an error
  // the stream is finished and every later call returns the same status; the status is the server's
  // (e.g. INVALID_ARGUMENT naming the bad row) when it ended the stream.
  absl::Status Write(const v1::CalibrateRequest& batch);
  // Convenience: `rows` x `width` row-major float32 logits.
  absl::Status WriteLogits(const float* values, int64_t rows, int32_t width);
  absl::Status WriteImages(const v1::ImageBatch& images);

  // Half-closes and waits for the server to commit. FAILED_PRECONDITION if called twice or
  // after Cancel.
  absl::StatusOr<v1::CalibrateResponse> Commit();
  // Cancels the stream; nothing is committed. Idempotent.
  void Cancel();

  int64_t batches_written() const { return batches_written_; }

 private:
  friend class Client;
  CalibrationWriter() = default;
  absl::Status FinishWithError();

  grpc::ClientContext context_;
  v1::CalibrateResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::CalibrateRequest>> writer_;
  absl::Status error_;
  bool done_ = false;
  int64_t batches_written_ = 0;
};

// One DetectStream: responses come back one per request, in order. Write blocks like
// CalibrationWriter::Write. Reading and writing may happen on two different threads (one
// each); nothing else is thread-safe. The wire messages wrap each request and response
// (DetectStreamRequest / DetectStreamResponse); this class wraps and unwraps them.
class DetectStream {
 public:
  ~DetectStream();
  DetectStream(const DetectStream&) = delete;
  DetectStream& operator=(const DetectStream&) = delete;

  // False when the stream is broken; Finish then says why. The rvalue overload moves the
  // request (its image bytes) into the wire message instead of copying it.
  bool Write(const v1::DetectRequest& request);
  bool Write(v1::DetectRequest&& request);
  // The next response, or nullopt when the server has closed its side (then call Finish).
  std::optional<v1::DetectResponse> Read();
  // Half-closes the sending side; the responses still in flight can be read.
  void WritesDone();
  // Waits for the final status. Call once, after Read returned nullopt.
  absl::Status Finish();

 private:
  friend class Client;
  DetectStream() = default;

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DetectStreamRequest, v1::DetectStreamResponse>>
      stream_;
  bool writes_done_ = false;
  bool finished_ = false;
};

// A client of the logn.v1 services (detection, calibration, statistics store, model repository,
// drift) over one channel. Thread-safe: any number of threads
// may call it concurrently. Every method returns the server's status unchanged (code and
// message), or the client's own INVALID_ARGUMENT / DEADLINE_EXCEEDED / UNAVAILABLE.
class Client {
 public:
  // Builds the channel (connection is lazy: nothing fails here if the server is down).
  // INVALID_ARGUMENT for bad options; NOT_FOUND / PERMISSION_DENIED for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);
  // Over an existing channel (in-process servers, tests). TLS fields of `options` are ignored.
  static absl::StatusOr<std::unique_ptr<Client>> FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                             const ClientOptions& options);

  // DetectionService.
  absl::StatusOr<v1::DetectResponse> Detect(const v1::DetectRequest& request);
  std::unique_ptr<DetectStream> OpenDetectStream();
  absl::StatusOr<v1::GetModelInfoResponse> GetModelInfo(
      const v1::GetModelInfoRequest& request = {});

  // CalibrationService. Calibrate sends `header` and returns the writer for the batches; an
  // error here is a failure to send the header (the stream is then already finished).
  absl::StatusOr<std::unique_ptr<CalibrationWriter>> Calibrate(const v1::CalibrateHeader& header);
  absl::StatusOr<v1::ApplyResponse> Apply(const v1::ApplyRequest& request);
  // Not retried: a retry after a lost response would store a second merged version.
  absl::StatusOr<v1::MergeResponse> Merge(const v1::MergeRequest& request);
  absl::StatusOr<v1::GetCalibrationJobResponse> GetCalibrationJob(
      const v1::GetCalibrationJobRequest& request);

  // StatsStoreService.
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);
  absl::StatusOr<v1::GetVersionResponse> GetVersion(const v1::GetVersionRequest& request);
  absl::StatusOr<v1::SetAliasResponse> SetAlias(const v1::SetAliasRequest& request);
  absl::StatusOr<v1::ActivateResponse> Activate(const v1::ActivateRequest& request);
  absl::StatusOr<v1::RollbackResponse> Rollback(const v1::RollbackRequest& request);
  absl::StatusOr<v1::DeleteVersionResponse> DeleteVersion(const v1::DeleteVersionRequest& request);
  absl::StatusOr<v1::ExportVersionResponse> ExportVersion(const v1::ExportVersionRequest& request);
  absl::StatusOr<v1::ImportVersionResponse> ImportVersion(const v1::ImportVersionRequest& request);
  absl::StatusOr<v1::SetCalibrationProfileResponse> SetCalibrationProfile(
      const v1::SetCalibrationProfileRequest& request);

  // ModelService. ListModels is a read (retried). The other three are admin calls: the server
  // requires its admin token as the bearer token (UNAUTHENTICATED / PERMISSION_DENIED otherwise),
  // and they are never retried. LoadModel answers once the version is warm (or failed to load),
  // so its deadline must cover loading and warming the model.
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request = {});
  absl::StatusOr<v1::LoadModelResponse> LoadModel(const v1::LoadModelRequest& request);
  absl::StatusOr<v1::UnloadModelResponse> UnloadModel(const v1::UnloadModelRequest& request);
  absl::StatusOr<v1::ReloadModelsResponse> ReloadModels(
      const v1::ReloadModelsRequest& request = {});

  // DriftService. GetDrift is a read (retried). CaptureDriftReference and
  // SnapshotLiveStatistics are admin calls that store a statistics version each: never retried
  // (a lost response would otherwise store a second one).
  absl::StatusOr<v1::GetDriftResponse> GetDrift(const v1::GetDriftRequest& request = {});
  absl::StatusOr<v1::CaptureDriftReferenceResponse> CaptureDriftReference(
      const v1::CaptureDriftReferenceRequest& request);
  absl::StatusOr<v1::SnapshotLiveStatisticsResponse> SnapshotLiveStatistics(
      const v1::SnapshotLiveStatisticsRequest& request);

  // grpc.health.v1 Check of `service` ("" = the whole server), retried like an idempotent call.
  absl::StatusOr<ServingStatus> Health(const std::string& service = "");

  const ClientOptions& options() const { return options_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  // A context with the per-call deadline (or `deadline`) and the bearer token.
  void Prepare(grpc::ClientContext* context, absl::Duration deadline) const;
  // Runs `attempt` until it succeeds, fails with a non-UNAVAILABLE status, or the retry policy
  // is exhausted (only when `idempotent`).
  absl::Status WithRetries(absl::string_view method, bool idempotent,
                           const std::function<absl::Status()>& attempt);
  absl::Duration Backoff(int attempt);
  // The unary RPC `rpc` of `stub`, with Prepare()d contexts and WithRetries.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(absl::string_view method, bool idempotent, Stub& stub,
                                 grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&,
                                                           Response*),
                                 const Request& request);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DetectionService::Stub> detection_;
  std::unique_ptr<v1::CalibrationService::Stub> calibration_;
  std::unique_ptr<v1::StatsStoreService::Stub> stats_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::DriftService::Stub> drift_;
  absl::Mutex jitter_mu_;
  absl::BitGen jitter_gen_ ABSL_GUARDED_BY(jitter_mu_);
};

}  // namespace logn

#endif  // LOGN_CLIENT_LIB_CLIENT_H_
