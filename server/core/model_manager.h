#ifndef LOGN_SERVER_CORE_MODEL_MANAGER_H_
#define LOGN_SERVER_CORE_MODEL_MANAGER_H_

// The models a server hosts: one (--model) or a repository of models and numbered versions
// (model_repository.h), loaded, swapped and retired while traffic flows (docs/server.md,
// "Model repository").
//
// Swap guarantee: a version receives traffic only once it is loaded and warmed (the runtime's
// load runs a probe forward pass and checks every output); versions the policy no longer wants
// are retired only after the loads of that pass, and a retired version stays alive (and
// finishes its in-flight requests) until the last request holding it lets go. A version that
// fails to load is reported FAILED with its reason and never replaces a working one: the
// latest-N policy counts only versions that did not fail.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "logn/v1/model_service.pb.h"
#include "server/core/model_repository.h"
#include "server/runtime/detector_runtime.h"
#include "store/stats_store.h"

namespace logn {

class DriftMonitor;

// One loaded model version. Immutable once available; shared (shared_ptr) by every request and
// calibration job that uses it, so it outlives them all.
class LoadedModel {
 public:
  LoadedModel(std::unique_ptr<DetectorRuntime> runtime, int64_t version, v1::ModelConfig config,
              std::string path);
  ~LoadedModel();

  const DetectorRuntime& runtime() const { return *runtime_; }
  // Its statistics lineage: the manifest's name and the model file's sha256.
  const ModelKey& key() const { return key_; }
  const std::string& name() const { return key_.name; }
  int64_t version() const { return version_; }
  // LogA's priors; empty when the manifest lacks some class's instance_count.
  const std::vector<double>& instance_counts() const { return instance_counts_; }
  // Its missing-statistics policy.
  const v1::ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  absl::Time loaded_at() const { return loaded_at_; }
  // The bytes of its parameters and buffers (an estimate of what unloading it frees).
  int64_t memory_bytes() const { return memory_bytes_; }
  // The live logit statistics of its traffic; null when drift monitoring is off.
  DriftMonitor* drift() const { return drift_.get(); }
  void set_drift(std::unique_ptr<DriftMonitor> drift);

 private:
  std::unique_ptr<DetectorRuntime> runtime_;
  ModelKey key_;
  int64_t version_;
  v1::ModelConfig config_;
  std::string path_;
  absl::Time loaded_at_;
  int64_t memory_bytes_ = 0;
  std::vector<double> instance_counts_;
  std::unique_ptr<DriftMonitor> drift_;
};

// One version's state, as ListModels reports it.
struct ModelVersionInfo {
  std::string name;
  int64_t version = 0;
  v1::ModelVersionState state = v1::MODEL_VERSION_STATE_UNSPECIFIED;
  std::string reason;
  std::string path;
  bool is_default = false;
  bool pinned = false;
  std::shared_ptr<const LoadedModel> model;  // AVAILABLE (and UNLOADING while alive)
};

struct ModelManagerOptions {
  // The repository directory; empty: the single model of runtime.model_path (version 1).
  std::string repository;
  // What every version is loaded with; model_path / manifest_path are the version's own.
  DetectorRuntime::Options runtime;
  // How often the repository is rescanned; zero or infinite: only on ReloadModels.
  absl::Duration poll_interval = absl::Seconds(30);
  // The config of the --model model and of repository models without model_config.json.
  v1::ModelConfig default_config;
  // Loads one version (the default: DetectorRuntime::Load). Tests inject failures here.
  std::function<absl::StatusOr<std::unique_ptr<DetectorRuntime>>(const DetectorRuntime::Options&)>
      loader;
  // Called for each model version made available, before it receives traffic (drift monitors).
  std::function<void(LoadedModel&)> on_loaded;
};

class ModelManager {
 public:
  // Single-model mode: loads runtime.model_path (its error is returned). Repository mode: scans
  // and loads what the policies select (a version that fails is reported, not returned; a
  // repository that cannot be read is NOT_FOUND), then polls every poll_interval.
  static absl::StatusOr<std::unique_ptr<ModelManager>> Create(const ModelManagerOptions& options);
  // Hosts an already loaded runtime as version 1 of its manifest's model (tests, CreateFrom).
  static std::unique_ptr<ModelManager> ForRuntime(std::unique_ptr<DetectorRuntime> runtime,
                                                  const ModelManagerOptions& options);
  ~ModelManager();  // stops polling
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // The version a request names. `name` empty: the only model hosted (INVALID_ARGUMENT when
  // there are several); `version` 0: its newest available version. NOT_FOUND for a model or
  // version the server does not host, UNAVAILABLE while it is loading (retry), FAILED_PRECONDITION
  // for a failed or unloading version (with the reason).
  absl::StatusOr<std::shared_ptr<const LoadedModel>> Resolve(const std::string& name,
                                                             int64_t version) const;
  // Every version (of `name`; all when empty), by name then version; retiring versions included
  // while their last requests run. NOT_FOUND for a name the server does not know.
  absl::StatusOr<std::vector<ModelVersionInfo>> List(const std::string& name) const;
  // The available versions (metrics, drift).
  std::vector<std::shared_ptr<const LoadedModel>> Available() const;

  // Admin (repository mode; FAILED_PRECONDITION otherwise). Load: loads the version now and pins
  // it (it stays whatever the policy says) — NOT_FOUND without such a directory, the load's
  // error if it fails. Unload: retires it and pins it unloaded — NOT_FOUND if not hosted,
  // FAILED_PRECONDITION for the last available version of a model (that would leave the model
  // with nothing to serve). Reload: clears the pins of `name` (all when empty), rescans, and with
  // a version loads its files afresh and swaps them in.
  absl::StatusOr<ModelVersionInfo> Load(const std::string& name, int64_t version);
  absl::StatusOr<ModelVersionInfo> Unload(const std::string& name, int64_t version);
  absl::StatusOr<std::vector<ModelVersionInfo>> Reload(const std::string& name, int64_t version);
  // One scan of the repository, applied (what the poller does).
  absl::Status Sync();

  // Called (without the state lock held; one call at a time) whenever a version changes state:
  // health, metrics. Replacing it waits for a running call to end.
  void SetListener(std::function<void()> listener);
  const std::string& repository() const { return options_.repository; }
  absl::Time scanned_at() const;

 private:
  struct Entry {
    v1::ModelVersionState state = v1::MODEL_VERSION_STATE_UNSPECIFIED;
    std::string reason;
    std::string path;
    std::string fingerprint;  // of the files loaded, or that failed
    std::shared_ptr<const LoadedModel> model;
    bool pinned_loaded = false;
    bool pinned_unloaded = false;
  };
  struct Retiring {
    std::string name;
    int64_t version;
    std::string path;
    std::weak_ptr<const LoadedModel> model;
  };
  using Versions = std::map<int64_t, Entry>;

  explicit ModelManager(const ModelManagerOptions& options);
  // Loads one version outside the lock and installs it (or its failure).
  absl::Status LoadVersion(const std::string& name, const RepositoryVersion& version,
                           const v1::ModelConfig& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);
  absl::StatusOr<std::shared_ptr<LoadedModel>> LoadModelFiles(const std::string& expected_name,
                                                              const RepositoryVersion& version,
                                                              const v1::ModelConfig& config) const;
  // Makes `model` the version's serving copy (the one it replaces retires), with the
  // fingerprint of its files.
  void Install(const std::string& name, int64_t version, std::shared_ptr<LoadedModel> model,
               const std::string& fingerprint);
  // Applies one model's scan: loads what its policy wants, then retires what it no longer does.
  void SyncModel(const RepositoryModel& model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);
  std::set<int64_t> Wanted(const RepositoryModel& model) const;
  void RetireLocked(const std::string& name, int64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the retiring versions whose last request finished, and returns freed heap memory to
  // the system; true when any was dropped.
  bool CollectRetired();
  ModelVersionInfo InfoLocked(const std::string& name, int64_t version, const Entry& entry) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t DefaultVersionLocked(const Versions& versions) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The hosted model names, comma-separated; NOT_FOUND naming them for `name`.
  std::string HostedNamesLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status NotHostedLocked(const std::string& name) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<RepositoryModel> ScanOne(const std::string& name) const;
  void Notify();
  void PollLoop();

  const ModelManagerOptions options_;
  absl::Mutex load_mu_;  // one load at a time: bounded memory, and no version loaded twice
  mutable absl::Mutex mu_;
  std::map<std::string, Versions> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> config_errors_ ABSL_GUARDED_BY(mu_);
  std::vector<Retiring> retiring_ ABSL_GUARDED_BY(mu_);
  absl::Time scanned_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Held while the listener runs (not mu_: the listener reads the state through List).
  absl::Mutex listener_mu_;
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);
  absl::Notification stop_;
  std::thread poller_;
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_MODEL_MANAGER_H_
