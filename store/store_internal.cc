#include "store/store_internal.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "store/version_proto.h"

namespace logn {
namespace store_internal {
namespace {

constexpr size_t kMaxJobIdBytes = 256;
constexpr size_t kMaxDescriptionBytes = 64 * 1024;
constexpr size_t kMaxParents = 4096;

// The snapshot belongs to `model`: its provenance, where set, names that model.
absl::Status CheckProvenance(const ModelKey& model, const Statistics& statistics) {
  if (absl::Status s = statistics.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics for ", model.DebugString(), " do not validate: ", s.message()));
  }
  const StatisticsProvenance& prov = statistics.provenance;
  if (!prov.model_sha256.empty() && prov.model_sha256 != model.sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "statistics were computed for model sha256 ", prov.model_sha256, ", not for ",
        model.DebugString(), " (sha256 ", model.sha256,
        "): statistics are never applied to another model"));
  }
  if (!prov.model_name.empty() && prov.model_name != model.name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "statistics were computed for model '", prov.model_name, "', not for '", model.name,
        "'"));
  }
  return absl::OkStatus();
}

// The limits on what a version records besides its snapshot.
absl::Status CheckVersionFields(const NewVersion& v) {
  if (v.job_id.size() > kMaxJobIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id is ", v.job_id.size(), " bytes; the limit is ", kMaxJobIdBytes));
  }
  if (v.description.size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError(absl::StrCat("description is ", v.description.size(),
                                                   " bytes; the limit is ",
                                                   kMaxDescriptionBytes));
  }
  if (v.parent_versions.size() > kMaxParents) {
    return absl::InvalidArgumentError(absl::StrCat(
        "too many parent versions (", v.parent_versions.size(), " > ", kMaxParents, ")"));
  }
  for (int64_t p : v.parent_versions) {
    if (p <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("parent version ", p, " is not positive"));
    }
  }
  if (v.source == VersionSource::kMerge && v.parent_versions.empty()) {
    return absl::InvalidArgumentError("a merge version needs its parent versions");
  }
  if (v.created_at == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError("created_at is infinite");
  }
  // A merge's record is derived from its parents (StatsStore::Put): what was set is ignored.
  if (v.sampling.has_value() && v.source != VersionSource::kMerge) {
    LOGN_RETURN_IF_ERROR(v.sampling->Validate());
  }
  return absl::OkStatus();
}

// `what` names the payload in messages ("version 3 of m@…", "checkpoint of job j of m@…").
absl::StatusOr<Statistics> DecodeStatistics(absl::string_view what, absl::string_view payload,
                                            absl::string_view expected_sha256) {
  const std::string actual = Sha256Hex(payload);
  if (actual != expected_sha256) {
    return absl::DataLossError(absl::StrCat(what, " is corrupt: payload sha256 ", actual,
                                            " != recorded ", expected_sha256));
  }
  absl::StatusOr<Statistics> stats = StatisticsFromBinary(payload);
  if (!stats.ok()) {
    return absl::DataLossError(
        absl::StrCat(what, " does not decode: ", stats.status().message()));
  }
  return stats;
}

std::string CheckpointName(const ModelKey& model, absl::string_view job_id) {
  return absl::StrCat("checkpoint of job '", job_id, "' of ", model.DebugString());
}

// A stored enum name that does not parse: the row was damaged outside the store.
absl::Status CorruptColumn(absl::string_view column, absl::string_view value,
                           absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("stored ", column, " '", value, "' of the ", what, " is corrupt"));
}

}  // namespace

std::string VersionName(const ModelKey& model, int64_t version) {
  return absl::StrCat("version ", version, " of ", model.DebugString());
}

absl::Status CheckCalibrationProfile(absl::string_view profile, absl::string_view what) {
  if (profile.size() > kMaxCalibrationProfileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the calibration profile of ", what, " is ",
                                                   profile.size(), " bytes; the limit is ",
                                                   kMaxCalibrationProfileBytes));
  }
  if (absl::Status s = CheckCalibrationProfileBytes(profile); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the calibration profile of ", what, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckProfileTarget(bool partial, absl::string_view what) {
  if (!partial) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, " is partial (one shard of a job) and cannot have a calibration profile: merge the "
      "shards and give the merged version the profile"));
}

std::optional<ProfileRow> EncodeProfile(const std::optional<CalibrationProfileRecord>& record) {
  if (!record.has_value()) return std::nullopt;
  return ProfileRow{record->profile, ToMicros(record->set_at)};
}

absl::StatusOr<std::optional<CalibrationProfileRecord>> DecodeProfile(
    const std::optional<ProfileRow>& row, absl::string_view what) {
  if (!row.has_value()) return std::optional<CalibrationProfileRecord>();
  if (absl::Status s = CheckCalibrationProfileBytes(row->profile); !s.ok()) {
    return absl::DataLossError(absl::StrCat("stored calibration profile of the ", what,
                                            " is corrupt: ", s.message()));
  }
  return std::optional<CalibrationProfileRecord>(
      CalibrationProfileRecord{row->profile, FromMicros(row->set_at_us)});
}

absl::StatusOr<PreparedVersion> PrepareVersion(const NewVersion& v, absl::Time now) {
  LOGN_RETURN_IF_ERROR(v.model.Validate());
  LOGN_RETURN_IF_ERROR(CheckProvenance(v.model, v.statistics));
  LOGN_RETURN_IF_ERROR(CheckVersionFields(v));
  if (v.calibration_profile.has_value()) {
    const std::string what = absl::StrCat("the new version of ", v.model.DebugString());
    LOGN_RETURN_IF_ERROR(CheckCalibrationProfile(*v.calibration_profile, what));
    LOGN_RETURN_IF_ERROR(CheckProfileTarget(v.partial, what));
  }

  PreparedVersion out;
  Statistics stamped = v.statistics;
  stamped.provenance.model_name = v.model.name;
  stamped.provenance.model_sha256 = v.model.sha256;
  VersionInfo& info = out.info;
  info.model = v.model;
  // Stored with microsecond precision: truncate here so Put returns exactly what Get will.
  info.created_at =
      FromMicros(ToMicros(v.created_at == absl::InfinitePast() ? now : v.created_at));
  info.job_id = v.job_id;
  info.description = v.description;
  info.source = v.source;
  info.rows_seen = stamped.count;
  info.images_seen = stamped.provenance.images_seen;
  info.method = stamped.method;
  info.momentum = stamped.momentum;
  info.parent_versions = v.parent_versions;
  std::sort(info.parent_versions.begin(), info.parent_versions.end());
  info.parent_versions.erase(
      std::unique(info.parent_versions.begin(), info.parent_versions.end()),
      info.parent_versions.end());
  info.partial = v.partial;
  if (v.source == VersionSource::kImport && !v.sampling.has_value()) {
    // Imported statistics (a bare statistics file, a converted checkpoint): how their rows
    // were obtained is not known here, only that they were imported.
    info.sampling = RoiSamplingRecord{};
    info.sampling->roi_source = RoiSource::kImported;
  } else if (v.source != VersionSource::kMerge) {
    info.sampling = v.sampling;
  }
  // A merge never inherits its parents' profiles: a profile is chosen for one set of
  // statistics. What the caller set (an import: the file's) is stored, set now.
  if (v.calibration_profile.has_value()) {
    info.calibration_profile = CalibrationProfileRecord{*v.calibration_profile,
                                                        FromMicros(ToMicros(now))};
  }
  out.payload = StatisticsToBinary(stamped);
  info.payload_sha256 = Sha256Hex(out.payload);
  out.layout = stamped.layout;
  return out;
}

absl::StatusOr<Statistics> DecodePayload(const ModelKey& model, int64_t version,
                                         absl::string_view payload,
                                         absl::string_view expected_sha256) {
  return DecodeStatistics(VersionName(model, version), payload, expected_sha256);
}

absl::StatusOr<PreparedCheckpoint> PrepareCheckpoint(const JobCheckpoint& checkpoint,
                                                     absl::Time now) {
  if (checkpoint.job_id.empty()) {
    return absl::InvalidArgumentError("a job checkpoint needs a job id");
  }
  if (checkpoint.batches <= 0 || checkpoint.images_seen < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        CheckpointName(checkpoint.model, checkpoint.job_id), " has ", checkpoint.batches,
        " batches and ", checkpoint.images_seen, " images; batches must be positive"));
  }
  if (checkpoint.sampling.has_value()) {
    if (absl::Status s = checkpoint.sampling->Validate(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          CheckpointName(checkpoint.model, checkpoint.job_id), ": ", s.message()));
    }
  }
  NewVersion as_version;
  as_version.model = checkpoint.model;
  as_version.statistics = checkpoint.statistics;
  as_version.job_id = checkpoint.job_id;
  as_version.source = checkpoint.source;
  LOGN_ASSIGN_OR_RETURN(PreparedVersion prepared, PrepareVersion(as_version, now));
  PreparedCheckpoint out;
  CheckpointRow& row = out.row;
  row.job_id = checkpoint.job_id;
  row.batches = checkpoint.batches;
  row.images_seen = checkpoint.images_seen;
  row.source = std::string(VersionSourceName(checkpoint.source));
  row.updated_at_us = ToMicros(prepared.info.created_at);
  row.payload_sha256 = std::move(prepared.info.payload_sha256);
  row.payload = std::move(prepared.payload);
  row.sampling = EncodeSampling(checkpoint.sampling);
  out.layout = prepared.layout;
  return out;
}

absl::StatusOr<JobCheckpoint> DecodeCheckpointRow(const ModelKey& model,
                                                  const CheckpointRow& row) {
  JobCheckpoint cp;
  cp.model = model;
  cp.job_id = row.job_id;
  cp.batches = row.batches;
  cp.images_seen = row.images_seen;
  const std::string name = CheckpointName(model, row.job_id);
  if (!ParseVersionSource(row.source, &cp.source).ok()) {
    return CorruptColumn("source", row.source, name);
  }
  cp.updated_at = FromMicros(row.updated_at_us);
  LOGN_ASSIGN_OR_RETURN(cp.sampling, DecodeSampling(row.sampling, name));
  LOGN_ASSIGN_OR_RETURN(cp.statistics, DecodeStatistics(name, row.payload, row.payload_sha256));
  return cp;
}

std::optional<SamplingRow> EncodeSampling(const std::optional<RoiSamplingRecord>& record) {
  if (!record.has_value()) return std::nullopt;
  return SamplingRow{std::string(RoiSourceName(record->roi_source)),
                     record->num_rois,
                     record->positive_fraction,
                     record->positive_iou,
                     record->images,
                     record->rois,
                     record->positive_rois,
                     record->rfs_threshold};
}

absl::StatusOr<std::optional<RoiSamplingRecord>> DecodeSampling(
    const std::optional<SamplingRow>& row, absl::string_view what) {
  if (!row.has_value()) return std::optional<RoiSamplingRecord>();
  RoiSamplingRecord record;
  if (!ParseRoiSource(row->roi_source, &record.roi_source).ok()) {
    return CorruptColumn("roi_source", row->roi_source, what);
  }
  record.num_rois = static_cast<int32_t>(row->num_rois);
  record.positive_fraction = row->positive_fraction;
  record.positive_iou = static_cast<float>(row->positive_iou);
  record.images = row->images;
  record.rois = row->rois;
  record.positive_rois = row->positive_rois;
  record.rfs_threshold = row->rfs_threshold;
  if (absl::Status s = record.Validate(); !s.ok()) {
    return absl::DataLossError(
        absl::StrCat("stored sampling record of the ", what, " is corrupt: ", s.message()));
  }
  return std::optional<RoiSamplingRecord>(record);
}

VersionRow EncodeVersionRow(const VersionInfo& info, std::string payload) {
  VersionRow row;
  row.version = info.version;
  row.created_at_us = ToMicros(info.created_at);
  row.job_id = info.job_id;
  row.description = info.description;
  row.source = std::string(VersionSourceName(info.source));
  row.rows_seen = info.rows_seen;
  row.images_seen = info.images_seen;
  row.method = std::string(AccumulationMethodName(info.method));
  row.momentum = info.momentum;
  row.parents = EncodeParents(info.parent_versions);
  row.payload_sha256 = info.payload_sha256;
  row.partial = info.partial;
  row.sampling = EncodeSampling(info.sampling);
  row.profile = EncodeProfile(info.calibration_profile);
  row.payload = std::move(payload);
  return row;
}

absl::StatusOr<VersionInfo> DecodeVersionRow(const ModelKey& model, const VersionRow& row) {
  VersionInfo info;
  info.model = model;
  info.version = row.version;
  info.created_at = FromMicros(row.created_at_us);
  info.job_id = row.job_id;
  info.description = row.description;
  if (!ParseVersionSource(row.source, &info.source).ok()) {
    return CorruptColumn("source", row.source, VersionName(model, row.version));
  }
  info.rows_seen = row.rows_seen;
  info.images_seen = row.images_seen;
  if (!ParseAccumulationMethod(row.method, &info.method).ok()) {
    return CorruptColumn("method", row.method, VersionName(model, row.version));
  }
  info.momentum = row.momentum;
  LOGN_ASSIGN_OR_RETURN(info.parent_versions, DecodeParents(row.parents));
  info.payload_sha256 = row.payload_sha256;
  info.partial = row.partial;
  LOGN_ASSIGN_OR_RETURN(info.sampling,
                        DecodeSampling(row.sampling, VersionName(model, row.version)));
  LOGN_ASSIGN_OR_RETURN(info.calibration_profile,
                        DecodeProfile(row.profile, VersionName(model, row.version)));
  return info;
}

absl::StatusOr<LogitLayout> DecodeModelLayout(const ModelRow& row) {
  LogitLayout layout;
  layout.num_classes = static_cast<int32_t>(row.num_classes);
  if (absl::Status s = ParseBackgroundPosition(row.background, &layout.background); !s.ok()) {
    return absl::DataLossError(absl::StrCat("stored layout is corrupt: ", s.message()));
  }
  return layout;
}

VersionRowFilter EncodeFilter(const VersionFilter& filter) {
  VersionRowFilter out;
  out.by_job_id = filter.job_id.has_value();
  out.job_id = filter.job_id.value_or("");
  if (filter.source.has_value()) out.source = std::string(VersionSourceName(*filter.source));
  if (filter.partial.has_value()) out.partial = *filter.partial ? 1 : 0;
  return out;
}

std::string EncodeParents(const std::vector<int64_t>& parents) {
  return absl::StrJoin(parents, ",");
}

absl::StatusOr<std::vector<int64_t>> DecodeParents(absl::string_view text) {
  std::vector<int64_t> out;
  if (text.empty()) return out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::DataLossError(absl::StrCat("stored parent list '", text, "' is malformed"));
    }
    out.push_back(v);
  }
  return out;
}

std::string EncodePageToken(int64_t last_version) { return absl::StrCat("after:", last_version); }

absl::StatusOr<int64_t> DecodePageToken(absl::string_view token) {
  if (token.empty()) return 0;
  int64_t v = 0;
  absl::string_view rest = token;
  if (!absl::ConsumePrefix(&rest, "after:") || !absl::SimpleAtoi(rest, &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed page token '", token, "': pass the next_page_token of a previous List"));
  }
  return v;
}

absl::StatusOr<int32_t> NormalizePageSize(int32_t page_size) {
  if (page_size == 0) return 100;
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page size ", page_size, " is outside [1, 1000] (0 means 100)"));
  }
  return page_size;
}

absl::Status SchemaTooNew(absl::string_view store, int64_t found, int64_t supported) {
  return absl::FailedPreconditionError(absl::StrCat(
      "store ", store, " has schema version ", found, " but this binary understands up to ",
      supported, ": upgrade the binary (never downgrade a store)"));
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

}  // namespace store_internal
}  // namespace logn
