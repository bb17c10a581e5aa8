#ifndef LOGN_SERVER_CORE_MODEL_REPOSITORY_H_
#define LOGN_SERVER_CORE_MODEL_REPOSITORY_H_

// The on-disk model repository (docs/server.md, "Model repository"), as TF Serving and Triton
// lay it out:
//
//   DIR/<model name>/model_config.json          optional: logn.v1.ModelConfig (protobuf JSON)
//   DIR/<model name>/<version>/model.pt         TorchScript file
//   DIR/<model name>/<version>/model.json       its manifest
//
// Versions are positive integers. Anything else in DIR (files, hidden entries, non-numeric
// version directories) is ignored, so a version can be staged under a temporary name and
// renamed into place atomically. Pure filesystem code: nothing here loads a model.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "logn/v1/model_service.pb.h"

namespace logn {

inline constexpr char kModelFileName[] = "model.pt";
inline constexpr char kModelConfigFileName[] = "model_config.json";

struct RepositoryVersion {
  int64_t version = 0;
  std::string model_path;     // DIR/<name>/<version>/model.pt
  std::string manifest_path;  // beside it (DefaultManifestPath)
  // Size and modification time of the model file and its manifest: a changed fingerprint
  // means the files were replaced and the version is loaded afresh.
  std::string fingerprint;
};

struct RepositoryModel {
  std::string name;
  v1::ModelConfig config;
  // Not OK when model_config.json exists but does not parse or validate: the model's loaded
  // versions keep serving, and nothing new is loaded until it is fixed.
  absl::Status config_status;
  std::map<int64_t, RepositoryVersion> versions;  // every version directory with a model.pt
};

// The models under `dir`, by name. NOT_FOUND when `dir` is not a readable directory.
absl::StatusOr<std::map<std::string, RepositoryModel>> ScanRepository(const std::string& dir);

// Parses and validates a ModelConfig (protobuf JSON; unknown fields refused). INVALID_ARGUMENT
// naming the problem: negative latest.num_versions, a specific version <= 0, or a fallback
// method other than NONE / LOGA.
absl::StatusOr<v1::ModelConfig> ParseModelConfig(const std::string& json);
// ParseModelConfig's checks of a config built otherwise (the flags' default config).
absl::Status ValidateModelConfig(const v1::ModelConfig& config);

// The versions of `available` the policy selects: the newest N (latest; none set: 1), all, or
// the specific ones that exist.
std::set<int64_t> SelectVersions(const v1::VersionPolicy& policy,
                                 const std::set<int64_t>& available);

// A model name usable as a directory and a metric label: 1-128 characters of [A-Za-z0-9._-],
// not starting with '.'.
bool IsValidModelName(const std::string& name);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_MODEL_REPOSITORY_H_
