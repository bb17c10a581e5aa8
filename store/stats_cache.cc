#include "store/stats_cache.h"

#include <algorithm>
#include <limits>

#include "common/status_macros.h"

namespace logn {

StatsCache::StatsCache(StatsStore* store, Options options)
    : store_(store), options_(std::move(options)) {}

absl::StatusOr<int64_t> StatsCache::ResolveAlias(const ModelKey& model, const std::string& alias,
                                                 uint64_t generation, bool* from_cache) {
  // `generation` was read first: a change racing with the lookup below bumps it past what we
  // record, so the next Get re-resolves.
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
                                                                            int64_t version,
                                                                            uint64_t generation) {
  VersionKey key{model, version};
  std::shared_ptr<const CachedVersion> older;
  {
    absl::ReaderMutexLock l(&mu_);
    auto it = versions_.find(key);
    if (it != versions_.end()) {
      it->second->last_used.store(tick_.fetch_add(1, std::memory_order_relaxed) + 1,
                                  std::memory_order_relaxed);
      // Read at or after `generation`: no metadata change since.
      if (it->second->generation >= generation) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return it->second->entry;
      }
      older = it->second->entry;
    }
  }
  if (older != nullptr) return Refresh(key, std::move(older), generation);
  loads_.fetch_add(1, std::memory_order_relaxed);
  LOGN_ASSIGN_OR_RETURN(VersionRecord record,
                        store_->Get(model, VersionSelector::Number(version)));
  LOGN_ASSIGN_OR_RETURN(Calibrator calibrator,
                        Calibrator::ForLogN(record.statistics, options_.logn));
  return Insert(key,
                std::make_shared<const CachedVersion>(
                    std::move(record.info), std::move(record.statistics), std::move(calibrator)),
                generation);
}

absl::StatusOr<std::shared_ptr<const CachedVersion>> StatsCache::Refresh(
    const VersionKey& key, std::shared_ptr<const CachedVersion> older, uint64_t generation) {
  refreshes_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<VersionInfo> info =
      store_->GetInfo(key.model, VersionSelector::Number(key.version));
  if (!info.ok()) {
    // An outage must not stop Detect: the metadata it last had, read again next time.
    if (absl::IsUnavailable(info.status())) {
      stale_metadata_.fetch_add(1, std::memory_order_relaxed);
      return older;
    }
    // Deleted meanwhile: so is its entry (an alias pointing at it is re-resolved by Get).
    if (absl::IsNotFound(info.status())) {
      absl::MutexLock l(&mu_);
      auto it = versions_.find(key);
      if (it != versions_.end() && it->second->entry == older) versions_.erase(it);
    }
    return info.status();
  }
  // The statistics and calibrator never change: shared, not rebuilt.
  return Insert(key, std::make_shared<const CachedVersion>(*std::move(info), older->snapshot),
                generation);
}

std::shared_ptr<const CachedVersion> StatsCache::Insert(
    const VersionKey& key, std::shared_ptr<const CachedVersion> entry, uint64_t generation) {
  absl::MutexLock l(&mu_);
  auto& slot = versions_[key];
  if (slot == nullptr) slot = std::make_unique<Slot>();
  // Concurrent loads of one version share the first entry; a newer read replaces an older one.
  if (slot->entry == nullptr || slot->generation < generation) {
    slot->entry = std::move(entry);
    slot->generation = generation;
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
  // Read before anything is looked up or read: a change racing with the reads below bumps it
  // past what they record, so the next Get reads again.
  const uint64_t generation = store_->AliasGeneration();
  if (selector.version > 0) return GetVersion(model, selector.version, generation);
  // Two rounds: if the alias moved and its old target was deleted between resolving and
  // loading, the second round resolves afresh.
  absl::Status last;
  for (int round = 0; round < 2; ++round) {
    bool from_cache = false;
    LOGN_ASSIGN_OR_RETURN(int64_t version,
                          ResolveAlias(model, selector.alias, generation, &from_cache));
    absl::StatusOr<std::shared_ptr<const CachedVersion>> entry =
        GetVersion(model, version, generation);
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
  c.refreshes = refreshes_.load();
  c.stale_metadata = stale_metadata_.load();
  return c;
}

}  // namespace logn
