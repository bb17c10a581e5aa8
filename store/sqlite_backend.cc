#include "store/sqlite_backend.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "store/store_internal.h"

namespace logn {

const char* const kSqliteMigrations[kSqliteSchemaVersion] = {
    // 0 -> 1: the tables.
    R"sql(
CREATE TABLE stats_models(
  model_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  num_classes INTEGER NOT NULL,
  background TEXT NOT NULL,
  next_version INTEGER NOT NULL,
  UNIQUE(name, sha256));
CREATE TABLE stats_versions(
  model_id INTEGER NOT NULL REFERENCES stats_models(model_id),
  version INTEGER NOT NULL,
  created_at_us INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  description TEXT NOT NULL,
  source TEXT NOT NULL,
  rows_seen INTEGER NOT NULL,
  images_seen INTEGER NOT NULL,
  method TEXT NOT NULL,
  momentum REAL NOT NULL,
  parents TEXT NOT NULL,
  payload_sha256 TEXT NOT NULL,
  partial INTEGER NOT NULL,
  -- Last: columns after a large blob would cost a walk of its overflow pages on every List.
  payload BLOB NOT NULL,
  PRIMARY KEY(model_id, version));
CREATE TABLE stats_aliases(
  model_id INTEGER NOT NULL REFERENCES stats_models(model_id),
  alias TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at_us INTEGER NOT NULL,
  PRIMARY KEY(model_id, alias));
CREATE TABLE stats_alias_history(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  model_id INTEGER NOT NULL,
  alias TEXT NOT NULL,
  kind TEXT NOT NULL,
  version INTEGER,
  previous_version INTEGER,
  undone INTEGER NOT NULL DEFAULT 0,
  changed_at_us INTEGER NOT NULL);
)sql",
    // 1 -> 2: the alias epoch other processes poll, and an index for Rollback.
    R"sql(
CREATE TABLE stats_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO stats_meta(key, value) VALUES('alias_epoch', 0);
CREATE INDEX stats_alias_history_by_alias ON stats_alias_history(model_id, alias, id);
)sql",
    // 2 -> 3: resumable calibration jobs.
    R"sql(
CREATE TABLE stats_job_checkpoints(
  model_id INTEGER NOT NULL REFERENCES stats_models(model_id),
  job_id TEXT NOT NULL,
  batches INTEGER NOT NULL,
  images_seen INTEGER NOT NULL,
  source TEXT NOT NULL,
  updated_at_us INTEGER NOT NULL,
  payload_sha256 TEXT NOT NULL,
  payload BLOB NOT NULL,
  PRIMARY KEY(model_id, job_id));
)sql",
    // 3 -> 4: how each version's rows were sampled. A side table, not columns of
    // stats_versions: ADD COLUMN would append them after the payload blob, so every List would
    // walk each payload's overflow pages to reach them, and rebuilding stats_versions would
    // rewrite every payload (time, twice the disk, against sqlite_max_bytes) under the write
    // lock. Versions stored before have no row here: no record. A checkpoint's columns may
    // follow its payload: a checkpoint is only ever read whole.
    R"sql(
CREATE TABLE stats_version_sampling(
  model_id INTEGER NOT NULL,
  version INTEGER NOT NULL,
  roi_source TEXT NOT NULL,
  num_rois INTEGER NOT NULL,
  positive_fraction REAL NOT NULL,
  positive_iou REAL NOT NULL,
  sampled_images INTEGER NOT NULL,
  sampled_rois INTEGER NOT NULL,
  positive_rois INTEGER NOT NULL,
  rfs_threshold REAL NOT NULL,
  PRIMARY KEY(model_id, version),
  FOREIGN KEY(model_id, version) REFERENCES stats_versions(model_id, version) ON DELETE CASCADE)
  WITHOUT ROWID;
ALTER TABLE stats_job_checkpoints ADD COLUMN roi_source TEXT;
ALTER TABLE stats_job_checkpoints ADD COLUMN num_rois INTEGER;
ALTER TABLE stats_job_checkpoints ADD COLUMN positive_fraction REAL;
ALTER TABLE stats_job_checkpoints ADD COLUMN positive_iou REAL;
ALTER TABLE stats_job_checkpoints ADD COLUMN sampled_images INTEGER;
ALTER TABLE stats_job_checkpoints ADD COLUMN sampled_rois INTEGER;
ALTER TABLE stats_job_checkpoints ADD COLUMN positive_rois INTEGER;
ALTER TABLE stats_job_checkpoints ADD COLUMN rfs_threshold REAL;
)sql",
    // 4 -> 5: each version's calibration profile (the default setting Detect uses with it),
    // the one part of a version that can be set, replaced and cleared. A side table for the
    // reasons of stats_version_sampling, and so that a change writes one small row, never the
    // row that holds the payload. A rowid table: a profile may take up to 64 KiB, more than a
    // WITHOUT ROWID row should. Versions stored before have no row here: no profile.
    R"sql(
CREATE TABLE stats_version_profile(
  model_id INTEGER NOT NULL,
  version INTEGER NOT NULL,
  profile BLOB NOT NULL,
  set_at_us INTEGER NOT NULL,
  PRIMARY KEY(model_id, version),
  FOREIGN KEY(model_id, version) REFERENCES stats_versions(model_id, version) ON DELETE CASCADE);
)sql",
};

namespace {

absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what) {
  const int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
  const std::string msg =
      absl::StrCat("sqlite: ", what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                   " (code ", extended, ")");
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(absl::StrCat(msg, ": the disk is full"));
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(
          absl::StrCat(msg, ": another writer held the lock longer than the busy timeout"));
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
      return absl::UnavailableError(msg);
    case SQLITE_CONSTRAINT:
      return absl::AbortedError(msg);
    case SQLITE_TOOBIG:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// One connection with its prepared statements. Used by one thread at a time.
class Conn {
 public:
  explicit Conn(sqlite3* db) : db_(db) {}
  ~Conn() {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  sqlite3* db() const { return db_; }

  absl::Status Exec(const char* sql, absl::string_view what) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, what);
    return absl::OkStatus();
  }

  // A reset statement for `sql` (cached by the literal's address).
  absl::StatusOr<sqlite3_stmt*> Prepare(const char* sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "prepare");
    stmts_.emplace(sql, stmt);
    return stmt;
  }

 private:
  sqlite3* db_;
  std::map<const char*, sqlite3_stmt*> stmts_;
};

// Binds and steps one statement.
class Stmt {
 public:
  Stmt(Conn* conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  ~Stmt() { sqlite3_reset(stmt_); }

  Stmt& Bind(int64_t v) {
    sqlite3_bind_int64(stmt_, ++index_, v);
    return *this;
  }
  Stmt& Bind(double v) {
    sqlite3_bind_double(stmt_, ++index_, v);
    return *this;
  }
  Stmt& Bind(absl::string_view v) {
    sqlite3_bind_text(stmt_, ++index_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(const char* v) { return Bind(absl::string_view(v)); }
  Stmt& Bind(bool v) { return Bind(int64_t{v ? 1 : 0}); }
  // Bound without a copy: the bytes must outlive the statement's step. Empty bytes are an
  // empty blob, never NULL (which a null data pointer would bind).
  Stmt& Bind(PayloadBytes v) {
    sqlite3_bind_blob(stmt_, ++index_, v.bytes.data() != nullptr ? v.bytes.data() : "",
                      static_cast<int>(v.bytes.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& Bind(std::optional<int64_t> v) {
    if (v.has_value()) return Bind(*v);
    sqlite3_bind_null(stmt_, ++index_);
    return *this;
  }

  // True with a row, false when done.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteStatus(conn_->db(), rc, "step");
  }
  absl::Status Run() { return Step().status(); }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  bool Bool(int col) const { return Int(col) != 0; }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<int64_t> OptionalInt(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col));
  }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(static_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }

 private:
  Conn* conn_;
  sqlite3_stmt* stmt_;
  int index_ = 0;
};

#define LOGN_STMT(var, conn, sql)                                    \
  LOGN_ASSIGN_OR_RETURN(sqlite3_stmt * var##_raw, (conn).Prepare(sql)); \
  Stmt var(&(conn), var##_raw)

absl::StatusOr<std::unique_ptr<Conn>> OpenConn(const std::string& path,
                                               const StatsStoreOptions& options) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteStatus(db, rc, absl::StrCat("open ", path));
    sqlite3_close_v2(db);
    const std::string dir = path.substr(0, path.rfind('/'));
    struct stat st;
    if (!dir.empty() && stat(dir.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot create the store ", path, ": directory ", dir, " does not exist"));
    }
    return s;
  }
  auto conn = std::make_unique<Conn>(db);
  sqlite3_busy_timeout(db, static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
  // FULL: the WAL is fsynced at every commit, so a Put that returned OK survives power loss.
  LOGN_RETURN_IF_ERROR(conn->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                                  absl::StrCat("configure ", path)));
  if (options.sqlite_max_bytes > 0) {
    // SQLite's page count limit: a write past it fails with SQLITE_FULL, like a full disk.
    const int64_t pages = std::max<int64_t>(1, options.sqlite_max_bytes / 4096);
    LOGN_RETURN_IF_ERROR(conn->Exec(
        absl::StrCat("PRAGMA page_size=4096; PRAGMA max_page_count=", pages).c_str(),
        absl::StrCat("limit the size of ", path)));
  }
  return conn;
}

// Every row `s` yields, through `read`.
template <typename F>
auto AllRows(Stmt& s, F read) -> absl::StatusOr<std::vector<decltype(read(s))>> {
  std::vector<decltype(read(s))> rows;
  while (true) {
    LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return rows;
    rows.push_back(read(s));
  }
}

// The first row `s` yields, through `read`, or nullopt.
template <typename F>
auto FirstRow(Stmt& s, F read) -> absl::StatusOr<std::optional<decltype(read(s))>> {
  LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::nullopt;
  return std::optional<decltype(read(s))>(read(s));
}

// The store's primitives on one connection inside a transaction SqliteBackend began.
class SqliteTxn final : public StoreTxn {
 public:
  explicit SqliteTxn(Conn& c) : c_(c) {}

  absl::StatusOr<std::optional<ModelRow>> FindModel(const ModelKey& key) override {
    static const std::string kSql = absl::StrCat(
        "SELECT ", kModelColumns, " FROM stats_models WHERE name = ? AND sha256 = ?");
    LOGN_STMT(s, c_, kSql.c_str());
    s.Bind(key.name).Bind(key.sha256);
    return FirstRow(s, [](const Stmt& r) { return ReadModelRow(r); });
  }

  absl::StatusOr<ModelRow> InsertModel(const ModelKey& key, int64_t num_classes,
                                       absl::string_view background) override {
    // The write lock is database-wide (BEGIN IMMEDIATE): no concurrent insert can race this.
    LOGN_STMT(s, c_,
              "INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
              "VALUES(?, ?, ?, ?, 1)");
    s.Bind(key.name).Bind(key.sha256).Bind(num_classes).Bind(background);
    LOGN_RETURN_IF_ERROR(s.Run());
    return ModelRow{sqlite3_last_insert_rowid(c_.db()), num_classes, std::string(background), 1};
  }

  absl::Status SetNextVersion(int64_t model_id, int64_t next_version) override {
    LOGN_STMT(s, c_, "UPDATE stats_models SET next_version = ? WHERE model_id = ?");
    return s.Bind(next_version).Bind(model_id).Run();
  }

  absl::StatusOr<std::vector<ModelKey>> ListModels() override {
    LOGN_STMT(s, c_, "SELECT name, sha256 FROM stats_models ORDER BY name, sha256");
    return AllRows(s, [](const Stmt& r) { return ModelKey{r.Text(0), r.Text(1)}; });
  }

  absl::Status InsertVersion(int64_t model_id, const VersionRow& row) override {
    static const std::string kSql =
        absl::StrCat("INSERT INTO stats_versions(model_id, ", kVersionColumns,
                     ", payload) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    {
      LOGN_STMT(s, c_, kSql.c_str());
      WithVersionValues(model_id, row, [&s](const auto&... v) { (s.Bind(v), ...); });
      LOGN_RETURN_IF_ERROR(s.Run());
    }
    if (row.sampling.has_value()) {
      static const std::string kSampling =
          absl::StrCat("INSERT INTO stats_version_sampling(model_id, version, ", kSamplingColumns,
                       ") VALUES(?,?,?,?,?,?,?,?,?,?)");
      LOGN_STMT(s, c_, kSampling.c_str());
      WithSamplingValues(model_id, row.version, *row.sampling,
                         [&s](const auto&... v) { (s.Bind(v), ...); });
      LOGN_RETURN_IF_ERROR(s.Run());
    }
    if (!row.profile.has_value()) return absl::OkStatus();
    return WriteProfile(model_id, row.version, *row.profile);
  }

  absl::StatusOr<std::optional<VersionRow>> FindVersion(int64_t model_id, int64_t version,
                                                        bool with_payload) override {
    static const std::string kSql =
        absl::StrCat("SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns,
                     " FROM ", kVersionsWithSideTables, " WHERE model_id = ? AND version = ?");
    static const std::string kWithPayload = absl::StrCat(
        "SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns,
        ", payload FROM ", kVersionsWithSideTables, " WHERE model_id = ? AND version = ?");
    LOGN_STMT(s, c_, with_payload ? kWithPayload.c_str() : kSql.c_str());
    s.Bind(model_id).Bind(version);
    return FirstRow(s, [with_payload](const Stmt& r) { return ReadVersionRow(r, with_payload); });
  }

  absl::StatusOr<std::vector<VersionRow>> ListVersions(int64_t model_id, int64_t after,
                                                       int64_t limit,
                                                       const VersionRowFilter& filter) override {
    static const std::string kSql = absl::StrCat(
        "SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns, " FROM ",
        kVersionsWithSideTables,
        " WHERE model_id = ?1 AND version > ?2 AND (?3 = 0 OR job_id = ?4) "
        "AND (?5 = '' OR source = ?5) AND (?6 < 0 OR partial = ?6) ORDER BY version LIMIT ?7");
    LOGN_STMT(s, c_, kSql.c_str());
    s.Bind(model_id).Bind(after).Bind(filter.by_job_id).Bind(filter.job_id).Bind(filter.source);
    s.Bind(int64_t{filter.partial}).Bind(limit);
    return AllRows(s, [](const Stmt& r) { return ReadVersionRow(r, /*with_payload=*/false); });
  }

  absl::Status DeleteVersion(int64_t model_id, int64_t version) override {
    LOGN_STMT(s, c_, "DELETE FROM stats_versions WHERE model_id = ? AND version = ?");
    return s.Bind(model_id).Bind(version).Run();
  }

  absl::Status WriteProfile(int64_t model_id, int64_t version, const ProfileRow& row) override {
    static const std::string kSql = absl::StrCat(
        "INSERT INTO stats_version_profile(model_id, version, ", kProfileColumns,
        ") VALUES(?,?,?,?) ON CONFLICT(model_id, version) DO UPDATE SET "
        "profile = excluded.profile, set_at_us = excluded.set_at_us");
    LOGN_STMT(s, c_, kSql.c_str());
    WithProfileValues(model_id, version, row, [&s](const auto&... v) { (s.Bind(v), ...); });
    return s.Run();
  }

  absl::Status DeleteProfile(int64_t model_id, int64_t version) override {
    LOGN_STMT(s, c_, "DELETE FROM stats_version_profile WHERE model_id = ? AND version = ?");
    return s.Bind(model_id).Bind(version).Run();
  }

  absl::StatusOr<std::vector<AliasRow>> ListAliases(int64_t model_id) override {
    static const std::string kSql = absl::StrCat(
        "SELECT ", kAliasColumns, " FROM stats_aliases WHERE model_id = ? ORDER BY alias");
    LOGN_STMT(s, c_, kSql.c_str());
    s.Bind(model_id);
    return AllRows(s, [](const Stmt& r) { return ReadAliasRow(r); });
  }

  absl::StatusOr<std::optional<int64_t>> AliasTarget(int64_t model_id,
                                                     absl::string_view alias) override {
    LOGN_STMT(s, c_, "SELECT version FROM stats_aliases WHERE model_id = ? AND alias = ?");
    s.Bind(model_id).Bind(alias);
    return FirstRow(s, [](const Stmt& r) { return r.Int(0); });
  }

  absl::Status WriteAlias(int64_t model_id, const AliasRow& row) override {
    LOGN_STMT(s, c_,
              "INSERT INTO stats_aliases(model_id, alias, version, updated_at_us) "
              "VALUES(?, ?, ?, ?) ON CONFLICT(model_id, alias) DO UPDATE SET "
              "version = excluded.version, updated_at_us = excluded.updated_at_us");
    return s.Bind(model_id).Bind(row.alias).Bind(row.version).Bind(row.updated_at_us).Run();
  }

  absl::Status DeleteAlias(int64_t model_id, absl::string_view alias) override {
    LOGN_STMT(s, c_, "DELETE FROM stats_aliases WHERE model_id = ? AND alias = ?");
    return s.Bind(model_id).Bind(alias).Run();
  }

  absl::Status AddHistory(int64_t model_id, const HistoryRow& row) override {
    LOGN_STMT(s, c_,
              "INSERT INTO stats_alias_history(model_id, alias, kind, version, previous_version, "
              "changed_at_us) VALUES(?, ?, ?, ?, ?, ?)");
    s.Bind(model_id).Bind(row.alias).Bind(row.kind).Bind(row.version).Bind(row.previous);
    return s.Bind(row.changed_at_us).Run();
  }

  absl::StatusOr<std::optional<HistoryRow>> LastUndoneSet(int64_t model_id,
                                                          absl::string_view alias) override {
    static const std::string kSql = absl::StrCat(
        "SELECT ", kHistoryColumns,
        " FROM stats_alias_history WHERE model_id = ? AND alias = ? AND kind = 'set' "
        "AND undone = 0 ORDER BY id DESC LIMIT 1");
    LOGN_STMT(s, c_, kSql.c_str());
    s.Bind(model_id).Bind(alias);
    return FirstRow(s, [alias](const Stmt& r) { return ReadSetHistoryRow(r, alias); });
  }

  absl::Status MarkUndone(int64_t history_id) override {
    LOGN_STMT(s, c_, "UPDATE stats_alias_history SET undone = 1 WHERE id = ?");
    return s.Bind(history_id).Run();
  }

  // Other processes poll the epoch (SqliteBackend::Watch).
  absl::Status PublishAliasChange(const ModelKey&) override {
    return c_.Exec("UPDATE stats_meta SET value = value + 1 WHERE key = 'alias_epoch'",
                   "bump alias epoch");
  }

  absl::Status PutCheckpoint(int64_t model_id, const CheckpointRow& row) override {
    static const std::string kSql = absl::StrCat(
        "INSERT INTO stats_job_checkpoints(model_id, job_id, ", kCheckpointColumns,
        ") VALUES(?,?,?,?,?,?,?,?,NULLIF(?, ''),?,?,?,?,?,?,?) ON CONFLICT(model_id, job_id) DO "
        "UPDATE SET batches = excluded.batches, images_seen = excluded.images_seen, "
        "source = excluded.source, updated_at_us = excluded.updated_at_us, "
        "payload_sha256 = excluded.payload_sha256, payload = excluded.payload, "
        "roi_source = excluded.roi_source, num_rois = excluded.num_rois, "
        "positive_fraction = excluded.positive_fraction, positive_iou = excluded.positive_iou, "
        "sampled_images = excluded.sampled_images, sampled_rois = excluded.sampled_rois, "
        "positive_rois = excluded.positive_rois, rfs_threshold = excluded.rfs_threshold");
    LOGN_STMT(s, c_, kSql.c_str());
    WithCheckpointValues(model_id, row, [&s](const auto&... v) { (s.Bind(v), ...); });
    return s.Run();
  }

  absl::StatusOr<std::optional<CheckpointRow>> FindCheckpoint(int64_t model_id,
                                                              absl::string_view job_id) override {
    static const std::string kSql =
        absl::StrCat("SELECT ", kCheckpointColumns,
                     " FROM stats_job_checkpoints WHERE model_id = ? AND job_id = ?");
    LOGN_STMT(s, c_, kSql.c_str());
    s.Bind(model_id).Bind(job_id);
    return FirstRow(s, [job_id](const Stmt& r) { return ReadCheckpointRow(r, job_id); });
  }

  absl::StatusOr<bool> DeleteCheckpoint(int64_t model_id, absl::string_view job_id) override {
    LOGN_STMT(s, c_, "DELETE FROM stats_job_checkpoints WHERE model_id = ? AND job_id = ?");
    LOGN_RETURN_IF_ERROR(s.Bind(model_id).Bind(job_id).Run());
    return sqlite3_changes(c_.db()) > 0;
  }

 private:
  Conn& c_;
};

class SqliteBackend final : public StoreBackend {
 public:
  SqliteBackend(std::string path, StatsStoreOptions options, std::unique_ptr<Conn> writer,
                std::unique_ptr<Conn> watcher)
      : path_(std::move(path)), options_(options), writer_(std::move(writer)) {
    watch_thread_ = std::thread([this, w = std::move(watcher)]() mutable { Watch(std::move(w)); });
  }

  ~SqliteBackend() override {
    {
      absl::MutexLock l(&stop_mu_);
      stop_ = true;
    }
    watch_thread_.join();
  }

  // One writer connection per store; IMMEDIATE takes the database's write lock up front
  // (waiting up to busy_timeout), so two writers never deadlock upgrading a read lock.
  absl::Status Write(absl::string_view, Body body) override {
    absl::MutexLock l(&write_mu_);
    Conn& c = *writer_;
    LOGN_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE", "begin write transaction"));
    SqliteTxn txn(c);
    absl::Status s = body(txn);
    if (!s.ok()) {
      (void)c.Exec("ROLLBACK", "rollback");
      return s;
    }
    absl::Status commit = c.Exec("COMMIT", "commit");
    if (!commit.ok()) (void)c.Exec("ROLLBACK", "rollback");
    return commit;
  }

  // A pooled connection: one consistent snapshot, never blocked by the writer (WAL).
  absl::Status Read(absl::string_view, Body body) override {
    std::unique_ptr<Conn> c;
    {
      absl::MutexLock l(&pool_mu_);
      if (!idle_.empty()) {
        c = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (c == nullptr) {
      LOGN_ASSIGN_OR_RETURN(c, OpenConn(path_, options_));
    }
    absl::Status s = c->Exec("BEGIN", "begin read transaction");
    if (s.ok()) {
      SqliteTxn txn(*c);
      s = body(txn);
      absl::Status end = c->Exec(s.ok() ? "COMMIT" : "ROLLBACK", "end read transaction");
      if (s.ok()) s = end;
    }
    absl::MutexLock l(&pool_mu_);
    if (static_cast<int>(idle_.size()) < options_.max_idle_connections) {
      idle_.push_back(std::move(c));
    }
    return s;
  }

  absl::string_view name() const override { return "sqlite"; }

 private:
  // Polls the alias epoch that alias changes bump (in any process); each change bumps the
  // alias generation.
  void Watch(std::unique_ptr<Conn> conn) {
    int64_t last = -1;
    while (true) {
      {
        absl::MutexLock l(&stop_mu_);
        if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.watch_interval)) return;
      }
      absl::StatusOr<sqlite3_stmt*> raw =
          conn->Prepare("SELECT value FROM stats_meta WHERE key = 'alias_epoch'");
      if (!raw.ok()) {
        BumpAliasGeneration();  // cannot tell: make caches re-resolve
        continue;
      }
      Stmt s(conn.get(), *raw);
      absl::StatusOr<bool> row = s.Step();
      const int64_t epoch = row.ok() && *row ? s.Int(0) : -2;
      if (epoch != last) {
        if (last != -1) BumpAliasGeneration();
        last = epoch;
      }
    }
  }

  const std::string path_;
  const StatsStoreOptions options_;

  absl::Mutex write_mu_;
  std::unique_ptr<Conn> writer_ ABSL_GUARDED_BY(write_mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread watch_thread_;
};

absl::Status Migrate(Conn& c, const std::string& path) {
  // WAL: readers see the last committed state while a writer works, and a crash mid-write
  // leaves the last commit intact. Persistent, so setting it on every open is a no-op.
  LOGN_RETURN_IF_ERROR(c.Exec("PRAGMA journal_mode=WAL", absl::StrCat("enable WAL on ", path)));
  LOGN_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE", absl::StrCat("lock ", path, " for migration")));
  auto fail = [&](absl::Status s) {
    (void)c.Exec("ROLLBACK", "rollback");
    return s;
  };
  int64_t current = 0;
  {
    absl::StatusOr<sqlite3_stmt*> raw = c.Prepare("PRAGMA user_version");
    if (!raw.ok()) return fail(raw.status());
    Stmt s(&c, *raw);
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return fail(row.status());
    current = s.Int(0);
  }
  if (current > kSqliteSchemaVersion) {
    return fail(store_internal::SchemaTooNew(path, current, kSqliteSchemaVersion));
  }
  for (int64_t v = current; v < kSqliteSchemaVersion; ++v) {
    absl::Status s = c.Exec(kSqliteMigrations[v], absl::StrCat("migrate schema to ", v + 1));
    if (!s.ok()) return fail(s);
  }
  if (current != kSqliteSchemaVersion) {
    absl::Status s = c.Exec(absl::StrCat("PRAGMA user_version = ", kSqliteSchemaVersion).c_str(),
                            "set schema version");
    if (!s.ok()) return fail(s);
  }
  return c.Exec("COMMIT", "commit migration");
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreBackend>> OpenSqliteBackend(const std::string& path,
                                                                const StatsStoreOptions& options) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("SQLite store path '", path, "' must be absolute"));
  }
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<Conn> writer, OpenConn(path, options));
  LOGN_RETURN_IF_ERROR(Migrate(*writer, path));
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<Conn> watcher, OpenConn(path, options));
  return std::unique_ptr<StoreBackend>(
      new SqliteBackend(path, options, std::move(writer), std::move(watcher)));
}

}  // namespace logn
