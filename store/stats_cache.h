#ifndef LOGN_STORE_STATS_CACHE_H_
#define LOGN_STORE_STATS_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "calibration/calibrator.h"
#include "store/stats_store.h"

namespace logn {

// One cached version: its metadata, the snapshot and its calibrator, ready for the Detect hot
// path. Immutable: when the version's metadata changes (its calibration profile) the cache
// makes a new entry that shares the snapshot and calibrator of the old one.
struct CachedVersion {
  // What never changes for a version: the statistics and the calibrator built from them.
  struct Snapshot {
    Statistics statistics;
    Calibrator calibrator;  // LogN with StatsCache::Options::logn
  };

  CachedVersion(VersionInfo i, std::shared_ptr<const Snapshot> s)
      : info(std::move(i)),
        snapshot(std::move(s)),
        statistics(snapshot->statistics),
        calibrator(snapshot->calibrator) {}
  CachedVersion(VersionInfo i, Statistics s, Calibrator c)
      : CachedVersion(std::move(i), std::make_shared<const Snapshot>(
                                        Snapshot{std::move(s), std::move(c)})) {}
  CachedVersion(const CachedVersion& other) : CachedVersion(other.info, other.snapshot) {}
  CachedVersion& operator=(const CachedVersion&) = delete;

  // As of the last time the cache read it (see StatsCache): the calibration profile may have
  // changed since only if AliasGeneration() moved after that.
  VersionInfo info;
  std::shared_ptr<const Snapshot> snapshot;
  const Statistics& statistics;  // snapshot->statistics
  const Calibrator& calibrator;  // snapshot->calibrator
};

// An in-memory cache in front of a StatsStore, keyed by (model, version), each entry holding
// the version's metadata, the statistics and the precomputed LogN scale/shift. Alias
// resolutions ("active", ...) are cached too and dropped whenever the store's
// AliasGeneration() moves (any alias or calibration profile change, in this process or
// another); an entry read before the generation moved has its metadata re-read
// (StatsStore::GetInfo: no payload, no rebuilt calibrator) before it is returned, so a changed
// calibration profile is never served stale. A repeated Get therefore costs an atomic load and a hash
// lookup and never touches the database. While the store is UNAVAILABLE (a database outage),
// an alias resolves to the version it last resolved to and a version keeps the metadata it
// last had, so Detect keeps serving cached statistics. Thread-safe.
class StatsCache {
 public:
  struct Options {
    // Versions kept; the least recently used one is evicted beyond this.
    int max_versions = 64;
    // Options for the calibrator built for each version.
    LogNOptions logn;
  };

  // `store` must outlive the cache.
  StatsCache(StatsStore* store, Options options);

  // The version `selector` names, loading it from the store on a miss. Errors are the store's
  // (NOT_FOUND for an unknown model / version / alias, ...), or INVALID_ARGUMENT when the LogN
  // calibrator cannot be built from the statistics. Failures are not cached.
  absl::StatusOr<std::shared_ptr<const CachedVersion>> Get(const ModelKey& model,
                                                           const VersionSelector& selector);
  absl::StatusOr<std::shared_ptr<const CachedVersion>> GetActive(const ModelKey& model) {
    return Get(model, VersionSelector::Active());
  }

  // Drops every entry (e.g. after a Delete).
  void Clear();

  struct Counters {
    int64_t hits = 0;          // served from memory
    int64_t loads = 0;         // versions read from the store
    int64_t resolutions = 0;   // aliases resolved through the store
    int64_t evictions = 0;
    int64_t stale = 0;         // aliases served from an older resolution while UNAVAILABLE
    int64_t refreshes = 0;     // versions' metadata re-read after the generation moved
    int64_t stale_metadata = 0;  // versions served with older metadata while UNAVAILABLE
  };
  Counters counters() const;

 private:
  struct VersionKey {
    ModelKey model;
    int64_t version;
    friend bool operator==(const VersionKey& a, const VersionKey& b) {
      return a.version == b.version && a.model == b.model;
    }
    template <typename H>
    friend H AbslHashValue(H h, const VersionKey& k) {
      return H::combine(std::move(h), k.model, k.version);
    }
  };
  struct AliasKey {
    ModelKey model;
    std::string alias;
    friend bool operator==(const AliasKey& a, const AliasKey& b) {
      return a.alias == b.alias && a.model == b.model;
    }
    template <typename H>
    friend H AbslHashValue(H h, const AliasKey& k) {
      return H::combine(std::move(h), k.model, k.alias);
    }
  };
  struct Slot {
    std::shared_ptr<const CachedVersion> entry;
    // store->AliasGeneration() read before entry->info was read.
    uint64_t generation = 0;
    std::atomic<uint64_t> last_used{0};
  };
  struct Resolution {
    int64_t version = 0;
    uint64_t generation = 0;  // store->AliasGeneration() read before resolving
  };

  // `generation`: store_->AliasGeneration(), read by the caller before anything else.
  absl::StatusOr<int64_t> ResolveAlias(const ModelKey& model, const std::string& alias,
                                       uint64_t generation, bool* from_cache);
  absl::StatusOr<std::shared_ptr<const CachedVersion>> GetVersion(const ModelKey& model,
                                                                  int64_t version,
                                                                  uint64_t generation);
  // The entry `older` (read before `generation`) with its metadata re-read.
  absl::StatusOr<std::shared_ptr<const CachedVersion>> Refresh(
      const VersionKey& key, std::shared_ptr<const CachedVersion> older, uint64_t generation);
  // Stores `entry` read at `generation` (unless a newer one is there) and evicts beyond
  // max_versions; returns the entry now cached.
  std::shared_ptr<const CachedVersion> Insert(const VersionKey& key,
                                              std::shared_ptr<const CachedVersion> entry,
                                              uint64_t generation);

  StatsStore* const store_;
  const Options options_;
  std::atomic<uint64_t> tick_{0};
  std::atomic<int64_t> hits_{0}, loads_{0}, resolutions_{0}, evictions_{0}, stale_{0},
      refreshes_{0}, stale_metadata_{0};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<VersionKey, std::unique_ptr<Slot>> versions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<AliasKey, Resolution> aliases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logn

#endif  // LOGN_STORE_STATS_CACHE_H_
