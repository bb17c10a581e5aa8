#include "store/stats_cache.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "store/sqlite_backend.h"
#include "store/store_backend.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

using store_testing::RandomStatistics;
using store_testing::UniqueModel;

// Forwards to a real backend and counts its transactions: every call that could reach the
// database goes through one. `gets` and `resolves` count the transactions of StatsStore::Get
// and StatsStore::Resolve, which name themselves "get" and "resolve".
class CountingBackend final : public StoreBackend {
 public:
  explicit CountingBackend(std::unique_ptr<StoreBackend> inner) : inner_(std::move(inner)) {}

  absl::Status Read(absl::string_view what, Body body) override {
    ++calls;
    if (what == "get") ++gets;
    if (what == "resolve") ++resolves;
    if (down) return absl::UnavailableError("database unreachable (test)");
    return inner_->Read(what, body);
  }
  absl::Status Write(absl::string_view what, Body body) override {
    ++calls;
    return inner_->Write(what, body);
  }
  // Not a database call: an atomic read in every backend.
  // A store that lost its database cannot tell whether aliases moved: like the backends' watch
  // threads, it bumps the generation.
  uint64_t ExternalAliasGeneration() const override {
    return inner_->ExternalAliasGeneration() + bumps;
  }
  absl::string_view name() const override { return inner_->name(); }

  std::atomic<int> calls{0}, gets{0}, resolves{0};
  std::atomic<bool> down{false};  // every read answers UNAVAILABLE
  std::atomic<uint64_t> bumps{0};

 private:
  std::unique_ptr<StoreBackend> inner_;
};

class StatsCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = store_testing::FreshSqliteUrl("cache-test");
    absl::StatusOr<std::unique_ptr<StoreBackend>> backend =
        OpenSqliteBackend(url_.substr(std::string("sqlite://").size()), StatsStoreOptions{});
    ASSERT_TRUE(backend.ok()) << backend.status();
    auto counting = std::make_unique<CountingBackend>(*std::move(backend));
    counting_ = counting.get();
    store_ = std::make_unique<StatsStore>(std::move(counting));
    model_ = UniqueModel("cache");
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(store_->Put(NewVersion{model_, RandomStatistics(5, i)}).ok());
    }
    ASSERT_TRUE(store_->Activate(model_, 1).ok());
  }

  std::string url_;
  std::unique_ptr<StatsStore> store_;
  CountingBackend* counting_ = nullptr;  // owned by store_
  ModelKey model_;
};

TEST_F(StatsCacheTest, HotPathNeverTouchesTheStore) {
  StatsCache cache(store_.get(), {});
  absl::StatusOr<std::shared_ptr<const CachedVersion>> first = cache.GetActive(model_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->info.version, 1);
  EXPECT_EQ(counting_->resolves.load(), 1);
  EXPECT_EQ(counting_->gets.load(), 1);
  const int calls = counting_->calls.load();

  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<std::shared_ptr<const CachedVersion>> again = cache.GetActive(model_);
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(again->get(), first->get());
    ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(1)).ok());
  }
  EXPECT_EQ(counting_->calls.load(), calls);
  EXPECT_EQ(cache.counters().hits, 2000);

  // The cached calibrator is LogN with the default options over that version's statistics.
  absl::StatusOr<Calibrator> expected = Calibrator::ForLogN(RandomStatistics(5, 1), LogNOptions{});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(std::vector<float>((*first)->calibrator.scale().begin(),
                               (*first)->calibrator.scale().end()),
            std::vector<float>(expected->scale().begin(), expected->scale().end()));
  EXPECT_EQ(std::vector<float>((*first)->calibrator.shift().begin(),
                               (*first)->calibrator.shift().end()),
            std::vector<float>(expected->shift().begin(), expected->shift().end()));
}

TEST_F(StatsCacheTest, AnOutageKeepsServingTheLastResolvedVersion) {
  StatsCache cache(store_.get(), {});
  ASSERT_EQ((*cache.GetActive(model_))->info.version, 1);
  counting_->down = true;
  counting_->bumps += 1;
  absl::StatusOr<std::shared_ptr<const CachedVersion>> during = cache.GetActive(model_);
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ((*during)->info.version, 1);
  EXPECT_EQ(cache.counters().stale, 1);
  EXPECT_EQ(cache.counters().stale_metadata, 1) << "served with the metadata it had";
  // What was never cached cannot be served.
  EXPECT_EQ(cache.Get(model_, VersionSelector::Number(2)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(cache.Get(model_, VersionSelector::Alias("canary")).status().code(),
            absl::StatusCode::kUnavailable);
  // Back up: the alias is resolved afresh and a change made meanwhile is seen.
  ASSERT_TRUE(store_->Activate(model_, 2).ok());
  counting_->down = false;
  counting_->bumps += 1;
  EXPECT_EQ((*cache.GetActive(model_))->info.version, 2);
}

TEST_F(StatsCacheTest, AliasChangeThroughTheSameStoreIsSeenAtOnce) {
  StatsCache cache(store_.get(), {});
  ASSERT_EQ((*cache.GetActive(model_))->info.version, 1);
  ASSERT_TRUE(store_->Activate(model_, 2).ok());
  EXPECT_EQ((*cache.GetActive(model_))->info.version, 2);
  ASSERT_EQ(store_->Rollback(model_).value(), 1);
  // Version 1 is still cached: only the alias is re-resolved.
  const int gets = counting_->gets.load();
  EXPECT_EQ((*cache.GetActive(model_))->info.version, 1);
  EXPECT_EQ(counting_->gets.load(), gets);
}

TEST_F(StatsCacheTest, AliasChangeByAnotherProcessIsSeenWithinOneSecond) {
  StatsCache cache(store_.get(), {});
  ASSERT_EQ((*cache.GetActive(model_))->info.version, 1);
  absl::SleepFor(absl::Milliseconds(300));  // the watcher's first reading
  absl::StatusOr<std::unique_ptr<StatsStore>> other = OpenStatsStore(url_);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Activate(model_, 3).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  int64_t seen = 0;
  while (absl::Now() < deadline) {
    seen = (*cache.GetActive(model_))->info.version;
    if (seen == 3) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(seen, 3);
}

// A calibration profile is the one part of a version that changes: a cached entry shows the
// change at once, with its statistics and calibrator shared, not rebuilt.
TEST_F(StatsCacheTest, ProfileChangeThroughTheStoreIsSeenAtOnce) {
  StatsCache cache(store_.get(), {});
  absl::StatusOr<std::shared_ptr<const CachedVersion>> before = cache.GetActive(model_);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ((*before)->info.calibration_profile, std::nullopt);
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(2)).ok());
  const int gets = counting_->gets.load();

  absl::StatusOr<VersionInfo> set = store_->SetCalibrationProfile(
      model_, VersionSelector::Active(), store_testing::TestProfile("tuned"));
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<std::shared_ptr<const CachedVersion>> after = cache.GetActive(model_);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->info.calibration_profile, set->calibration_profile);
  EXPECT_EQ((*after)->info.version, 1);
  EXPECT_EQ((*after)->snapshot, (*before)->snapshot);
  EXPECT_EQ(&(*after)->calibrator, &(*before)->calibrator);
  EXPECT_EQ((*before)->info.calibration_profile, std::nullopt) << "entries are immutable";
  EXPECT_EQ(counting_->gets.load(), gets) << "no payload read";
  EXPECT_EQ(cache.counters().loads, 2);
  EXPECT_EQ(cache.counters().refreshes, 1);
  // Then a hit again; version 2 is refreshed on its next Get (one metadata read), and a
  // version deleted meanwhile is not served.
  const int calls = counting_->calls.load();
  EXPECT_EQ(cache.GetActive(model_)->get(), after->get());
  EXPECT_EQ(counting_->calls.load(), calls);
  absl::StatusOr<std::shared_ptr<const CachedVersion>> two =
      cache.Get(model_, VersionSelector::Number(2));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->info.calibration_profile, std::nullopt);
  EXPECT_EQ(cache.counters().refreshes, 2);
  ASSERT_TRUE(store_->Delete(model_, 2).ok());
  ASSERT_TRUE(store_->SetCalibrationProfile(model_, VersionSelector::Active(), std::nullopt).ok());
  EXPECT_EQ(cache.Get(model_, VersionSelector::Number(2)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*cache.GetActive(model_))->info.calibration_profile, std::nullopt);
  EXPECT_EQ(counting_->gets.load(), gets);
}

// A change made elsewhere is seen once the generation moves (the backends' watchers bump it;
// here the test does, with the watcher kept quiet).
TEST_F(StatsCacheTest, ProfileChangeElsewhereIsSeenWhenTheGenerationMoves) {
  StatsStoreOptions quiet;
  quiet.watch_interval = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<StoreBackend>> backend =
      OpenSqliteBackend(url_.substr(std::string("sqlite://").size()), quiet);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto owned = std::make_unique<CountingBackend>(*std::move(backend));
  CountingBackend* counting = owned.get();
  StatsStore store(std::move(owned));
  StatsCache cache(&store, {});
  absl::StatusOr<std::shared_ptr<const CachedVersion>> before = cache.GetActive(model_);
  ASSERT_TRUE(before.ok()) << before.status();

  absl::StatusOr<std::unique_ptr<StatsStore>> other = OpenStatsStore(url_);
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string profile = store_testing::TestProfile("elsewhere");
  ASSERT_TRUE((*other)->SetCalibrationProfile(model_, VersionSelector::Number(1), profile).ok());
  // Not seen yet: the hot path never reads the store.
  const int calls = counting->calls.load();
  EXPECT_EQ(cache.GetActive(model_)->get(), before->get());
  EXPECT_EQ(counting->calls.load(), calls);

  counting->bumps += 1;
  absl::StatusOr<std::shared_ptr<const CachedVersion>> after = cache.GetActive(model_);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_TRUE((*after)->info.calibration_profile.has_value());
  EXPECT_EQ((*after)->info.calibration_profile->profile, profile);
  EXPECT_EQ((*after)->snapshot, (*before)->snapshot);
  absl::StatusOr<std::shared_ptr<const CachedVersion>> by_number =
      cache.Get(model_, VersionSelector::Number(1));
  ASSERT_TRUE(by_number.ok()) << by_number.status();
  EXPECT_EQ(by_number->get(), after->get());
  EXPECT_EQ(cache.counters().loads, 1);
}

TEST_F(StatsCacheTest, UnknownAliasIsNotFoundAndNotCached) {
  StatsCache cache(store_.get(), {});
  EXPECT_EQ(cache.Get(model_, VersionSelector::Alias("canary")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cache.Get(model_, VersionSelector::Number(9)).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->SetAlias(model_, "canary", 3).ok());
  absl::StatusOr<std::shared_ptr<const CachedVersion>> got =
      cache.Get(model_, VersionSelector::Alias("canary"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)->info.version, 3);
  EXPECT_EQ(cache.Get(model_, VersionSelector::Alias("Bad!")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StatsCacheTest, EvictsTheLeastRecentlyUsedVersion) {
  StatsCache::Options options;
  options.max_versions = 2;
  StatsCache cache(store_.get(), options);
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(1)).ok());
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(2)).ok());
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(1)).ok());  // 2 is now the oldest
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(3)).ok());
  EXPECT_EQ(cache.counters().evictions, 1);
  const int gets = counting_->gets.load();
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(1)).ok());
  EXPECT_EQ(counting_->gets.load(), gets);
  ASSERT_TRUE(cache.Get(model_, VersionSelector::Number(2)).ok());
  EXPECT_EQ(counting_->gets.load(), gets + 1);
}

TEST_F(StatsCacheTest, ConcurrentReadersShareOneEntry) {
  StatsCache cache(store_.get(), {});
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        absl::StatusOr<std::shared_ptr<const CachedVersion>> got = cache.GetActive(model_);
        if (!got.ok() || (*got)->info.version != 1) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(counting_->gets.load(), 4);
}

}  // namespace
}  // namespace logn
