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

// One cached version: the snapshot and its calibrator, ready for the Detect hot path.
struct CachedVersion {
  CachedVersion(VersionInfo i, Statistics s, Calibrator c)
      : info(std::move(i)), statistics(std::move(s)), calibrator(std::move(c)) {}

  VersionInfo info;
  Statistics statistics;
  Calibrator calibrator;  // LogN with StatsCache::Options::logn
};

// An in-memory cache in front of a StatsStore, keyed by (model, version), each entry holding
// the statistics and the precomputed LogN scale/shift. Alias resolutions ("active", ...) are
// cached too and dropped whenever the store's AliasGeneration() moves (any alias change, in
// this process or another). A repeated Get therefore costs an atomic load and a hash lookup and
// never touches the database. While the store is UNAVAILABLE (a database outage), an alias
// resolves to the version it last resolved to, so Detect keeps serving cached statistics.
// Thread-safe.
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
    std::atomic<uint64_t> last_used{0};
  };
  struct Resolution {
    int64_t version = 0;
    uint64_t generation = 0;  // store->AliasGeneration() read before resolving
  };

  absl::StatusOr<int64_t> ResolveAlias(const ModelKey& model, const std::string& alias,
                                       bool* from_cache);
  absl::StatusOr<std::shared_ptr<const CachedVersion>> GetVersion(const ModelKey& model,
                                                                  int64_t version);

  StatsStore* const store_;
  const Options options_;
  std::atomic<uint64_t> tick_{0};
  std::atomic<int64_t> hits_{0}, loads_{0}, resolutions_{0}, evictions_{0}, stale_{0};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<VersionKey, std::unique_ptr<Slot>> versions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<AliasKey, Resolution> aliases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logn

#endif  // LOGN_STORE_STATS_CACHE_H_
