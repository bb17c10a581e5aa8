#include "store/stats_cache.h"

#include <limits>

#include "common/status_macros.h"

namespace logn {

StatsCache::StatsCache(StatsStore* store, Options options)
    : store_(store), options_(std::move(options)) {}

absl::StatusOr<int64_t> StatsCache::ResolveAlias(const ModelKey& model, const std::string& alias,
                                                 bool* from_cache) {
  // Read the generation first: a change racing with the lookup below bumps it past what we
  // record, so the next Get re-resolves.
  const uint64_t generation = store_->AliasGeneration();
  {
    absl::ReaderMutexLock l(&mu_);
    auto it = aliases_.find(AliasKey{model, alias});
    if (it != aliases_.end() && it->second.generation == generation) {
      *from_cache = true;
      return it->second.version;
    }
  }
  *from_cache = false;
  resolutions_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<int64_t> version = store_->Resolve(model, VersionSelector::Alias(alias));
  if (!version.ok()) {
    // The database is unreachable: keep serving the version the alias last pointed at (an
    // outage must not stop Detect), and re-resolve once the store answers again.
    if (absl::IsUnavailable(version.status())) {
      absl::ReaderMutexLock l(&mu_);
      auto it = aliases_.find(AliasKey{model, alias});
      if (it != aliases_.end()) {
        stale_.fetch_add(1, std::memory_order_relaxed);
        *from_cache = true;
        return it->second.version;
      }
    }
    return version.status();
  }
  absl::MutexLock l(&mu_);
  aliases_[AliasKey{model, alias}] = Resolution{*version, generation};
  return *version;
}

absl::StatusOr<std::shared_ptr<const CachedVersion>> StatsCache::GetVersion(const ModelKey& model,
                                                                            int64_t version) {
  VersionKey key{model, version};
  {
    absl::ReaderMutexLock l(&mu_);
    auto it = versions_.find(key);
    if (it != versions_.end()) {
      it->second->last_used.store(tick_.fetch_add(1, std::memory_order_relaxed) + 1,
                                  std::memory_order_relaxed);
      hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second->entry;
    }
  }
  loads_.fetch_add(1, std::memory_order_relaxed);
  LOGN_ASSIGN_OR_RETURN(VersionRecord record,
                        store_->Get(model, VersionSelector::Number(version)));
  LOGN_ASSIGN_OR_RETURN(Calibrator calibrator,
                        Calibrator::ForLogN(record.statistics, options_.logn));
  auto entry = std::make_shared<const CachedVersion>(
      std::move(record.info), std::move(record.statistics), std::move(calibrator));

  absl::MutexLock l(&mu_);
  auto& slot = versions_[key];
  if (slot == nullptr) {
    slot = std::make_unique<Slot>();
    slot->entry = entry;
  }
  slot->last_used.store(tick_.fetch_add(1, std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  std::shared_ptr<const CachedVersion> result = slot->entry;
  while (static_cast<int>(versions_.size()) > std::max(1, options_.max_versions)) {
    auto victim = versions_.end();
    uint64_t oldest = std::numeric_limits<uint64_t>::max();
    for (auto it = versions_.begin(); it != versions_.end(); ++it) {
      const uint64_t used = it->second->last_used.load(std::memory_order_relaxed);
      if (used < oldest && !(it->first == key)) {
        oldest = used;
        victim = it;
      }
    }
    if (victim == versions_.end()) break;
    versions_.erase(victim);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  return result;
}

absl::StatusOr<std::shared_ptr<const CachedVersion>> StatsCache::Get(
    const ModelKey& model, const VersionSelector& selector) {
  LOGN_RETURN_IF_ERROR(selector.Validate());
  if (selector.version > 0) return GetVersion(model, selector.version);
  // Two rounds: if the alias moved and its old target was deleted between resolving and
  // loading, the second round resolves afresh.
  absl::Status last;
  for (int round = 0; round < 2; ++round) {
    bool from_cache = false;
    LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveAlias(model, selector.alias, &from_cache));
    absl::StatusOr<std::shared_ptr<const CachedVersion>> entry = GetVersion(model, version);
    if (entry.ok() || !absl::IsNotFound(entry.status())) return entry;
    last = entry.status();
    absl::MutexLock l(&mu_);
    aliases_.erase(AliasKey{model, selector.alias});
  }
  return last;
}

void StatsCache::Clear() {
  absl::MutexLock l(&mu_);
  versions_.clear();
  aliases_.clear();
}

StatsCache::Counters StatsCache::counters() const {
  Counters c;
  c.hits = hits_.load();
  c.loads = loads_.load();
  c.resolutions = resolutions_.load();
  c.evictions = evictions_.load();
  c.stale = stale_.load();
  return c;
}

}  // namespace logn
