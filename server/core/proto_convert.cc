#include "server/core/proto_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"
#include "store/version_proto.h"

namespace logn {

absl::StatusOr<NamedSpec> SettingFromProto(const v1::CalibrationSetting& setting) {
  if (setting.calibration_method() == v1::CALIBRATION_METHOD_MODEL_DEFAULT) {
    return NamedSpec::ModelDefault(setting.name());
  }
  LOGN_ASSIGN_OR_RETURN(CalibrationSpec spec, SpecFromProto(setting));
  return NamedSpec{spec, setting.name()};
}

absl::StatusOr<VersionSelector> SelectorFromProto(const v1::StatisticsSelector& selector) {
  switch (selector.selector_case()) {
    case v1::StatisticsSelector::kVersion:
      if (selector.version() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("selector.version must be > 0, got ", selector.version()));
      }
      return VersionSelector::Number(selector.version());
    case v1::StatisticsSelector::kAlias:
      LOGN_RETURN_IF_ERROR(ValidateAliasName(selector.alias()));
      return VersionSelector::Alias(selector.alias());
    case v1::StatisticsSelector::SELECTOR_NOT_SET:
      break;
  }
  return VersionSelector::Active();
}

StatisticsChoice StatisticsChoiceFromProto(const v1::StatisticsSelector& selector, bool set) {
  StatisticsChoice choice;
  choice.selector = SelectorFromProto(selector);
  // An empty selector means "active", as an absent one does (older clients always send one).
  choice.explicitly_set = set && selector.selector_case() != v1::StatisticsSelector::SELECTOR_NOT_SET;
  return choice;
}

absl::StatusOr<PostprocessOptions> PostprocessFromProto(const v1::PostprocessOptions& proto) {
  PostprocessOptions options;
  if (proto.has_score_threshold()) options.score_threshold = proto.score_threshold();
  if (proto.has_nms_iou()) options.nms_iou_threshold = proto.nms_iou();
  if (proto.has_max_detections()) options.top_k = proto.max_detections();
  LOGN_RETURN_IF_ERROR(options.Validate());
  return options;
}

absl::StatusOr<ImageSource> ImageFromProto(const v1::Image& image, int index) {
  switch (image.data_case()) {
    case v1::Image::kEncoded:
      if (image.encoded().empty()) break;
      return ImageSource::Encoded(image.encoded());
    case v1::Image::kRaw: {
      const v1::RawImage& raw = image.raw();
      const int64_t expected = static_cast<int64_t>(raw.height()) * raw.width() * raw.channels();
      if (raw.height() <= 0 || raw.width() <= 0 || (raw.channels() != 3 && raw.channels() != 1) ||
          static_cast<int64_t>(raw.data().size()) != expected) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image ", index, ": raw image of ", raw.height(), "x", raw.width(), "x",
            raw.channels(), " needs positive sides, 1 or 3 channels and exactly h*w*c bytes; got ",
            raw.data().size(), " bytes"));
      }
      return ImageSource::Raw(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(raw.data().data()),
                              raw.data().size()),
          raw.height(), raw.width(), raw.channels());
    }
    case v1::Image::DATA_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("image ", index, " has no data: set encoded (JPEG/PNG bytes) or raw"));
}

absl::StatusOr<std::vector<float>> LogitsFromProto(const v1::LogitBatch& batch) {
  if (batch.width() <= 0 || batch.rows() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit batch needs rows > 0 and width > 0, got rows ", batch.rows(), ", width ",
        batch.width()));
  }
  if (batch.rows() > std::numeric_limits<int64_t>::max() / 4 / batch.width() ||
      static_cast<int64_t>(batch.data().size()) !=
          batch.rows() * batch.width() * static_cast<int64_t>(sizeof(float))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit batch of ", batch.rows(), " x ", batch.width(), " needs ",
        batch.rows() * batch.width() * 4, " bytes of float32 data, got ", batch.data().size()));
  }
  static_assert(sizeof(float) == 4, "IEEE-754 float32 expected");
  std::vector<float> values(static_cast<size_t>(batch.rows() * batch.width()));
  // Little-endian on the wire; every platform we build for is little-endian.
  std::memcpy(values.data(), batch.data().data(), batch.data().size());
  return values;
}

void LogitsToProto(const std::vector<float>& values, int64_t rows, int32_t width,
                   v1::LogitBatch* batch) {
  batch->set_rows(rows);
  batch->set_width(width);
  batch->set_data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

google::protobuf::Duration DurationToProto(absl::Duration duration) {
  return google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(duration));
}

absl::Duration DurationFromProto(const google::protobuf::Duration& duration) {
  return absl::Nanoseconds(google::protobuf::util::TimeUtil::DurationToNanoseconds(duration));
}

void VersionToProto(const VersionInfo& info, const std::vector<std::string>& aliases,
                    v1::StatisticsVersion* proto) {
  VersionInfoToProto(info, proto);
  proto->mutable_aliases()->Add(aliases.begin(), aliases.end());
}

void VersionToProto(const StoredVersion& stored, v1::StatisticsVersion* proto) {
  VersionToProto(stored.info, stored.aliases, proto);
}

absl::StatusOr<bool> FullViewFromProto(v1::VersionView view) {
  switch (view) {
    case v1::VERSION_VIEW_UNSPECIFIED:
    case v1::VERSION_VIEW_BASIC:
      return false;
    case v1::VERSION_VIEW_FULL:
      return true;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "view must be VERSION_VIEW_BASIC or VERSION_VIEW_FULL, got ", static_cast<int>(view)));
}

void CheckpointToProto(const JobCheckpoint& checkpoint, v1::CalibrationJob* proto) {
  proto->set_job_id(checkpoint.job_id);
  proto->set_batches_seen(checkpoint.batches);
  proto->set_rows_seen(checkpoint.statistics.count);
  proto->set_images_seen(checkpoint.images_seen);
  proto->set_source(VersionSourceToProto(checkpoint.source));
  proto->set_method(AccumulationMethodToProto(checkpoint.statistics.method));
  TimeToProto(checkpoint.updated_at, proto->mutable_checkpointed_at());
}

absl::StatusOr<VersionFilter> VersionFilterFromProto(const v1::ListVersionsRequest& request) {
  VersionFilter filter;
  if (request.has_job_id()) filter.job_id = request.job_id();
  if (request.has_source()) {
    LOGN_ASSIGN_OR_RETURN(filter.source, VersionSourceFromProto(request.source()));
  }
  if (request.has_partial()) filter.partial = request.partial();
  return filter;
}

absl::StatusOr<DetectQuery> DetectQueryFromProto(const v1::DetectRequest& request) {
  DetectQuery query;
  query.model = request.model_name();
  query.request_id = request.request_id();
  LOGN_ASSIGN_OR_RETURN(query.postprocess, PostprocessFromProto(request.postprocess()));
  query.include_uncalibrated_score = request.postprocess().include_uncalibrated_score();
  query.include_raw_candidates = request.postprocess().include_raw_candidates();
  if (request.calibrations().empty()) query.settings.push_back(NamedSpec::ModelDefault(""));
  for (const v1::CalibrationSetting& setting : request.calibrations()) {
    LOGN_ASSIGN_OR_RETURN(NamedSpec named, SettingFromProto(setting));
    query.settings.push_back(std::move(named));
  }
  query.statistics = StatisticsChoiceFromProto(request.selector(), request.has_selector());
  query.images.reserve(request.images_size());
  for (int i = 0; i < request.images_size(); ++i) {
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(request.images(i), i));
    query.images.push_back(image);
    query.image_ids.push_back(request.images(i).image_id());
  }
  return query;
}

namespace {

void DetectionToProto(const Detection& d, const v1::ModelManifest& manifest,
                      v1::Detection* proto) {
  proto->mutable_box()->set_x1(d.box[0]);
  proto->mutable_box()->set_y1(d.box[1]);
  proto->mutable_box()->set_x2(d.box[2]);
  proto->mutable_box()->set_y2(d.box[3]);
  proto->set_category_id(manifest.classes(d.label).id());
  proto->set_score(d.score);
}

}  // namespace

void RawCandidatesToProto(const RawOutputs& outputs, const std::string& image_id,
                          int32_t width, v1::DetectResponse* response) {
  v1::RawCandidates* raw = response->add_raw_candidates();
  raw->set_image_id(image_id);
  LogitsToProto(outputs.logits, outputs.num_candidates, width, raw->mutable_logits());
  raw->set_boxes(reinterpret_cast<const char*>(outputs.boxes.data()),
                 outputs.boxes.size() * sizeof(float));
  raw->set_box_layout(outputs.class_specific ? v1::BOX_LAYOUT_CLASS_SPECIFIC
                                             : v1::BOX_LAYOUT_CLASS_AGNOSTIC);
}

void DetectOutcomeToProto(const DetectOutcome& outcome, const v1::ModelManifest& manifest,
                          v1::DetectResponse* response) {
  response->set_request_id(outcome.request_id);
  response->set_version(outcome.statistics_version);
  for (const DetectOutcome::Setting& setting : outcome.results) {
    v1::CalibrationResult* result = response->add_results();
    *result->mutable_setting() = SpecToProto(setting.setting.spec, setting.setting.name);
    for (const DetectOutcome::Image& image : setting.images) {
      v1::ImageDetections* out = result->add_image_detections();
      out->set_image_id(image.image_id);
      for (size_t k = 0; k < image.detections.size(); ++k) {
        v1::Detection* detection = out->add_detections();
        DetectionToProto(image.detections[k], manifest, detection);
        if (!image.uncalibrated_scores.empty()) {
          detection->set_uncalibrated_score(image.uncalibrated_scores[k]);
        }
      }
    }
  }
  response->set_nonfinite_raw_candidates(outcome.dropped.nonfinite_raw_rows);
  response->set_nonfinite_calibrated_candidates(outcome.dropped.nonfinite_calibrated_rows);
  v1::ServerTiming* timing = response->mutable_timing();
  *timing->mutable_decode_duration() = DurationToProto(outcome.decode);
  *timing->mutable_inference_duration() = DurationToProto(outcome.inference);
  *timing->mutable_postprocess_duration() = DurationToProto(outcome.postprocess);
}

absl::StatusOr<std::vector<AnnotatedImageInput>> ImageBatchFromProto(const v1::ImageBatch& batch) {
  std::vector<AnnotatedImageInput> images;
  images.reserve(batch.annotated_images_size());
  for (int i = 0; i < batch.annotated_images_size(); ++i) {
    const v1::AnnotatedImage& annotated = batch.annotated_images(i);
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(annotated.image(), i));
    AnnotatedImageInput input{image, {}};
    const v1::GroundTruth& gt = annotated.ground_truth();
    if (gt.boxes_size() != gt.category_ids_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", i, ": ground truth has ", gt.boxes_size(), " boxes but ",
          gt.category_ids_size(), " category ids"));
    }
    for (const v1::BoundingBox& b : gt.boxes()) {
      input.ground_truth.insert(input.ground_truth.end(), {b.x1(), b.y1(), b.x2(), b.y2()});
    }
    if (annotated.has_weight()) {
      if (!std::isfinite(annotated.weight()) || annotated.weight() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image ", i, ": weight must be finite and >= 0 (its repeat factor), got ",
            annotated.weight()));
      }
      input.weight = annotated.weight();
    }
    images.push_back(std::move(input));
  }
  return images;
}

absl::StatusOr<CalibrationJobHeader> JobHeaderFromProto(const v1::CalibrateHeader& header) {
  CalibrationJobHeader out;
  out.model = header.model_name();
  absl::StatusOr<VersionSource> source = VersionSourceFromProto(header.source());
  if (!source.ok() || (*source != VersionSource::kLogits && *source != VersionSource::kImages)) {
    return absl::InvalidArgumentError(
        "calibrate header needs source VERSION_SOURCE_LOGITS or VERSION_SOURCE_IMAGES");
  }
  out.source = *source;
  out.description = header.description();
  out.job_id = header.job_id();
  out.activate = header.activate();
  out.partial = header.partial();
  out.checkpoint_every_batches = header.checkpoint_every_batches();
  out.resume = header.resume();
  out.resume_from_batch = header.resume_from_batch();
  if (header.has_ema()) {
    out.method = AccumulationMethod::kEma;
    out.ema_momentum = header.ema().momentum();
    if (header.ema().has_init()) out.ema_init = SelectorFromProto(header.ema().init());
    out.ema_from_prior = header.ema().from_prior();
    // Resuming starts from the checkpoint, so neither applies there.
    if (!out.resume && out.ema_init.has_value() == out.ema_from_prior) {
      return absl::InvalidArgumentError(
          out.ema_from_prior
              ? "EMA header sets both init and from_prior: choose one start"
              : "EMA needs a start: set ema.init to a stored version (an imported checkpoint's "
                "running statistics or an earlier pass), or ema.from_prior to start from mean 0 / "
                "variance 1 (with momentum m, n batches leave (1-m)^n of the weight on that "
                "start: 98 % for 330 batches at the official 5e-5)");
    }
  }
  const v1::RoiSamplerOptions& sampler = header.sampler();
  if (sampler.num_rois() != 0) out.sampler.num_rois = sampler.num_rois();
  if (sampler.has_positive_fraction()) out.sampler.positive_fraction = sampler.positive_fraction();
  if (sampler.has_positive_iou()) out.sampler.positive_iou = sampler.positive_iou();
  const absl::StatusOr<RoiSource> from = RoiSourceFromProto(sampler.from());
  if (!from.ok() || (*from != RoiSource::kUnspecified && *from != RoiSource::kProposals &&
                     *from != RoiSource::kCandidates)) {
    return absl::InvalidArgumentError(
        "sampler.from takes ROI_SOURCE_PROPOSALS or ROI_SOURCE_CANDIDATES (or nothing)");
  }
  out.sample_from = *from;
  if (!std::isfinite(header.rfs_threshold()) || header.rfs_threshold() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rfs_threshold must be finite and >= 0 (0: no repeat-factor weights), got ",
        header.rfs_threshold()));
  }
  out.rfs_threshold = header.rfs_threshold();
  return out;
}

std::vector<double> RowWeightsFromProto(const v1::LogitBatch& batch) {
  return std::vector<double>(batch.row_weights().begin(), batch.row_weights().end());
}

namespace {

void DriftScoresToProto(const DriftScores& scores, v1::DriftScore* proto) {
  proto->set_mean_shift(scores.mean_shift);
  proto->set_log_variance_ratio(scores.log_variance_ratio);
  proto->set_score(scores.score);
}

}  // namespace

void DriftReportToProto(const DriftStatusReport& report, const DriftMonitorOptions& options,
                        const v1::ModelManifest& manifest, int32_t top_k,
                        v1::GetDriftResponse* response) {
  response->set_state(report.state);
  response->set_reference_version(report.reference_version);
  if (report.reference_rows > 0) {
    v1::DriftWindow* window = response->mutable_reference_window();
    window->set_rows_seen(report.reference_rows);
    window->set_requests_seen(report.reference_requests);
    TimeToProto(report.reference_start, window->mutable_start_at());
    TimeToProto(report.reference_end, window->mutable_end_at());
  }
  v1::DriftWindow* live = response->mutable_live_window();
  live->set_rows_seen(report.live_rows);
  live->set_requests_seen(report.live_requests);
  TimeToProto(report.live_start, live->mutable_start_at());
  TimeToProto(report.live_end, live->mutable_end_at());
  if (options.window.rows > 0) {
    response->set_window_rows(options.window.rows);
  } else {
    *response->mutable_window_duration() = DurationToProto(options.window.duration);
  }
  response->set_sample_rate(options.sample_rate);
  if (!report.report.has_value()) return;
  const DriftReport& drift = *report.report;
  DriftScoresToProto(drift.overall.drift, response->mutable_overall());
  response->set_classes_scored(drift.overall.classes);
  static constexpr v1::FrequencyGroup kGroups[kDriftGroups] = {
      v1::FREQUENCY_GROUP_RARE, v1::FREQUENCY_GROUP_COMMON, v1::FREQUENCY_GROUP_FREQUENT};
  for (int32_t g = 0; g < kDriftGroups; ++g) {
    v1::GroupDrift* group = response->add_groups();
    group->set_frequency(kGroups[g]);
    group->set_classes(drift.groups[g].classes);
    DriftScoresToProto(drift.groups[g].drift, group->mutable_drift());
  }
  const int32_t shown = std::min<int32_t>(top_k, static_cast<int32_t>(drift.classes.size()));
  for (int32_t i = 0; i < shown; ++i) {
    const ClassDrift& c = drift.classes[i];
    const v1::ClassInfo& info = manifest.classes(c.class_index);
    v1::ClassDrift* proto = response->add_classes();
    proto->set_category_id(info.id());
    proto->set_name(info.name());
    proto->set_frequency(info.frequency());
    DriftScoresToProto(c.drift, proto->mutable_drift());
  }
}

}  // namespace logn
