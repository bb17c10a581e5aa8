#include "store/sqlite_backend.h"

#include <sqlite3.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "store/stats_store.h"
#include "store/testing/migration_checks.h"
#include "store/testing/test_stats.h"

// What only the SQLite backend promises: WAL, its schema versioning and migrations, readers
// that a writer never blocks, busy writers as UNAVAILABLE, corruption and a full database.
// The contract both backends share is the typed suite in stats_store_test.cc.

namespace logn {
namespace {

using ::testing::HasSubstr;
using store_testing::RandomStatistics;
using store_testing::UniqueModel;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = store_testing::FreshSqliteUrl("sqlite-test");
    path_ = url_.substr(std::string("sqlite://").size());
  }
  sqlite3* RawOpen() {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    return db;
  }
  std::string url_, path_;
};

TEST_F(SqliteStoreTest, UsesWalAndRecordsTheSchemaVersion) {
  ASSERT_TRUE(OpenStatsStore(url_).ok());
  sqlite3* db = RawOpen();
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), kSqliteSchemaVersion);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, MigratesAnOlderSchemaForward) {
  sqlite3* db = RawOpen();
  ASSERT_EQ(sqlite3_exec(db, kSqliteMigrations[0], nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 1", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url_);
  ASSERT_TRUE(store.ok()) << store.status();
  const ModelKey model = UniqueModel("mig");
  NewVersion v{model, RandomStatistics(3, 1)};
  ASSERT_TRUE((*store)->Put(v).ok());
  ASSERT_TRUE((*store)->Activate(model, 1).ok());  // needs the v2 alias epoch table
  JobCheckpoint cp{model, "job", 1, 0, VersionSource::kLogits, RandomStatistics(3, 2)};
  ASSERT_TRUE((*store)->PutCheckpoint(cp).ok());  // needs the v3 checkpoint table
  NewVersion sampled{model, RandomStatistics(3, 3)};
  sampled.sampling = store_testing::ProposalSampling(4);
  ASSERT_TRUE((*store)->Put(sampled).ok());  // needs the v4 sampling table
  ASSERT_TRUE((*store)
                  ->SetCalibrationProfile(model, VersionSelector::Number(2),
                                          store_testing::TestProfile("p"))
                  .ok());  // needs the v5 profile table
}

// A store written by the previous release (schema 3): its versions and checkpoints read back
// without a sampling record, and new ones get theirs.
TEST_F(SqliteStoreTest, MigratesSchema3VersionsToNoSamplingRecord) {
  const ModelKey model = UniqueModel("mig3");
  Statistics stats = RandomStatistics(3, 1);
  stats.provenance.model_name = model.name;
  stats.provenance.model_sha256 = model.sha256;
  const std::string payload = StatisticsToBinary(stats);
  sqlite3* db = RawOpen();
  for (int v = 0; v < 3; ++v) {
    ASSERT_EQ(sqlite3_exec(db, kSqliteMigrations[v], nullptr, nullptr, nullptr), SQLITE_OK) << v;
  }
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 3", nullptr, nullptr, nullptr), SQLITE_OK);
  auto insert = [&](const char* sql, const std::string& text) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_bind_text(stmt, 1, model.name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, text.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(stmt, 3, payload.data(), static_cast<int>(payload.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
  };
  insert("INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
         "VALUES(?1, ?2, 3, 'last', 2)",
         model.sha256);
  insert("INSERT INTO stats_versions SELECT model_id, 1, 1700000000000000, 'old-job', 'old', "
         "'images', 10, 2, 'exact', 0, '', ?2, 0, ?3 FROM stats_models WHERE name = ?1",
         Sha256Hex(payload));
  insert("INSERT INTO stats_job_checkpoints SELECT model_id, 'old-job', 3, 2, 'images', "
         "1700000000000000, ?2, ?3 FROM stats_models WHERE name = ?1",
         Sha256Hex(payload));
  sqlite3_close(db);

  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url_);
  ASSERT_TRUE(store.ok()) << store.status();
  store_testing::ExpectMigratedStoreKeepsOldRowsAndStoresSampling(**store, model, stats);

  // The payload stays the last column of stats_versions: List never reads past it.
  db = RawOpen();
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('stats_versions') "
                                   "ORDER BY cid DESC LIMIT 1",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "payload");
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM stats_version_sampling", -1, &stmt,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 0) << "deleting version 2 deleted its record";
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// A store written by the previous release (schema 4): its versions read back intact (sampling
// records included) and without a calibration profile, and profiles can be set afterwards.
TEST_F(SqliteStoreTest, MigratesSchema4VersionsToNoCalibrationProfile) {
  const ModelKey model = UniqueModel("mig4");
  Statistics stats = RandomStatistics(3, 1);
  stats.provenance.model_name = model.name;
  stats.provenance.model_sha256 = model.sha256;
  const std::string payload = StatisticsToBinary(stats);
  const RoiSamplingRecord sampling = store_testing::ProposalSampling(20, 256, 0.1, 0.001);
  sqlite3* db = RawOpen();
  for (int v = 0; v < 4; ++v) {
    ASSERT_EQ(sqlite3_exec(db, kSqliteMigrations[v], nullptr, nullptr, nullptr), SQLITE_OK) << v;
  }
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 4", nullptr, nullptr, nullptr), SQLITE_OK);
  auto exec = [&](const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_bind_text(stmt, 1, model.name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, model.sha256.c_str(), -1, SQLITE_TRANSIENT);
    const std::string sha = Sha256Hex(payload);
    sqlite3_bind_text(stmt, 3, sha.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(stmt, 4, payload.data(), static_cast<int>(payload.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
  };
  exec("INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
       "VALUES(?1, ?2, 3, 'last', 3)");
  for (int version : {1, 2}) {
    exec(absl::StrCat("INSERT INTO stats_versions SELECT model_id, ", version,
                      ", 1700000000000000, '", version == 1 ? "old-job" : "other", "', 'old', "
                      "'images', 10, 2, 'exact', 0, '', ?3, 0, ?4 FROM stats_models "
                      "WHERE name = ?1 AND sha256 = ?2"));
  }
  exec(absl::StrCat("INSERT INTO stats_version_sampling SELECT model_id, 1, 'proposals', ",
                    sampling.num_rois, ", ", sampling.positive_fraction, ", ",
                    sampling.positive_iou, ", ", sampling.images, ", ", sampling.rois, ", ",
                    sampling.positive_rois, ", ", sampling.rfs_threshold,
                    " FROM stats_models WHERE name = ?1 AND sha256 = ?2"));
  sqlite3_close(db);

  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url_);
  ASSERT_TRUE(store.ok()) << store.status();
  store_testing::ExpectMigratedStoreKeepsOldVersionsAndStoresProfiles(**store, model, stats,
                                                                      sampling);

  db = RawOpen();
  auto count = [&](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    const int n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
  };
  EXPECT_EQ(count("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(count("SELECT count(*) FROM stats_version_profile"), 1)
      << "version 1's; version 2's went with it, version 3's was cleared";
  EXPECT_EQ(count("SELECT count(*) FROM stats_version_profile WHERE version = 1"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM pragma_table_info('stats_versions')"), 14)
      << "stats_versions is unchanged: the payload stays its last column";
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, RefusesASchemaFromTheFuture) {
  sqlite3* db = RawOpen();
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  absl::Status s = OpenStatsStore(url_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("99"));
}

TEST_F(SqliteStoreTest, ReadersAreNotBlockedByAWriterAndWritersTimeOutAsUnavailable) {
  StatsStoreOptions options;
  options.busy_timeout = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  const ModelKey model = UniqueModel("busy");
  ASSERT_TRUE((*store)->Put(NewVersion{model, RandomStatistics(3, 1)}).ok());

  // Another process holding the write lock mid-transaction.
  sqlite3* db = RawOpen();
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE; UPDATE stats_meta SET value = value + 1;", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  absl::StatusOr<VersionRecord> got = (*store)->Get(model, VersionSelector::Number(1));
  EXPECT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*store)->List(model, "", 10).ok());
  absl::Status s = (*store)->Put(NewVersion{model, RandomStatistics(3, 2)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<VersionRecord> after = (*store)->Put(NewVersion{model, RandomStatistics(3, 2)});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->info.version, 2);
}

TEST_F(SqliteStoreTest, CorruptPayloadIsDataLoss) {
  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url_);
  ASSERT_TRUE(store.ok()) << store.status();
  const ModelKey model = UniqueModel("corrupt");
  ASSERT_TRUE((*store)->Put(NewVersion{model, RandomStatistics(3, 1)}).ok());
  sqlite3* db = RawOpen();
  ASSERT_EQ(sqlite3_exec(db,
                         "UPDATE stats_versions SET payload = CAST(substr(payload, 1, "
                         "length(payload) - 1) || x'00' AS BLOB)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  absl::Status s = (*store)->Get(model, VersionSelector::Number(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("corrupt"));
}

TEST(SqliteLimitsTest, AFullDatabaseIsResourceExhaustedAndStaysReadable) {
  StatsStoreOptions options;
  options.sqlite_max_bytes = 256 * 1024;
  absl::StatusOr<std::unique_ptr<StatsStore>> store =
      OpenStatsStore(store_testing::FreshSqliteUrl("full-test"), options);
  ASSERT_TRUE(store.ok()) << store.status();
  const ModelKey model = UniqueModel("full");
  absl::Status last;
  int written = 0;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    absl::StatusOr<VersionRecord> r = (*store)->Put(NewVersion{model, RandomStatistics(1203, i)});
    last = r.status();
    if (r.ok()) ++written;
  }
  ASSERT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_THAT(last.message(), HasSubstr("full"));
  ASSERT_GT(written, 0);
  // Nothing half-written; earlier versions still read and the numbering continues afterwards.
  absl::StatusOr<VersionPage> page = (*store)->List(model, "", 1000);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(static_cast<int>(page->versions.size()), written);
  EXPECT_TRUE((*store)->Get(model, VersionSelector::Number(written)).ok());
  ASSERT_TRUE((*store)->Delete(model, 1).ok());  // deleting frees pages for a small write
}

}  // namespace
}  // namespace logn
