#include "server/grpc/grpc_server.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace logn {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& options,
                                                               ServerMetrics* metrics) {
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
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (in use, or not an address)"));
  }
  server->SetServing(false);
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

grpc::HealthCheckServiceInterface* GrpcServer::health() {
  return server_->GetHealthCheckService();
}

void GrpcServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* service = health();
  if (service == nullptr) return;
  service->SetServingStatus("", serving);
  for (const char* name : kServiceNames) service->SetServingStatus(name, serving);
}

void GrpcServer::SetCore(ServerCore* core) {
  if (options_.batching.max_batch_images > 1) {
    DetectBatcher::Options batching = options_.batching;
    batching.max_in_flight_batches = std::max(1, options_.executor.num_threads);
    ServerMetrics* metrics = context_->metrics;
    batching.on_batch = [metrics](int64_t images) { metrics->RecordBatch(images); };
    batcher_ = std::make_unique<DetectBatcher>(core, executor_.get(), batching);
    context_->batcher.store(batcher_.get());
  }
  context_->core.store(core);
  context_->metrics->SetModelInfo(core->model_key().name, core->model_key().sha256);
  context_->metrics->SetActiveVersion(core->model_key().name, core->ActiveVersion());
  SetServing(true);
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
}

}  // namespace logn
