#ifndef LOGN_SERVER_CORE_SERVER_CORE_H_
#define LOGN_SERVER_CORE_SERVER_CORE_H_

// The transport-free core of LogN Serve (as TF Serving's ServerCore): owns the hosted models (one,
// or a repository of models and versions: model_manager.h), the statistics store and its cache,
// and implements every logn.v1 RPC on plain request and response messages. Every request names
// a model (empty: the only one hosted) and optionally a model version (0: the newest available),
// and is served start to end by that one loaded version, whatever swaps meanwhile. The gRPC
// services are thin adapters over it; tests can call it directly.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "calibration/accumulator.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/drift_service.pb.h"
#include "logn/v1/model_service.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "server/core/calibration_job.h"
#include "server/core/drift_monitor.h"
#include "server/core/model_manager.h"
#include "server/core/requests.h"
#include "server/core/roi_sampler.h"
#include "server/core/versions.h"
#include "server/runtime/detector_runtime.h"
#include "store/stats_cache.h"
#include "store/stats_store.h"

namespace logn {

struct ServerCoreOptions {
  // The single model's files (runtime.model_path), and what every model version is loaded with.
  DetectorRuntime::Options runtime;
  // When set, the models are the repository's (model_repository.h) and runtime.model_path is
  // ignored; rescanned every repository_poll_interval (zero: only on ReloadModels).
  std::string model_repository;
  absl::Duration repository_poll_interval = absl::Seconds(30);
  // The single model's config, and the repository models' without a model_config.json.
  v1::ModelConfig default_model_config;
  // Live logit drift of every model version (sample_rate 0: off).
  DriftMonitorOptions drift;
  // sqlite:///path/stats.db (embedded default) or postgres://user:pass@host:port/db.
  std::string store_url;
  StatsStoreOptions store;
  StatsCache::Options cache;
  // Images in one Detect request (more: RESOURCE_EXHAUSTED).
  int32_t max_images_per_request = 32;
  // Rows in one LogitBatch / Apply request, and in one Calibrate job (more: RESOURCE_EXHAUSTED).
  int64_t max_rows_per_batch = int64_t{1} << 20;
  int64_t max_rows_per_job = int64_t{1} << 34;
  // RoI sampling when calibrating from images with ground truth. Each image's sample is drawn
  // from a generator seeded with sampling_seed and the image's bytes, so the statistics of a
  // dataset do not depend on how it is split into batches, shards or resumed streams.
  RoiSamplingOptions sampling;
  uint64_t sampling_seed = 20220601;
  // Checkpoint interval (batches) of jobs with a job_id whose header leaves it at 0; 0: never.
  int32_t checkpoint_every_batches = 16;

  // INVALID_ARGUMENT naming the first option out of range: a limit that is not positive, a
  // negative checkpoint interval, sampling or drift options outside their ranges, an invalid
  // default model config, or more images per request than the runtime runs in one call.
  absl::Status Validate() const;
};

class ServerCore {
 public:
  // Validates the options (before anything is loaded), opens (and migrates) the store, loads
  // and validates the model (or the repository's: a version that fails there is reported by
  // ListModels, not returned).
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerCoreOptions& options);
  // From an already loaded runtime (hosted as version 1 of its manifest's model) and open store
  // (tests, or a host that shares them); INVALID_ARGUMENT for invalid options.
  static absl::StatusOr<std::unique_ptr<ServerCore>> CreateFrom(
      const ServerCoreOptions& options, std::unique_ptr<DetectorRuntime> runtime,
      std::unique_ptr<StatsStore> store);
  ~ServerCore();

  StatsStore& store() { return *store_; }
  ModelManager& models() { return *models_; }
  const ServerCoreOptions& options() const { return options_; }
  // The default version of the only model hosted, or of the first by name (single-model hosts,
  // tests, benchmarks); null when no version is available.
  std::shared_ptr<const LoadedModel> DefaultModel() const;
  // DefaultModel()'s runtime and key; valid while that version stays hosted.
  const DetectorRuntime& runtime() const { return DefaultModel()->runtime(); }
  const ModelKey& model_key() const { return DefaultModel()->key(); }

  // DetectionService.
  absl::Status Detect(const v1::DetectRequest& request, v1::DetectResponse* response);
  // Detect for several requests with ONE forward pass over all their images (dynamic
  // batching); returns each request's status. A request that fails validation fails alone, and
  // if the batched forward pass fails (a bad image), each request is retried alone, so only the
  // bad one fails. Every response reports the batch's decode and inference time.
  std::vector<absl::Status> DetectBatch(absl::Span<const v1::DetectRequest* const> requests,
                                        absl::Span<v1::DetectResponse* const> responses);
  absl::Status GetModelInfo(const v1::GetModelInfoRequest& request,
                            v1::GetModelInfoResponse* response);

  // CalibrationService.
  absl::StatusOr<std::unique_ptr<CalibrationJob>> StartCalibration(
      const v1::CalibrateHeader& header);
  absl::Status Apply(const v1::ApplyRequest& request, v1::ApplyResponse* response);
  absl::Status Merge(const v1::MergeRequest& request, v1::MergeResponse* response);
  absl::Status GetCalibrationJob(const v1::GetCalibrationJobRequest& request,
                                 v1::GetCalibrationJobResponse* response);

  // StatsStoreService. Versions are returned in the basic view (GetVersion: as asked).
  absl::Status ListVersions(const v1::ListVersionsRequest& request,
                            v1::ListVersionsResponse* response);
  absl::Status GetVersion(const v1::GetVersionRequest& request, v1::GetVersionResponse* response);
  absl::Status SetAlias(const v1::SetAliasRequest& request, v1::SetAliasResponse* response);
  absl::Status Activate(const v1::ActivateRequest& request, v1::ActivateResponse* response);
  absl::Status Rollback(const v1::RollbackRequest& request, v1::RollbackResponse* response);
  absl::Status DeleteVersion(const v1::DeleteVersionRequest& request,
                             v1::DeleteVersionResponse* response);
  absl::Status ExportVersion(const v1::ExportVersionRequest& request,
                             v1::ExportVersionResponse* response);
  absl::Status ImportVersion(const v1::ImportVersionRequest& request,
                             v1::ImportVersionResponse* response);
  // Validates the profile's setting against the version (it must build a calibrator from the
  // version's statistics and the model's counts), then stores it; no profile clears it.
  absl::Status SetCalibrationProfile(const v1::SetCalibrationProfileRequest& request,
                                     v1::SetCalibrationProfileResponse* response);

  // ModelService. ListModels adds each available version's memory estimate and active
  // statistics version.
  absl::Status ListModels(const v1::ListModelsRequest& request, v1::ListModelsResponse* response);
  absl::Status LoadModel(const v1::LoadModelRequest& request, v1::LoadModelResponse* response);
  absl::Status UnloadModel(const v1::UnloadModelRequest& request,
                           v1::UnloadModelResponse* response);
  absl::Status ReloadModels(const v1::ReloadModelsRequest& request,
                            v1::ReloadModelsResponse* response);

  // DriftService. FAILED_PRECONDITION when drift monitoring is off.
  absl::Status GetDrift(const v1::GetDriftRequest& request, v1::GetDriftResponse* response);
  absl::Status CaptureDriftReference(const v1::CaptureDriftReferenceRequest& request,
                                     v1::CaptureDriftReferenceResponse* response);
  absl::Status SnapshotLiveStatistics(const v1::SnapshotLiveStatisticsRequest& request,
                                      v1::SnapshotLiveStatisticsResponse* response);

  // The active statistics version of a model version, 0 when there is none (metrics).
  int64_t ActiveVersion(const LoadedModel& model);
  // The default model's (single-model hosts and tests).
  int64_t ActiveVersion();

  // Per-model-version events for metrics; set before serving, called on request threads.
  struct Observer {
    virtual ~Observer() = default;
    // One Detect request served by `model` (fallback: its default calibration fell back).
    virtual void OnDetect(const LoadedModel& model, int64_t images, bool fallback) = 0;
  };
  void set_observer(Observer* observer) { observer_ = observer; }

 private:
  ServerCore(const ServerCoreOptions& options, std::unique_ptr<StatsStore> store);
  // What every model version gets when it is loaded: its drift monitor.
  void OnModelLoaded(LoadedModel& model);
  ModelManagerOptions ManagerOptions();

  using Model = std::shared_ptr<const LoadedModel>;
  // The model version a request names (ModelManager::Resolve).
  absl::StatusOr<Model> ResolveModel(const std::string& name, int64_t version) const;
  // A model version with drift monitoring (FAILED_PRECONDITION when it is off).
  absl::StatusOr<Model> DriftModel(const std::string& name, int64_t version) const;
  // Stores served-traffic statistics as a version of `model` (not activated).
  absl::StatusOr<StoredVersion> StoreServedTraffic(const LoadedModel& model,
                                                   const Statistics& statistics,
                                                   const std::string& description);
  void ModelStatusToProto(const ModelVersionInfo& info, v1::ModelVersionStatus* status);
  // The calibrators of a request's settings, all LogN ones and the model default from one
  // statistics version (so a response is consistent with the one version it names even while
  // aliases move).
  struct Calibrators {
    std::vector<NamedSpec> settings;      // as resolved: model defaults replaced by the profile
    std::vector<Calibrator> calibrators;  // one per setting
    int64_t statistics_version = 0;       // 0 when no setting needs statistics or a profile
    // The model default fell back (no active statistics, the model's policy is FALLBACK).
    bool fallback = false;
  };
  absl::StatusOr<Calibrators> ResolveCalibrators(const LoadedModel& model,
                                                 absl::Span<const NamedSpec> settings,
                                                 const StatisticsChoice& statistics);
  // The cached version `statistics` names; FAILED_PRECONDITION when it means "active" and no
  // version is active yet.
  absl::StatusOr<std::shared_ptr<const CachedVersion>> CachedStatistics(
      const LoadedModel& model, const StatisticsChoice& statistics);
  absl::StatusOr<std::vector<std::string>> AliasesOf(const ModelKey& model, int64_t version);
  // What the model default means with `version`: its calibration profile's setting, else LogN
  // with its defaults (named `name`, or "default" when empty).
  absl::StatusOr<NamedSpec> ModelDefaultSetting(const VersionInfo* version,
                                                const std::string& name) const;
  // The model default when `model` has no active statistics and its policy falls back; NOT_FOUND
  // when its policy refuses.
  absl::StatusOr<NamedSpec> FallbackSetting(const LoadedModel& model,
                                            const std::string& name) const;
  // The calibrator of a concrete spec (`statistics` for LogN; FAILED_PRECONDITION for LogA on a
  // model without instance counts).
  absl::StatusOr<Calibrator> CalibratorFor(const LoadedModel& model, const CalibrationSpec& spec,
                                           const Statistics* statistics) const;
  // INVALID_ARGUMENT / FAILED_PRECONDITION unless the profile's setting is concrete and builds a
  // calibrator with `statistics`.
  absl::Status ValidateProfile(const LoadedModel& model, const v1::CalibrationProfile& profile,
                               const Statistics& statistics) const;
  // A Detect request converted and checked, with the model version serving it and its
  // calibrators.
  struct PreparedDetect {
    Model model;
    DetectQuery query;
    Calibrators calibrators;
  };
  absl::StatusOr<PreparedDetect> PrepareDetect(const v1::DetectRequest& request);
  // The post-processing of the request's raw outputs (one per image, in order), timings included.
  absl::StatusOr<DetectOutcome> FinishDetect(const PreparedDetect& prepared,
                                             absl::Span<const RawOutputs> outputs,
                                             const StageTimings& timings) const;
  // One forward pass over the `ready` requests' images (all served by `model`), each request's
  // response written (or its status, if it alone fails).
  void RunDetectGroup(const LoadedModel& model, absl::Span<const size_t> ready,
                      absl::Span<const PreparedDetect> prepared,
                      absl::Span<v1::DetectResponse* const> responses,
                      std::vector<absl::Status>& statuses) const;
  // FinishDetect, written into `response`.
  absl::Status Respond(const PreparedDetect& prepared, absl::Span<const RawOutputs> outputs,
                       const StageTimings& timings, v1::DetectResponse* response) const;
  // Feeds the sampled requests' candidate logits to their model version's drift monitor.
  void ObserveDrift(const LoadedModel& model, absl::Span<const RawOutputs> outputs) const;
  // The version merging the exact statistics of `origin.parent_versions` (ascending, distinct),
  // with their image and batch counts.
  absl::StatusOr<NewVersion> MergedVersion(const LoadedModel& model, VersionOrigin origin);
  // StoreNewVersion, the stored version as the API reports it.
  absl::Status StoreVersion(const LoadedModel& model, const NewVersion& version, bool activate,
                            v1::StatisticsVersion* stored_version);
  // SetAlias, refusing served-traffic versions unless `allow_served_traffic`.
  absl::Status SetAliasChecked(const LoadedModel& model, const std::string& alias,
                               int64_t version, bool allow_served_traffic, int64_t* previous);

  const ServerCoreOptions options_;
  std::unique_ptr<StatsStore> store_;
  std::unique_ptr<StatsCache> cache_;
  std::unique_ptr<ModelManager> models_;
  Observer* observer_ = nullptr;
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_SERVER_CORE_H_
