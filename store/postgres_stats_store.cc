#include "store/postgres_stats_store.h"

#include <atomic>
#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "store/store_internal.h"

namespace logn {
namespace {

using store_internal::FromMicros;
using store_internal::ToMicros;

// Reads see one snapshot (alias resolution and the version row agree) and never take locks.
using ReadTxn = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

constexpr char kChannel[] = "logn_stats_alias";
constexpr int64_t kMigrationLock = 0x4c6f674e53746f;  // "LogNSto"
constexpr int kMaxAttempts = 3;

const char* const kMigrations[kPostgresSchemaVersion] = {
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
};

constexpr char kInfoColumns[] =
    "version, created_at_us, job_id, description, source, rows_seen, images_seen, method, "
    "momentum, parents, payload_sha256, partial";

// (name, sql) of every prepared statement; prepared on each new connection.
const std::vector<std::pair<std::string, std::string>>& Statements() {
  static const auto* kStatements = new std::vector<std::pair<std::string, std::string>>{
      {"find_model",
       "SELECT model_id, num_classes, background, next_version FROM stats_models "
       "WHERE name = $1 AND sha256 = $2"},
      {"lock_model",
       "SELECT model_id, num_classes, background, next_version FROM stats_models "
       "WHERE name = $1 AND sha256 = $2 FOR UPDATE"},
      {"insert_model",
       "INSERT INTO stats_models(name, sha256, num_classes, background, next_version) "
       "VALUES($1, $2, $3, $4, 1) ON CONFLICT (name, sha256) DO NOTHING"},
      {"bump_next", "UPDATE stats_models SET next_version = $1 WHERE model_id = $2"},
      {"insert_version",
       "INSERT INTO stats_versions(model_id, version, created_at_us, job_id, description, "
       "source, rows_seen, images_seen, method, momentum, parents, payload, payload_sha256, "
       "partial) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"},
      {"version_exists", "SELECT partial FROM stats_versions WHERE model_id = $1 AND version = $2"},
      {"get_version",
       absl::StrCat("SELECT ", kInfoColumns,
                    ", payload FROM stats_versions WHERE model_id = $1 AND version = $2")},
      {"list_versions",
       absl::StrCat("SELECT ", kInfoColumns,
                    " FROM stats_versions WHERE model_id = $1 AND version > $2 "
                    "ORDER BY version LIMIT $3")},
      {"models", "SELECT name, sha256 FROM stats_models ORDER BY name, sha256"},
      {"alias_target", "SELECT version FROM stats_aliases WHERE model_id = $1 AND alias = $2"},
      {"write_alias",
       "INSERT INTO stats_aliases(model_id, alias, version, updated_at_us) VALUES($1, $2, $3, $4) "
       "ON CONFLICT (model_id, alias) DO UPDATE SET version = EXCLUDED.version, "
       "updated_at_us = EXCLUDED.updated_at_us"},
      {"delete_alias", "DELETE FROM stats_aliases WHERE model_id = $1 AND alias = $2"},
      {"add_history",
       "INSERT INTO stats_alias_history(model_id, alias, kind, version, previous_version, "
       "changed_at_us) VALUES($1, $2, $3, NULLIF($4, 0), NULLIF($5, 0), $6)"},
      {"last_set",
       "SELECT id, version, previous_version FROM stats_alias_history WHERE model_id = $1 AND "
       "alias = $2 AND kind = 'set' AND NOT undone ORDER BY id DESC LIMIT 1"},
      {"undo_history", "UPDATE stats_alias_history SET undone = TRUE WHERE id = $1"},
      {"aliases",
       "SELECT alias, version, updated_at_us FROM stats_aliases WHERE model_id = $1 ORDER BY alias"},
      {"aliases_of_version",
       "SELECT alias FROM stats_aliases WHERE model_id = $1 AND version = $2 ORDER BY alias"},
      {"delete_version", "DELETE FROM stats_versions WHERE model_id = $1 AND version = $2"},
      {"put_checkpoint",
       "INSERT INTO stats_job_checkpoints(model_id, job_id, batches, images_seen, source, "
       "updated_at_us, payload_sha256, payload) VALUES($1,$2,$3,$4,$5,$6,$7,$8) "
       "ON CONFLICT (model_id, job_id) DO UPDATE SET batches = EXCLUDED.batches, "
       "images_seen = EXCLUDED.images_seen, source = EXCLUDED.source, "
       "updated_at_us = EXCLUDED.updated_at_us, payload_sha256 = EXCLUDED.payload_sha256, "
       "payload = EXCLUDED.payload"},
      {"get_checkpoint",
       "SELECT batches, images_seen, source, updated_at_us, payload_sha256, payload "
       "FROM stats_job_checkpoints WHERE model_id = $1 AND job_id = $2"},
      {"delete_checkpoint",
       "DELETE FROM stats_job_checkpoints WHERE model_id = $1 AND job_id = $2"},
      {"notify", absl::StrCat("SELECT pg_notify('", kChannel, "', $1)")},
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

struct ModelRow {
  int64_t id = 0;
  LogitLayout layout;
  int64_t next_version = 1;
};

absl::StatusOr<ModelRow> ReadModel(const pqxx::row& r) {
  ModelRow m;
  m.id = r[0].as<int64_t>();
  m.layout.num_classes = r[1].as<int32_t>();
  LOGN_ASSIGN_OR_RETURN(m.layout.background,
                        store_internal::ParseStoredBackground(r[2].as<std::string>()));
  m.next_version = r[3].as<int64_t>();
  return m;
}

absl::StatusOr<VersionInfo> ReadInfo(const pqxx::row& r, const ModelKey& model) {
  VersionInfo info;
  info.model = model;
  info.version = r[0].as<int64_t>();
  info.created_at = FromMicros(r[1].as<int64_t>());
  info.job_id = r[2].as<std::string>();
  info.description = r[3].as<std::string>();
  if (!ParseVersionSource(r[4].as<std::string>(), &info.source).ok()) {
    return absl::DataLossError(absl::StrCat("stored source of version ", info.version,
                                            " is corrupt"));
  }
  info.rows_seen = r[5].as<int64_t>();
  info.images_seen = r[6].as<int64_t>();
  if (!ParseAccumulationMethod(r[7].as<std::string>(), &info.method).ok()) {
    return absl::DataLossError(absl::StrCat("stored method of version ", info.version,
                                            " is corrupt"));
  }
  info.momentum = r[8].as<double>();
  LOGN_ASSIGN_OR_RETURN(info.parent_versions,
                        store_internal::DecodeParents(r[9].as<std::string>()));
  info.payload_sha256 = r[10].as<std::string>();
  info.partial = r[11].as<bool>();
  return info;
}

class PostgresStatsStore final : public StatsStore {
 public:
  PostgresStatsStore(std::string url, StatsStoreOptions options)
      : url_(std::move(url)), options_(options) {
    listen_thread_ = std::thread([this] { Listen(); });
  }

  ~PostgresStatsStore() override {
    stop_.store(true);
    listen_thread_.join();
  }

  absl::StatusOr<VersionRecord> Put(const NewVersion& v) override {
    LOGN_ASSIGN_OR_RETURN(store_internal::PreparedVersion prepared,
                          store_internal::PrepareVersion(v, absl::Now()));
    VersionInfo& info = prepared.info;
    const pqxx::binarystring payload(prepared.payload.data(), prepared.payload.size());
    LOGN_RETURN_IF_ERROR(Write("put", [&](pqxx::work& w) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockOrCreateModel(w, info.model, prepared.layout));
      for (int64_t parent : info.parent_versions) {
        if (w.exec_prepared("version_exists", m.id, parent).empty()) {
          return absl::NotFoundError(absl::StrCat("parent version ", parent, " of ",
                                                  info.model.DebugString(), " does not exist"));
        }
      }
      info.version = m.next_version;
      w.exec_prepared("bump_next", info.version + 1, m.id);
      w.exec_prepared("insert_version", m.id, info.version, ToMicros(info.created_at),
                      info.job_id, info.description,
                      std::string(VersionSourceName(info.source)), info.rows_seen,
                      info.images_seen, std::string(AccumulationMethodName(info.method)),
                      info.momentum, store_internal::EncodeParents(info.parent_versions), payload,
                      info.payload_sha256, info.partial);
      if (v.clear_job_checkpoint && !info.job_id.empty()) {
        w.exec_prepared("delete_checkpoint", m.id, info.job_id);
      }
      return absl::OkStatus();
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
    LOGN_RETURN_IF_ERROR(Read("get", [&](ReadTxn& t) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(t, model));
      LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveIn(t, m, model, selector));
      pqxx::result r = t.exec_prepared("get_version", m.id, version);
      if (r.empty()) return store_internal::VersionNotFound(model, version);
      LOGN_ASSIGN_OR_RETURN(record.info, ReadInfo(r[0], model));
      const pqxx::binarystring payload(r[0][12]);
      LOGN_ASSIGN_OR_RETURN(record.statistics,
                            store_internal::DecodePayload(model, version, absl::string_view(payload.get(), payload.size()),
                                                          record.info.payload_sha256));
      return absl::OkStatus();
    }));
    return record;
  }

  absl::StatusOr<int64_t> Resolve(const ModelKey& model,
                                  const VersionSelector& selector) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    int64_t version = 0;
    LOGN_RETURN_IF_ERROR(Read("resolve", [&](ReadTxn& t) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(t, model));
      LOGN_ASSIGN_OR_RETURN(version, ResolveIn(t, m, model, selector));
      if (selector.version > 0 && t.exec_prepared("version_exists", m.id, version).empty()) {
        return store_internal::VersionNotFound(model, version);
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
    LOGN_RETURN_IF_ERROR(Read("list", [&](ReadTxn& t) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(t, model));
      pqxx::result r = t.exec_prepared("list_versions", m.id, after, int64_t{limit} + 1);
      for (const pqxx::row& row : r) {
        if (static_cast<int32_t>(page.versions.size()) == limit) {
          page.next_page_token = store_internal::EncodePageToken(page.versions.back().version);
          break;
        }
        LOGN_ASSIGN_OR_RETURN(VersionInfo info, ReadInfo(row, model));
        page.versions.push_back(std::move(info));
      }
      return absl::OkStatus();
    }));
    return page;
  }

  absl::StatusOr<std::vector<ModelKey>> Models() override {
    std::vector<ModelKey> out;
    LOGN_RETURN_IF_ERROR(Read("models", [&](ReadTxn& t) -> absl::Status {
      for (const pqxx::row& row : t.exec_prepared("models")) {
        out.push_back(ModelKey{row[0].as<std::string>(), row[1].as<std::string>()});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> SetAlias(const ModelKey& model, absl::string_view alias,
                                   int64_t version) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
    const std::string name(alias);
    bool changed = false;
    int64_t previous = 0;
    LOGN_RETURN_IF_ERROR(Write("set alias", [&](pqxx::work& w) -> absl::Status {
      changed = false;
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockModel(w, model));
      pqxx::result v = w.exec_prepared("version_exists", m.id, version);
      if (v.empty()) return store_internal::VersionNotFound(model, version);
      if (v[0][0].as<bool>()) return store_internal::PartialNotAliasable(model, version);
      std::optional<int64_t> current = AliasTarget(w, m.id, name);
      previous = current.value_or(0);
      if (current == version) return absl::OkStatus();
      w.exec_prepared("write_alias", m.id, name, version, ToMicros(absl::Now()));
      w.exec_prepared("add_history", m.id, name, "set", version, current.value_or(0),
                      ToMicros(absl::Now()));
      w.exec_prepared("notify", model.name);
      changed = true;
      return absl::OkStatus();
    }));
    if (changed) generation_.fetch_add(1);
    return previous;
  }

  absl::Status RemoveAlias(const ModelKey& model, absl::string_view alias) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
    const std::string name(alias);
    LOGN_RETURN_IF_ERROR(Write("remove alias", [&](pqxx::work& w) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockModel(w, model));
      std::optional<int64_t> current = AliasTarget(w, m.id, name);
      if (!current.has_value()) return store_internal::AliasNotFound(model, alias);
      w.exec_prepared("delete_alias", m.id, name);
      w.exec_prepared("add_history", m.id, name, "remove", int64_t{0}, *current,
                      ToMicros(absl::Now()));
      w.exec_prepared("notify", model.name);
      return absl::OkStatus();
    }));
    generation_.fetch_add(1);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Rollback(const ModelKey& model) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    const std::string active(kActiveAlias);
    int64_t target = 0;
    LOGN_RETURN_IF_ERROR(Write("rollback", [&](pqxx::work& w) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockModel(w, model));
      std::optional<int64_t> current = AliasTarget(w, m.id, active);
      if (!current.has_value()) return store_internal::AliasNotFound(model, active);
      pqxx::result h = w.exec_prepared("last_set", m.id, active);
      if (h.empty() || h[0][2].is_null() || h[0][1].as<int64_t>() != *current) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot roll back ", model.DebugString(), ": active (version ", *current,
                         ") has no earlier version to return to"));
      }
      target = h[0][2].as<int64_t>();
      if (w.exec_prepared("version_exists", m.id, target).empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot roll back ", model.DebugString(), ": the previous active version ",
                         target, " has been deleted; Activate another version"));
      }
      w.exec_prepared("undo_history", h[0][0].as<int64_t>());
      w.exec_prepared("write_alias", m.id, active, target, ToMicros(absl::Now()));
      w.exec_prepared("add_history", m.id, active, "rollback", target, *current,
                      ToMicros(absl::Now()));
      w.exec_prepared("notify", model.name);
      return absl::OkStatus();
    }));
    generation_.fetch_add(1);
    return target;
  }

  absl::StatusOr<std::vector<AliasInfo>> Aliases(const ModelKey& model) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    std::vector<AliasInfo> out;
    LOGN_RETURN_IF_ERROR(Read("aliases", [&](ReadTxn& t) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, RequireModel(t, model));
      for (const pqxx::row& row : t.exec_prepared("aliases", m.id)) {
        out.push_back(AliasInfo{row[0].as<std::string>(), row[1].as<int64_t>(),
                                FromMicros(row[2].as<int64_t>())});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status Delete(const ModelKey& model, int64_t version) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    return Write("delete", [&](pqxx::work& w) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockModel(w, model));
      if (w.exec_prepared("version_exists", m.id, version).empty()) {
        return store_internal::VersionNotFound(model, version);
      }
      std::vector<std::string> aliases;
      for (const pqxx::row& row : w.exec_prepared("aliases_of_version", m.id, version)) {
        aliases.push_back(row[0].as<std::string>());
      }
      if (!aliases.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot delete version ", version, " of ", model.DebugString(),
            ": aliases point at it (", absl::StrJoin(aliases, ", "), "); move them first"));
      }
      w.exec_prepared("delete_version", m.id, version);
      return absl::OkStatus();
    });
  }

  absl::Status PutCheckpoint(const JobCheckpoint& checkpoint) override {
    LOGN_ASSIGN_OR_RETURN(store_internal::PreparedCheckpoint prepared,
                          store_internal::PrepareCheckpoint(checkpoint, absl::Now()));
    const JobCheckpoint& cp = prepared.checkpoint;
    const pqxx::binarystring payload(prepared.payload.data(), prepared.payload.size());
    return Write("put checkpoint", [&](pqxx::work& w) -> absl::Status {
      LOGN_ASSIGN_OR_RETURN(ModelRow m, LockOrCreateModel(w, cp.model, prepared.layout));
      w.exec_prepared("put_checkpoint", m.id, cp.job_id, cp.batches, cp.images_seen,
                      std::string(VersionSourceName(cp.source)), ToMicros(cp.updated_at),
                      prepared.payload_sha256, payload);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<JobCheckpoint> GetCheckpoint(const ModelKey& model,
                                              absl::string_view job_id) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    JobCheckpoint cp;
    LOGN_RETURN_IF_ERROR(Read("get checkpoint", [&](ReadTxn& t) -> absl::Status {
      pqxx::result found = t.exec_prepared("find_model", model.name, model.sha256);
      if (found.empty()) return store_internal::CheckpointNotFound(model, job_id);
      LOGN_ASSIGN_OR_RETURN(ModelRow m, ReadModel(found[0]));
      pqxx::result r = t.exec_prepared("get_checkpoint", m.id, std::string(job_id));
      if (r.empty()) return store_internal::CheckpointNotFound(model, job_id);
      cp.model = model;
      cp.job_id = std::string(job_id);
      cp.batches = r[0][0].as<int64_t>();
      cp.images_seen = r[0][1].as<int64_t>();
      if (!ParseVersionSource(r[0][2].as<std::string>(), &cp.source).ok()) {
        return absl::DataLossError(absl::StrCat("stored source of the checkpoint of job '",
                                                job_id, "' is corrupt"));
      }
      cp.updated_at = FromMicros(r[0][3].as<int64_t>());
      const pqxx::binarystring bytes(r[0][5]);
      LOGN_ASSIGN_OR_RETURN(
          cp.statistics,
          store_internal::DecodeCheckpointPayload(model, job_id,
                                                  absl::string_view(bytes.get(), bytes.size()),
                                                  r[0][4].as<std::string>()));
      return absl::OkStatus();
    }));
    return cp;
  }

  absl::Status DeleteCheckpoint(const ModelKey& model, absl::string_view job_id) override {
    LOGN_RETURN_IF_ERROR(model.Validate());
    return Write("delete checkpoint", [&](pqxx::work& w) -> absl::Status {
      pqxx::result found = w.exec_prepared("find_model", model.name, model.sha256);
      if (found.empty()) return store_internal::CheckpointNotFound(model, job_id);
      LOGN_ASSIGN_OR_RETURN(ModelRow m, ReadModel(found[0]));
      if (w.exec_prepared("delete_checkpoint", m.id, std::string(job_id)).affected_rows() == 0) {
        return store_internal::CheckpointNotFound(model, job_id);
      }
      return absl::OkStatus();
    });
  }

  uint64_t AliasGeneration() const override { return generation_.load(std::memory_order_acquire); }

  absl::string_view backend() const override { return "postgres"; }

  // Opens one connection to check the URL and migrate the schema.
  absl::Status Init() {
    std::unique_ptr<pqxx::connection> c;
    LOGN_ASSIGN_OR_RETURN(c, Connect());
    try {
      pqxx::work w(*c);
      w.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
      w.exec("CREATE TABLE IF NOT EXISTS stats_meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)");
      pqxx::result r = w.exec("SELECT value FROM stats_meta WHERE key = 'schema_version'");
      const int64_t current = r.empty() ? 0 : r[0][0].as<int64_t>();
      if (current > kPostgresSchemaVersion) {
        return absl::FailedPreconditionError(absl::StrCat(
            "store ", Redacted(), " has schema version ", current,
            " but this binary understands up to ", kPostgresSchemaVersion,
            ": upgrade the binary (never downgrade a store)"));
      }
      for (int64_t v = current; v < kPostgresSchemaVersion; ++v) w.exec(kMigrations[v]);
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

  // Runs `body` in a read-write transaction and commits it if the body returns OK. Conflicts
  // (serialisation failures, deadlocks, unique violations from concurrent model creation) are
  // retried; a broken pooled connection is retried once on a fresh one.
  template <typename F>
  absl::Status Write(absl::string_view what, F&& body) {
    absl::Status last;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      LOGN_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> c, Acquire());
      bool retryable = false;
      try {
        pqxx::work w(*c);
        absl::Status s = body(w);
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

  template <typename F>
  absl::Status Read(absl::string_view what, F&& body) {
    absl::Status last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      LOGN_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> c, Acquire());
      try {
        absl::Status s;
        {
          ReadTxn t(*c);
          s = body(t);
          if (s.ok()) t.commit();
        }
        Release(std::move(c));
        return s;
      } catch (const pqxx::broken_connection& e) {
        bool retryable;
        last = PgStatus(e, what, &retryable);  // a stale pooled connection: one fresh try
      } catch (const std::exception& e) {
        bool retryable;
        if (c->is_open()) Release(std::move(c));
        return PgStatus(e, what, &retryable);
      }
    }
    return last;
  }

  template <typename Txn>
  static absl::StatusOr<ModelRow> RequireModel(Txn& t, const ModelKey& model) {
    pqxx::result r = t.exec_prepared("find_model", model.name, model.sha256);
    if (r.empty()) return store_internal::ModelNotFound(model);
    return ReadModel(r[0]);
  }

  // The model's row, locked (so writers serialise across replicas) and inserted on the model's
  // first write; FAILED_PRECONDITION when `layout` differs from the stored one.
  static absl::StatusOr<ModelRow> LockOrCreateModel(pqxx::work& w, const ModelKey& key,
                                                    const LogitLayout& layout) {
    w.exec_prepared("insert_model", key.name, key.sha256, layout.num_classes,
                    std::string(BackgroundPositionName(layout.background)));
    pqxx::result r = w.exec_prepared("lock_model", key.name, key.sha256);
    LOGN_ASSIGN_OR_RETURN(ModelRow m, ReadModel(r[0]));
    if (m.layout != layout) return store_internal::LayoutMismatch(key, m.layout, layout);
    return m;
  }

  // Alias writes lock the model row so they serialise with each other across replicas.
  static absl::StatusOr<ModelRow> LockModel(pqxx::work& w, const ModelKey& model) {
    pqxx::result r = w.exec_prepared("lock_model", model.name, model.sha256);
    if (r.empty()) return store_internal::ModelNotFound(model);
    return ReadModel(r[0]);
  }

  template <typename Txn>
  static std::optional<int64_t> AliasTarget(Txn& t, int64_t model_id, const std::string& alias) {
    pqxx::result r = t.exec_prepared("alias_target", model_id, alias);
    if (r.empty()) return std::nullopt;
    return r[0][0].as<int64_t>();
  }

  template <typename Txn>
  static absl::StatusOr<int64_t> ResolveIn(Txn& t, const ModelRow& m, const ModelKey& model,
                                           const VersionSelector& selector) {
    if (selector.version > 0) return selector.version;
    if (selector.version < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", selector.version, " is not a positive version number"));
    }
    LOGN_RETURN_IF_ERROR(ValidateAliasName(selector.alias));
    std::optional<int64_t> v = AliasTarget(t, m.id, selector.alias);
    if (!v.has_value()) return store_internal::AliasNotFound(model, selector.alias);
    return *v;
  }

  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, std::atomic<uint64_t>* generation)
        : pqxx::notification_receiver(c, kChannel), generation_(generation) {}
    void operator()(const std::string&, int) override { generation_->fetch_add(1); }

   private:
    std::atomic<uint64_t>* generation_;
  };

  // Holds a LISTEN connection; every notification bumps generation_. After a (re)connect the
  // generation is bumped too, since notifications may have been missed meanwhile.
  void Listen() {
    while (!stop_.load()) {
      try {
        pqxx::connection c(url_);
        Receiver receiver(c, &generation_);
        generation_.fetch_add(1);
        while (!stop_.load()) c.await_notification(0, 100000);
      } catch (const std::exception&) {
        generation_.fetch_add(1);
        const absl::Time until = absl::Now() + options_.watch_interval;
        while (!stop_.load() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
      }
    }
  }

  const std::string url_;
  const StatsStoreOptions options_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<bool> stop_{false};

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(pool_mu_);

  std::thread listen_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StatsStore>> OpenPostgresStatsStore(
    const std::string& url, const StatsStoreOptions& options) {
  auto store = std::make_unique<PostgresStatsStore>(url, options);
  LOGN_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<StatsStore>(std::move(store));
}

}  // namespace logn
