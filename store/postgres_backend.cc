#include "store/postgres_backend.h"

#include <atomic>
#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "store/store_internal.h"

namespace logn {
namespace {

// Reads see one snapshot (alias resolution and the version row agree) and never take locks.
using ReadTxn = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

constexpr char kChannel[] = "logn_stats_alias";
constexpr int64_t kMigrationLock = 0x4c6f674e53746f;  // "LogNSto"
constexpr int kMaxAttempts = 3;

}  // namespace

const char* const kPostgresMigrations[kPostgresSchemaVersion] = {
    R"sql(
CREATE TABLE stats_models(
  model_id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  num_classes INTEGER NOT NULL,
  background TEXT NOT NULL,
  next_version BIGINT NOT NULL,
  UNIQUE(name, sha256));
CREATE TABLE stats_versions(
  model_id BIGINT NOT NULL REFERENCES stats_models(model_id),
  version BIGINT NOT NULL,
  created_at_us BIGINT NOT NULL,
  job_id TEXT NOT NULL,
  description TEXT NOT NULL,
  source TEXT NOT NULL,
  rows_seen BIGINT NOT NULL,
  images_seen BIGINT NOT NULL,
  method TEXT NOT NULL,
  momentum DOUBLE PRECISION NOT NULL,
  parents TEXT NOT NULL,
  payload_sha256 TEXT NOT NULL,
  partial BOOLEAN NOT NULL,
  -- Last: columns after a large blob would cost a walk of its overflow pages on every List.
  payload BYTEA NOT NULL,
  PRIMARY KEY(model_id, version));
CREATE TABLE stats_aliases(
  model_id BIGINT NOT NULL REFERENCES stats_models(model_id),
  alias TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at_us BIGINT NOT NULL,
  PRIMARY KEY(model_id, alias));
CREATE TABLE stats_alias_history(
  id BIGSERIAL PRIMARY KEY,
  model_id BIGINT NOT NULL,
  alias TEXT NOT NULL,
  kind TEXT NOT NULL,
  version BIGINT,
  previous_version BIGINT,
  undone BOOLEAN NOT NULL DEFAULT FALSE,
  changed_at_us BIGINT NOT NULL);
CREATE INDEX stats_alias_history_by_alias ON stats_alias_history(model_id, alias, id);
)sql",
    // 1 -> 2: resumable calibration jobs.
    R"sql(
CREATE TABLE stats_job_checkpoints(
  model_id BIGINT NOT NULL REFERENCES stats_models(model_id),
  job_id TEXT NOT NULL,
  batches BIGINT NOT NULL,
  images_seen BIGINT NOT NULL,
  source TEXT NOT NULL,
  updated_at_us BIGINT NOT NULL,
  payload_sha256 TEXT NOT NULL,
  payload BYTEA NOT NULL,
  PRIMARY KEY(model_id, job_id));
)sql",
    // 2 -> 3: how each version's rows were sampled, in a side table as in SQLite (where columns
    // after the payload would slow every List: sqlite_backend.cc), so that both backends keep
    // one schema and one set of queries. Versions stored before have no row here: no record.
    R"sql(
CREATE TABLE stats_version_sampling(
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  roi_source TEXT NOT NULL,
  num_rois BIGINT NOT NULL,
  positive_fraction DOUBLE PRECISION NOT NULL,
  positive_iou DOUBLE PRECISION NOT NULL,
  sampled_images BIGINT NOT NULL,
  sampled_rois BIGINT NOT NULL,
  positive_rois BIGINT NOT NULL,
  rfs_threshold DOUBLE PRECISION NOT NULL,
  PRIMARY KEY(model_id, version),
  FOREIGN KEY(model_id, version) REFERENCES stats_versions(model_id, version) ON DELETE CASCADE);
ALTER TABLE stats_job_checkpoints
  ADD COLUMN roi_source TEXT,
  ADD COLUMN num_rois BIGINT,
  ADD COLUMN positive_fraction DOUBLE PRECISION,
  ADD COLUMN positive_iou DOUBLE PRECISION,
  ADD COLUMN sampled_images BIGINT,
  ADD COLUMN sampled_rois BIGINT,
  ADD COLUMN positive_rois BIGINT,
  ADD COLUMN rfs_threshold DOUBLE PRECISION;
)sql",
    // 3 -> 4: each version's calibration profile, the one part of a version that can be set,
    // replaced and cleared; a side table as in SQLite (sqlite_backend.cc). Versions stored
    // before have no row here: no profile.
    R"sql(
CREATE TABLE stats_version_profile(
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  profile BYTEA NOT NULL,
  set_at_us BIGINT NOT NULL,
  PRIMARY KEY(model_id, version),
  FOREIGN KEY(model_id, version) REFERENCES stats_versions(model_id, version) ON DELETE CASCADE);
)sql",
};

namespace {

// (name, sql) of every prepared statement; prepared on each new connection.
const std::vector<std::pair<std::string, std::string>>& Statements() {
  static const auto* kStatements = new std::vector<std::pair<std::string, std::string>>{
      {"find_model", absl::StrCat("SELECT ", kModelColumns,
                                  " FROM stats_models WHERE name = $1 AND sha256 = $2")},
      {"lock_model", absl::StrCat("SELECT ", kModelColumns,
                                  " FROM stats_models WHERE name = $1 AND sha256 = $2 FOR UPDATE")},
      {"insert_model",
       "INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
       "VALUES($1, $2, $3, $4, 1) ON CONFLICT (name, sha256) DO NOTHING"},
      {"set_next", "UPDATE stats_models SET next_version = $1 WHERE model_id = $2"},
      {"models", "SELECT name, sha256 FROM stats_models ORDER BY name, sha256"},
      {"insert_version",
       absl::StrCat("INSERT INTO stats_versions(model_id, ", kVersionColumns,
                    ", payload) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)")},
      {"insert_sampling",
       absl::StrCat("INSERT INTO stats_version_sampling(model_id, version, ", kSamplingColumns,
                    ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)")},
      {"write_profile",
       absl::StrCat("INSERT INTO stats_version_profile(model_id, version, ", kProfileColumns,
                    ") VALUES($1,$2,$3,$4) ON CONFLICT (model_id, version) DO UPDATE "
                    "SET profile = EXCLUDED.profile, set_at_us = EXCLUDED.set_at_us")},
      {"delete_profile",
       "DELETE FROM stats_version_profile WHERE model_id = $1 AND version = $2"},
      {"find_version",
       absl::StrCat("SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns,
                    " FROM ", kVersionsWithSideTables, " WHERE model_id = $1 AND version = $2")},
      {"get_version",
       absl::StrCat("SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns,
                    ", payload FROM ", kVersionsWithSideTables,
                    " WHERE model_id = $1 AND version = $2")},
      {"list_versions",
       absl::StrCat("SELECT ", kVersionColumns, ", ", kSamplingColumns, ", ", kProfileColumns,
                    " FROM ", kVersionsWithSideTables, " WHERE model_id = $1 AND version > $2 "
                    "AND ($3::integer = 0 OR job_id = $4) AND ($5::text = '' OR source = $5) "
                    "AND ($6::integer < 0 OR partial = ($6 = 1)) ORDER BY version LIMIT $7")},
      {"delete_version", "DELETE FROM stats_versions WHERE model_id = $1 AND version = $2"},
      {"aliases", absl::StrCat("SELECT ", kAliasColumns,
                               " FROM stats_aliases WHERE model_id = $1 ORDER BY alias")},
      {"alias_target", "SELECT version FROM stats_aliases WHERE model_id = $1 AND alias = $2"},
      {"write_alias",
       "INSERT INTO stats_aliases(model_id, alias, version, updated_at_us) VALUES($1, $2, $3, $4) "
       "ON CONFLICT (model_id, alias) DO UPDATE SET version = EXCLUDED.version, "
       "updated_at_us = EXCLUDED.updated_at_us"},
      {"delete_alias", "DELETE FROM stats_aliases WHERE model_id = $1 AND alias = $2"},
      {"add_history",
       "INSERT INTO stats_alias_history(model_id, alias, kind, version, previous_version, "
       "changed_at_us) VALUES($1, $2, $3, NULLIF($4, 0), NULLIF($5, 0), $6)"},
      {"last_set", absl::StrCat("SELECT ", kHistoryColumns,
                                " FROM stats_alias_history WHERE model_id = $1 AND alias = $2 "
                                "AND kind = 'set' AND NOT undone ORDER BY id DESC LIMIT 1")},
      {"undo_history", "UPDATE stats_alias_history SET undone = TRUE WHERE id = $1"},
      {"notify", absl::StrCat("SELECT pg_notify('", kChannel, "', $1)")},
      {"put_checkpoint",
       absl::StrCat("INSERT INTO stats_job_checkpoints(model_id, job_id, ", kCheckpointColumns,
                    ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,NULLIF($9, ''),$10,$11,$12,$13,$14,$15,$16) "
                    "ON CONFLICT (model_id, job_id) DO UPDATE "
                    "SET batches = EXCLUDED.batches, images_seen = EXCLUDED.images_seen, "
                    "source = EXCLUDED.source, updated_at_us = EXCLUDED.updated_at_us, "
                    "payload_sha256 = EXCLUDED.payload_sha256, payload = EXCLUDED.payload, "
                    "roi_source = EXCLUDED.roi_source, num_rois = EXCLUDED.num_rois, "
                    "positive_fraction = EXCLUDED.positive_fraction, "
                    "positive_iou = EXCLUDED.positive_iou, "
                    "sampled_images = EXCLUDED.sampled_images, "
                    "sampled_rois = EXCLUDED.sampled_rois, "
                    "positive_rois = EXCLUDED.positive_rois, "
                    "rfs_threshold = EXCLUDED.rfs_threshold")},
      {"find_checkpoint",
       absl::StrCat("SELECT ", kCheckpointColumns,
                    " FROM stats_job_checkpoints WHERE model_id = $1 AND job_id = $2")},
      {"delete_checkpoint",
       "DELETE FROM stats_job_checkpoints WHERE model_id = $1 AND job_id = $2"},
  };
  return *kStatements;
}

// Maps a libpqxx exception to a status. `retryable` is set for conflicts worth retrying.
absl::Status PgStatus(const std::exception& e, absl::string_view what, bool* retryable) {
  *retryable = false;
  const std::string msg = absl::StrCat("postgres: ", what, ": ", e.what());
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnknownError(absl::StrCat(
        msg, ": the connection broke during COMMIT; the write may or may not have happened"));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    if (absl::StrContains(e.what(), "authentication failed") ||
        absl::StrContains(e.what(), "password")) {
      return absl::UnauthenticatedError(msg);
    }
    if (absl::StrContains(e.what(), "does not exist")) return absl::NotFoundError(msg);
    return absl::UnavailableError(msg);
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    *retryable = true;
    return absl::AbortedError(msg);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    if (state == "23505") {  // unique_violation: a concurrent writer won a race
      *retryable = true;
      return absl::AbortedError(msg);
    }
    if (absl::StartsWith(state, "53")) {
      return absl::ResourceExhaustedError(
          absl::StrCat(msg, state == "53100" ? ": the database disk is full" : ""));
    }
    if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P")) {
      return absl::UnavailableError(msg);
    }
    if (state == "42501") return absl::PermissionDeniedError(msg);
    if (absl::StartsWith(state, "28")) return absl::UnauthenticatedError(msg);
    if (state == "3D000") return absl::NotFoundError(msg);
    if (state == "25006") return absl::PermissionDeniedError(msg);  // read-only transaction
    if (state == "22001" || state == "54000") return absl::InvalidArgumentError(msg);
    return absl::InternalError(msg);
  }
  return absl::InternalError(msg);
}

// A result row, read through the column accessors the shared row readers use.
class PgRow {
 public:
  explicit PgRow(const pqxx::row& row) : row_(row) {}
  int64_t Int(int i) const { return row_[i].as<int64_t>(); }
  double Double(int i) const { return row_[i].as<double>(); }
  bool Bool(int i) const { return row_[i].as<bool>(); }
  std::string Text(int i) const { return row_[i].as<std::string>(); }
  std::string Blob(int i) const { return pqxx::binarystring(row_[i]).str(); }
  bool IsNull(int i) const { return row_[i].is_null(); }
  std::optional<int64_t> OptionalInt(int i) const {
    return row_[i].is_null() ? std::nullopt : std::optional<int64_t>(Int(i));
  }

 private:
  const pqxx::row& row_;
};

// A statement parameter as libpqxx binds it: payloads as bytea, everything else as is.
template <typename T>
const T& Param(const T& value) {
  return value;
}
pqxx::binarystring Param(PayloadBytes payload) {
  return pqxx::binarystring(payload.bytes.data(), payload.bytes.size());
}

template <typename F>
auto Rows(const pqxx::result& result, F read) -> std::vector<decltype(read(PgRow(result[0])))> {
  std::vector<decltype(read(PgRow(result[0])))> rows;
  for (const pqxx::row& row : result) rows.push_back(read(PgRow(row)));
  return rows;
}

template <typename F>
auto OptionalRow(const pqxx::result& result, F read)
    -> std::optional<decltype(read(PgRow(result[0])))> {
  if (result.empty()) return std::nullopt;
  return read(PgRow(result[0]));
}

// The store's primitives inside one libpqxx transaction. libpqxx reports errors by exception;
// PostgresBackend::Read / Write catch them.
class PgTxn final : public StoreTxn {
 public:
  PgTxn(pqxx::transaction_base& t, bool write) : t_(t), write_(write) {}

  absl::StatusOr<std::optional<ModelRow>> FindModel(const ModelKey& key) override {
    // FOR UPDATE in writes: the writes of one model serialise across replicas.
    return OptionalRow(t_.exec_prepared(write_ ? "lock_model" : "find_model", key.name,
                                        key.sha256),
                       [](const PgRow& r) { return ReadModelRow(r); });
  }

  absl::StatusOr<ModelRow> InsertModel(const ModelKey& key, int64_t num_classes,
                                       absl::string_view background) override {
    // A replica creating the same model concurrently makes this a no-op; either way the row
    // that won is locked and returned.
    t_.exec_prepared("insert_model", key.name, key.sha256, num_classes, std::string(background));
    return ReadModelRow(PgRow(t_.exec_prepared("lock_model", key.name, key.sha256).at(0)));
  }

  absl::Status SetNextVersion(int64_t model_id, int64_t next_version) override {
    return Exec("set_next", next_version, model_id);
  }

  absl::StatusOr<std::vector<ModelKey>> ListModels() override {
    return Rows(t_.exec_prepared("models"),
                [](const PgRow& r) { return ModelKey{r.Text(0), r.Text(1)}; });
  }

  absl::Status InsertVersion(int64_t model_id, const VersionRow& row) override {
    LOGN_RETURN_IF_ERROR(WithVersionValues(
        model_id, row, [this](const auto&... v) { return Exec("insert_version", v...); }));
    if (row.sampling.has_value()) {
      LOGN_RETURN_IF_ERROR(WithSamplingValues(
          model_id, row.version, *row.sampling,
          [this](const auto&... v) { return Exec("insert_sampling", v...); }));
    }
    if (!row.profile.has_value()) return absl::OkStatus();
    return WriteProfile(model_id, row.version, *row.profile);
  }

  absl::StatusOr<std::optional<VersionRow>> FindVersion(int64_t model_id, int64_t version,
                                                        bool with_payload) override {
    return OptionalRow(
        t_.exec_prepared(with_payload ? "get_version" : "find_version", model_id, version),
        [with_payload](const PgRow& r) { return ReadVersionRow(r, with_payload); });
  }

  absl::StatusOr<std::vector<VersionRow>> ListVersions(int64_t model_id, int64_t after,
                                                       int64_t limit,
                                                       const VersionRowFilter& filter) override {
    return Rows(t_.exec_prepared("list_versions", model_id, after, filter.by_job_id ? 1 : 0,
                                 filter.job_id, filter.source, filter.partial, limit),
                [](const PgRow& r) { return ReadVersionRow(r, /*with_payload=*/false); });
  }

  absl::Status DeleteVersion(int64_t model_id, int64_t version) override {
    return Exec("delete_version", model_id, version);
  }

  absl::Status WriteProfile(int64_t model_id, int64_t version, const ProfileRow& row) override {
    return WithProfileValues(model_id, version, row,
                             [this](const auto&... v) { return Exec("write_profile", v...); });
  }

  absl::Status DeleteProfile(int64_t model_id, int64_t version) override {
    return Exec("delete_profile", model_id, version);
  }

  absl::StatusOr<std::vector<AliasRow>> ListAliases(int64_t model_id) override {
    return Rows(t_.exec_prepared("aliases", model_id),
                [](const PgRow& r) { return ReadAliasRow(r); });
  }

  absl::StatusOr<std::optional<int64_t>> AliasTarget(int64_t model_id,
                                                     absl::string_view alias) override {
    return OptionalRow(t_.exec_prepared("alias_target", model_id, std::string(alias)),
                       [](const PgRow& r) { return r.Int(0); });
  }

  absl::Status WriteAlias(int64_t model_id, const AliasRow& row) override {
    return Exec("write_alias", model_id, row.alias, row.version, row.updated_at_us);
  }

  absl::Status DeleteAlias(int64_t model_id, absl::string_view alias) override {
    return Exec("delete_alias", model_id, std::string(alias));
  }

  absl::Status AddHistory(int64_t model_id, const HistoryRow& row) override {
    // Versions are positive: 0 stands for NULL (NULLIF in the statement).
    return Exec("add_history", model_id, row.alias, row.kind, row.version.value_or(0),
                     row.previous.value_or(0), row.changed_at_us);
  }

  absl::StatusOr<std::optional<HistoryRow>> LastUndoneSet(int64_t model_id,
                                                          absl::string_view alias) override {
    return OptionalRow(t_.exec_prepared("last_set", model_id, std::string(alias)),
                       [alias](const PgRow& r) { return ReadSetHistoryRow(r, alias); });
  }

  absl::Status MarkUndone(int64_t history_id) override {
    return Exec("undo_history", history_id);
  }

  // Delivered to every LISTEN connection (PostgresBackend::Listen) when this commits.
  absl::Status PublishAliasChange(const ModelKey& model) override {
    return Exec("notify", model.name);
  }

  absl::Status PutCheckpoint(int64_t model_id, const CheckpointRow& row) override {
    return WithCheckpointValues(
        model_id, row, [this](const auto&... v) { return Exec("put_checkpoint", v...); });
  }

  absl::StatusOr<std::optional<CheckpointRow>> FindCheckpoint(int64_t model_id,
                                                              absl::string_view job_id) override {
    return OptionalRow(t_.exec_prepared("find_checkpoint", model_id, std::string(job_id)),
                       [job_id](const PgRow& r) { return ReadCheckpointRow(r, job_id); });
  }

  absl::StatusOr<bool> DeleteCheckpoint(int64_t model_id, absl::string_view job_id) override {
    return t_.exec_prepared("delete_checkpoint", model_id, std::string(job_id)).affected_rows() >
           0;
  }

 private:
  // Runs a prepared statement whose result is not needed.
  template <typename... Args>
  absl::Status Exec(const char* statement, const Args&... args) {
    t_.exec_prepared(statement, Param(args)...);
    return absl::OkStatus();
  }

  pqxx::transaction_base& t_;
  const bool write_;
};

class PostgresBackend final : public StoreBackend {
 public:
  PostgresBackend(std::string url, StatsStoreOptions options)
      : url_(std::move(url)), options_(options) {
    listen_thread_ = std::thread([this] { Listen(); });
  }

  ~PostgresBackend() override {
    stop_.store(true);
    listen_thread_.join();
  }

  // Runs `body` in a read-write transaction and commits it if the body returns OK. Conflicts
  // (serialisation failures, deadlocks, unique violations from concurrent model creation) are
  // retried; a broken pooled connection is retried once on a fresh one.
  absl::Status Write(absl::string_view what, Body body) override {
    absl::Status last;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      LOGN_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> c, Acquire());
      bool retryable = false;
      try {
        pqxx::work w(*c);
        PgTxn txn(w, /*write=*/true);
        absl::Status s = body(txn);
        if (!s.ok()) {
          w.abort();
          Release(std::move(c));
          return s;
        }
        w.commit();
        Release(std::move(c));
        return absl::OkStatus();
      } catch (const pqxx::in_doubt_error& e) {
        return PgStatus(e, what, &retryable);
      } catch (const pqxx::broken_connection& e) {
        last = PgStatus(e, what, &retryable);
        retryable = attempt == 0;  // a stale pooled connection: one fresh try
      } catch (const std::exception& e) {
        last = PgStatus(e, what, &retryable);
        if (c->is_open()) Release(std::move(c));
      }
      if (!retryable) return last;
    }
    return last;
  }

  absl::Status Read(absl::string_view what, Body body) override {
    absl::Status last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      LOGN_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> c, Acquire());
      bool retryable = false;
      try {
        absl::Status s;
        {
          ReadTxn t(*c);
          PgTxn txn(t, /*write=*/false);
          s = body(txn);
          if (s.ok()) t.commit();
        }
        Release(std::move(c));
        return s;
      } catch (const pqxx::broken_connection& e) {
        last = PgStatus(e, what, &retryable);  // a stale pooled connection: one fresh try
      } catch (const std::exception& e) {
        if (c->is_open()) Release(std::move(c));
        return PgStatus(e, what, &retryable);
      }
    }
    return last;
  }

  absl::string_view name() const override { return "postgres"; }

  // Opens one connection to check the URL and migrate the schema.
  absl::Status Init() {
    LOGN_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> c, Connect());
    try {
      pqxx::work w(*c);
      w.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
      w.exec("CREATE TABLE IF NOT EXISTS stats_meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)");
      pqxx::result r = w.exec("SELECT value FROM stats_meta WHERE key = 'schema_version'");
      const int64_t current = r.empty() ? 0 : r[0][0].as<int64_t>();
      if (current > kPostgresSchemaVersion) {
        return store_internal::SchemaTooNew(Redacted(), current, kPostgresSchemaVersion);
      }
      for (int64_t v = current; v < kPostgresSchemaVersion; ++v) w.exec(kPostgresMigrations[v]);
      w.exec_params(
          "INSERT INTO stats_meta(key, value) VALUES('schema_version', $1) "
          "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
          int64_t{kPostgresSchemaVersion});
      w.commit();
    } catch (const std::exception& e) {
      bool retryable;
      return PgStatus(e, absl::StrCat("migrate the schema of ", Redacted()), &retryable);
    }
    Release(std::move(c));
    return absl::OkStatus();
  }

 private:
  // The URL without its password, for messages.
  std::string Redacted() const {
    const size_t scheme = url_.find("://");
    const size_t at = url_.rfind('@');
    if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url_;
    const size_t colon = url_.find(':', scheme + 3);
    if (colon == std::string::npos || colon > at) return url_;
    return absl::StrCat(url_.substr(0, colon), ":***", url_.substr(at));
  }

  absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect() {
    try {
      auto c = std::make_unique<pqxx::connection>(url_);
      for (const auto& [name, sql] : Statements()) c->prepare(name, sql);
      return c;
    } catch (const std::exception& e) {
      bool retryable;
      return PgStatus(e, absl::StrCat("connect to ", Redacted()), &retryable);
    }
  }

  absl::StatusOr<std::unique_ptr<pqxx::connection>> Acquire() {
    {
      absl::MutexLock l(&pool_mu_);
      if (!idle_.empty()) {
        std::unique_ptr<pqxx::connection> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return Connect();
  }

  void Release(std::unique_ptr<pqxx::connection> c) {
    if (c == nullptr || !c->is_open()) return;
    absl::MutexLock l(&pool_mu_);
    if (static_cast<int>(idle_.size()) < options_.max_idle_connections) {
      idle_.push_back(std::move(c));
    }
  }

  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, PostgresBackend* backend)
        : pqxx::notification_receiver(c, kChannel), backend_(backend) {}
    void operator()(const std::string&, int) override { backend_->BumpAliasGeneration(); }

   private:
    PostgresBackend* backend_;
  };

  // Holds a LISTEN connection; every notification bumps the alias generation. After a
  // (re)connect it is bumped too, since notifications may have been missed meanwhile.
  void Listen() {
    while (!stop_.load()) {
      try {
        pqxx::connection c(url_);
        Receiver receiver(c, this);
        BumpAliasGeneration();
        while (!stop_.load()) c.await_notification(0, 100000);
      } catch (const std::exception&) {
        BumpAliasGeneration();
        const absl::Time until = absl::Now() + options_.watch_interval;
        while (!stop_.load() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
      }
    }
  }

  const std::string url_;
  const StatsStoreOptions options_;
  std::atomic<bool> stop_{false};

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(pool_mu_);

  std::thread listen_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StoreBackend>> OpenPostgresBackend(
    const std::string& url, const StatsStoreOptions& options) {
  auto backend = std::make_unique<PostgresBackend>(url, options);
  LOGN_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<StoreBackend>(std::move(backend));
}

}  // namespace logn
