#ifndef LOGN_STORE_STATS_EXPORT_H_
#define LOGN_STORE_STATS_EXPORT_H_

// Export / import of one store version as a file: the JSON envelope documented in
// docs/statistics-store.md (proto3 JSON of logn.v1.StatisticsVersion, whose `statistics` field
// is exactly what StatisticsToJson writes) or its binary proto serialisation. The envelope is
// the version resource the RPCs return (store/version_proto.h) with its statistics; `aliases`
// stays empty in a file, and importing ignores it (aliases belong to the exporting store).

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/stats_store.h"

namespace logn {

inline constexpr absl::string_view kVersionExportFormat = "logn.statistics_version.v1";

std::string VersionToJson(const VersionRecord& record);
std::string VersionToBinary(const VersionRecord& record);

// Parse an export. INVALID_ARGUMENT for malformed input or a wrong `format`; DATA_LOSS when
// payload_sha256 does not match the statistics (a damaged or edited file).
absl::StatusOr<VersionRecord> VersionFromJson(absl::string_view json);
absl::StatusOr<VersionRecord> VersionFromBinary(absl::string_view bytes);

// What importing `record` into a store as a new version of `model` writes: the same snapshot
// and provenance, source `import`, no parents (they belong to the other store), the record's
// sampling record (roi_source kImported when it names none; when it has none, Put records
// kImported) and its calibration profile (set_at: when Put stores it). Put refuses it with
// FAILED_PRECONDITION if the record was computed for another model.
NewVersion ImportedVersion(const VersionRecord& record, const ModelKey& model);

// Parses either a version export (JSON envelope) or a bare logn.v1.Statistics JSON, as written
// by StatisticsToJson or tools/import_mmdet_logn.py, into a version to Put for `model`. A bare
// statistics file has no sampling record: Put records roi_source kImported.
absl::StatusOr<NewVersion> ParseImportJson(absl::string_view json, const ModelKey& model);

// Either form of a file: JSON (as ParseImportJson) when its first non-blank byte is '{',
// otherwise a binary version export.
absl::StatusOr<NewVersion> ParseImport(absl::string_view content, const ModelKey& model);

}  // namespace logn

#endif  // LOGN_STORE_STATS_EXPORT_H_
