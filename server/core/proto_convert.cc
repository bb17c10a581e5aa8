#include "server/core/proto_convert.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"

namespace logn {

absl::StatusOr<CalibrationMethod> CalibrationMethodFromProto(v1::CalibrationMethod method) {
  switch (method) {
    case v1::CALIBRATION_METHOD_UNSPECIFIED:
    case v1::CALIBRATION_METHOD_LOGN:
      return CalibrationMethod::kLogN;
    case v1::CALIBRATION_METHOD_NONE:
      return CalibrationMethod::kNone;
    case v1::CALIBRATION_METHOD_LOGA:
      return CalibrationMethod::kLogA;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown calibration method ", static_cast<int>(method)));
}

v1::CalibrationMethod CalibrationMethodToProto(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kNone:
      return v1::CALIBRATION_METHOD_NONE;
    case CalibrationMethod::kLogA:
      return v1::CALIBRATION_METHOD_LOGA;
    case CalibrationMethod::kLogN:
      break;
  }
  return v1::CALIBRATION_METHOD_LOGN;
}

absl::StatusOr<BetaPolicy> BetaPolicyFromProto(v1::BetaPolicy policy) {
  switch (policy) {
    case v1::BETA_POLICY_UNSPECIFIED:
    case v1::BETA_POLICY_MIN_FOREGROUND_MEAN:
      return BetaPolicy::kMinForegroundMean;
    case v1::BETA_POLICY_AVG_FOREGROUND_MEAN:
      return BetaPolicy::kAvgForegroundMean;
    case v1::BETA_POLICY_MAX_FOREGROUND_MEAN:
      return BetaPolicy::kMaxForegroundMean;
    case v1::BETA_POLICY_BACKGROUND_MEAN:
      return BetaPolicy::kBackgroundMean;
    case v1::BETA_POLICY_CONSTANT:
      return BetaPolicy::kConstant;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown beta policy ", static_cast<int>(policy)));
}

v1::BetaPolicy BetaPolicyToProto(BetaPolicy policy) {
  switch (policy) {
    case BetaPolicy::kAvgForegroundMean:
      return v1::BETA_POLICY_AVG_FOREGROUND_MEAN;
    case BetaPolicy::kMaxForegroundMean:
      return v1::BETA_POLICY_MAX_FOREGROUND_MEAN;
    case BetaPolicy::kBackgroundMean:
      return v1::BETA_POLICY_BACKGROUND_MEAN;
    case BetaPolicy::kConstant:
      return v1::BETA_POLICY_CONSTANT;
    case BetaPolicy::kMinForegroundMean:
      break;
  }
  return v1::BETA_POLICY_MIN_FOREGROUND_MEAN;
}

v1::AccumulationMethod AccumulationMethodToProto(AccumulationMethod method) {
  return method == AccumulationMethod::kEma ? v1::ACCUMULATION_METHOD_EMA
                                            : v1::ACCUMULATION_METHOD_EXACT;
}

v1::VersionSource VersionSourceToProto(VersionSource source) {
  switch (source) {
    case VersionSource::kLogits:
      return v1::VERSION_SOURCE_LOGITS;
    case VersionSource::kImages:
      return v1::VERSION_SOURCE_IMAGES;
    case VersionSource::kMerge:
      return v1::VERSION_SOURCE_MERGE;
    case VersionSource::kImport:
      return v1::VERSION_SOURCE_IMPORT;
  }
  return v1::VERSION_SOURCE_UNSPECIFIED;
}

absl::StatusOr<VersionSource> CalibrationSourceFromProto(v1::CalibrationSource source) {
  switch (source) {
    case v1::CALIBRATION_SOURCE_LOGITS:
      return VersionSource::kLogits;
    case v1::CALIBRATION_SOURCE_IMAGES:
      return VersionSource::kImages;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      "calibrate header needs source CALIBRATION_SOURCE_LOGITS or CALIBRATION_SOURCE_IMAGES");
}

v1::CalibrationSource CalibrationSourceToProto(VersionSource source) {
  return source == VersionSource::kImages ? v1::CALIBRATION_SOURCE_IMAGES
                                          : v1::CALIBRATION_SOURCE_LOGITS;
}

absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting) {
  CalibrationSpec spec;
  LOGN_ASSIGN_OR_RETURN(spec.method, CalibrationMethodFromProto(setting.method()));
  const v1::LogNParams& p = setting.logn();
  LogNOptions& o = spec.logn;
  if (p.has_use_mean()) o.use_mean = p.use_mean();
  if (p.has_use_std()) o.use_std = p.use_std();
  if (p.has_use_beta()) o.use_beta = p.use_beta();
  LOGN_ASSIGN_OR_RETURN(o.beta_policy, BetaPolicyFromProto(p.beta_policy()));
  o.beta_constant = p.beta_constant();
  if (p.has_epsilon()) o.epsilon = p.epsilon();
  o.official_formula = p.official_formula();
  o.normalize_background = p.normalize_background();
  if (setting.loga().has_tau()) spec.loga.tau = setting.loga().tau();
  return spec;
}

v1::CalibrationSetting SpecToProto(const CalibrationSpec& spec, const std::string& name) {
  v1::CalibrationSetting setting;
  setting.set_name(name);
  setting.set_method(CalibrationMethodToProto(spec.method));
  switch (spec.method) {
    case CalibrationMethod::kNone:
      return setting;
    case CalibrationMethod::kLogA:
      setting.mutable_loga()->set_tau(spec.loga.tau);
      return setting;
    case CalibrationMethod::kLogN:
      break;
  }
  v1::LogNParams* p = setting.mutable_logn();
  p->set_use_mean(spec.logn.use_mean);
  p->set_use_std(spec.logn.use_std);
  p->set_use_beta(spec.logn.use_beta);
  p->set_beta_policy(BetaPolicyToProto(spec.logn.beta_policy));
  p->set_beta_constant(spec.logn.beta_constant);
  p->set_epsilon(spec.logn.epsilon);
  p->set_official_formula(spec.logn.official_formula);
  p->set_normalize_background(spec.logn.normalize_background);
  return setting;
}

absl::StatusOr<VersionSelector> SelectorFromProto(const v1::StatisticsSelector& selector) {
  switch (selector.selector_case()) {
    case v1::StatisticsSelector::kVersion:
      if (selector.version() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("statistics.version must be > 0, got ", selector.version()));
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
  choice.explicitly_set = set;
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

void TimeToProto(absl::Time time, google::protobuf::Timestamp* proto) {
  const int64_t seconds = absl::ToUnixSeconds(time);
  proto->set_seconds(seconds);
  proto->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
}

void VersionInfoToProto(const VersionInfo& info, const std::vector<std::string>& aliases,
                        v1::VersionInfo* proto) {
  proto->mutable_model()->set_name(info.model.name);
  proto->mutable_model()->set_sha256(info.model.sha256);
  proto->set_version(info.version);
  TimeToProto(info.created_at, proto->mutable_created_at());
  proto->set_job_id(info.job_id);
  proto->set_description(info.description);
  proto->set_source(VersionSourceToProto(info.source));
  proto->set_rows_seen(info.rows_seen);
  proto->set_images_seen(info.images_seen);
  proto->set_method(AccumulationMethodToProto(info.method));
  proto->set_momentum(info.momentum);
  for (int64_t parent : info.parent_versions) proto->add_parent_versions(parent);
  proto->set_payload_sha256(info.payload_sha256);
  proto->set_partial(info.partial);
  for (const std::string& alias : aliases) proto->add_aliases(alias);
}

void CheckpointToProto(const JobCheckpoint& checkpoint, v1::CalibrationJob* proto) {
  proto->set_job_id(checkpoint.job_id);
  proto->set_batches(checkpoint.batches);
  proto->set_rows(checkpoint.statistics.count);
  proto->set_images(checkpoint.images_seen);
  proto->set_source(CalibrationSourceToProto(checkpoint.source));
  proto->set_method(AccumulationMethodToProto(checkpoint.statistics.method));
  TimeToProto(checkpoint.updated_at, proto->mutable_checkpointed_at());
}

absl::StatusOr<DetectQuery> DetectQueryFromProto(const v1::DetectRequest& request) {
  DetectQuery query;
  query.model = request.model();
  query.request_id = request.request_id();
  LOGN_ASSIGN_OR_RETURN(query.postprocess, PostprocessFromProto(request.postprocess()));
  query.include_uncalibrated_score = request.postprocess().include_uncalibrated_score();
  if (request.calibrations().empty()) query.settings.push_back(NamedSpec{CalibrationSpec(), ""});
  for (const v1::CalibrationSetting& setting : request.calibrations()) {
    LOGN_ASSIGN_OR_RETURN(CalibrationSpec spec, SpecFromProto(setting));
    query.settings.push_back(NamedSpec{spec, setting.name()});
  }
  query.statistics = StatisticsChoiceFromProto(request.statistics(), request.has_statistics());
  query.images.reserve(request.images_size());
  for (int i = 0; i < request.images_size(); ++i) {
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(request.images(i), i));
    query.images.push_back(image);
    query.image_ids.push_back(request.images(i).id());
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

void DetectOutcomeToProto(const DetectOutcome& outcome, const v1::ModelManifest& manifest,
                          v1::DetectResponse* response) {
  response->set_request_id(outcome.request_id);
  response->set_statistics_version(outcome.statistics_version);
  for (const DetectOutcome::Setting& setting : outcome.results) {
    v1::CalibrationResult* result = response->add_results();
    *result->mutable_setting() = SpecToProto(setting.setting.spec, setting.setting.name);
    for (const DetectOutcome::Image& image : setting.images) {
      v1::ImageDetections* out = result->add_images();
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
  v1::ServerTiming* timing = response->mutable_timing();
  timing->set_decode_seconds(absl::ToDoubleSeconds(outcome.decode));
  timing->set_inference_seconds(absl::ToDoubleSeconds(outcome.inference));
  timing->set_postprocess_seconds(absl::ToDoubleSeconds(outcome.postprocess));
}

absl::StatusOr<std::vector<AnnotatedImageInput>> ImageBatchFromProto(const v1::ImageBatch& batch) {
  std::vector<AnnotatedImageInput> images;
  images.reserve(batch.images_size());
  for (int i = 0; i < batch.images_size(); ++i) {
    LOGN_ASSIGN_OR_RETURN(ImageSource image, ImageFromProto(batch.images(i).image(), i));
    AnnotatedImageInput input{image, {}};
    const v1::GroundTruth& gt = batch.images(i).ground_truth();
    if (gt.boxes_size() != gt.category_ids_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", i, ": ground truth has ", gt.boxes_size(), " boxes but ",
          gt.category_ids_size(), " category ids"));
    }
    for (const v1::BoundingBox& b : gt.boxes()) {
      input.ground_truth.insert(input.ground_truth.end(), {b.x1(), b.y1(), b.x2(), b.y2()});
    }
    images.push_back(std::move(input));
  }
  return images;
}

absl::StatusOr<CalibrationJobHeader> JobHeaderFromProto(const v1::CalibrateHeader& header) {
  CalibrationJobHeader out;
  out.model = header.model();
  LOGN_ASSIGN_OR_RETURN(out.source, CalibrationSourceFromProto(header.source()));
  out.description = header.description();
  out.job_id = header.job_id();
  out.activate_on_commit = header.activate_on_commit();
  out.partial = header.partial();
  out.checkpoint_every_batches = header.checkpoint_every_batches();
  out.resume = header.resume();
  out.resume_from_batch = header.resume_from_batch();
  if (header.has_ema()) {
    out.method = AccumulationMethod::kEma;
    out.ema_momentum = header.ema().momentum();
    if (header.ema().has_init()) out.ema_init = SelectorFromProto(header.ema().init());
  }
  return out;
}

}  // namespace logn
