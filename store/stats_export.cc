#include "store/stats_export.h"

#include <google/protobuf/util/time_util.h>

#include <limits>

#include "absl/strings/str_cat.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "logn/v1/store.pb.h"
#include "store/version_proto.h"

namespace logn {
namespace {

// The export file: the version resource with its statistics (and no aliases: they belong to
// the exporting store).
void ToProto(const VersionRecord& record, v1::StatisticsVersion* p) {
  VersionInfoToProto(record.info, p);
  StatisticsToProto(record.statistics, p->mutable_statistics());
}

absl::StatusOr<VersionRecord> FromProto(const v1::StatisticsVersion& p) {
  if (p.format() != kVersionExportFormat) {
    return absl::InvalidArgumentError(absl::StrCat("not a statistics version export: format is '",
                                                   p.format(), "', expected '",
                                                   kVersionExportFormat, "'"));
  }
  VersionRecord record;
  VersionInfo& info = record.info;
  info.model = ModelKey{p.model().name(), p.model().sha256()};
  LOGN_RETURN_IF_ERROR(info.model.Validate());
  info.version = p.version();
  if (info.version <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("exported version number ", info.version,
                                                   " is not positive"));
  }
  info.created_at = absl::FromUnixMicros(
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(p.created_at()));
  info.job_id = p.job_id();
  info.description = p.description();
  absl::StatusOr<VersionSource> source = VersionSourceFromProto(p.source());
  if (!source.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("export has no valid source (got ", static_cast<int>(p.source()), ")"));
  }
  info.source = *source;
  info.rows_seen = p.rows_seen();
  info.images_seen = p.images_seen();
  info.parent_versions.assign(p.parent_versions().begin(), p.parent_versions().end());
  info.payload_sha256 = p.payload_sha256();
  info.partial = p.partial();
  if (p.has_sampling()) {
    absl::StatusOr<RoiSamplingRecord> sampling = RoiSamplingFromProto(p.sampling());
    if (!sampling.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export has an invalid sampling record: ", sampling.status().message()));
    }
    info.sampling = *sampling;
  }
  if (p.has_calibration_profile()) {
    // Kept as the store keeps it: the message without set_at, and when it was set.
    info.calibration_profile = CalibrationProfileRecord{
        CalibrationProfileToBytes(p.calibration_profile()),
        absl::FromUnixMicros(google::protobuf::util::TimeUtil::TimestampToMicroseconds(
            p.calibration_profile().set_at()))};
  }
  if (!p.has_statistics()) return absl::InvalidArgumentError("export has no statistics");
  LOGN_ASSIGN_OR_RETURN(record.statistics, StatisticsFromProto(p.statistics()));
  // The derived fields always follow the snapshot; the checksum proves it is the one exported.
  info.method = record.statistics.method;
  info.momentum = record.statistics.momentum;
  const std::string actual = Sha256Hex(StatisticsToBinary(record.statistics));
  if (actual != info.payload_sha256) {
    return absl::DataLossError(absl::StrCat(
        "exported version ", info.version, " of ", info.model.DebugString(),
        " does not match its checksum (payload sha256 ", actual, " != recorded ",
        info.payload_sha256, "): the file is damaged or was edited"));
  }
  return record;
}

}  // namespace

std::string VersionToJson(const VersionRecord& record) {
  v1::StatisticsVersion proto;
  ToProto(record, &proto);
  return MessageToFileJson(proto);
}

std::string VersionToBinary(const VersionRecord& record) {
  v1::StatisticsVersion proto;
  ToProto(record, &proto);
  return proto.SerializeAsString();
}

absl::StatusOr<VersionRecord> VersionFromJson(absl::string_view json) {
  v1::StatisticsVersion proto;
  LOGN_RETURN_IF_ERROR(MessageFromFileJson(json, "version export", &proto));
  return FromProto(proto);
}

absl::StatusOr<VersionRecord> VersionFromBinary(absl::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("version export is larger than 2 GiB");
  }
  v1::StatisticsVersion proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        "version export is not a valid logn.v1.StatisticsVersion message");
  }
  return FromProto(proto);
}

NewVersion ImportedVersion(const VersionRecord& record, const ModelKey& model) {
  NewVersion v;
  v.model = model;
  v.statistics = record.statistics;
  v.job_id = record.info.job_id;
  v.description = record.info.description;
  // Served traffic stays served traffic through export and import: a copy is no more
  // calibration statistics than the original (and no easier to alias).
  v.source = record.info.source == VersionSource::kServedTraffic ? VersionSource::kServedTraffic
                                                                  : VersionSource::kImport;
  v.partial = record.info.partial;
  v.created_at = record.info.created_at;
  // The file's record describes the rows, wherever they are stored now. One that names no
  // source keeps its counts and is marked imported; without one, Put marks the version
  // imported.
  v.sampling = record.info.sampling;
  if (v.sampling.has_value() && v.sampling->roi_source == RoiSource::kUnspecified) {
    v.sampling->roi_source = RoiSource::kImported;
  }
  // The default setting chosen for these statistics goes with them; it is set (set_at) when
  // Put stores it.
  if (record.info.calibration_profile.has_value()) {
    v.calibration_profile = record.info.calibration_profile->profile;
  }
  return v;
}

absl::StatusOr<NewVersion> ParseImportJson(absl::string_view json, const ModelKey& model) {
  absl::StatusOr<VersionRecord> envelope = VersionFromJson(json);
  if (envelope.ok()) return ImportedVersion(*envelope, model);
  if (absl::IsDataLoss(envelope.status())) return envelope.status();
  absl::StatusOr<Statistics> bare = StatisticsFromJson(json);
  if (!bare.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "neither a version export (", envelope.status().message(),
        ") nor a logn.v1.Statistics JSON (", bare.status().message(), ")"));
  }
  NewVersion v;
  v.model = model;
  v.statistics = *std::move(bare);
  v.description = v.statistics.provenance.description;
  v.source = VersionSource::kImport;
  return v;
}

absl::StatusOr<NewVersion> ParseImport(absl::string_view content, const ModelKey& model) {
  const size_t first = content.find_first_not_of(" \t\r\n");
  if (first != absl::string_view::npos && content[first] == '{') {
    return ParseImportJson(content, model);
  }
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, VersionFromBinary(content));
  return ImportedVersion(record, model);
}

}  // namespace logn
