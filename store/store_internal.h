#ifndef LOGN_STORE_STORE_INTERNAL_H_
#define LOGN_STORE_STORE_INTERNAL_H_

// Backend-independent pieces of the statistics store that need no database: validation of what
// callers hand in, the stored (row) form of versions, checkpoints and filters, payload
// checksums, page tokens. Not part of the public API.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "store/stats_store.h"
#include "store/store_backend.h"

namespace logn {
namespace store_internal {

// A NewVersion checked and ready to insert: the stamped snapshot, its payload and checksum
// (and its calibration profile, set at `now`).
struct PreparedVersion {
  VersionInfo info;  // everything but `version`
  std::string payload;
  LogitLayout layout;
};

// Validates `v` (INVALID_ARGUMENT / FAILED_PRECONDITION as documented on StatsStore::Put) and
// computes the payload. `now` is used when v.created_at is unset.
absl::StatusOr<PreparedVersion> PrepareVersion(const NewVersion& v, absl::Time now);

// Decodes a stored payload, verifying its checksum (DATA_LOSS on mismatch or undecodable bytes).
absl::StatusOr<Statistics> DecodePayload(const ModelKey& model, int64_t version,
                                         absl::string_view payload,
                                         absl::string_view expected_sha256);

// A JobCheckpoint checked and ready to store: the same checks and encoding as a version's,
// plus a job id and a positive batch count.
struct PreparedCheckpoint {
  CheckpointRow row;
  LogitLayout layout;
};
absl::StatusOr<PreparedCheckpoint> PrepareCheckpoint(const JobCheckpoint& checkpoint,
                                                     absl::Time now);
// The checkpoint a stored row holds, its checksum verified (DATA_LOSS otherwise).
absl::StatusOr<JobCheckpoint> DecodeCheckpointRow(const ModelKey& model, const CheckpointRow& row);

// A sampling record's stored form and back (DATA_LOSS for a roi_source that does not parse, or
// a stored record that does not validate).
std::optional<SamplingRow> EncodeSampling(const std::optional<RoiSamplingRecord>& record);
absl::StatusOr<std::optional<RoiSamplingRecord>> DecodeSampling(
    const std::optional<SamplingRow>& row, absl::string_view what);

// The rules of a calibration profile's bytes: at most kMaxCalibrationProfileBytes and a
// logn.v1.CalibrationProfile (INVALID_ARGUMENT otherwise, naming `what`).
absl::Status CheckCalibrationProfile(absl::string_view profile, absl::string_view what);
// The partial-version guard of calibration profiles: one shard of a job never serves, so it
// never gets a default setting (FAILED_PRECONDITION, naming `what`, when `partial`).
absl::Status CheckProfileTarget(bool partial, absl::string_view what);

// A calibration profile's stored form and back (DATA_LOSS for stored bytes that are not a
// logn.v1.CalibrationProfile).
std::optional<ProfileRow> EncodeProfile(const std::optional<CalibrationProfileRecord>& record);
absl::StatusOr<std::optional<CalibrationProfileRecord>> DecodeProfile(
    const std::optional<ProfileRow>& row, absl::string_view what);

// "version 3 of m@0123abcd…", the name of a version in messages.
std::string VersionName(const ModelKey& model, int64_t version);

// A version's stored form and back (DATA_LOSS for a stored value that does not parse).
VersionRow EncodeVersionRow(const VersionInfo& info, std::string payload);
absl::StatusOr<VersionInfo> DecodeVersionRow(const ModelKey& model, const VersionRow& row);

// The layout a model row records (DATA_LOSS when it does not parse).
absl::StatusOr<LogitLayout> DecodeModelLayout(const ModelRow& row);

VersionRowFilter EncodeFilter(const VersionFilter& filter);

// Parents are stored as "1,2,3".
std::string EncodeParents(const std::vector<int64_t>& parents);
absl::StatusOr<std::vector<int64_t>> DecodeParents(absl::string_view text);

// Page tokens are "after:<version>"; empty means the first page.
std::string EncodePageToken(int64_t last_version);
absl::StatusOr<int64_t> DecodePageToken(absl::string_view token);
// 0 -> 100; INVALID_ARGUMENT outside [0, 1000].
absl::StatusOr<int32_t> NormalizePageSize(int32_t page_size);

// FAILED_PRECONDITION: the database `store` has schema version `found`, newer than the
// `supported` one this binary migrates to.
absl::Status SchemaTooNew(absl::string_view store, int64_t found, int64_t supported);

// Microseconds since the Unix epoch, the stored form of timestamps.
int64_t ToMicros(absl::Time t);
absl::Time FromMicros(int64_t us);

}  // namespace store_internal
}  // namespace logn

#endif  // LOGN_STORE_STORE_INTERNAL_H_
