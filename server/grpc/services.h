#ifndef LOGN_SERVER_GRPC_SERVICES_H_
#define LOGN_SERVER_GRPC_SERVICES_H_

// Thin gRPC adapters (callback API) over ServerCore. A reactor never blocks: every request's
// work (forward passes, database reads and writes) runs on the shared BoundedExecutor, and a
// full executor queue answers RESOURCE_EXHAUSTED.

#include <atomic>
#include <set>
#include <string>

#include "absl/strings/string_view.h"

#include "logn/v1/calibration_service.grpc.pb.h"
#include "grpcpp/health_check_service_interface.h"
#include "logn/v1/detection_service.grpc.pb.h"
#include "logn/v1/drift_service.grpc.pb.h"
#include "logn/v1/model_service.grpc.pb.h"
#include "logn/v1/stats_service.grpc.pb.h"
#include "server/core/detect_batcher.h"
#include "server/core/executor.h"
#include "server/core/server_core.h"
#include "server/grpc/metrics.h"

namespace logn {

// What every service needs. `core` is null until the model is loaded and the store open; until
// then every RPC answers UNAVAILABLE (health reports NOT_SERVING meanwhile).
struct ServiceContext {
  std::atomic<ServerCore*> core{nullptr};
  BoundedExecutor* executor = nullptr;
  // Non-null when dynamic batching is on: Detect and DetectStream requests go through it.
  std::atomic<DetectBatcher*> batcher{nullptr};
  ServerMetrics* metrics = nullptr;
  // When non-empty, Calibrate, Merge and every mutating store RPC need the metadata
  // `authorization: Bearer <admin_token>` (UNAUTHENTICATED without, PERMISSION_DENIED if wrong);
  // Detect, DetectStream and Apply too when require_token_for_detect.
  std::string admin_token;
  bool require_token_for_detect = false;
  // Per-model health (grpc.health.v1 service "logn.model.<name>"); null in tests without one.
  grpc::HealthCheckServiceInterface* health = nullptr;
  absl::Mutex health_mu;
  std::set<std::string> health_models ABSL_GUARDED_BY(health_mu);  // names ever reported
};

// The health service name of one model.
std::string ModelHealthName(const std::string& model);
// Publishes every hosted model version's state: the per-model metrics series and health
// (SERVING while the model has an available version). Called on every state change.
void PublishModelState(ServiceContext* context, ServerCore& core);
// Publishes every model version's drift gauges (computes their scores).
void PublishDrift(ServiceContext* context, ServerCore& core);

// Whether two strings are equal, in time that depends only on their lengths (tokens).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

class DetectionServiceImpl final : public v1::DetectionService::CallbackService {
 public:
  explicit DetectionServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Detect(grpc::CallbackServerContext* ctx,
                                   const v1::DetectRequest* request,
                                   v1::DetectResponse* response) override;
  grpc::ServerBidiReactor<v1::DetectStreamRequest, v1::DetectStreamResponse>* DetectStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* request,
                                         v1::GetModelInfoResponse* response) override;

 private:
  ServiceContext* const context_;
};

class CalibrationServiceImpl final : public v1::CalibrationService::CallbackService {
 public:
  explicit CalibrationServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerReadReactor<v1::CalibrateRequest>* Calibrate(
      grpc::CallbackServerContext* ctx, v1::CalibrateResponse* response) override;
  grpc::ServerUnaryReactor* Apply(grpc::CallbackServerContext* ctx,
                                  const v1::ApplyRequest* request,
                                  v1::ApplyResponse* response) override;
  grpc::ServerUnaryReactor* Merge(grpc::CallbackServerContext* ctx,
                                  const v1::MergeRequest* request,
                                  v1::MergeResponse* response) override;
  grpc::ServerUnaryReactor* GetCalibrationJob(grpc::CallbackServerContext* ctx,
                                              const v1::GetCalibrationJobRequest* request,
                                              v1::GetCalibrationJobResponse* response) override;

 private:
  ServiceContext* const context_;
};

class StatsStoreServiceImpl final : public v1::StatsStoreService::CallbackService {
 public:
  explicit StatsStoreServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* ListVersions(grpc::CallbackServerContext* ctx,
                                         const v1::ListVersionsRequest* request,
                                         v1::ListVersionsResponse* response) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* ctx,
                                       const v1::GetVersionRequest* request,
                                       v1::GetVersionResponse* response) override;
  grpc::ServerUnaryReactor* SetAlias(grpc::CallbackServerContext* ctx,
                                     const v1::SetAliasRequest* request,
                                     v1::SetAliasResponse* response) override;
  grpc::ServerUnaryReactor* Activate(grpc::CallbackServerContext* ctx,
                                     const v1::ActivateRequest* request,
                                     v1::ActivateResponse* response) override;
  grpc::ServerUnaryReactor* Rollback(grpc::CallbackServerContext* ctx,
                                     const v1::RollbackRequest* request,
                                     v1::RollbackResponse* response) override;
  grpc::ServerUnaryReactor* DeleteVersion(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteVersionRequest* request,
                                          v1::DeleteVersionResponse* response) override;
  grpc::ServerUnaryReactor* ExportVersion(grpc::CallbackServerContext* ctx,
                                          const v1::ExportVersionRequest* request,
                                          v1::ExportVersionResponse* response) override;
  grpc::ServerUnaryReactor* ImportVersion(grpc::CallbackServerContext* ctx,
                                          const v1::ImportVersionRequest* request,
                                          v1::ImportVersionResponse* response) override;
  grpc::ServerUnaryReactor* SetCalibrationProfile(
      grpc::CallbackServerContext* ctx, const v1::SetCalibrationProfileRequest* request,
      v1::SetCalibrationProfileResponse* response) override;

 private:
  ServiceContext* const context_;
};

class ModelServiceImpl final : public v1::ModelService::CallbackService {
 public:
  explicit ModelServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* ctx,
                                      const v1::LoadModelRequest* request,
                                      v1::LoadModelResponse* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* ctx,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* ReloadModels(grpc::CallbackServerContext* ctx,
                                         const v1::ReloadModelsRequest* request,
                                         v1::ReloadModelsResponse* response) override;

 private:
  ServiceContext* const context_;
};

class DriftServiceImpl final : public v1::DriftService::CallbackService {
 public:
  explicit DriftServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* GetDrift(grpc::CallbackServerContext* ctx,
                                     const v1::GetDriftRequest* request,
                                     v1::GetDriftResponse* response) override;
  grpc::ServerUnaryReactor* CaptureDriftReference(
      grpc::CallbackServerContext* ctx, const v1::CaptureDriftReferenceRequest* request,
      v1::CaptureDriftReferenceResponse* response) override;
  grpc::ServerUnaryReactor* SnapshotLiveStatistics(
      grpc::CallbackServerContext* ctx, const v1::SnapshotLiveStatisticsRequest* request,
      v1::SnapshotLiveStatisticsResponse* response) override;

 private:
  ServiceContext* const context_;
};

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_SERVICES_H_
