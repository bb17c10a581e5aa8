#ifndef LOGN_SERVER_RUNTIME_MANIFEST_H_
#define LOGN_SERVER_RUNTIME_MANIFEST_H_

// The model manifest (proto/logn/v1/model.proto; docs/model-contract.md): parsing from JSON,
// validation, and the views of it the runtime and calibration need.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "calibration/layout.h"
#include "logn/v1/model.pb.h"

namespace logn {

// Parses manifest JSON (protobuf's JSON mapping; unknown fields are errors, to catch typos) and
// validates it. INVALID_ARGUMENT with the offending field otherwise.
absl::StatusOr<v1::ModelManifest> ParseManifestJson(absl::string_view json);

// Reads and parses a manifest file. NOT_FOUND if it cannot be read; INVALID_ARGUMENT (prefixed
// with the path) if it does not parse or validate.
absl::StatusOr<v1::ModelManifest> ReadManifestFile(const std::string& path);

// INVALID_ARGUMENT unless: a non-empty name; at least one class, ids unique, names non-empty and
// unique, counts >= 0; background FIRST or LAST; a box layout; exactly one resize rule with
// positive sizes (longer >= shorter); three pixel means and three positive stds; channel order
// and value range specified; hasProposals only with hasClassifyRois; proposalSettings (optional,
// informational) only with hasProposals, with positive top-n counts and an NMS threshold in (0, 1].
absl::Status ValidateManifest(const v1::ModelManifest& manifest);

// The logit layout of a (valid) manifest: C = classes_size(), background as declared.
LogitLayout ManifestLayout(const v1::ModelManifest& manifest);

// Per-class training instance counts in class order: LogA's class prior.
// FAILED_PRECONDITION naming the first class whose count is unknown (0).
absl::StatusOr<std::vector<double>> ManifestInstanceCounts(const v1::ModelManifest& manifest);

// The default manifest path for a model file: the same path with the extension replaced by
// ".json" ("m/frcnn.pt" -> "m/frcnn.json"; no extension: ".json" appended).
std::string DefaultManifestPath(absl::string_view model_path);

}  // namespace logn

#endif  // LOGN_SERVER_RUNTIME_MANIFEST_H_
