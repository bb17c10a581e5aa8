#include "server/core/server_core.h"

#include <algorithm>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"
#include "server/core/proto_convert.h"
#include "store/stats_export.h"

namespace logn {
namespace {

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

bool LooksLikeJson(const std::string& content) {
  for (char c : content) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{';
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ServerCore

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerCoreOptions& options) {
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<DetectorRuntime> runtime,
                        DetectorRuntime::Load(options.runtime));
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<StatsStore> store,
                        OpenStatsStore(options.store_url, options.store));
  return CreateFrom(options, std::move(runtime), std::move(store));
}

std::unique_ptr<ServerCore> ServerCore::CreateFrom(const ServerCoreOptions& options,
                                                   std::unique_ptr<DetectorRuntime> runtime,
                                                   std::unique_ptr<StatsStore> store) {
  return std::unique_ptr<ServerCore>(
      new ServerCore(options, std::move(runtime), std::move(store)));
}

ServerCore::ServerCore(const ServerCoreOptions& options, std::unique_ptr<DetectorRuntime> runtime,
                       std::unique_ptr<StatsStore> store)
    : options_(options),
      runtime_(std::move(runtime)),
      store_(std::move(store)) {
  cache_ = std::make_unique<StatsCache>(store_.get(), options_.cache);
  model_key_ = ModelKey{runtime_->manifest().name(), runtime_->model_sha256()};
  bool all_counts = true;
  for (const v1::ClassInfo& c : runtime_->manifest().classes()) {
    all_counts &= c.instance_count() > 0;
    instance_counts_.push_back(static_cast<double>(c.instance_count()));
  }
  if (!all_counts) instance_counts_.clear();
}

absl::Status ServerCore::CheckModel(const std::string& name) const {
  if (name.empty() || name == model_key_.name) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("this server serves model '", model_key_.name,
                                          "', not '", name, "'"));
}

int64_t ServerCore::ActiveVersion() {
  auto version = store_->Resolve(model_key_, VersionSelector::Active());
  return version.ok() ? *version : 0;
}

absl::StatusOr<ServerCore::Settings> ServerCore::ResolveSettings(
    const google::protobuf::RepeatedPtrField<v1::CalibrationSetting>& settings,
    const v1::StatisticsSelector& selector_proto, bool statistics_selector_set) {
  Settings out;
  if (settings.empty()) {
    out.specs.push_back(CalibrationSpec());
    out.names.push_back("");
  }
  for (const v1::CalibrationSetting& setting : settings) {
    LOGN_ASSIGN_OR_RETURN(CalibrationSpec spec, SpecFromProto(setting));
    out.specs.push_back(spec);
    out.names.push_back(setting.name());
  }
  std::shared_ptr<const CachedVersion> version;
  const bool needs_statistics =
      std::any_of(out.specs.begin(), out.specs.end(),
                  [](const CalibrationSpec& s) { return s.method == CalibrationMethod::kLogN; });
  if (needs_statistics) {
    LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(selector_proto));
    auto cached = cache_->Get(model_key_, selector);
    if (!cached.ok()) {
      // No "active" version yet is a state to fix (calibrate first), not a missing name.
      const bool active = selector.version == 0 && selector.alias == kActiveAlias;
      if (absl::IsNotFound(cached.status()) && (active || !statistics_selector_set)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model '", model_key_.name,
            "' has no active LogN statistics yet: run Calibrate (with activate_on_commit) or "
            "Activate a version, or ask for calibration method NONE / LOGA (",
            cached.status().message(), ")"));
      }
      return cached.status();
    }
    version = *std::move(cached);
    out.statistics_version = version->info.version;
  }
  for (const CalibrationSpec& spec : out.specs) {
    if (spec.method == CalibrationMethod::kLogA && instance_counts_.empty()) {
      return absl::FailedPreconditionError(
          "LogA needs every class's training instance_count in the model manifest");
    }
    // The cache holds each version's calibrator for the default options: no rebuild per request.
    const bool cached_options =
        spec.method == CalibrationMethod::kLogN && spec.logn == options_.cache.logn;
    if (cached_options) {
      out.calibrators.push_back(version->calibrator);  // precomputed once per version
      continue;
    }
    LOGN_ASSIGN_OR_RETURN(
        Calibrator calibrator,
        MakeCalibrator(spec, runtime_->layout(), version ? &version->statistics : nullptr,
                       instance_counts_));
    out.calibrators.push_back(std::move(calibrator));
  }
  return out;
}

absl::StatusOr<ServerCore::PreparedDetect> ServerCore::PrepareDetect(
    const v1::DetectRequest& request) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  if (request.images().empty()) {
    return absl::InvalidArgumentError("Detect needs at least one image");
  }
  if (request.images_size() > options_.max_images_per_request) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Detect got ", request.images_size(), " images; at most ",
        options_.max_images_per_request, " per request (split the request)"));
  }
  PreparedDetect prepared;
  LOGN_ASSIGN_OR_RETURN(prepared.postprocess, PostprocessFromProto(request.postprocess()));
  LOGN_ASSIGN_OR_RETURN(prepared.settings,
                        ResolveSettings(request.calibrations(), request.statistics(),
                                        request.has_statistics()));
  prepared.images.reserve(request.images_size());
  for (int i = 0; i < request.images_size(); ++i) {
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(request.images(i), i));
    prepared.images.push_back(image);
  }
  return prepared;
}

absl::Status ServerCore::FinishDetect(const v1::DetectRequest& request,
                                      const PreparedDetect& prepared,
                                      absl::Span<const RawOutputs> outputs,
                                      const StageTimings& timings,
                                      v1::DetectResponse* response) const {
  const absl::Time post_start = absl::Now();
  const Settings& settings = prepared.settings;
  const v1::ModelManifest& manifest = runtime_->manifest();
  const int32_t width = runtime_->layout().width();
  const bool with_raw = request.postprocess().include_uncalibrated_score();
  response->set_request_id(request.request_id());
  response->set_statistics_version(settings.statistics_version);
  for (size_t s = 0; s < settings.specs.size(); ++s) {
    v1::CalibrationResult* result = response->add_results();
    *result->mutable_setting() = SpecToProto(settings.specs[s], settings.names[s]);
    for (size_t i = 0; i < outputs.size(); ++i) {
      const RawOutputs& raw = outputs[i];
      LOGN_ASSIGN_OR_RETURN(std::vector<Detection> detections,
                            Postprocess(settings.calibrators[s], raw.view(), prepared.postprocess));
      v1::ImageDetections* out = result->add_images();
      out->set_image_id(request.images(static_cast<int>(i)).id());
      std::vector<float> probabilities(with_raw ? width : 0);
      for (const Detection& d : detections) {
        v1::Detection* det = out->add_detections();
        det->mutable_box()->set_x1(d.box[0]);
        det->mutable_box()->set_y1(d.box[1]);
        det->mutable_box()->set_x2(d.box[2]);
        det->mutable_box()->set_y2(d.box[3]);
        det->set_category_id(manifest.classes(d.label).id());
        det->set_score(d.score);
        if (with_raw) {
          SoftmaxRows(raw.logits.data() + static_cast<int64_t>(d.candidate) * width,
                      probabilities.data(), 1, width);
          det->set_uncalibrated_score(
              probabilities[runtime_->layout().foreground_column(d.label)]);
        }
      }
    }
  }
  v1::ServerTiming* timing = response->mutable_timing();
  timing->set_decode_seconds(Seconds(timings.decode));
  timing->set_inference_seconds(Seconds(timings.preprocess + timings.forward));
  timing->set_postprocess_seconds(Seconds(absl::Now() - post_start));
  return absl::OkStatus();
}

absl::Status ServerCore::Detect(const v1::DetectRequest& request, v1::DetectResponse* response) {
  LOGN_ASSIGN_OR_RETURN(PreparedDetect prepared, PrepareDetect(request));
  LOGN_ASSIGN_OR_RETURN(DetectorRuntime::ForwardResult forward,
                        runtime_->Forward(prepared.images));
  return FinishDetect(request, prepared, forward.images, forward.timings, response);
}

std::vector<absl::Status> ServerCore::DetectBatch(
    absl::Span<const v1::DetectRequest* const> requests,
    absl::Span<v1::DetectResponse* const> responses) {
  std::vector<absl::Status> statuses(requests.size());
  std::vector<PreparedDetect> prepared(requests.size());
  std::vector<size_t> ready;  // requests that passed validation
  std::vector<ImageSource> images;
  for (size_t r = 0; r < requests.size(); ++r) {
    absl::StatusOr<PreparedDetect> p = PrepareDetect(*requests[r]);
    if (!p.ok()) {
      statuses[r] = p.status();
      continue;
    }
    prepared[r] = *std::move(p);
    images.insert(images.end(), prepared[r].images.begin(), prepared[r].images.end());
    ready.push_back(r);
  }
  if (ready.empty()) return statuses;
  absl::StatusOr<DetectorRuntime::ForwardResult> forward = runtime_->Forward(images);
  if (!forward.ok()) {
    // One bad image fails the whole batch: run each request alone so only its own fails.
    for (size_t r : ready) {
      absl::StatusOr<DetectorRuntime::ForwardResult> alone =
          runtime_->Forward(prepared[r].images);
      statuses[r] = alone.ok() ? FinishDetect(*requests[r], prepared[r], alone->images,
                                              alone->timings, responses[r])
                               : alone.status();
    }
    return statuses;
  }
  size_t offset = 0;
  for (size_t r : ready) {
    const size_t n = prepared[r].images.size();
    statuses[r] = FinishDetect(*requests[r], prepared[r],
                               absl::MakeConstSpan(forward->images).subspan(offset, n),
                               forward->timings, responses[r]);
    offset += n;
  }
  return statuses;
}

absl::Status ServerCore::GetModelInfo(const v1::GetModelInfoRequest& request,
                                      v1::GetModelInfoResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  *response->mutable_manifest() = runtime_->manifest();
  response->set_model_sha256(runtime_->model_sha256());
  response->set_active_version(ActiveVersion());
  response->set_device(runtime_->device());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Calibration

absl::StatusOr<std::unique_ptr<CalibrationJob>> ServerCore::StartCalibration(
    const v1::CalibrateHeader& header) {
  LOGN_RETURN_IF_ERROR(CheckModel(header.model()));
  if (header.source() != v1::CALIBRATION_SOURCE_LOGITS &&
      header.source() != v1::CALIBRATION_SOURCE_IMAGES) {
    return absl::InvalidArgumentError(
        "calibrate header needs source CALIBRATION_SOURCE_LOGITS or CALIBRATION_SOURCE_IMAGES");
  }
  if (header.partial() && header.activate_on_commit()) {
    return absl::InvalidArgumentError(
        "a partial version cannot be activated: merge the shards, then activate the merge");
  }
  if (header.resume() && header.job_id().empty()) {
    return absl::InvalidArgumentError("resume needs the job_id of the job to continue");
  }
  const AccumulationMethod method = header.has_ema() ? AccumulationMethod::kEma
                                                     : AccumulationMethod::kExact;
  std::unique_ptr<CalibrationJob> job(new CalibrationJob(this, header, method));
  if (!header.job_id().empty()) {
    job->checkpoint_every_ = header.checkpoint_every_batches() > 0
                                 ? header.checkpoint_every_batches()
                             : header.checkpoint_every_batches() == 0
                                 ? std::max(0, options_.checkpoint_every_batches)
                                 : 0;
  }
  std::optional<JobCheckpoint> checkpoint;
  if (header.resume()) {
    LOGN_ASSIGN_OR_RETURN(checkpoint, store_->GetCheckpoint(model_key_, header.job_id()));
    const VersionSource source = header.source() == v1::CALIBRATION_SOURCE_IMAGES
                                     ? VersionSource::kImages
                                     : VersionSource::kLogits;
    if (checkpoint->source != source || checkpoint->statistics.method != method) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job '", header.job_id(), "' started with source ",
          VersionSourceName(checkpoint->source), " and mode ",
          AccumulationMethodName(checkpoint->statistics.method),
          "; resume it with the same source and mode"));
    }
    if (header.resume_from_batch() != checkpoint->batches) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job '", header.job_id(), "' has a checkpoint after batch ", checkpoint->batches,
          ", but the stream resumes from batch ", header.resume_from_batch(),
          ": send its batches from ", checkpoint->batches, " on (resume_from_batch = ",
          checkpoint->batches, ")"));
    }
    job->rows_ = checkpoint->statistics.count;
    job->images_ = checkpoint->images_seen;
    job->batches_ = checkpoint->batches;
  }
  if (method == AccumulationMethod::kExact) {
    job->exact_ = std::make_unique<ExactAccumulator>(runtime_->layout());
    if (checkpoint.has_value()) {
      LOGN_RETURN_IF_ERROR(job->exact_->MergeSnapshot(checkpoint->statistics));
    }
    return job;
  }
  const v1::EmaMode& ema = header.ema();
  if (checkpoint.has_value()) {
    if (checkpoint->statistics.momentum != ema.momentum()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job '", header.job_id(), "' runs with EMA momentum ", checkpoint->statistics.momentum,
          ", not ", ema.momentum(), "; resume it with the same momentum"));
    }
    LOGN_ASSIGN_OR_RETURN(EmaAccumulator accumulator,
                          EmaAccumulator::CreateFrom(checkpoint->statistics, ema.momentum()));
    job->ema_ = std::make_unique<EmaAccumulator>(std::move(accumulator));
  } else if (ema.has_init()) {
    LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(ema.init()));
    LOGN_ASSIGN_OR_RETURN(VersionRecord init, store_->Get(model_key_, selector));
    LOGN_ASSIGN_OR_RETURN(EmaAccumulator accumulator,
                          EmaAccumulator::CreateFrom(init.statistics, ema.momentum()));
    job->ema_ = std::make_unique<EmaAccumulator>(std::move(accumulator));
  } else {
    LOGN_ASSIGN_OR_RETURN(EmaAccumulator accumulator,
                          EmaAccumulator::Create(runtime_->layout(), ema.momentum()));
    job->ema_ = std::make_unique<EmaAccumulator>(std::move(accumulator));
  }
  return job;
}

CalibrationJob::CalibrationJob(ServerCore* core, v1::CalibrateHeader header,
                               AccumulationMethod method)
    : core_(core), header_(std::move(header)), method_(method) {}

absl::Status CalibrationJob::AddRows(const float* data, int64_t rows) {
  const ServerCoreOptions& options = core_->options_;
  if (rows_ + rows > options.max_rows_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "calibration job would exceed ", options.max_rows_per_job,
        " rows; split it into several jobs"));
  }
  const LogitBatchView view{data, rows, core_->runtime_->layout().width()};
  absl::Status status = exact_ ? exact_->Add(view) : ema_->Add(view);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("batch ", batches_ + 1, ": ", status.message()));
  }
  rows_ += rows;
  return absl::OkStatus();
}

absl::Status CalibrationJob::AddLogits(const v1::LogitBatch& batch) {
  if (header_.source() != v1::CALIBRATION_SOURCE_LOGITS) {
    return absl::InvalidArgumentError(
        "this job's header declared source IMAGES, but a logit batch arrived");
  }
  if (batch.rows() > core_->options_.max_rows_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "logit batch of ", batch.rows(), " rows is over the limit of ",
        core_->options_.max_rows_per_batch, " rows per batch"));
  }
  const int32_t width = core_->runtime_->layout().width();
  if (batch.width() != width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch ", batches_ + 1, ": logit batch has width ", batch.width(), " but model '",
        core_->model_key_.name, "' has ", width, " logits per row (",
        core_->runtime_->layout().DebugString(), ")"));
  }
  LOGN_ASSIGN_OR_RETURN(std::vector<float> values, LogitsFromProto(batch));
  LOGN_RETURN_IF_ERROR(AddRows(values.data(), batch.rows()));
  return FinishBatch();
}

absl::Status CalibrationJob::AddImages(const v1::ImageBatch& batch) {
  if (header_.source() != v1::CALIBRATION_SOURCE_IMAGES) {
    return absl::InvalidArgumentError(
        "this job's header declared source LOGITS, but an image batch arrived");
  }
  if (batch.images().empty()) {
    return absl::InvalidArgumentError("image batch has no images");
  }
  const DetectorRuntime& runtime = *core_->runtime_;
  const int32_t max_images = core_->options_.runtime.limits.max_images_per_call;
  if (batch.images_size() > max_images) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "image batch of ", batch.images_size(), " images is over the limit of ", max_images,
        " per batch"));
  }
  std::vector<ImageSource> images;
  bool any_ground_truth = false;
  for (int i = 0; i < batch.images_size(); ++i) {
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(batch.images(i).image(), i));
    images.push_back(image);
    const v1::GroundTruth& gt = batch.images(i).ground_truth();
    if (gt.boxes_size() != gt.category_ids_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", i, ": ground truth has ", gt.boxes_size(), " boxes but ",
          gt.category_ids_size(), " category ids"));
    }
    any_ground_truth |= gt.boxes_size() > 0;
  }
  if (any_ground_truth && !runtime.has_classify_rois()) {
    return absl::FailedPreconditionError(
        "ground truth was sent, but the model has no classify_rois method to score sampled RoIs; "
        "send images without ground truth to use the model's own candidates");
  }
  LOGN_ASSIGN_OR_RETURN(DetectorRuntime::ForwardResult forward, runtime.Forward(images));
  // Rows of all images are validated together before any is accumulated, so a refused batch
  // changes nothing.
  std::vector<float> rows;
  int64_t num_rows = 0;
  if (!any_ground_truth) {
    for (const RawOutputs& raw : forward.images) {
      rows.insert(rows.end(), raw.logits.begin(), raw.logits.end());
      num_rows += raw.num_candidates;
    }
  } else {
    std::vector<std::vector<float>> rois(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      const RawOutputs& raw = forward.images[i];
      std::vector<float> proposals;
      if (raw.class_specific) {
        // A class-specific head refines one box per class; the class-agnostic proposal the RoI
        // head saw is not an output, so take each candidate's box for its best class.
        const int32_t classes = runtime.layout().num_classes;
        const int32_t width = runtime.layout().width();
        for (int64_t n = 0; n < raw.num_candidates; ++n) {
          int32_t best = 0;
          for (int32_t c = 1; c < classes; ++c) {
            if (raw.logits[n * width + runtime.layout().foreground_column(c)] >
                raw.logits[n * width + runtime.layout().foreground_column(best)]) {
              best = c;
            }
          }
          const float* box = &raw.boxes[(n * classes + best) * 4];
          proposals.insert(proposals.end(), box, box + 4);
        }
      } else {
        proposals = raw.boxes;
      }
      std::vector<float> gt;
      for (const v1::BoundingBox& b : batch.images(i).ground_truth().boxes()) {
        gt.insert(gt.end(), {b.x1(), b.y1(), b.x2(), b.y2()});
      }
      const v1::Image& image = batch.images(i).image();
      std::mt19937_64 rng(RoiSamplingSeed(
          core_->options_.sampling_seed,
          image.has_raw() ? image.raw().data() : image.encoded()));
      rois[i] = SampleRois(proposals, gt, core_->options_.sampling, rng);
    }
    LOGN_ASSIGN_OR_RETURN(DetectorRuntime::RoiResult scored, runtime.ClassifyRois(images, rois));
    for (const std::vector<float>& logits : scored.logits) {
      rows.insert(rows.end(), logits.begin(), logits.end());
    }
    num_rows = static_cast<int64_t>(rows.size()) / runtime.layout().width();
  }
  if (num_rows == 0) {
    // Nothing to accumulate from these images (no candidates): not an error.
    images_ += batch.images_size();
    return FinishBatch();
  }
  if (method_ == AccumulationMethod::kEma && num_rows < 2) {
    return absl::InvalidArgumentError(
        "EMA calibration needs at least 2 RoIs per batch; send more images per batch");
  }
  LOGN_RETURN_IF_ERROR(AddRows(rows.data(), num_rows));
  images_ += batch.images_size();
  return FinishBatch();
}

absl::Status CalibrationJob::FinishBatch() {
  ++batches_;
  if (checkpoint_every_ <= 0 || batches_ % checkpoint_every_ != 0 || rows_ == 0) {
    return absl::OkStatus();
  }
  JobCheckpoint checkpoint;
  checkpoint.model = core_->model_key_;
  checkpoint.job_id = header_.job_id();
  checkpoint.batches = batches_;
  checkpoint.images_seen = images_;
  checkpoint.source = header_.source() == v1::CALIBRATION_SOURCE_IMAGES ? VersionSource::kImages
                                                                        : VersionSource::kLogits;
  LOGN_ASSIGN_OR_RETURN(checkpoint.statistics, SnapshotStatistics());
  if (absl::Status s = core_->store_->PutCheckpoint(checkpoint); !s.ok()) {
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
  stats.provenance.model_name = core_->model_key_.name;
  stats.provenance.model_sha256 = core_->model_key_.sha256;
  stats.provenance.created_at = absl::Now();
  stats.provenance.description = header_.description();
  stats.provenance.images_seen = images_;
  stats.provenance.batches_seen = batches_;
  NewVersion version;
  version.model = core_->model_key_;
  version.statistics = std::move(stats);
  version.job_id = header_.job_id();
  version.description = header_.description();
  version.source = header_.source() == v1::CALIBRATION_SOURCE_IMAGES ? VersionSource::kImages
                                                                     : VersionSource::kLogits;
  version.partial = header_.partial();
  version.clear_job_checkpoint = !header_.job_id().empty();
  LOGN_ASSIGN_OR_RETURN(v1::VersionInfo stored,
                        core_->StoreVersion(version, header_.activate_on_commit()));
  committed_ = true;
  v1::CalibrateResponse response;
  *response.mutable_version() = std::move(stored);
  response.set_rows(rows_);
  response.set_images(images_);
  response.set_batches(batches_);
  return response;
}

absl::Status ServerCore::Apply(const v1::ApplyRequest& request, v1::ApplyResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  const int32_t width = runtime_->layout().width();
  if (request.logits().width() != width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit batch has width ", request.logits().width(), " but model '", model_key_.name,
        "' has ", width, " logits per row (", runtime_->layout().DebugString(), ")"));
  }
  if (request.logits().rows() > options_.max_rows_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Apply got ", request.logits().rows(), " rows; at most ", options_.max_rows_per_batch,
        " per request"));
  }
  LOGN_ASSIGN_OR_RETURN(std::vector<float> values, LogitsFromProto(request.logits()));
  const LogitBatchView view{values.data(), request.logits().rows(), width};
  LOGN_RETURN_IF_ERROR(ValidateLogitBatch(runtime_->layout(), view));
  google::protobuf::RepeatedPtrField<v1::CalibrationSetting> settings;
  *settings.Add() = request.calibration();
  LOGN_ASSIGN_OR_RETURN(Settings resolved,
                        ResolveSettings(settings, request.statistics(), request.has_statistics()));
  resolved.calibrators[0].ApplyUnchecked(values.data(), view.rows);
  response->set_statistics_version(resolved.statistics_version);
  if (request.include_scores()) {
    std::vector<float> scores(values.size());
    SoftmaxRows(values.data(), scores.data(), view.rows, width);
    LogitsToProto(scores, view.rows, width, response->mutable_scores());
  }
  LogitsToProto(values, view.rows, width, response->mutable_logits());
  return absl::OkStatus();
}

absl::Status ServerCore::Merge(const v1::MergeRequest& request, v1::MergeResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  if (request.versions_size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Merge needs at least two versions, got ", request.versions_size()));
  }
  if (request.partial() && request.activate()) {
    return absl::InvalidArgumentError("a partial merge cannot be activated");
  }
  std::vector<int64_t> parents(request.versions().begin(), request.versions().end());
  std::sort(parents.begin(), parents.end());
  for (size_t i = 0; i < parents.size(); ++i) {
    if (parents[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", parents[i], " is not a positive version number"));
    }
    if (i > 0 && parents[i] == parents[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "version ", parents[i], " is named twice: its rows would be counted twice"));
    }
  }
  ExactAccumulator merged(runtime_->layout());
  int64_t images = 0;
  int64_t batches = 0;
  for (int64_t parent : parents) {
    LOGN_ASSIGN_OR_RETURN(VersionRecord record,
                          store_->Get(model_key_, VersionSelector::Number(parent)));
    if (record.statistics.method != AccumulationMethod::kExact) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", parent, " holds EMA statistics; running averages cannot be merged "
          "exactly: calibrate the shards in exact mode"));
    }
    if (record.statistics.layout != runtime_->layout()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", parent, " has layout ", record.statistics.layout.DebugString(),
          ", model '", model_key_.name, "' has ", runtime_->layout().DebugString()));
    }
    LOGN_RETURN_IF_ERROR(merged.MergeSnapshot(record.statistics));
    images += record.statistics.provenance.images_seen;
    batches += record.statistics.provenance.batches_seen;
  }
  LOGN_ASSIGN_OR_RETURN(Statistics stats, merged.Snapshot());
  stats.provenance.model_name = model_key_.name;
  stats.provenance.model_sha256 = model_key_.sha256;
  stats.provenance.created_at = absl::Now();
  stats.provenance.description = request.description();
  stats.provenance.images_seen = images;
  stats.provenance.batches_seen = batches;
  NewVersion version;
  version.model = model_key_;
  version.statistics = std::move(stats);
  version.job_id = request.job_id();
  version.description = request.description();
  version.source = VersionSource::kMerge;
  version.parent_versions = parents;
  version.partial = request.partial();
  LOGN_ASSIGN_OR_RETURN(*response->mutable_version(), StoreVersion(version, request.activate()));
  return absl::OkStatus();
}

absl::StatusOr<v1::VersionInfo> ServerCore::StoreVersion(const NewVersion& version,
                                                         bool activate) {
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store_->Put(version));
  std::vector<std::string> aliases;
  if (activate) {
    const absl::Status activated = store_->Activate(model_key_, record.info.version).status();
    if (!activated.ok()) {
      return absl::Status(activated.code(),
                          absl::StrCat("version ", record.info.version,
                                       " was committed but could not be activated (activate it "
                                       "with Activate): ",
                                       activated.message()));
    }
    aliases.push_back(std::string(kActiveAlias));
  }
  v1::VersionInfo info;
  VersionInfoToProto(record.info, aliases, &info);
  return info;
}

absl::Status ServerCore::GetCalibrationJob(const v1::GetCalibrationJobRequest& request,
                                           v1::CalibrationJob* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  if (request.job_id().empty()) {
    return absl::InvalidArgumentError("GetCalibrationJob needs a job_id");
  }
  LOGN_ASSIGN_OR_RETURN(JobCheckpoint checkpoint,
                        store_->GetCheckpoint(model_key_, request.job_id()));
  response->set_job_id(checkpoint.job_id);
  response->set_batches(checkpoint.batches);
  response->set_rows(checkpoint.statistics.count);
  response->set_images(checkpoint.images_seen);
  response->set_source(checkpoint.source == VersionSource::kImages
                           ? v1::CALIBRATION_SOURCE_IMAGES
                           : v1::CALIBRATION_SOURCE_LOGITS);
  response->set_method(checkpoint.statistics.method == AccumulationMethod::kEma
                           ? v1::ACCUMULATION_METHOD_EMA
                           : v1::ACCUMULATION_METHOD_EXACT);
  TimeToProto(checkpoint.updated_at, response->mutable_checkpointed_at());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Statistics store

absl::StatusOr<std::vector<std::string>> ServerCore::AliasesOf(int64_t version) {
  LOGN_ASSIGN_OR_RETURN(std::vector<AliasInfo> aliases, store_->Aliases(model_key_));
  std::vector<std::string> names;
  for (const AliasInfo& alias : aliases) {
    if (alias.version == version) names.push_back(alias.alias);
  }
  return names;
}

absl::Status ServerCore::ListVersions(const v1::ListVersionsRequest& request,
                                      v1::ListVersionsResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  auto listed = store_->List(model_key_, request.page_token(), request.page_size());
  // A model nothing was stored for yet simply has no versions.
  if (absl::IsNotFound(listed.status()) && request.page_token().empty()) return absl::OkStatus();
  LOGN_ASSIGN_OR_RETURN(VersionPage page, std::move(listed));
  LOGN_ASSIGN_OR_RETURN(std::vector<AliasInfo> aliases, store_->Aliases(model_key_));
  for (const VersionInfo& info : page.versions) {
    std::vector<std::string> names;
    for (const AliasInfo& alias : aliases) {
      if (alias.version == info.version) names.push_back(alias.alias);
    }
    VersionInfoToProto(info, names, response->add_versions());
  }
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status ServerCore::GetVersion(const v1::GetVersionRequest& request,
                                    v1::GetVersionResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(request.version()));
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store_->Get(model_key_, selector));
  LOGN_ASSIGN_OR_RETURN(std::vector<std::string> aliases, AliasesOf(record.info.version));
  VersionInfoToProto(record.info, aliases, response->mutable_version());
  if (request.include_statistics()) {
    StatisticsToProto(record.statistics, response->mutable_statistics());
  }
  return absl::OkStatus();
}

absl::Status ServerCore::SetAlias(const v1::SetAliasRequest& request,
                                  v1::SetAliasResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  LOGN_RETURN_IF_ERROR(ValidateAliasName(request.alias()));
  if (request.version() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version must be > 0, got ", request.version()));
  }
  LOGN_ASSIGN_OR_RETURN(const int64_t previous,
                        store_->SetAlias(model_key_, request.alias(), request.version()));
  response->set_previous_version(previous);
  return absl::OkStatus();
}

absl::Status ServerCore::Activate(const v1::ActivateRequest& request,
                                  v1::ActivateResponse* response) {
  v1::SetAliasRequest set;
  set.set_model(request.model());
  set.set_alias(std::string(kActiveAlias));
  set.set_version(request.version());
  v1::SetAliasResponse set_response;
  LOGN_RETURN_IF_ERROR(SetAlias(set, &set_response));
  response->set_previous_version(set_response.previous_version());
  return absl::OkStatus();
}

absl::Status ServerCore::Rollback(const v1::RollbackRequest& request,
                                  v1::RollbackResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  auto rolled = store_->Rollback(model_key_);
  if (absl::IsNotFound(rolled.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nothing to roll back to: model '", model_key_.name, "' has no alias history (",
        rolled.status().message(), ")"));
  }
  LOGN_ASSIGN_OR_RETURN(int64_t active, std::move(rolled));
  response->set_active_version(active);
  return absl::OkStatus();
}

absl::Status ServerCore::DeleteVersion(const v1::DeleteVersionRequest& request,
                                       v1::DeleteVersionResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  LOGN_RETURN_IF_ERROR(store_->Delete(model_key_, request.version()));
  cache_->Clear();
  return absl::OkStatus();
}

absl::Status ServerCore::ExportVersion(const v1::ExportVersionRequest& request,
                                       v1::ExportVersionResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(request.version()));
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store_->Get(model_key_, selector));
  if (request.format() == v1::EXPORT_FORMAT_BINARY) {
    response->set_content(VersionToBinary(record));
    response->set_format(v1::EXPORT_FORMAT_BINARY);
  } else {
    response->set_content(VersionToJson(record));
    response->set_format(v1::EXPORT_FORMAT_JSON);
  }
  return absl::OkStatus();
}

absl::Status ServerCore::ImportVersion(const v1::ImportVersionRequest& request,
                                       v1::ImportVersionResponse* response) {
  LOGN_RETURN_IF_ERROR(CheckModel(request.model()));
  if (request.content().empty()) {
    return absl::InvalidArgumentError("ImportVersion needs content (an exported file)");
  }
  const bool json = request.format() == v1::EXPORT_FORMAT_JSON ||
                    (request.format() == v1::EXPORT_FORMAT_UNSPECIFIED &&
                     LooksLikeJson(request.content()));
  NewVersion version;
  if (json) {
    LOGN_ASSIGN_OR_RETURN(version, ParseImportJson(request.content(), model_key_));
  } else {
    LOGN_ASSIGN_OR_RETURN(VersionRecord record, VersionFromBinary(request.content()));
    version = ImportedVersion(record, model_key_);
  }
  if (!request.description().empty()) version.description = request.description();
  LOGN_ASSIGN_OR_RETURN(*response->mutable_version(), StoreVersion(version, request.activate()));
  return absl::OkStatus();
}

}  // namespace logn
