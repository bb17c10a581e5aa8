#include "store/sqlite_stats_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
};

namespace {

using store_internal::FromMicros;
using store_internal::ToMicros;

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
  Stmt& BindBlob(absl::string_view v) {
    sqlite3_bind_blob(stmt_, ++index_, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& BindOptional(int64_t v, bool present) {
    if (present) return Bind(v);
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
  absl::Status Run() {
    LOGN_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
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

constexpr char kInfoColumns[] =
    "version, created_at_us, job_id, description, source, rows_seen, images_seen, method, "
    "momentum, parents, payload_sha256, partial";

// Reads the kInfoColumns starting at column 0.
absl::StatusOr<VersionInfo> ReadInfo(const Stmt& s, const ModelKey& model) {
  VersionInfo info;
  info.model = model;
  info.version = s.Int(0);
  info.created_at = FromMicros(s.Int(1));
  info.job_id = s.Text(2);
  info.description = s.Text(3);
  if (!ParseVersionSource(s.Text(4), &info.source).ok()) {
    return absl::DataLossError(absl::StrCat("stored source '", s.Text(4), "' of version ",
                                            info.version, " is corrupt"));
  }
  info.rows_seen = s.Int(5);
  info.images_seen = s.Int(6);
  if (!ParseAccumulationMethod(s.Text(7), &info.method).ok()) {
    return absl::DataLossError(absl::StrCat("stored method '", s.Text(7), "' of version ",
                                            info.version, " is corrupt"));
  }
  info.momentum = s.Double(8);
  LOGN_ASSIGN_OR_RETURN(info.parent_versions, store_internal::DecodeParents(s.Text(9)));
  info.payload_sha256 = s.Text(10);
  info.partial = s.Int(11) != 0;
  return info;
}

struct ModelRow {
  int64_t id = 0;
  LogitLayout layout;
  int64_t next_version = 1;
};

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

class SqliteStatsStore final : public StatsStore {
 public:
  SqliteStatsStore(std::string path, StatsStoreOptions options, std::unique_ptr<Conn> writer,
                   std::unique_ptr<Conn> watcher)
      : path_(std::move(path)), options_(options), writer_(std::move(writer)) {
    watch_thread_ = std::thread([this, w = std::move(watcher)]() mutable { Watch(std::move(w)); });
  }

  ~SqliteStatsStore() override {
    {
      absl::MutexLock l(&stop_mu_);
      stop_ = true;
    }
    watch_thread_.join();
  }

  absl::StatusOr<VersionRecord> Put(const NewVersion& v) override {
    LOGN_ASSIGN_OR_RETURN(store_internal::PreparedVersion prepared,
                          store_internal::PrepareVersion(v, absl::Now()));
    VersionInfo& info = prepared.info;
    LOGN_RETURN_IF_ERROR(WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> model,
                            FindOrCreateModel(c, info.model, prepared.layout));
      for (int64_t parent : info.parent_versions) {
        LOGN_ASSIGN_OR_RETURN(bool exists, VersionExists(c, model->id, parent));
        if (!exists) {
          return absl::NotFoundError(absl::StrCat("parent version ", parent, " of ",
                                                  info.model.DebugString(), " does not exist"));
        }
      }
      info.version = model->next_version;
      LOGN_STMT(bump, c, "UPDATE stats_models SET next_version = ? WHERE model_id = ?");
      bump.Bind(info.version + 1).Bind(model->id);
      LOGN_RETURN_IF_ERROR(bump.Run());
      LOGN_STMT(ins, c,
                "INSERT INTO stats_versions(model_id, version, created_at_us, job_id, "
                "description, source, rows_seen, images_seen, method, momentum, parents, "
                "payload, payload_sha256, partial) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
      ins.Bind(model->id)
          .Bind(info.version)
          .Bind(ToMicros(info.created_at))
          .Bind(info.job_id)
          .Bind(info.description)
          .Bind(VersionSourceName(info.source))
          .Bind(info.rows_seen)
          .Bind(info.images_seen)
          .Bind(AccumulationMethodName(info.method))
          .Bind(info.momentum)
          .Bind(store_internal::EncodeParents(info.parent_versions))
          .BindBlob(prepared.payload)
          .Bind(info.payload_sha256)
          .Bind(int64_t{info.partial ? 1 : 0});
      LOGN_RETURN_IF_ERROR(ins.Run());
      if (!v.clear_job_checkpoint || info.job_id.empty()) return absl::OkStatus();
      return DeleteCheckpointIn(c, model->id, info.job_id).status();
    }));
    VersionRecord record;
    record.info = std::move(info);
    LOGN_ASSIGN_OR_RETURN(record.statistics,
                          store_internal::DecodePayload(record.info.model, record.info.version,
                                                        prepared.payload,
                                                        record.info.payload_sha256));
    return record;
  }

  absl::StatusOr<VersionRecord> Get(const ModelKey& model,
                                    const VersionSelector& selector) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    VersionRecord record;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveIn(c, m, model, selector));
      static const std::string kSql = absl::StrCat(
          "SELECT ", kInfoColumns,
          ", payload FROM stats_versions WHERE model_id = ? AND version = ?");
      LOGN_STMT(s, c, kSql.c_str());
      s.Bind(m.id).Bind(version);
      LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return store_internal::VersionNotFound(model, version);
      LOGN_ASSIGN_OR_RETURN(record.info, ReadInfo(s, model));
      LOGN_ASSIGN_OR_RETURN(record.statistics,
                            store_internal::DecodePayload(model, version, s.Blob(12),
                                                          record.info.payload_sha256));
      return absl::OkStatus();
    }));
    return record;
  }

  absl::StatusOr<int64_t> Resolve(const ModelKey& model,
                                  const VersionSelector& selector) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    int64_t version = 0;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_ASSIGN_OR_RETURN(version, ResolveIn(c, m, model, selector));
      if (selector.version > 0) {
        LOGN_ASSIGN_OR_RETURN(bool exists, VersionExists(c, m.id, version));
        if (!exists) return store_internal::VersionNotFound(model, version);
      }
      return absl::OkStatus();
    }));
    return version;
  }

  absl::StatusOr<VersionPage> List(const ModelKey& model, absl::string_view page_token,
                                   int32_t page_size) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    LOGN_ASSIGN_OR_RETURN(int64_t after, store_internal::DecodePageToken(page_token));
    LOGN_ASSIGN_OR_RETURN(int32_t limit, store_internal::NormalizePageSize(page_size));
    VersionPage page;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      static const std::string kSql = absl::StrCat(
          "SELECT ", kInfoColumns,
          " FROM stats_versions WHERE model_id = ? AND version > ? ORDER BY version LIMIT ?");
      LOGN_STMT(s, c, kSql.c_str());
      s.Bind(m.id).Bind(after).Bind(int64_t{limit} + 1);
      while (true) {
        LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        if (static_cast<int32_t>(page.versions.size()) == limit) {
          page.next_page_token = store_internal::EncodePageToken(page.versions.back().version);
          break;
        }
        LOGN_ASSIGN_OR_RETURN(VersionInfo info, ReadInfo(s, model));
        page.versions.push_back(std::move(info));
      }
      return absl::OkStatus();
    }));
    return page;
  }

  absl::StatusOr<std::vector<ModelKey>> Models() override {
    std::vector<ModelKey> out;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_STMT(s, c, "SELECT name, sha256 FROM stats_models ORDER BY name, sha256");
      while (true) {
        LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        out.push_back(ModelKey{s.Text(0), s.Text(1)});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> SetAlias(const ModelKey& model, absl::string_view alias,
                                   int64_t version) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
    bool changed = false;
    int64_t previous = 0;
    LOGN_RETURN_IF_ERROR(WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_STMT(v, c, "SELECT partial FROM stats_versions WHERE model_id = ? AND version = ?");
      v.Bind(m.id).Bind(version);
      LOGN_ASSIGN_OR_RETURN(bool row, v.Step());
      if (!row) return store_internal::VersionNotFound(model, version);
      if (v.Int(0) != 0) return store_internal::PartialNotAliasable(model, version);
      LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, AliasTarget(c, m.id, alias));
      previous = current.value_or(0);
      if (current == version) return absl::OkStatus();  // no-op: no history entry
      LOGN_RETURN_IF_ERROR(WriteAlias(c, m.id, alias, version));
      LOGN_RETURN_IF_ERROR(AddHistory(c, m.id, alias, "set", version, current));
      changed = true;
      return BumpEpoch(c);
    }));
    if (changed) generation_.fetch_add(1);
    return previous;
  }

  absl::Status RemoveAlias(const ModelKey& model, absl::string_view alias) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
    LOGN_RETURN_IF_ERROR(WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, AliasTarget(c, m.id, alias));
      if (!current.has_value()) return store_internal::AliasNotFound(model, alias);
      LOGN_STMT(d, c, "DELETE FROM stats_aliases WHERE model_id = ? AND alias = ?");
      d.Bind(m.id).Bind(alias);
      LOGN_RETURN_IF_ERROR(d.Run());
      LOGN_RETURN_IF_ERROR(AddHistory(c, m.id, alias, "remove", std::nullopt, current));
      return BumpEpoch(c);
    }));
    generation_.fetch_add(1);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Rollback(const ModelKey& model) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    int64_t target = 0;
    LOGN_RETURN_IF_ERROR(WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, AliasTarget(c, m.id, kActiveAlias));
      if (!current.has_value()) return store_internal::AliasNotFound(model, kActiveAlias);
      LOGN_STMT(h, c,
                "SELECT id, version, previous_version FROM stats_alias_history "
                "WHERE model_id = ? AND alias = ? AND kind = 'set' AND undone = 0 "
                "ORDER BY id DESC LIMIT 1");
      h.Bind(m.id).Bind(kActiveAlias);
      LOGN_ASSIGN_OR_RETURN(bool row, h.Step());
      if (!row || h.IsNull(2) || h.Int(1) != *current) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot roll back ", model.DebugString(), ": active (version ", *current,
                         ") has no earlier version to return to"));
      }
      const int64_t history_id = h.Int(0);
      target = h.Int(2);
      LOGN_ASSIGN_OR_RETURN(bool exists, VersionExists(c, m.id, target));
      if (!exists) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot roll back ", model.DebugString(), ": the previous active version ",
                         target, " has been deleted; Activate another version"));
      }
      LOGN_STMT(u, c, "UPDATE stats_alias_history SET undone = 1 WHERE id = ?");
      u.Bind(history_id);
      LOGN_RETURN_IF_ERROR(u.Run());
      LOGN_RETURN_IF_ERROR(WriteAlias(c, m.id, kActiveAlias, target));
      LOGN_RETURN_IF_ERROR(AddHistory(c, m.id, kActiveAlias, "rollback", target, current));
      return BumpEpoch(c);
    }));
    generation_.fetch_add(1);
    return target;
  }

  absl::StatusOr<std::vector<AliasInfo>> Aliases(const ModelKey& model) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    std::vector<AliasInfo> out;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_STMT(s, c,
                "SELECT alias, version, updated_at_us FROM stats_aliases WHERE model_id = ? "
                "ORDER BY alias");
      s.Bind(m.id);
      while (true) {
        LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        out.push_back(AliasInfo{s.Text(0), s.Int(1), FromMicros(s.Int(2))});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status Delete(const ModelKey& model, int64_t version) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    return WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(c, model));
      LOGN_ASSIGN_OR_RETURN(bool exists, VersionExists(c, m.id, version));
      if (!exists) return store_internal::VersionNotFound(model, version);
      LOGN_STMT(a, c,
                "SELECT alias FROM stats_aliases WHERE model_id = ? AND version = ? ORDER BY alias");
      a.Bind(m.id).Bind(version);
      std::vector<std::string> aliases;
      while (true) {
        LOGN_ASSIGN_OR_RETURN(bool row, a.Step());
        if (!row) break;
        aliases.push_back(a.Text(0));
      }
      if (!aliases.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot delete version ", version, " of ", model.DebugString(),
            ": aliases point at it (", absl::StrJoin(aliases, ", "), "); move them first"));
      }
      LOGN_STMT(d, c, "DELETE FROM stats_versions WHERE model_id = ? AND version = ?");
      d.Bind(m.id).Bind(version);
      return d.Run();
    });
  }

  absl::Status PutCheckpoint(const JobCheckpoint& checkpoint) override {
    LOGN_ASSIGN_OR_RETURN(store_internal::PreparedCheckpoint prepared,
                          store_internal::PrepareCheckpoint(checkpoint, absl::Now()));
    const JobCheckpoint& cp = prepared.checkpoint;
    return WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> model,
                            FindOrCreateModel(c, cp.model, prepared.layout));
      LOGN_STMT(s, c,
                "INSERT INTO stats_job_checkpoints(model_id, job_id, batches, images_seen, "
                "source, updated_at_us, payload_sha256, payload) VALUES(?,?,?,?,?,?,?,?) "
                "ON CONFLICT(model_id, job_id) DO UPDATE SET batches = excluded.batches, "
                "images_seen = excluded.images_seen, source = excluded.source, "
                "updated_at_us = excluded.updated_at_us, "
                "payload_sha256 = excluded.payload_sha256, payload = excluded.payload");
      s.Bind(model->id)
          .Bind(cp.job_id)
          .Bind(cp.batches)
          .Bind(cp.images_seen)
          .Bind(VersionSourceName(cp.source))
          .Bind(ToMicros(cp.updated_at))
          .Bind(prepared.payload_sha256)
          .BindBlob(prepared.payload);
      return s.Run();
    });
  }

  absl::StatusOr<JobCheckpoint> GetCheckpoint(const ModelKey& model,
                                              absl::string_view job_id) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    JobCheckpoint cp;
    LOGN_RETURN_IF_ERROR(ReadTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> m, FindModel(c, model));
      if (!m.has_value()) return store_internal::CheckpointNotFound(model, job_id);
      LOGN_STMT(s, c,
                "SELECT batches, images_seen, source, updated_at_us, payload_sha256, payload "
                "FROM stats_job_checkpoints WHERE model_id = ? AND job_id = ?");
      s.Bind(m->id).Bind(job_id);
      LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return store_internal::CheckpointNotFound(model, job_id);
      cp.model = model;
      cp.job_id = std::string(job_id);
      cp.batches = s.Int(0);
      cp.images_seen = s.Int(1);
      if (!ParseVersionSource(s.Text(2), &cp.source).ok()) {
        return absl::DataLossError(absl::StrCat("stored source of the checkpoint of job '",
                                                job_id, "' is corrupt"));
      }
      cp.updated_at = FromMicros(s.Int(3));
      LOGN_ASSIGN_OR_RETURN(cp.statistics, store_internal::DecodeCheckpointPayload(
                                               model, job_id, s.Blob(5), s.Text(4)));
      return absl::OkStatus();
    }));
    return cp;
  }

  absl::Status DeleteCheckpoint(const ModelKey& model, absl::string_view job_id) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    return WriteTxn([&](Conn& c) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> m, FindModel(c, model));
      if (!m.has_value()) return store_internal::CheckpointNotFound(model, job_id);
      LOGN_ASSIGN_OR_RETURN(bool deleted, DeleteCheckpointIn(c, m->id, job_id));
      if (!deleted) return store_internal::CheckpointNotFound(model, job_id);
      return absl::OkStatus();
    });
  }

  uint64_t AliasGeneration() const override { return generation_.load(std::memory_order_acquire); }

  absl::string_view backend() const override { return "sqlite"; }

 private:
  template <typename F>
  absl::Status WriteTxn(F&& body) {
    absl::MutexLock l(&write_mu_);
    Conn& c = *writer_;
    // IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so two writers never
    // deadlock upgrading a read lock.
    LOGN_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE", "begin write transaction"));
    absl::Status s = body(c);
    if (!s.ok()) {
      (void)c.Exec("ROLLBACK", "rollback");
      return s;
    }
    absl::Status commit = c.Exec("COMMIT", "commit");
    if (!commit.ok()) (void)c.Exec("ROLLBACK", "rollback");
    return commit;
  }

  // A read transaction on a pooled connection: one consistent snapshot, never blocked by the
  // writer (WAL).
  template <typename F>
  absl::Status ReadTxn(F&& body) {
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
      s = body(*c);
      absl::Status end = c->Exec(s.ok() ? "COMMIT" : "ROLLBACK", "end read transaction");
      if (s.ok()) s = end;
    }
    absl::MutexLock l(&pool_mu_);
    if (static_cast<int>(idle_.size()) < options_.max_idle_connections) {
      idle_.push_back(std::move(c));
    }
    return s;
  }

  static absl::StatusOr<std::optional<ModelRow>> FindModel(Conn& c, const ModelKey& model) {
    LOGN_STMT(s, c,
              "SELECT model_id, num_classes, background, next_version FROM stats_models "
              "WHERE name = ? AND sha256 = ?");
    s.Bind(model.name).Bind(model.sha256);
    LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return std::optional<ModelRow>();
    ModelRow m;
    m.id = s.Int(0);
    m.layout.num_classes = static_cast<int32_t>(s.Int(1));
    LOGN_ASSIGN_OR_RETURN(m.layout.background, store_internal::ParseStoredBackground(s.Text(2)));
    m.next_version = s.Int(3);
    return std::optional<ModelRow>(m);
  }

  // The model's row, inserted on its first write; FAILED_PRECONDITION when `layout` differs
  // from the layout the model was first stored with.
  static absl::StatusOr<std::optional<ModelRow>> FindOrCreateModel(Conn& c, const ModelKey& key,
                                                                   const LogitLayout& layout) {
    LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> model, FindModel(c, key));
    if (!model.has_value()) {
      LOGN_STMT(ins, c,
                "INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
                "VALUES(?, ?, ?, ?, 1)");
      ins.Bind(key.name)
          .Bind(key.sha256)
          .Bind(int64_t{layout.num_classes})
          .Bind(BackgroundPositionName(layout.background));
      LOGN_RETURN_IF_ERROR(ins.Run());
      model = ModelRow{sqlite3_last_insert_rowid(c.db()), layout, 1};
    } else if (model->layout != layout) {
      return store_internal::LayoutMismatch(key, model->layout, layout);
    }
    return model;
  }

  // Whether a checkpoint was deleted.
  static absl::StatusOr<bool> DeleteCheckpointIn(Conn& c, int64_t model_id,
                                                 absl::string_view job_id) {
    LOGN_STMT(d, c, "DELETE FROM stats_job_checkpoints WHERE model_id = ? AND job_id = ?");
    d.Bind(model_id).Bind(job_id);
    LOGN_RETURN_IF_ERROR(d.Run());
    return sqlite3_changes(c.db()) > 0;
  }

  static absl::StatusOr<ModelRow> RequireModel(Conn& c, const ModelKey& model) {
    LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> m, FindModel(c, model));
    if (!m.has_value()) return store_internal::ModelNotFound(model);
    return *m;
  }

  static absl::StatusOr<bool> VersionExists(Conn& c, int64_t model_id, int64_t version) {
    LOGN_STMT(s, c, "SELECT 1 FROM stats_versions WHERE model_id = ? AND version = ?");
    s.Bind(model_id).Bind(version);
    return s.Step();
  }

  static absl::StatusOr<std::optional<int64_t>> AliasTarget(Conn& c, int64_t model_id,
                                                            absl::string_view alias) {
    LOGN_STMT(s, c, "SELECT version FROM stats_aliases WHERE model_id = ? AND alias = ?");
    s.Bind(model_id).Bind(alias);
    LOGN_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return std::optional<int64_t>();
    return std::optional<int64_t>(s.Int(0));
  }

  static absl::StatusOr<int64_t> ResolveIn(Conn& c, const ModelRow& m, const ModelKey& model,
                                           const VersionSelector& selector) {
    if (selector.version > 0) return selector.version;
    if (selector.version < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", selector.version, " is not a positive version number"));
    }
    LOGN_RETURN_IF_ERROR(ValidateAliasName(selector.alias));
    LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> v, AliasTarget(c, m.id, selector.alias));
    if (!v.has_value()) return store_internal::AliasNotFound(model, selector.alias);
    return *v;
  }

  static absl::Status WriteAlias(Conn& c, int64_t model_id, absl::string_view alias,
                                 int64_t version) {
    LOGN_STMT(s, c,
              "INSERT INTO stats_aliases(model_id, alias, version, updated_at_us) "
              "VALUES(?, ?, ?, ?) ON CONFLICT(model_id, alias) DO UPDATE SET "
              "version = excluded.version, updated_at_us = excluded.updated_at_us");
    s.Bind(model_id).Bind(alias).Bind(version).Bind(ToMicros(absl::Now()));
    return s.Run();
  }

  static absl::Status AddHistory(Conn& c, int64_t model_id, absl::string_view alias,
                                 absl::string_view kind, std::optional<int64_t> version,
                                 std::optional<int64_t> previous) {
    LOGN_STMT(s, c,
              "INSERT INTO stats_alias_history(model_id, alias, kind, version, previous_version, "
              "changed_at_us) VALUES(?, ?, ?, ?, ?, ?)");
    s.Bind(model_id)
        .Bind(alias)
        .Bind(kind)
        .BindOptional(version.value_or(0), version.has_value())
        .BindOptional(previous.value_or(0), previous.has_value())
        .Bind(ToMicros(absl::Now()));
    return s.Run();
  }

  static absl::Status BumpEpoch(Conn& c) {
    return c.Exec("UPDATE stats_meta SET value = value + 1 WHERE key = 'alias_epoch'",
                  "bump alias epoch");
  }

  // Polls the alias epoch other processes bump; each change bumps generation_.
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
        generation_.fetch_add(1);  // cannot tell: make caches re-resolve
        continue;
      }
      Stmt s(conn.get(), *raw);
      absl::StatusOr<bool> row = s.Step();
      const int64_t epoch = row.ok() && *row ? s.Int(0) : -2;
      if (epoch != last) {
        if (last != -1) generation_.fetch_add(1);
        last = epoch;
      }
    }
  }

  const std::string path_;
  const StatsStoreOptions options_;
  std::atomic<uint64_t> generation_{1};

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
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "store ", path, " has schema version ", current, " but this binary understands up to ",
        kSqliteSchemaVersion, ": upgrade the binary (never downgrade a store)")));
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

absl::StatusOr<std::unique_ptr<StatsStore>> OpenSqliteStatsStore(const std::string& path,
                                                                 const StatsStoreOptions& options) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("SQLite store path '", path, "' must be absolute"));
  }
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<Conn> writer, OpenConn(path, options));
  LOGN_RETURN_IF_ERROR(Migrate(*writer, path));
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<Conn> watcher, OpenConn(path, options));
  return std::unique_ptr<StatsStore>(
      new SqliteStatsStore(path, options, std::move(writer), std::move(watcher)));
}

}  // namespace logn
