#include "server/core/model_manager.h"

#include <malloc.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "server/core/drift_monitor.h"

namespace logn {
namespace {

// The reason a load failed, as ListModels shows it.
std::string FailureReason(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LoadedModel

LoadedModel::LoadedModel(std::unique_ptr<DetectorRuntime> runtime, int64_t version,
                         v1::ModelConfig config, std::string path)
    : runtime_(std::move(runtime)),
      key_{runtime_->manifest().name(), runtime_->model_sha256()},
      version_(version),
      config_(std::move(config)),
      path_(std::move(path)),
      loaded_at_(absl::Now()),
      memory_bytes_(runtime_->parameter_bytes()) {
  bool all_counts = true;
  for (const v1::ClassInfo& c : runtime_->manifest().classes()) {
    all_counts &= c.instance_count() > 0;
    instance_counts_.push_back(static_cast<double>(c.instance_count()));
  }
  if (!all_counts) instance_counts_.clear();
}

LoadedModel::~LoadedModel() = default;

void LoadedModel::set_drift(std::unique_ptr<DriftMonitor> drift) { drift_ = std::move(drift); }

// ---------------------------------------------------------------------------------------------
// ModelManager: creation and lookup

ModelManager::ModelManager(const ModelManagerOptions& options) : options_(options) {}

ModelManager::~ModelManager() {
  stop_.Notify();
  if (poller_.joinable()) poller_.join();
}

absl::StatusOr<std::unique_ptr<ModelManager>> ModelManager::Create(
    const ModelManagerOptions& options) {
  ModelManagerOptions with_loader = options;
  if (!with_loader.loader) with_loader.loader = &DetectorRuntime::Load;
  if (options.repository.empty()) {
    LOGN_ASSIGN_OR_RETURN(std::unique_ptr<DetectorRuntime> runtime,
                          with_loader.loader(options.runtime));
    return ForRuntime(std::move(runtime), with_loader);
  }
  std::unique_ptr<ModelManager> manager(new ModelManager(with_loader));
  LOGN_RETURN_IF_ERROR(manager->Sync());
  const absl::Duration interval = options.poll_interval;
  if (interval > absl::ZeroDuration() && interval < absl::InfiniteDuration()) {
    manager->poller_ = std::thread([m = manager.get()] { m->PollLoop(); });
  }
  return manager;
}

std::unique_ptr<ModelManager> ModelManager::ForRuntime(std::unique_ptr<DetectorRuntime> runtime,
                                                       const ModelManagerOptions& options) {
  std::unique_ptr<ModelManager> manager(new ModelManager(options));
  const std::string path = options.runtime.model_path;
  auto model = std::make_shared<LoadedModel>(std::move(runtime), 1, options.default_config, path);
  if (options.on_loaded) options.on_loaded(*model);
  const std::string name = model->name();
  manager->Install(name, 1, std::move(model), /*fingerprint=*/"");
  return manager;
}

int64_t ModelManager::DefaultVersionLocked(const Versions& versions) const {
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->second.state == v1::MODEL_VERSION_STATE_AVAILABLE) return it->first;
  }
  return 0;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelManager::Resolve(const std::string& name,
                                                                         int64_t version) const {
  absl::ReaderMutexLock lock(&mu_);
  std::string model_name = name;
  if (models_.empty()) {
    return absl::UnavailableError(
        "this server hosts no model yet: the repository has no loadable version (see ListModels)");
  }
  if (name.empty()) {
    if (models_.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("this server hosts ", models_.size(),
                                                     " models (", HostedNamesLocked(),
                                                     "): name one in model_name"));
    }
    model_name = models_.begin()->first;
  }
  const auto found = models_.find(model_name);
  if (found == models_.end()) return NotHostedLocked(model_name);
  const Versions* versions = &found->second;
  const int64_t wanted = version != 0 ? version : DefaultVersionLocked(*versions);
  const auto entry = versions->find(wanted);
  if (version == 0 && entry == versions->end()) {
    for (const auto& [number, e] : *versions) {
      if (e.state == v1::MODEL_VERSION_STATE_FAILED) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model '", model_name, "' has no available version: version ", number,
            " failed to load: ", e.reason));
      }
    }
    return absl::UnavailableError(absl::StrCat("model '", model_name,
                                               "' has no available version yet (see ListModels)"));
  }
  if (entry == versions->end() || entry->second.state == v1::MODEL_VERSION_STATE_UNSPECIFIED) {
    return absl::NotFoundError(
        absl::StrCat("model '", model_name, "' has no version ", version, " loaded"));
  }
  switch (entry->second.state) {
    case v1::MODEL_VERSION_STATE_AVAILABLE:
      return std::shared_ptr<const LoadedModel>(entry->second.model);
    case v1::MODEL_VERSION_STATE_LOADING:
      return absl::UnavailableError(absl::StrCat("model '", model_name, "' version ", wanted,
                                                 " is loading: retry shortly"));
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", model_name, "' version ", wanted, " failed to load: ", entry->second.reason));
  }
}

std::string ModelManager::HostedNamesLocked() const {
  std::vector<std::string> names;
  for (const auto& [name, unused] : models_) names.push_back(name);
  return absl::StrJoin(names, ", ");
}

absl::Status ModelManager::NotHostedLocked(const std::string& name) const {
  return absl::NotFoundError(absl::StrCat("this server does not host model '", name,
                                          "' (it hosts: ", HostedNamesLocked(), ")"));
}

ModelVersionInfo ModelManager::InfoLocked(const std::string& name, int64_t version,
                                          const Entry& entry) const {
  ModelVersionInfo info;
  info.name = name;
  info.version = version;
  info.state = entry.state;
  info.reason = entry.reason;
  info.path = entry.path;
  info.pinned = entry.pinned_loaded;
  info.model = entry.model;
  const auto found = models_.find(name);
  info.is_default = found != models_.end() && DefaultVersionLocked(found->second) == version &&
                    entry.state == v1::MODEL_VERSION_STATE_AVAILABLE;
  return info;
}

absl::StatusOr<std::vector<ModelVersionInfo>> ModelManager::List(const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  if (!name.empty() && models_.count(name) == 0 && config_errors_.count(name) == 0) {
    return NotHostedLocked(name);
  }
  std::vector<ModelVersionInfo> out;
  for (const auto& [model, versions] : models_) {
    if (!name.empty() && model != name) continue;
    for (const auto& [version, entry] : versions) {
      // Pin-only placeholders (versions unloaded by UnloadModel) are not hosted.
      if (entry.state != v1::MODEL_VERSION_STATE_UNSPECIFIED) {
        out.push_back(InfoLocked(model, version, entry));
      }
    }
  }
  for (const Retiring& r : retiring_) {
    if (!name.empty() && r.name != name) continue;
    std::shared_ptr<const LoadedModel> alive = r.model.lock();
    if (alive == nullptr) continue;
    ModelVersionInfo& info = out.emplace_back();
    info.name = r.name;
    info.version = r.version;
    info.state = v1::MODEL_VERSION_STATE_UNLOADING;
    info.reason = "finishing its in-flight requests";
    info.path = r.path;
    info.model = std::move(alive);
  }
  for (const auto& [model, error] : config_errors_) {
    if (!name.empty() && model != name) continue;
    ModelVersionInfo& info = out.emplace_back();
    info.name = model;
    info.state = v1::MODEL_VERSION_STATE_FAILED;
    info.reason = error;
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
  return out;
}

std::vector<std::shared_ptr<const LoadedModel>> ModelManager::Available() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const LoadedModel>> out;
  for (const auto& [name, versions] : models_) {
    for (const auto& [version, entry] : versions) {
      if (entry.state == v1::MODEL_VERSION_STATE_AVAILABLE) out.push_back(entry.model);
    }
  }
  return out;
}

absl::Time ModelManager::scanned_at() const {
  absl::ReaderMutexLock lock(&mu_);
  return scanned_at_;
}

void ModelManager::SetListener(std::function<void()> listener) {
  {
    // Waits for a running call of the old listener: once this returns, it is never called again.
    absl::MutexLock lock(&listener_mu_);
    listener_ = std::move(listener);
  }
  Notify();
}

void ModelManager::Notify() {
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_();
}

// ---------------------------------------------------------------------------------------------
// Loading and retiring

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelManager::LoadModelFiles(
    const std::string& expected_name, const RepositoryVersion& version,
    const v1::ModelConfig& config) const {
  DetectorRuntime::Options runtime_options = options_.runtime;
  runtime_options.model_path = version.model_path;
  runtime_options.manifest_path = version.manifest_path;
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<DetectorRuntime> runtime,
                        options_.loader(runtime_options));
  if (runtime->manifest().name() != expected_name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "manifest ", version.manifest_path, " names model '", runtime->manifest().name(),
        "' but the repository holds it as '", expected_name,
        "' (statistics are stored under the manifest's name: make them agree)"));
  }
  if (config.missing_statistics() == v1::MISSING_STATISTICS_ACTION_FALLBACK &&
      config.fallback_method() == v1::CALIBRATION_METHOD_LOGA) {
    for (const v1::ClassInfo& c : runtime->manifest().classes()) {
      if (c.instance_count() <= 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model_config.json falls back to LOGA but class ", c.id(),
            " has no instance_count in the manifest (LogA needs every class's count)"));
      }
    }
  }
  auto model = std::make_shared<LoadedModel>(std::move(runtime), version.version, config,
                                             version.model_path);
  if (options_.on_loaded) options_.on_loaded(*model);
  return model;
}

void ModelManager::Install(const std::string& name, int64_t version,
                           std::shared_ptr<LoadedModel> model, const std::string& fingerprint) {
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = models_[name][version];
    if (entry.model != nullptr) {
      retiring_.push_back(Retiring{name, version, entry.path, entry.model});
    }
    entry.state = v1::MODEL_VERSION_STATE_AVAILABLE;
    entry.reason.clear();
    entry.path = model->path();
    entry.fingerprint = fingerprint;
    entry.model = std::move(model);
  }
  Notify();
}

absl::Status ModelManager::LoadVersion(const std::string& name, const RepositoryVersion& version,
                                       const v1::ModelConfig& config) {
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = models_[name][version.version];
    // A version being replaced keeps serving (state AVAILABLE) while its new files load.
    if (entry.state != v1::MODEL_VERSION_STATE_AVAILABLE) {
      entry.state = v1::MODEL_VERSION_STATE_LOADING;
      entry.reason = "loading and warming up";
    }
    entry.path = version.model_path;
  }
  Notify();
  absl::StatusOr<std::shared_ptr<LoadedModel>> model = LoadModelFiles(name, version, config);
  if (model.ok()) {
    Install(name, version.version, *std::move(model), version.fingerprint);
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = models_[name][version.version];
    entry.fingerprint = version.fingerprint;
    if (entry.state == v1::MODEL_VERSION_STATE_AVAILABLE) {
      // The replacement failed: the working files keep serving; report why in the reason.
      entry.reason = absl::StrCat("new files failed to load: ", FailureReason(model.status()));
    } else {
      entry.state = v1::MODEL_VERSION_STATE_FAILED;
      entry.reason = FailureReason(model.status());
    }
  }
  Notify();
  return model.status();
}

void ModelManager::RetireLocked(const std::string& name, int64_t version) {
  auto model = models_.find(name);
  if (model == models_.end()) return;
  auto entry = model->second.find(version);
  if (entry == model->second.end()) return;
  if (entry->second.model != nullptr) {
    retiring_.push_back(Retiring{name, version, entry->second.path, entry->second.model});
  }
  const bool pinned_unloaded = entry->second.pinned_unloaded;
  model->second.erase(entry);
  // Remember the pin, so the poller does not load it back.
  if (pinned_unloaded) model->second[version].pinned_unloaded = true;
}

bool ModelManager::CollectRetired() {
  bool dropped = false;
  {
    absl::MutexLock lock(&mu_);
    auto gone = [](const Retiring& r) { return r.model.expired(); };
    dropped = std::any_of(retiring_.begin(), retiring_.end(), gone);
    retiring_.erase(std::remove_if(retiring_.begin(), retiring_.end(), gone), retiring_.end());
  }
  // glibc keeps freed heap pages in its arenas; a retired model's weights are hundreds of MB.
  if (dropped) malloc_trim(0);
  return dropped;
}

// ---------------------------------------------------------------------------------------------
// The repository

std::set<int64_t> ModelManager::Wanted(const RepositoryModel& model) const {
  absl::ReaderMutexLock lock(&mu_);
  const auto found = models_.find(model.name);
  std::set<int64_t> candidates;
  std::set<int64_t> pinned;
  for (const auto& [number, version] : model.versions) {
    const Entry* entry = nullptr;
    if (found != models_.end()) {
      const auto e = found->second.find(number);
      if (e != found->second.end()) entry = &e->second;
    }
    if (entry != nullptr && entry->pinned_unloaded) continue;
    if (entry != nullptr && entry->pinned_loaded) pinned.insert(number);
    // A version whose files already failed is skipped until they change (latest-N counts the
    // versions that work, so a broken newest version leaves the previous one serving).
    const bool failed = entry != nullptr &&
                        entry->state == v1::MODEL_VERSION_STATE_FAILED &&
                        entry->fingerprint == version.fingerprint;
    if (!failed) candidates.insert(number);
  }
  std::set<int64_t> wanted = SelectVersions(model.config.version_policy(), candidates);
  wanted.insert(pinned.begin(), pinned.end());
  return wanted;
}

void ModelManager::SyncModel(const RepositoryModel& model) {
  // Loads first, newest first, re-deciding after each (a failure changes what latest-N wants).
  for (;;) {
    const std::set<int64_t> wanted = Wanted(model);
    const RepositoryVersion* next = nullptr;
    {
      absl::ReaderMutexLock lock(&mu_);
      const auto found = models_.find(model.name);
      for (auto it = wanted.rbegin(); it != wanted.rend() && next == nullptr; ++it) {
        const RepositoryVersion& version = model.versions.at(*it);
        const Entry* entry = nullptr;
        if (found != models_.end() && found->second.count(*it) > 0) {
          entry = &found->second.at(*it);
        }
        if (entry == nullptr || entry->fingerprint != version.fingerprint) next = &version;
      }
    }
    if (next == nullptr) break;
    (void)LoadVersion(model.name, *next, model.config);  // a failure is recorded in its entry
  }
  // Then retire what is no longer wanted (including versions whose directory is gone).
  const std::set<int64_t> wanted = Wanted(model);
  {
    absl::MutexLock lock(&mu_);
    auto found = models_.find(model.name);
    if (found == models_.end()) return;
    std::vector<int64_t> retire;
    for (auto it = found->second.begin(); it != found->second.end();) {
      // Unload pins and failures are kept (reported, not retried) while their directory exists.
      const bool record = it->second.state == v1::MODEL_VERSION_STATE_UNSPECIFIED ||
                          it->second.state == v1::MODEL_VERSION_STATE_FAILED;
      if (record && model.versions.count(it->first) == 0) {
        it = found->second.erase(it);
        continue;
      }
      if (!record && wanted.count(it->first) == 0) retire.push_back(it->first);
      ++it;
    }
    for (int64_t number : retire) RetireLocked(model.name, number);
    if (found->second.empty()) models_.erase(found);
  }
  Notify();
}

absl::Status ModelManager::Sync() {
  absl::MutexLock load_lock(&load_mu_);
  LOGN_ASSIGN_OR_RETURN(const auto scanned, ScanRepository(options_.repository));
  {
    absl::MutexLock lock(&mu_);
    config_errors_.clear();
    for (const auto& [name, model] : scanned) {
      if (!model.config_status.ok()) config_errors_[name] = FailureReason(model.config_status);
    }
  }
  for (const auto& [name, model] : scanned) {
    // A broken model_config.json changes nothing for that model until it is fixed.
    if (model.config_status.ok()) SyncModel(model);
  }
  std::vector<std::string> vanished;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, versions] : models_) {
      if (scanned.count(name) == 0) vanished.push_back(name);
    }
  }
  for (const std::string& name : vanished) SyncModel(RepositoryModel{name, {}, {}, {}});
  {
    absl::MutexLock lock(&mu_);
    scanned_at_ = absl::Now();
  }
  CollectRetired();
  return absl::OkStatus();
}

absl::StatusOr<RepositoryModel> ModelManager::ScanOne(const std::string& name) const {
  LOGN_ASSIGN_OR_RETURN(const auto scanned, ScanRepository(options_.repository));
  const auto found = scanned.find(name);
  if (found == scanned.end()) {
    return absl::NotFoundError(absl::StrCat("the model repository ", options_.repository,
                                            " has no model directory '", name, "'"));
  }
  LOGN_RETURN_IF_ERROR(found->second.config_status);
  return found->second;
}

void ModelManager::PollLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval)) {
    (void)Sync();  // an unreadable repository keeps what is loaded; the next poll retries
  }
}

// ---------------------------------------------------------------------------------------------
// Admin

absl::StatusOr<ModelVersionInfo> ModelManager::Load(const std::string& name, int64_t version) {
  if (options_.repository.empty()) {
    return absl::FailedPreconditionError(
        "LoadModel needs a model repository (--model_repository); this server hosts one model");
  }
  absl::MutexLock load_lock(&load_mu_);
  LOGN_ASSIGN_OR_RETURN(const RepositoryModel model, ScanOne(name));
  const auto found = model.versions.find(version);
  if (found == model.versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version directory ",
                                            version, " with a ", kModelFileName));
  }
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = models_[name][version];
    entry.pinned_loaded = true;
    entry.pinned_unloaded = false;
  }
  bool loaded = false;
  {
    absl::ReaderMutexLock lock(&mu_);
    const Entry& entry = models_.at(name).at(version);
    loaded = entry.state == v1::MODEL_VERSION_STATE_AVAILABLE &&
             entry.fingerprint == found->second.fingerprint;
  }
  if (!loaded) LOGN_RETURN_IF_ERROR(LoadVersion(name, found->second, model.config));
  absl::ReaderMutexLock lock(&mu_);
  return InfoLocked(name, version, models_.at(name).at(version));
}

absl::StatusOr<ModelVersionInfo> ModelManager::Unload(const std::string& name, int64_t version) {
  if (options_.repository.empty()) {
    return absl::FailedPreconditionError(
        "UnloadModel needs a model repository (--model_repository); this server hosts one model");
  }
  absl::MutexLock load_lock(&load_mu_);
  ModelVersionInfo info;
  {
    absl::MutexLock lock(&mu_);
    auto model = models_.find(name);
    if (model == models_.end() || model->second.count(version) == 0 ||
        model->second.at(version).state == v1::MODEL_VERSION_STATE_UNSPECIFIED) {
      return absl::NotFoundError(
          absl::StrCat("model '", name, "' version ", version, " is not loaded"));
    }
    int available = 0;
    for (const auto& [v, e] : model->second) {
      available += e.state == v1::MODEL_VERSION_STATE_AVAILABLE ? 1 : 0;
    }
    Entry& entry = model->second.at(version);
    if (entry.state == v1::MODEL_VERSION_STATE_AVAILABLE && available == 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", version, " is the only available version of model '", name,
          "': load another first (unloading it would leave the model nothing to serve)"));
    }
    info = InfoLocked(name, version, entry);
    entry.pinned_unloaded = true;
    entry.pinned_loaded = false;
    RetireLocked(name, version);
  }
  info.state = v1::MODEL_VERSION_STATE_UNLOADING;
  info.is_default = false;
  info.reason = "unloaded by UnloadModel; freed once its in-flight requests finish";
  info.model.reset();
  Notify();
  CollectRetired();
  return info;
}

absl::StatusOr<std::vector<ModelVersionInfo>> ModelManager::Reload(const std::string& name,
                                                                   int64_t version) {
  if (options_.repository.empty()) {
    return absl::FailedPreconditionError(
        "ReloadModels needs a model repository (--model_repository); this server hosts one model");
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto& [model, versions] : models_) {
      if (!name.empty() && model != name) continue;
      for (auto it = versions.begin(); it != versions.end();) {
        it->second.pinned_loaded = false;
        it->second.pinned_unloaded = false;
        // A pin-only placeholder (an unloaded version) is dropped with its pin.
        if (it->second.state == v1::MODEL_VERSION_STATE_UNSPECIFIED) {
          it = versions.erase(it);
        } else {
          if (version != 0 && it->first == version) it->second.fingerprint.clear();
          ++it;
        }
      }
    }
  }
  if (version != 0 && name.empty()) {
    return absl::InvalidArgumentError("ReloadModels with a model_version needs a model_name");
  }
  LOGN_RETURN_IF_ERROR(Sync());
  return List(name);
}

}  // namespace logn
