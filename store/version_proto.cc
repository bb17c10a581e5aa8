#include "store/version_proto.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"
#include "store/stats_export.h"

namespace logn {

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
    case VersionSource::kServedTraffic:
      return v1::VERSION_SOURCE_SERVED_TRAFFIC;
  }
  return v1::VERSION_SOURCE_UNSPECIFIED;
}

absl::StatusOr<VersionSource> VersionSourceFromProto(v1::VersionSource source) {
  switch (source) {
    case v1::VERSION_SOURCE_LOGITS:
      return VersionSource::kLogits;
    case v1::VERSION_SOURCE_IMAGES:
      return VersionSource::kImages;
    case v1::VERSION_SOURCE_MERGE:
      return VersionSource::kMerge;
    case v1::VERSION_SOURCE_IMPORT:
      return VersionSource::kImport;
    case v1::VERSION_SOURCE_SERVED_TRAFFIC:
      return VersionSource::kServedTraffic;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("source must be VERSION_SOURCE_LOGITS, _IMAGES, _MERGE, _IMPORT or _SERVED_TRAFFIC, got ",
                   static_cast<int>(source)));
}

v1::RoiSource RoiSourceToProto(RoiSource source) {
  switch (source) {
    case RoiSource::kUnspecified:
      return v1::ROI_SOURCE_UNSPECIFIED;
    case RoiSource::kProposals:
      return v1::ROI_SOURCE_PROPOSALS;
    case RoiSource::kCandidates:
      return v1::ROI_SOURCE_CANDIDATES;
    case RoiSource::kDetections:
      return v1::ROI_SOURCE_DETECTIONS;
    case RoiSource::kLogits:
      return v1::ROI_SOURCE_LOGITS;
    case RoiSource::kImported:
      return v1::ROI_SOURCE_IMPORTED;
    case RoiSource::kMixed:
      return v1::ROI_SOURCE_MIXED;
  }
  return v1::ROI_SOURCE_UNSPECIFIED;
}

absl::StatusOr<RoiSource> RoiSourceFromProto(v1::RoiSource source) {
  switch (source) {
    case v1::ROI_SOURCE_UNSPECIFIED:
      return RoiSource::kUnspecified;
    case v1::ROI_SOURCE_PROPOSALS:
      return RoiSource::kProposals;
    case v1::ROI_SOURCE_CANDIDATES:
      return RoiSource::kCandidates;
    case v1::ROI_SOURCE_DETECTIONS:
      return RoiSource::kDetections;
    case v1::ROI_SOURCE_LOGITS:
      return RoiSource::kLogits;
    case v1::ROI_SOURCE_IMPORTED:
      return RoiSource::kImported;
    case v1::ROI_SOURCE_MIXED:
      return RoiSource::kMixed;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("roi_source must be ROI_SOURCE_PROPOSALS, _CANDIDATES, _DETECTIONS, _LOGITS, "
                   "_IMPORTED or _MIXED, got ",
                   static_cast<int>(source)));
}

void RoiSamplingToProto(const RoiSamplingRecord& record, v1::RoiSampling* proto) {
  proto->Clear();
  proto->set_roi_source(RoiSourceToProto(record.roi_source));
  proto->set_num_rois(record.num_rois);
  proto->set_positive_fraction(record.positive_fraction);
  proto->set_positive_iou(record.positive_iou);
  proto->set_images(record.images);
  proto->set_rois(record.rois);
  proto->set_positive_rois(record.positive_rois);
  proto->set_rfs_threshold(record.rfs_threshold);
}

absl::StatusOr<RoiSamplingRecord> RoiSamplingFromProto(const v1::RoiSampling& proto) {
  RoiSamplingRecord record;
  LOGN_ASSIGN_OR_RETURN(record.roi_source, RoiSourceFromProto(proto.roi_source()));
  record.num_rois = proto.num_rois();
  record.positive_fraction = proto.positive_fraction();
  record.positive_iou = proto.positive_iou();
  record.images = proto.images();
  record.rois = proto.rois();
  record.positive_rois = proto.positive_rois();
  record.rfs_threshold = proto.rfs_threshold();
  return record;
}

std::string CalibrationProfileToBytes(const v1::CalibrationProfile& profile) {
  v1::CalibrationProfile without_set_at = profile;
  without_set_at.clear_set_at();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    without_set_at.SerializeToCodedStream(&out);
  }  // flushed into `bytes`
  return bytes;
}

namespace {

// INVALID_ARGUMENT (and `proto` cleared) unless `bytes` parse as a CalibrationProfile.
absl::Status ParseCalibrationProfile(absl::string_view bytes, v1::CalibrationProfile* proto) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !proto->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    proto->Clear();
    return absl::InvalidArgumentError(absl::StrCat(
        bytes.size(), " bytes that are not a logn.v1.CalibrationProfile message"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCalibrationProfileBytes(absl::string_view bytes) {
  v1::CalibrationProfile profile;
  return ParseCalibrationProfile(bytes, &profile);
}

absl::Status CalibrationProfileToProto(const CalibrationProfileRecord& record,
                                       v1::CalibrationProfile* proto) {
  absl::Status status = ParseCalibrationProfile(record.profile, proto);
  TimeToProto(record.set_at, proto->mutable_set_at());
  return status;
}

void VersionInfoToProto(const VersionInfo& info, v1::StatisticsVersion* proto) {
  proto->Clear();
  proto->set_format(std::string(kVersionExportFormat));
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
  proto->mutable_parent_versions()->Add(info.parent_versions.begin(), info.parent_versions.end());
  proto->set_payload_sha256(info.payload_sha256);
  proto->set_partial(info.partial);
  if (info.sampling.has_value()) RoiSamplingToProto(*info.sampling, proto->mutable_sampling());
  if (info.calibration_profile.has_value()) {
    // A VersionInfo the store returned always holds bytes that parse (DecodeVersionRow).
    CalibrationProfileToProto(*info.calibration_profile, proto->mutable_calibration_profile())
        .IgnoreError();
  }
}

}  // namespace logn
