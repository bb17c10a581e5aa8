#include "store/postgres_backend.h"

#include <unistd.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "store/stats_store.h"
#include "store/testing/test_stats.h"

// What only the PostgreSQL backend promises (built with LOGN_WITH_POSTGRES). The contract both
// backends share is the typed suite in stats_store_test.cc.

namespace logn {
namespace {

using store_testing::RandomStatistics;
using store_testing::UniqueModel;

// A replica whose connections the server dropped (restart, failover, idle kill) reconnects:
// the next call succeeds and alias notifications resume.
TEST(PostgresStoreTest, ReconnectsAfterTheServerDropsItsConnections) {
  const std::string url = store_testing::PostgresUrl();
  if (url.empty()) {
    if (store_testing::InCi()) FAIL() << "LOGN_PG_URL is not set in CI";
    GTEST_SKIP() << "LOGN_PG_URL is not set";
  }
  // Tagged, so that only this store's connections are dropped (other tests share the server).
  const std::string app = absl::StrCat("logn_reconnect_", getpid());
  const std::string tagged =
      absl::StrCat(url, url.find('?') == std::string::npos ? "?" : "&", "application_name=", app);
  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(tagged);
  if (!store.ok()) {
    if (store_testing::InCi()) FAIL() << store.status();
    GTEST_SKIP() << store.status();
  }
  absl::StatusOr<std::unique_ptr<StatsStore>> writer = OpenStatsStore(url);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const ModelKey model = UniqueModel("reconnect");
  ASSERT_TRUE((*writer)->Put(NewVersion{model, RandomStatistics(3, 1)}).ok());
  ASSERT_TRUE((*writer)->Put(NewVersion{model, RandomStatistics(3, 2)}).ok());
  ASSERT_TRUE((*writer)->Activate(model, 1).ok());
  ASSERT_TRUE((*store)->Get(model, VersionSelector::Active()).ok());  // a pooled connection

  {
    pqxx::connection admin(url);
    pqxx::work w(admin);
    pqxx::result r = w.exec_params(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        app);
    w.commit();
    // The pooled connection and the LISTEN connection, at least.
    ASSERT_GE(r.size(), 2u);
  }
  absl::StatusOr<VersionRecord> got = (*store)->Get(model, VersionSelector::Active());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.version, 1);

  // The LISTEN connection comes back too: a later change still reaches this replica.
  absl::SleepFor(absl::Milliseconds(600));
  const uint64_t before = (*store)->AliasGeneration();
  ASSERT_TRUE((*writer)->Activate(model, 2).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  while ((*store)->AliasGeneration() == before && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_NE((*store)->AliasGeneration(), before);
  EXPECT_EQ(*(*store)->Resolve(model, VersionSelector::Active()), 2);
}

}  // namespace
}  // namespace logn
