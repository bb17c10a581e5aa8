#ifndef LOGN_SERVER_CORE_SERVER_CORE_H_
#define LOGN_SERVER_CORE_SERVER_CORE_H_

// The transport-free core of LogN Serve (as TF Serving's ServerCore): owns the detector runtime,
// the statistics store and its cache, and implements every logn.v1 RPC on plain request and
// response messages. The gRPC services are thin adapters over it; tests can call it directly.

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
#include "logn/v1/stats_service.pb.h"
#include "server/core/roi_sampler.h"
#include "server/runtime/detector_runtime.h"
#include "store/stats_cache.h"
#include "store/stats_store.h"

namespace logn {

struct ServerCoreOptions {
  DetectorRuntime::Options runtime;
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
};

class ServerCore;

// One Calibrate stream's job: accumulates batches, commits one version at the end. Destroying a
// job without Commit commits nothing. Not thread-safe: one stream feeds one job.
//
// A job with a job_id saves its accumulation in the store every N batches (a checkpoint), and
// a later job with the same id and `resume` continues from it, on this or any replica sharing
// the store; committing deletes the checkpoint in the same transaction.
class CalibrationJob {
 public:
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED per batch; a refused batch changes nothing. A batch
  // that completes a checkpoint interval is accumulated even if saving the checkpoint fails
  // (UNAVAILABLE etc., naming the batch), so the stream fails and resumes from the previous one.
  absl::Status AddLogits(const v1::LogitBatch& batch);
  absl::Status AddImages(const v1::ImageBatch& batch);
  // Stores the statistics as a new version (and activates it if the header asked).
  // FAILED_PRECONDITION when no row was accumulated.
  absl::StatusOr<v1::CalibrateResponse> Commit();

  int64_t rows() const { return rows_; }
  int64_t images() const { return images_; }
  int64_t batches() const { return batches_; }

 private:
  friend class ServerCore;
  CalibrationJob(ServerCore* core, v1::CalibrateHeader header, AccumulationMethod method);
  absl::Status AddRows(const float* data, int64_t rows);
  // Counts one accepted batch and saves a checkpoint when an interval is complete.
  absl::Status FinishBatch();
  absl::StatusOr<Statistics> SnapshotStatistics() const;

  ServerCore* const core_;
  const v1::CalibrateHeader header_;
  const AccumulationMethod method_;
  std::unique_ptr<ExactAccumulator> exact_;
  std::unique_ptr<EmaAccumulator> ema_;
  int64_t rows_ = 0;
  int64_t images_ = 0;
  int64_t batches_ = 0;
  int32_t checkpoint_every_ = 0;  // batches; 0: no checkpoints
  bool committed_ = false;
};

class ServerCore {
 public:
  // Loads and validates the model, opens (and migrates) the store.
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerCoreOptions& options);
  // From an already loaded runtime and open store (tests, or a host that shares them).
  static std::unique_ptr<ServerCore> CreateFrom(const ServerCoreOptions& options,
                                                std::unique_ptr<DetectorRuntime> runtime,
                                                std::unique_ptr<StatsStore> store);

  const DetectorRuntime& runtime() const { return *runtime_; }
  StatsStore& store() { return *store_; }
  const ModelKey& model_key() const { return model_key_; }
  const ServerCoreOptions& options() const { return options_; }

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
                                 v1::CalibrationJob* response);

  // StatsStoreService.
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

  // The active version's number, 0 when there is none (for metrics and GetModelInfo).
  int64_t ActiveVersion();

 private:
  friend class CalibrationJob;
  ServerCore(const ServerCoreOptions& options, std::unique_ptr<DetectorRuntime> runtime,
             std::unique_ptr<StatsStore> store);

  // NOT_FOUND unless `name` is empty or the served model's name.
  absl::Status CheckModel(const std::string& name) const;
  // Calibrators for a request's settings, all LogN ones from one statistics version (so a
  // response is consistent with the one version it names even while aliases move).
  struct Settings {
    std::vector<CalibrationSpec> specs;
    std::vector<std::string> names;
    std::vector<Calibrator> calibrators;
    int64_t statistics_version = 0;
  };
  absl::StatusOr<Settings> ResolveSettings(
      const google::protobuf::RepeatedPtrField<v1::CalibrationSetting>& settings,
      const v1::StatisticsSelector& selector, bool statistics_selector_set);
  absl::StatusOr<std::vector<std::string>> AliasesOf(int64_t version);
  // A Detect request checked, with its calibrators and image views (into the request).
  struct PreparedDetect {
    PostprocessOptions postprocess;
    Settings settings;
    std::vector<ImageSource> images;
  };
  absl::StatusOr<PreparedDetect> PrepareDetect(const v1::DetectRequest& request);
  // The response from the request's raw outputs (one per image, in order).
  absl::Status FinishDetect(const v1::DetectRequest& request, const PreparedDetect& prepared,
                            absl::Span<const RawOutputs> outputs, const StageTimings& timings,
                            v1::DetectResponse* response) const;
  // Puts `version` and, if asked, activates it; the stored version with its aliases.
  absl::StatusOr<v1::VersionInfo> StoreVersion(const NewVersion& version, bool activate);

  const ServerCoreOptions options_;
  std::unique_ptr<DetectorRuntime> runtime_;
  std::unique_ptr<StatsStore> store_;
  std::unique_ptr<StatsCache> cache_;
  ModelKey model_key_;
  std::vector<double> instance_counts_;  // LogA priors; empty when the manifest lacks them
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_SERVER_CORE_H_
