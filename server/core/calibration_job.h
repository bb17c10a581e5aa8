#ifndef LOGN_SERVER_CORE_CALIBRATION_JOB_H_
#define LOGN_SERVER_CORE_CALIBRATION_JOB_H_

// One Calibrate stream's job: accumulates batches of logits or images, commits one statistics
// version at the end. It sees only what its dependencies give it, never the ServerCore.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "calibration/accumulator.h"
#include "logn/v1/calibration_service.pb.h"
#include "server/core/requests.h"
#include "server/core/roi_sampler.h"
#include "server/runtime/detector_runtime.h"
#include "store/stats_store.h"

namespace logn {

// What a job needs, handed over explicitly by its owner (the server core). The pointers must
// outlive the job.
struct CalibrationJobDeps {
  StatsStore* store = nullptr;               // checkpoints and the committed version
  const DetectorRuntime* runtime = nullptr;  // the layout; forward and classify_rois for images
  ModelKey model;                            // the served model, whose versions the job writes
  // Keeps the model version (and so `runtime`) alive while the job runs, even if it is unloaded.
  std::shared_ptr<const void> model_hold;
  int64_t max_rows_per_batch = int64_t{1} << 20;  // per logit batch (more: RESOURCE_EXHAUSTED)
  int64_t max_rows_per_job = int64_t{1} << 34;
  int32_t max_images_per_batch = 32;  // per image batch (more: RESOURCE_EXHAUSTED)
  // RoI sampling for images with ground truth; each image's sample is seeded by sampling_seed
  // and its bytes (roi_sampler.h).
  RoiSamplingOptions sampling;
  uint64_t sampling_seed = 20220601;
  // Checkpoint interval of jobs with a job_id whose header leaves it at 0; 0: never.
  int32_t default_checkpoint_every_batches = 16;
  // The clock that stamps the committed statistics' creation time.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// Destroying a job without Commit commits nothing. Not thread-safe: one stream feeds one job.
//
// A job with a job_id saves its accumulation in the store every N batches (a checkpoint), and
// a later job with the same id and `resume` continues from it, on this or any replica sharing
// the store; committing deletes the checkpoint in the same transaction.
class CalibrationJob {
 public:
  // Checks the header (the model name is the caller's to check) and opens the job: afresh, from
  // its checkpoint (resume; FAILED_PRECONDITION unless source, mode, momentum,
  // resume_from_batch, the RoI sampler and the rfs threshold match it), or EMA from a stored
  // version (ema.init). INVALID_ARGUMENT for a header that makes no sense (no source, a partial
  // version to activate, resume without a job_id, a bad momentum, an EMA without a start).
  static absl::StatusOr<std::unique_ptr<CalibrationJob>> Start(CalibrationJobDeps deps,
                                                               const v1::CalibrateHeader& header);

  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED per batch; a refused batch changes nothing. A batch
  // that completes a checkpoint interval is accumulated even if saving the checkpoint fails
  // (UNAVAILABLE etc., naming the batch), so the stream fails and resumes from the previous one.
  absl::Status AddLogits(const v1::LogitBatch& batch);
  // Images with ground truth are scored on RoIs sampled as in training (header.sampler) from the
  // RPN's proposals when the model has a proposals method, else from its output candidates (the
  // model needs classify_rois, FAILED_PRECONDITION otherwise); images without ground truth, on
  // the model's own candidates. Each image's rows count `weight` times.
  absl::Status AddImages(const v1::ImageBatch& batch);
  // Stores the statistics as a new version (and activates it if the header asked).
  // FAILED_PRECONDITION when no row was accumulated or the job was already committed.
  absl::StatusOr<v1::CalibrateResponse> Commit();

  int64_t rows() const { return rows_; }
  int64_t images() const { return images_; }
  int64_t batches() const { return batches_; }

  // The record the committed version stores: how the rows so far were obtained (source, counts),
  // the sampler applied to images with ground truth, the repeat-factor threshold. Unset before
  // any batch.
  std::optional<RoiSamplingRecord> SamplingRecord() const;

 private:
  CalibrationJob(CalibrationJobDeps deps, CalibrationJobHeader header);
  // Continues from the job's checkpoint: counters and accumulation.
  absl::Status Resume();
  // FAILED_PRECONDITION unless this stream samples and weights as the checkpointed rows were.
  absl::Status CheckSameSampling(const JobCheckpoint& checkpoint) const;
  absl::Status CreateAccumulator(const JobCheckpoint* checkpoint);
  absl::Status CheckSource(VersionSource batch_source) const;
  // The logit rows of an image batch (all validated before any is accumulated), each row's
  // weight, and how they were sampled.
  struct ImageRows {
    std::vector<float> logits;
    std::vector<double> weights;  // one per row, or empty when every image weighs 1
    RoiSource source = RoiSource::kUnspecified;
    int64_t positives = 0;
  };
  absl::StatusOr<ImageRows> RowsFromImages(const std::vector<AnnotatedImageInput>& batch) const;
  // The RoIs of images with ground truth: sampled from proposals or candidates.
  absl::StatusOr<ImageRows> RowsFromSampledRois(const std::vector<AnnotatedImageInput>& batch,
                                                const std::vector<ImageSource>& images) const;
  // Appends each image's rows (logits[i] for batch[i]) and, if any image is weighted, each
  // row's weight.
  void CollectRows(const std::vector<AnnotatedImageInput>& batch,
                   const std::vector<std::vector<float>>& logits, ImageRows* rows) const;
  // `weights`: empty (all 1) or one per row.
  absl::Status AddRows(const float* data, int64_t rows, absl::Span<const double> weights);
  // Counts one accepted batch and saves a checkpoint when an interval is complete.
  absl::Status FinishBatch();
  void CountSampled(RoiSource source, int64_t images, int64_t rois, int64_t positives);
  absl::StatusOr<Statistics> SnapshotStatistics() const;

  const CalibrationJobDeps deps_;
  const CalibrationJobHeader header_;
  const RoiSamplingOptions sampler_;  // the header's overrides over deps_.sampling
  const int32_t checkpoint_every_;  // batches; 0: no checkpoints
  std::unique_ptr<ExactAccumulator> exact_;
  std::unique_ptr<EmaAccumulator> ema_;
  int64_t rows_ = 0;
  int64_t images_ = 0;
  int64_t batches_ = 0;
  // The source and counts so far (kMixed once batches differ); SamplingRecord adds the rest.
  RoiSamplingRecord sampled_;
  int64_t ema_updates_ = 0;  // EMA only: batches folded into the running statistics
  bool committed_ = false;
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_CALIBRATION_JOB_H_
