#include "server/grpc/grpc_server.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace logn {
namespace {

bool BatchingOn(const GrpcServerOptions& options) {
  return options.batching.max_batch_images > 1;
}

}  // namespace

absl::Status GrpcServer::Validate(const GrpcServerOptions& options,
                                  const ServerCoreOptions* core) {
  if (options.executor.num_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--executor_threads must be at least 1, not ", options.executor.num_threads));
  }
  if (options.executor.max_queued < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_queue must be at least 1, not ", options.executor.max_queued,
                     " (with no queue every request would be refused)"));
  }
  if (options.max_message_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--max_message_bytes must be at least 1, not ",
                                                   options.max_message_bytes));
  }
  if (options.require_token_for_detect && options.admin_token.empty()) {
    return absl::InvalidArgumentError("--require_token_for_detect needs --admin_token_file");
  }
  const DetectBatcher::Options& batching = options.batching;
  if (batching.max_batch_images < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_batch must be at least 1 (1 turns dynamic batching off), not ",
        batching.max_batch_images));
  }
  if (!BatchingOn(options)) return absl::OkStatus();
  if (batching.max_queue_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_queue_delay_us must not be negative, not ",
                     absl::ToInt64Microseconds(batching.max_queue_delay)));
  }
  if (batching.max_queued_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_queue must be at least 1 when batching, not ", batching.max_queued_requests));
  }
  if (core == nullptr) return absl::OkStatus();
  // One batch is one forward pass, limited by the runtime (which --max_images_per_request sets).
  const int32_t max_forward = core->runtime.limits.max_images_per_call;
  if (batching.max_batch_images > max_forward) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_batch ", batching.max_batch_images, " is larger than --max_images_per_request ",
        max_forward, ": a merged batch would be refused and re-run request by request; lower "
        "--max_batch or raise --max_images_per_request"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& options,
                                                               ServerMetrics* metrics) {
  LOGN_RETURN_IF_ERROR(Validate(options));
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->options_ = options;
  server->executor_ = std::make_unique<BoundedExecutor>(options.executor);
  server->context_ = std::make_unique<ServiceContext>();
  server->context_->executor = server->executor_.get();
  server->context_->metrics = metrics;
  server->context_->admin_token = options.admin_token;
  server->context_->require_token_for_detect = options.require_token_for_detect;
  server->detection_ = std::make_unique<DetectionServiceImpl>(server->context_.get());
  server->calibration_ = std::make_unique<CalibrationServiceImpl>(server->context_.get());
  server->stats_ = std::make_unique<StatsStoreServiceImpl>(server->context_.get());
  server->models_ = std::make_unique<ModelServiceImpl>(server->context_.get());
  server->drift_ = std::make_unique<DriftServiceImpl>(server->context_.get());

  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      options.listen_address,
      options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->detection_.get());
  builder.RegisterService(server->calibration_.get());
  builder.RegisterService(server->stats_.get());
  builder.RegisterService(server->models_.get());
  builder.RegisterService(server->drift_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (in use, or not an address)"));
  }
  server->context_->health = server->health();
  server->SetServing(false);
  return server;
}

namespace {

class MetricsObserver final : public ServerCore::Observer {
 public:
  explicit MetricsObserver(ServerMetrics* metrics) : metrics_(metrics) {}
  void OnDetect(const LoadedModel& model, int64_t images, bool fallback) override {
    metrics_->RecordModelDetect(model.name(), model.version(), images, fallback);
  }

 private:
  ServerMetrics* const metrics_;
};

}  // namespace

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

grpc::HealthCheckServiceInterface* GrpcServer::health() {
  return server_->GetHealthCheckService();
}

void GrpcServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* service = health();
  if (service == nullptr) return;
  service->SetServingStatus("", serving);
  for (const char* name : kServiceNames) service->SetServingStatus(name, serving);
  if (serving) return;  // per-model health follows the models (PublishModelState)
  absl::MutexLock lock(&context_->health_mu);
  for (const std::string& model : context_->health_models) {
    service->SetServingStatus(ModelHealthName(model), false);
  }
}

absl::Status GrpcServer::SetCore(ServerCore* core) {
  LOGN_RETURN_IF_ERROR(Validate(options_, &core->options()));
  if (BatchingOn(options_)) {
    DetectBatcher::Options batching = options_.batching;
    batching.max_in_flight_batches = std::max(1, options_.executor.num_threads);
    ServerMetrics* metrics = context_->metrics;
    batching.on_batch = [metrics](int64_t images) { metrics->RecordBatch(images); };
    batcher_ = std::make_unique<DetectBatcher>(core, executor_.get(), batching);
    context_->batcher.store(batcher_.get());
  }
  core_ = core;
  observer_ = std::make_unique<MetricsObserver>(context_->metrics);
  core->set_observer(observer_.get());
  context_->core.store(core);
  ServiceContext* context = context_.get();
  // Publishes at once, then on every version state change (loads, swaps, failures).
  core->models().SetListener([context, core] { PublishModelState(context, *core); });
  const absl::Duration interval = options_.drift_publish_interval;
  if (core->options().drift.sample_rate > 0 && interval > absl::ZeroDuration()) {
    publisher_ = std::thread([this, context, core, interval] {
      while (!stop_publishing_.WaitForNotificationWithTimeout(interval)) {
        PublishDrift(context, *core);
      }
    });
  }
  SetServing(true);
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> GrpcServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_message_bytes);
  args.SetMaxSendMessageSize(options_.max_message_bytes);
  return server_->InProcessChannel(args);
}

void GrpcServer::Shutdown(absl::Duration drain_timeout) {
  if (shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  stop_publishing_.Notify();
  if (publisher_.joinable()) publisher_.join();
  // The core may outlive this server: its manager must stop calling into it.
  if (core_ != nullptr) core_->models().SetListener(nullptr);
  // Server::Shutdown stops new calls at once and waits for in-flight ones until the deadline,
  // cancelling what is left; the executor keeps running meanwhile so they can finish.
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::microseconds(absl::ToInt64Microseconds(drain_timeout)));
  // New calls no longer reach the batcher; it keeps answering the ones it holds (a batch that
  // can no longer be scheduled is RESOURCE_EXHAUSTED) until every call is done, and only then
  // goes away, so no handler can still be submitting to it.
  context_->batcher.store(nullptr);
  executor_->Shutdown();
  server_->Wait();
  batcher_.reset();
  if (core_ != nullptr) core_->set_observer(nullptr);
}

}  // namespace logn
