#include "store/version_proto.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "calibration/statistics_codec.h"
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
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("source must be VERSION_SOURCE_LOGITS, _IMAGES, _MERGE or _IMPORT, got ",
                   static_cast<int>(source)));
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
}

}  // namespace logn
