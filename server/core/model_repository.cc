#include "server/core/model_repository.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "server/runtime/manifest.h"

namespace logn {
namespace {

namespace fs = std::filesystem;

// Size and mtime (nanoseconds) of `path`, or "missing".
std::string FileFingerprint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return absl::StrCat(st.st_size, "@", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

bool ParseVersion(const std::string& name, int64_t* version) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), absl::ascii_isdigit)) return false;
  return absl::SimpleAtoi(name, version) && *version > 0;
}

RepositoryModel ScanModel(const fs::path& model_dir) {
  RepositoryModel model;
  model.name = model_dir.filename().string();
  const fs::path config_path = model_dir / kModelConfigFileName;
  std::error_code error;
  if (fs::exists(config_path, error)) {
    std::ifstream in(config_path);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(text.str());
    if (config.ok()) {
      model.config = *std::move(config);
    } else {
      model.config_status = absl::InvalidArgumentError(
          absl::StrCat(config_path.string(), ": ", config.status().message()));
    }
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(model_dir, error)) {
    int64_t number = 0;
    if (!entry.is_directory(error) || !ParseVersion(entry.path().filename().string(), &number)) {
      continue;
    }
    RepositoryVersion version;
    version.version = number;
    version.model_path = (entry.path() / kModelFileName).string();
    if (!fs::exists(version.model_path, error)) continue;  // being staged, or not a version
    version.manifest_path = DefaultManifestPath(version.model_path);
    version.fingerprint = absl::StrCat(FileFingerprint(version.model_path), "|",
                                       FileFingerprint(version.manifest_path));
    model.versions.emplace(number, std::move(version));
  }
  return model;
}

}  // namespace

bool IsValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

absl::StatusOr<std::map<std::string, RepositoryModel>> ScanRepository(const std::string& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat("model repository ", dir, " is not a directory"));
  }
  std::map<std::string, RepositoryModel> models;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory(error) || !IsValidModelName(name)) continue;
    models.emplace(name, ScanModel(entry.path()));
  }
  if (error) {
    return absl::NotFoundError(
        absl::StrCat("cannot list model repository ", dir, ": ", error.message()));
  }
  return models;
}

absl::StatusOr<v1::ModelConfig> ParseModelConfig(const std::string& json) {
  v1::ModelConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, &config, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a logn.v1.ModelConfig: ", std::string(parsed.message())));
  }
  LOGN_RETURN_IF_ERROR(ValidateModelConfig(config));
  return config;
}

absl::Status ValidateModelConfig(const v1::ModelConfig& config) {
  const v1::VersionPolicy& policy = config.version_policy();
  if (policy.has_latest() && policy.latest().num_versions() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version_policy.latest.num_versions must be >= 1, got ", policy.latest().num_versions()));
  }
  for (int64_t v : policy.specific().versions()) {
    if (v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version_policy.specific.versions: ", v, " is not a version (> 0)"));
    }
  }
  const v1::CalibrationMethod fallback = config.fallback_method();
  if (fallback != v1::CALIBRATION_METHOD_UNSPECIFIED && fallback != v1::CALIBRATION_METHOD_NONE &&
      fallback != v1::CALIBRATION_METHOD_LOGA) {
    return absl::InvalidArgumentError(
        absl::StrCat("fallback_method must be CALIBRATION_METHOD_NONE or CALIBRATION_METHOD_LOGA, "
                     "got ", v1::CalibrationMethod_Name(fallback)));
  }
  return absl::OkStatus();
}

std::set<int64_t> SelectVersions(const v1::VersionPolicy& policy,
                                 const std::set<int64_t>& available) {
  if (policy.has_all()) return available;
  if (policy.has_specific()) {
    std::set<int64_t> selected;
    for (int64_t v : policy.specific().versions()) {
      if (available.count(v) > 0) selected.insert(v);
    }
    return selected;
  }
  const int32_t n = std::max(1, policy.latest().num_versions());
  std::set<int64_t> selected;
  for (auto it = available.rbegin(); it != available.rend() && selected.size() < size_t(n); ++it) {
    selected.insert(*it);
  }
  return selected;
}

}  // namespace logn
