#ifndef LOGN_SERVER_GRPC_GRPC_SERVER_H_
#define LOGN_SERVER_GRPC_GRPC_SERVER_H_

#include <memory>
#include <thread>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/core/executor.h"
#include "server/core/server_core.h"
#include "server/grpc/metrics.h"
#include "server/grpc/services.h"

namespace logn {

// Every option is checked once, when the server starts (GrpcServer::Validate).
struct GrpcServerOptions {
  // host:port; port 0 picks a free one (see GrpcServer::port()).
  std::string listen_address = "0.0.0.0:8500";
  // Largest request or response message, in bytes (RESOURCE_EXHAUSTED beyond it).
  int max_message_bytes = 64 << 20;
  // The executor that runs every request's work: num_threads >= 1, max_queued >= 1.
  BoundedExecutor::Options executor;
  bool enable_reflection = true;
  // Null: insecure (plaintext) credentials.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Non-empty: the bearer token Calibrate, Merge and the mutating store RPCs require (and
  // Detect / DetectStream / Apply with require_token_for_detect); see ServiceContext.
  std::string admin_token;
  bool require_token_for_detect = false;
  // Dynamic batching of Detect / DetectStream requests: max_batch_images >= 1, 1 turns it off;
  // when on, a batch must fit one forward pass of the core (see Validate).
  // max_in_flight_batches is set to the executor's thread count.
  DetectBatcher::Options batching{/*max_batch_images=*/1};
  // How often the drift gauges are recomputed (scores of every model version).
  absl::Duration drift_publish_interval = absl::Seconds(10);
};

// The gRPC server: the three logn.v1 services, grpc.health.v1 and reflection, on a port and
// in-process. It starts NOT_SERVING (every RPC: UNAVAILABLE) so that health checks can watch a
// model load; SetCore makes it serve.
class GrpcServer {
 public:
  // The fully qualified names health reports per service.
  // Each model also has its own: ModelHealthName(name), SERVING while it has an available
  // version.
  static constexpr const char* kServiceNames[] = {
      "logn.v1.DetectionService", "logn.v1.CalibrationService", "logn.v1.StatsStoreService",
      "logn.v1.ModelService", "logn.v1.DriftService"};

  // INVALID_ARGUMENT, naming logn_server's flags, for options that cannot work: an executor
  // without threads or queue, a message limit below one byte, a negative batching delay, the
  // token required for Detect without a token, and a dynamic batch larger than the core accepts
  // in one forward pass (its merged forward would be refused, and every request of it re-run
  // alone, doubling the work). Without `core`, only the server's own options are checked.
  static absl::Status Validate(const GrpcServerOptions& options,
                               const ServerCoreOptions* core = nullptr);

  // Validates `options` (without a core), binds and starts. INVALID_ARGUMENT from Validate;
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                           ServerMetrics* metrics);
  ~GrpcServer();

  // Starts serving with `core` (which must outlive the server): health becomes SERVING. When
  // the options and core->options() do not go together (Validate), the server keeps answering
  // UNAVAILABLE (health NOT_SERVING) and the error is returned.
  absl::Status SetCore(ServerCore* core);

  int port() const { return port_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // The health service, for status changes (SIGTERM) and tests.
  grpc::HealthCheckServiceInterface* health();
  // The executor every request's work runs on (queue depth for metrics; tests fill it).
  BoundedExecutor* executor() { return executor_.get(); }

  // Graceful stop: health NOT_SERVING, no new calls, in-flight calls get up to `drain_timeout`
  // to finish before they are cancelled; then the executor is drained. Idempotent.
  void Shutdown(absl::Duration drain_timeout);

 private:
  GrpcServer() = default;
  void SetServing(bool serving);

  GrpcServerOptions options_;
  std::unique_ptr<BoundedExecutor> executor_;
  std::unique_ptr<ServiceContext> context_;
  std::unique_ptr<DetectionServiceImpl> detection_;
  std::unique_ptr<CalibrationServiceImpl> calibration_;
  std::unique_ptr<StatsStoreServiceImpl> stats_;
  std::unique_ptr<ModelServiceImpl> models_;
  std::unique_ptr<DriftServiceImpl> drift_;
  std::unique_ptr<DetectBatcher> batcher_;
  std::unique_ptr<grpc::Server> server_;
  // Per-model Detect counters (ServerCore::Observer over the metrics).
  std::unique_ptr<ServerCore::Observer> observer_;
  ServerCore* core_ = nullptr;
  // Recomputes the drift gauges every drift_publish_interval.
  absl::Notification stop_publishing_;
  std::thread publisher_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_GRPC_SERVER_H_
