#include "store/store_internal.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"

namespace logn {
namespace store_internal {
namespace {

constexpr size_t kMaxJobIdBytes = 256;
constexpr size_t kMaxDescriptionBytes = 64 * 1024;
constexpr size_t kMaxParents = 4096;

}  // namespace

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

absl::StatusOr<PreparedVersion> PrepareVersion(const NewVersion& v, absl::Time now) {
  LOGN_RETURN_IF_ERROR(v.model.Validate());
  if (absl::Status s = v.statistics.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics for ", v.model.DebugString(), " do not validate: ", s.message()));
  }
  const StatisticsProvenance& prov = v.statistics.provenance;
  if (!prov.model_sha256.empty() && prov.model_sha256 != v.model.sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "statistics were computed for model sha256 ", prov.model_sha256, ", not for ",
        v.model.DebugString(), " (sha256 ", v.model.sha256,
        "): statistics are never applied to another model"));
  }
  if (!prov.model_name.empty() && prov.model_name != v.model.name) {
    return absl::FailedPreconditionError(absl::StrCat("statistics were computed for model '",
                                                      prov.model_name, "', not for '",
                                                      v.model.name, "'"));
  }
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
    return absl::InvalidArgumentError(absl::StrCat("too many parent versions (",
                                                   v.parent_versions.size(), " > ",
                                                   kMaxParents, ")"));
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
  out.payload = StatisticsToBinary(stamped);
  info.payload_sha256 = Sha256Hex(out.payload);
  out.layout = stamped.layout;
  return out;
}

namespace {

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

}  // namespace

absl::StatusOr<Statistics> DecodePayload(const ModelKey& model, int64_t version,
                                         absl::string_view payload,
                                         absl::string_view expected_sha256) {
  return DecodeStatistics(absl::StrCat("version ", version, " of ", model.DebugString()),
                          payload, expected_sha256);
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
  // The same checks and encoding as a version's.
  NewVersion as_version;
  as_version.model = checkpoint.model;
  as_version.statistics = checkpoint.statistics;
  as_version.job_id = checkpoint.job_id;
  as_version.source = checkpoint.source;
  LOGN_ASSIGN_OR_RETURN(PreparedVersion prepared, PrepareVersion(as_version, now));
  PreparedCheckpoint out;
  out.checkpoint = checkpoint;
  out.checkpoint.updated_at = prepared.info.created_at;
  out.payload = std::move(prepared.payload);
  out.payload_sha256 = std::move(prepared.info.payload_sha256);
  out.layout = prepared.layout;
  return out;
}

absl::StatusOr<Statistics> DecodeCheckpointPayload(const ModelKey& model,
                                                   absl::string_view job_id,
                                                   absl::string_view payload,
                                                   absl::string_view expected_sha256) {
  return DecodeStatistics(CheckpointName(model, job_id), payload, expected_sha256);
}

absl::Status CheckpointNotFound(const ModelKey& model, absl::string_view job_id) {
  return absl::NotFoundError(absl::StrCat(
      "no checkpoint for job '", job_id, "' of ", model.DebugString(),
      ": it never reached its first checkpoint, or it was committed (see ListVersions)"));
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
  if (!absl::ConsumePrefix(&token, "after:") || !absl::SimpleAtoi(token, &v) || v < 0) {
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

absl::StatusOr<BackgroundPosition> ParseStoredBackground(absl::string_view text) {
  BackgroundPosition position;
  if (absl::Status s = ParseBackgroundPosition(text, &position); !s.ok()) {
    return absl::DataLossError(absl::StrCat("stored layout is corrupt: ", s.message()));
  }
  return position;
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

absl::Status ModelNotFound(const ModelKey& model) {
  return absl::NotFoundError(
      absl::StrCat("model ", model.DebugString(), " (sha256 ", model.sha256,
                   ") has no statistics in the store: Put a version first"));
}
absl::Status VersionNotFound(const ModelKey& model, int64_t version) {
  return absl::NotFoundError(
      absl::StrCat("model ", model.DebugString(), " has no version ", version,
                   " (never written, or deleted): List shows the versions that exist"));
}
absl::Status AliasNotFound(const ModelKey& model, absl::string_view alias) {
  return absl::NotFoundError(absl::StrCat("model ", model.DebugString(), " has no alias '", alias,
                                          "': set it with SetAlias / Activate"));
}
absl::Status LayoutMismatch(const ModelKey& model, const LogitLayout& stored,
                            const LogitLayout& given) {
  return absl::FailedPreconditionError(absl::StrCat(
      "statistics have layout ", given.DebugString(), " but ", model.DebugString(), " has ",
      stored.DebugString(), ": they were not computed for this model"));
}
absl::Status PartialNotAliasable(const ModelKey& model, int64_t version) {
  return absl::FailedPreconditionError(absl::StrCat(
      "version ", version, " of ", model.DebugString(),
      " is partial (one shard of a job): merge the shards and alias the merged version"));
}

}  // namespace store_internal
}  // namespace logn
