#include "store/postgres_backend.h"

#include <unistd.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "store/stats_store.h"
#include "store/testing/migration_checks.h"
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

// A fresh database `db` on the test server (the shared one is already at the current schema)
// and its URL.
std::string FreshDatabase(const std::string& url, const std::string& db) {
  const size_t slash = url.rfind('/');
  const size_t query = url.find('?', slash);
  pqxx::connection admin(url);
  pqxx::nontransaction w(admin);
  w.exec(absl::StrCat("DROP DATABASE IF EXISTS ", db, " WITH (FORCE)"));
  w.exec(absl::StrCat("CREATE DATABASE ", db));
  return absl::StrCat(url.substr(0, slash + 1), db,
                      query == std::string::npos ? "" : url.substr(query));
}

void DropDatabase(const std::string& url, const std::string& db) {
  pqxx::connection admin(url);
  pqxx::nontransaction w(admin);
  w.exec(absl::StrCat("DROP DATABASE ", db, " WITH (FORCE)"));
}

// A database written by the release before sampling records (schema 2): its versions and
// checkpoints read back without a sampling record, and new ones get theirs.
TEST(PostgresStoreTest, MigratesSchema2VersionsToNoSamplingRecord) {
  const std::string url = store_testing::PostgresUrl();
  if (url.empty()) {
    if (store_testing::InCi()) FAIL() << "LOGN_PG_URL is not set in CI";
    GTEST_SKIP() << "LOGN_PG_URL is not set";
  }
  const std::string db = absl::StrCat("logn_mig_", getpid());
  const std::string db_url = FreshDatabase(url, db);
  const ModelKey model = UniqueModel("pgmig");
  Statistics stats = RandomStatistics(3, 1);
  stats.provenance.model_name = model.name;
  stats.provenance.model_sha256 = model.sha256;
  const std::string payload = StatisticsToBinary(stats);
  {
    pqxx::connection c(db_url);
    pqxx::work w(c);
    for (int v = 0; v < 2; ++v) w.exec(kPostgresMigrations[v]);
    w.exec("CREATE TABLE stats_meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)");
    w.exec("INSERT INTO stats_meta(key, value) VALUES('schema_version', 2)");
    w.exec_params("INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
                  "VALUES($1, $2, 3, 'last', 2)",
                  model.name, model.sha256);
    const pqxx::binarystring bytes(payload.data(), payload.size());
    w.exec_params("INSERT INTO stats_versions SELECT model_id, 1, 1700000000000000, 'old-job', "
                  "'old', 'images', 10, 2, 'exact', 0, '', $2::text, FALSE, $3::bytea FROM "
                  "stats_models WHERE name = $1",
                  model.name, Sha256Hex(payload), bytes);
    w.exec_params("INSERT INTO stats_job_checkpoints SELECT model_id, 'old-job', 3, 2, 'images', "
                  "1700000000000000, $2::text, $3::bytea FROM stats_models WHERE name = $1",
                  model.name, Sha256Hex(payload), bytes);
    w.commit();
  }
  {
    absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(db_url);
    ASSERT_TRUE(store.ok()) << store.status();
    store_testing::ExpectMigratedStoreKeepsOldRowsAndStoresSampling(**store, model, stats);
    pqxx::connection c(db_url);
    pqxx::work w(c);
    EXPECT_EQ(w.exec1("SELECT value FROM stats_meta WHERE key = 'schema_version'")[0].as<int>(),
              kPostgresSchemaVersion);
    EXPECT_EQ(w.exec1("SELECT count(*) FROM stats_version_sampling")[0].as<int>(), 0);
  }
  DropDatabase(url, db);
}

// A database written by the previous release (schema 3): its versions read back intact
// (sampling records included) and without a calibration profile, and profiles can be set
// afterwards.
TEST(PostgresStoreTest, MigratesSchema3VersionsToNoCalibrationProfile) {
  const std::string url = store_testing::PostgresUrl();
  if (url.empty()) {
    if (store_testing::InCi()) FAIL() << "LOGN_PG_URL is not set in CI";
    GTEST_SKIP() << "LOGN_PG_URL is not set";
  }
  const std::string db = absl::StrCat("logn_mig3_", getpid());
  const std::string db_url = FreshDatabase(url, db);
  const ModelKey model = UniqueModel("pgmig3");
  Statistics stats = RandomStatistics(3, 1);
  stats.provenance.model_name = model.name;
  stats.provenance.model_sha256 = model.sha256;
  const std::string payload = StatisticsToBinary(stats);
  const RoiSamplingRecord sampling = store_testing::ProposalSampling(20, 256, 0.1, 0.001);
  {
    pqxx::connection c(db_url);
    pqxx::work w(c);
    for (int v = 0; v < 3; ++v) w.exec(kPostgresMigrations[v]);
    w.exec("CREATE TABLE stats_meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)");
    w.exec("INSERT INTO stats_meta(key, value) VALUES('schema_version', 3)");
    w.exec_params("INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
                  "VALUES($1, $2, 3, 'last', 3)",
                  model.name, model.sha256);
    const pqxx::binarystring bytes(payload.data(), payload.size());
    for (int version : {1, 2}) {
      w.exec_params("INSERT INTO stats_versions SELECT model_id, $2::bigint, 1700000000000000, "
                    "$3::text, 'old', 'images', 10, 2, 'exact', 0, '', $4::text, FALSE, "
                    "$5::bytea FROM stats_models WHERE name = $1",
                    model.name, version, version == 1 ? "old-job" : "other", Sha256Hex(payload),
                    bytes);
    }
    w.exec_params("INSERT INTO stats_version_sampling SELECT model_id, 1, 'proposals', $2::bigint, "
                  "$3::float8, $4::float8, $5::bigint, $6::bigint, $7::bigint, $8::float8 "
                  "FROM stats_models WHERE name = $1",
                  model.name, sampling.num_rois, sampling.positive_fraction,
                  static_cast<double>(sampling.positive_iou), sampling.images, sampling.rois,
                  sampling.positive_rois, sampling.rfs_threshold);
    w.commit();
  }
  {
    absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(db_url);
    ASSERT_TRUE(store.ok()) << store.status();
    store_testing::ExpectMigratedStoreKeepsOldVersionsAndStoresProfiles(**store, model, stats,
                                                                        sampling);
    pqxx::connection c(db_url);
    pqxx::work w(c);
    EXPECT_EQ(w.exec1("SELECT value FROM stats_meta WHERE key = 'schema_version'")[0].as<int>(),
              kPostgresSchemaVersion);
    EXPECT_EQ(w.exec1("SELECT count(*) FROM stats_version_profile")[0].as<int>(), 1)
        << "version 1's; version 2's went with it, version 3's was cleared";
    EXPECT_EQ(w.exec1("SELECT version FROM stats_version_profile")[0].as<int>(), 1);
  }
  DropDatabase(url, db);
}

}  // namespace
}  // namespace logn
