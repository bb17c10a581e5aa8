#include "server/core/proto_convert.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"

namespace logn {

absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting) {
  CalibrationSpec spec;
  switch (setting.method()) {
    case v1::CALIBRATION_METHOD_UNSPECIFIED:
    case v1::CALIBRATION_METHOD_LOGN:
      spec.method = CalibrationMethod::kLogN;
      break;
    case v1::CALIBRATION_METHOD_NONE:
      spec.method = CalibrationMethod::kNone;
      break;
    case v1::CALIBRATION_METHOD_LOGA:
      spec.method = CalibrationMethod::kLogA;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown calibration method ", static_cast<int>(setting.method())));
  }
  const v1::LogNParams& p = setting.logn();
  LogNOptions& o = spec.logn;
  if (p.has_use_mean()) o.use_mean = p.use_mean();
  if (p.has_use_std()) o.use_std = p.use_std();
  if (p.has_use_beta()) o.use_beta = p.use_beta();
  switch (p.beta_policy()) {
    case v1::BETA_POLICY_UNSPECIFIED:
    case v1::BETA_POLICY_MIN_FOREGROUND_MEAN:
      o.beta_policy = BetaPolicy::kMinForegroundMean;
      break;
    case v1::BETA_POLICY_AVG_FOREGROUND_MEAN:
      o.beta_policy = BetaPolicy::kAvgForegroundMean;
      break;
    case v1::BETA_POLICY_MAX_FOREGROUND_MEAN:
      o.beta_policy = BetaPolicy::kMaxForegroundMean;
      break;
    case v1::BETA_POLICY_BACKGROUND_MEAN:
      o.beta_policy = BetaPolicy::kBackgroundMean;
      break;
    case v1::BETA_POLICY_CONSTANT:
      o.beta_policy = BetaPolicy::kConstant;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown beta policy ", static_cast<int>(p.beta_policy())));
  }
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
  switch (spec.method) {
    case CalibrationMethod::kNone:
      setting.set_method(v1::CALIBRATION_METHOD_NONE);
      return setting;
    case CalibrationMethod::kLogA:
      setting.set_method(v1::CALIBRATION_METHOD_LOGA);
      setting.mutable_loga()->set_tau(spec.loga.tau);
      return setting;
    case CalibrationMethod::kLogN:
      break;
  }
  setting.set_method(v1::CALIBRATION_METHOD_LOGN);
  v1::LogNParams* p = setting.mutable_logn();
  p->set_use_mean(spec.logn.use_mean);
  p->set_use_std(spec.logn.use_std);
  p->set_use_beta(spec.logn.use_beta);
  switch (spec.logn.beta_policy) {
    case BetaPolicy::kMinForegroundMean:
      p->set_beta_policy(v1::BETA_POLICY_MIN_FOREGROUND_MEAN);
      break;
    case BetaPolicy::kAvgForegroundMean:
      p->set_beta_policy(v1::BETA_POLICY_AVG_FOREGROUND_MEAN);
      break;
    case BetaPolicy::kMaxForegroundMean:
      p->set_beta_policy(v1::BETA_POLICY_MAX_FOREGROUND_MEAN);
      break;
    case BetaPolicy::kBackgroundMean:
      p->set_beta_policy(v1::BETA_POLICY_BACKGROUND_MEAN);
      break;
    case BetaPolicy::kConstant:
      p->set_beta_policy(v1::BETA_POLICY_CONSTANT);
      break;
  }
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
  switch (info.source) {
    case VersionSource::kLogits:
      proto->set_source(v1::VERSION_SOURCE_LOGITS);
      break;
    case VersionSource::kImages:
      proto->set_source(v1::VERSION_SOURCE_IMAGES);
      break;
    case VersionSource::kMerge:
      proto->set_source(v1::VERSION_SOURCE_MERGE);
      break;
    case VersionSource::kImport:
      proto->set_source(v1::VERSION_SOURCE_IMPORT);
      break;
  }
  proto->set_rows_seen(info.rows_seen);
  proto->set_images_seen(info.images_seen);
  proto->set_method(info.method == AccumulationMethod::kEma ? v1::ACCUMULATION_METHOD_EMA
                                                            : v1::ACCUMULATION_METHOD_EXACT);
  proto->set_momentum(info.momentum);
  for (int64_t parent : info.parent_versions) proto->add_parent_versions(parent);
  proto->set_payload_sha256(info.payload_sha256);
  proto->set_partial(info.partial);
  for (const std::string& alias : aliases) proto->add_aliases(alias);
}

}  // namespace logn
