#ifndef LOGN_STORE_STORE_INTERNAL_H_
#define LOGN_STORE_STORE_INTERNAL_H_

// Backend-independent pieces of the statistics store: validation, payload encoding and
// checksums, page tokens. Not part of the public API.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/stats_store.h"

namespace logn {
namespace store_internal {

// Lowercase hex sha256 of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

// A NewVersion checked and ready to insert: the stamped snapshot, its payload and checksum.
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

// A JobCheckpoint checked and ready to store.
struct PreparedCheckpoint {
  JobCheckpoint checkpoint;  // updated_at set
  std::string payload;
  std::string payload_sha256;
  LogitLayout layout;
};
absl::StatusOr<PreparedCheckpoint> PrepareCheckpoint(const JobCheckpoint& checkpoint,
                                                     absl::Time now);
absl::StatusOr<Statistics> DecodeCheckpointPayload(const ModelKey& model,
                                                   absl::string_view job_id,
                                                   absl::string_view payload,
                                                   absl::string_view expected_sha256);

// Parents are stored as "1,2,3".
std::string EncodeParents(const std::vector<int64_t>& parents);
absl::StatusOr<std::vector<int64_t>> DecodeParents(absl::string_view text);

// Page tokens are "after:<version>"; empty means the first page.
std::string EncodePageToken(int64_t last_version);
absl::StatusOr<int64_t> DecodePageToken(absl::string_view token);
// 0 -> 100; INVALID_ARGUMENT outside [0, 1000].
absl::StatusOr<int32_t> NormalizePageSize(int32_t page_size);

// Background position names as stored in the models table.
absl::StatusOr<BackgroundPosition> ParseStoredBackground(absl::string_view text);

// Microseconds since the Unix epoch, the stored form of timestamps.
int64_t ToMicros(absl::Time t);
absl::Time FromMicros(int64_t us);

// Error messages shared by the backends.
absl::Status ModelNotFound(const ModelKey& model);
absl::Status VersionNotFound(const ModelKey& model, int64_t version);
absl::Status AliasNotFound(const ModelKey& model, absl::string_view alias);
absl::Status LayoutMismatch(const ModelKey& model, const LogitLayout& stored,
                            const LogitLayout& given);
absl::Status CheckpointNotFound(const ModelKey& model, absl::string_view job_id);
absl::Status PartialNotAliasable(const ModelKey& model, int64_t version);

}  // namespace store_internal
}  // namespace logn

#endif  // LOGN_STORE_STORE_INTERNAL_H_
