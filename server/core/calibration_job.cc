#include "server/core/calibration_job.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/proto_convert.h"
#include "server/core/versions.h"

namespace logn {
namespace {

// The interval a header asks for: its own when > 0, the server's default when 0, never when
// negative or without a job_id (nothing could resume it).
int32_t CheckpointInterval(const CalibrationJobHeader& header, int32_t server_default) {
  if (header.job_id.empty()) return 0;
  if (header.checkpoint_every_batches > 0) return header.checkpoint_every_batches;
  if (header.checkpoint_every_batches == 0) return std::max(0, server_default);
  return 0;
}

absl::Status CheckHeader(const CalibrationJobHeader& header) {
  if (header.partial && header.activate) {
    return absl::InvalidArgumentError(
        "a partial version cannot be activated: merge the shards, then activate the merge");
  }
  if (header.resume && header.job_id.empty()) {
    return absl::InvalidArgumentError("resume needs the job_id of the job to continue");
  }
  return absl::OkStatus();
}

// FAILED_PRECONDITION unless the stream resumes the checkpointed job exactly where it stopped.
absl::Status CheckResumable(const CalibrationJobHeader& header, const JobCheckpoint& checkpoint) {
  if (checkpoint.source != header.source || checkpoint.statistics.method != header.method) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", header.job_id, "' started with source ", VersionSourceName(checkpoint.source),
        " and mode ", AccumulationMethodName(checkpoint.statistics.method),
        "; resume it with the same source and mode"));
  }
  if (header.resume_from_batch != checkpoint.batches) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", header.job_id, "' has a checkpoint after batch ", checkpoint.batches,
        ", but the stream resumes from batch ", header.resume_from_batch,
        ": send its batches from ", checkpoint.batches, " on (resume_from_batch = ",
        checkpoint.batches, ")"));
  }
  if (header.method == AccumulationMethod::kEma &&
      checkpoint.statistics.momentum != header.ema_momentum) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", header.job_id, "' runs with EMA momentum ", checkpoint.statistics.momentum,
        ", not ", header.ema_momentum, "; resume it with the same momentum"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CalibrationJob>> CalibrationJob::Start(
    CalibrationJobDeps deps, const v1::CalibrateHeader& header_proto) {
  LOGN_ASSIGN_OR_RETURN(CalibrationJobHeader header, JobHeaderFromProto(header_proto));
  LOGN_RETURN_IF_ERROR(CheckHeader(header));
  LOGN_RETURN_IF_ERROR(ValidateRoiSamplingOptions(header.sampler.AppliedTo(deps.sampling)));
  std::unique_ptr<CalibrationJob> job(new CalibrationJob(std::move(deps), std::move(header)));
  if (job->header_.resume) {
    LOGN_RETURN_IF_ERROR(job->Resume());
  } else {
    LOGN_RETURN_IF_ERROR(job->CreateAccumulator(nullptr));
  }
  return job;
}

CalibrationJob::CalibrationJob(CalibrationJobDeps deps, CalibrationJobHeader header)
    : deps_(std::move(deps)),
      header_(std::move(header)),
      sampler_(header_.sampler.AppliedTo(deps_.sampling)),
      checkpoint_every_(CheckpointInterval(header_, deps_.default_checkpoint_every_batches)) {}

absl::Status CalibrationJob::Resume() {
  LOGN_ASSIGN_OR_RETURN(JobCheckpoint checkpoint,
                        deps_.store->GetCheckpoint(deps_.model, header_.job_id));
  LOGN_RETURN_IF_ERROR(CheckResumable(header_, checkpoint));
  LOGN_RETURN_IF_ERROR(CheckSameSampling(checkpoint));
  rows_ = checkpoint.statistics.count;
  images_ = checkpoint.images_seen;
  batches_ = checkpoint.batches;
  if (checkpoint.sampling.has_value()) sampled_ = *checkpoint.sampling;
  ema_updates_ = checkpoint.batches;
  return CreateAccumulator(&checkpoint);
}

// The rows after the checkpoint must be sampled and weighted like those before it, or the
// committed version would describe neither setting.
absl::Status CalibrationJob::CheckSameSampling(const JobCheckpoint& checkpoint) const {
  if (!checkpoint.sampling.has_value()) return absl::OkStatus();
  const RoiSamplingRecord& before = *checkpoint.sampling;
  if (before.rfs_threshold != header_.rfs_threshold) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", header_.job_id, "' weighted its images with rfs_threshold ",
        before.rfs_threshold, ", not ", header_.rfs_threshold, "; resume it with the same one"));
  }
  const bool sampled =
      before.roi_source == RoiSource::kProposals || before.roi_source == RoiSource::kCandidates;
  if (sampled && (before.num_rois != sampler_.num_rois ||
                  before.positive_fraction != sampler_.positive_fraction ||
                  before.positive_iou != sampler_.positive_iou)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", header_.job_id, "' sampled ", before.num_rois, " RoIs per image, at most ",
        before.positive_fraction, " positive at IoU ", before.positive_iou,
        "; resume it with the same sampler"));
  }
  return absl::OkStatus();
}

absl::Status CalibrationJob::CreateAccumulator(const JobCheckpoint* checkpoint) {
  const LogitLayout& layout = deps_.runtime->layout();
  if (header_.method == AccumulationMethod::kExact) {
    exact_ = std::make_unique<ExactAccumulator>(layout);
    if (checkpoint != nullptr) LOGN_RETURN_IF_ERROR(exact_->MergeSnapshot(checkpoint->statistics));
    return absl::OkStatus();
  }
  absl::StatusOr<EmaAccumulator> ema;
  if (checkpoint != nullptr) {
    ema = EmaAccumulator::CreateFrom(checkpoint->statistics, header_.ema_momentum);
  } else if (header_.ema_init.has_value()) {
    LOGN_ASSIGN_OR_RETURN(const VersionSelector selector, *header_.ema_init);
    LOGN_ASSIGN_OR_RETURN(VersionRecord init, deps_.store->Get(deps_.model, selector));
    ema = EmaAccumulator::CreateFrom(init.statistics, header_.ema_momentum);
  } else {
    // JobHeaderFromProto let this through only with from_prior.
    ema = EmaAccumulator::Create(layout, header_.ema_momentum);
  }
  if (!ema.ok()) return ema.status();
  ema_ = std::make_unique<EmaAccumulator>(*std::move(ema));
  return absl::OkStatus();
}

absl::Status CalibrationJob::CheckSource(VersionSource batch_source) const {
  if (header_.source == batch_source) return absl::OkStatus();
  return absl::InvalidArgumentError(
      batch_source == VersionSource::kLogits
          ? "this job's header declared source IMAGES, but a logit batch arrived"
          : "this job's header declared source LOGITS, but an image batch arrived");
}

absl::Status CalibrationJob::AddRows(const float* data, int64_t rows,
                                     absl::Span<const double> weights) {
  if (rows_ + rows > deps_.max_rows_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat("calibration job would exceed ",
                                                     deps_.max_rows_per_job,
                                                     " rows; split it into several jobs"));
  }
  const LogitBatchView view{data, rows, deps_.runtime->layout().width()};
  absl::Status status = exact_ ? exact_->Add(view, weights) : ema_->Add(view, weights);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("batch ", batches_ + 1, ": ", status.message()));
  }
  rows_ += rows;
  if (ema_) ++ema_updates_;
  return absl::OkStatus();
}

absl::Status CalibrationJob::AddLogits(const v1::LogitBatch& batch) {
  LOGN_RETURN_IF_ERROR(CheckSource(VersionSource::kLogits));
  // Size and width first, so an oversized or mis-shaped batch is refused before it is copied.
  if (batch.rows() > deps_.max_rows_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat("logit batch of ", batch.rows(),
                                                     " rows is over the limit of ",
                                                     deps_.max_rows_per_batch, " rows per batch"));
  }
  const LogitLayout& layout = deps_.runtime->layout();
  if (batch.width() != layout.width()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch ", batches_ + 1, ": logit batch has width ", batch.width(), " but model '",
        deps_.model.name, "' has ", layout.width(), " logits per row (", layout.DebugString(),
        ")"));
  }
  LOGN_ASSIGN_OR_RETURN(std::vector<float> values, LogitsFromProto(batch));
  LOGN_RETURN_IF_ERROR(AddRows(values.data(), batch.rows(), RowWeightsFromProto(batch)));
  CountSampled(RoiSource::kLogits, 0, batch.rows(), 0);
  return FinishBatch();
}

absl::Status CalibrationJob::AddImages(const v1::ImageBatch& batch) {
  LOGN_RETURN_IF_ERROR(CheckSource(VersionSource::kImages));
  // The image count first, so an oversized batch is refused before anything is converted.
  const int64_t num_images = batch.annotated_images_size();
  if (num_images == 0) return absl::InvalidArgumentError("image batch has no images");
  if (num_images > deps_.max_images_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat("image batch of ", num_images,
                                                     " images is over the limit of ",
                                                     deps_.max_images_per_batch, " per batch"));
  }
  LOGN_ASSIGN_OR_RETURN(const std::vector<AnnotatedImageInput> images,
                        ImageBatchFromProto(batch));
  LOGN_ASSIGN_OR_RETURN(const ImageRows rows, RowsFromImages(images));
  const int64_t num_rows =
      static_cast<int64_t>(rows.logits.size()) / deps_.runtime->layout().width();
  if (num_rows > 0) {
    if (header_.method == AccumulationMethod::kEma && num_rows < 2) {
      return absl::InvalidArgumentError(
          "EMA calibration needs at least 2 RoIs per batch; send more images per batch");
    }
    LOGN_RETURN_IF_ERROR(AddRows(rows.logits.data(), num_rows, rows.weights));
  }
  // A batch without rows (no candidates) is not an error: its images were seen.
  images_ += num_images;
  CountSampled(rows.source, num_images, num_rows, rows.positives);
  return FinishBatch();
}

std::optional<RoiSamplingRecord> CalibrationJob::SamplingRecord() const {
  if (sampled_.roi_source == RoiSource::kUnspecified) return std::nullopt;
  RoiSamplingRecord record = sampled_;
  record.rfs_threshold = header_.rfs_threshold;
  const bool sampled = record.roi_source == RoiSource::kProposals ||
                       record.roi_source == RoiSource::kCandidates;
  record.num_rois = sampled ? sampler_.num_rois : 0;
  record.positive_fraction = sampled ? sampler_.positive_fraction : 0.0;
  record.positive_iou = sampled ? sampler_.positive_iou : 0.0f;
  return record;
}

void CalibrationJob::CountSampled(RoiSource source, int64_t images, int64_t rois,
                                  int64_t positives) {
  if (sampled_.roi_source == RoiSource::kUnspecified) {
    sampled_.roi_source = source;
  } else if (sampled_.roi_source != source) {
    sampled_.roi_source = RoiSource::kMixed;
  }
  sampled_.images += images;
  sampled_.rois += rois;
  sampled_.positive_rois += positives;
}

absl::StatusOr<CalibrationJob::ImageRows> CalibrationJob::RowsFromImages(
    const std::vector<AnnotatedImageInput>& batch) const {
  const DetectorRuntime& runtime = *deps_.runtime;
  std::vector<ImageSource> images;
  for (const AnnotatedImageInput& image : batch) images.push_back(image.image);
  const bool any_ground_truth =
      std::any_of(batch.begin(), batch.end(),
                  [](const AnnotatedImageInput& image) { return !image.ground_truth.empty(); });
  if (any_ground_truth) return RowsFromSampledRois(batch, images);
  LOGN_ASSIGN_OR_RETURN(DetectorRuntime::ForwardResult forward, runtime.Forward(images));
  ImageRows rows;
  rows.source = RoiSource::kDetections;
  std::vector<std::vector<float>> logits;
  for (RawOutputs& image : forward.images) logits.push_back(std::move(image.logits));
  CollectRows(batch, logits, &rows);
  return rows;
}

void CalibrationJob::CollectRows(const std::vector<AnnotatedImageInput>& batch,
                                 const std::vector<std::vector<float>>& logits,
                                 ImageRows* rows) const {
  const int64_t width = deps_.runtime->layout().width();
  // Weights only when an image has one: unit weights would cost the weighted kernel for nothing.
  const bool weighted =
      std::any_of(batch.begin(), batch.end(),
                  [](const AnnotatedImageInput& image) { return image.weight != 1.0; });
  for (size_t i = 0; i < batch.size(); ++i) {
    rows->logits.insert(rows->logits.end(), logits[i].begin(), logits[i].end());
    if (weighted) {
      rows->weights.insert(rows->weights.end(), logits[i].size() / width, batch[i].weight);
    }
  }
}

absl::StatusOr<CalibrationJob::ImageRows> CalibrationJob::RowsFromSampledRois(
    const std::vector<AnnotatedImageInput>& batch, const std::vector<ImageSource>& images) const {
  const DetectorRuntime& runtime = *deps_.runtime;
  if (!runtime.has_classify_rois()) {
    return absl::FailedPreconditionError(
        "ground truth was sent, but the model has no classify_rois method to score sampled RoIs; "
        "send images without ground truth to use the model's own candidates");
  }
  // The RPN's proposals, as training sampled from; without them, the output candidates' boxes.
  if (header_.sample_from == RoiSource::kProposals && !runtime.has_proposals()) {
    return absl::FailedPreconditionError(
        "the header asks for RoIs sampled from proposals, but the model exports no proposals "
        "method (docs/model-contract.md); leave sampler.from unset to use its candidates");
  }
  ImageRows rows;
  std::vector<std::vector<float>> proposals(batch.size());
  if (runtime.has_proposals() && header_.sample_from != RoiSource::kCandidates) {
    rows.source = RoiSource::kProposals;
    LOGN_ASSIGN_OR_RETURN(DetectorRuntime::ProposalResult result, runtime.Proposals(images));
    proposals = std::move(result.boxes);
  } else {
    rows.source = RoiSource::kCandidates;
    LOGN_ASSIGN_OR_RETURN(DetectorRuntime::ForwardResult forward, runtime.Forward(images));
    for (size_t i = 0; i < batch.size(); ++i) {
      proposals[i] = CandidateProposals(forward.images[i].view(), runtime.layout());
    }
  }
  std::vector<std::vector<float>> rois(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    SampledRois sampled = SampleImageRois(proposals[i], batch[i].ground_truth, batch[i].image,
                                          sampler_, deps_.sampling_seed);
    rows.positives += sampled.positives;
    rois[i] = std::move(sampled.boxes);
  }
  LOGN_ASSIGN_OR_RETURN(DetectorRuntime::RoiResult scored, runtime.ClassifyRois(images, rois));
  CollectRows(batch, scored.logits, &rows);
  return rows;
}

absl::Status CalibrationJob::FinishBatch() {
  ++batches_;
  if (checkpoint_every_ <= 0 || batches_ % checkpoint_every_ != 0 || rows_ == 0) {
    return absl::OkStatus();
  }
  JobCheckpoint checkpoint;
  checkpoint.model = deps_.model;
  checkpoint.job_id = header_.job_id;
  checkpoint.batches = batches_;
  checkpoint.images_seen = images_;
  checkpoint.source = header_.source;
  checkpoint.sampling = SamplingRecord();
  LOGN_ASSIGN_OR_RETURN(checkpoint.statistics, SnapshotStatistics());
  if (absl::Status s = deps_.store->PutCheckpoint(checkpoint); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("batch ", batches_,
                                               " was accumulated but its checkpoint could not "
                                               "be saved (resume from the previous one): ",
                                               s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statistics> CalibrationJob::SnapshotStatistics() const {
  if (exact_) return exact_->Snapshot();
  return ema_->Snapshot();
}

absl::StatusOr<v1::CalibrateResponse> CalibrationJob::Commit() {
  if (committed_) return absl::FailedPreconditionError("calibration job already committed");
  if (rows_ == 0) {
    return absl::FailedPreconditionError(
        "calibration stream had no rows: send at least one batch after the header");
  }
  LOGN_ASSIGN_OR_RETURN(Statistics stats, SnapshotStatistics());
  VersionOrigin origin;
  origin.source = header_.source;
  origin.job_id = header_.job_id;
  origin.description = header_.description;
  origin.images_seen = images_;
  origin.batches_seen = batches_;
  origin.partial = header_.partial;
  origin.clear_job_checkpoint = !header_.job_id.empty();
  origin.sampling = SamplingRecord();
  const NewVersion version =
      BuildNewVersion(deps_.model, std::move(stats), std::move(origin), deps_.now());
  LOGN_ASSIGN_OR_RETURN(StoredVersion stored,
                        StoreNewVersion(*deps_.store, version, header_.activate));
  committed_ = true;
  v1::CalibrateResponse response;
  VersionToProto(stored, response.mutable_statistics_version());
  response.set_rows_seen(rows_);
  response.set_images_seen(images_);
  response.set_batches_seen(batches_);
  if (ema_) response.set_ema_start_weight(std::pow(1.0 - header_.ema_momentum, ema_updates_));
  return response;
}

}  // namespace logn
