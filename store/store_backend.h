#ifndef LOGN_STORE_STORE_BACKEND_H_
#define LOGN_STORE_STORE_BACKEND_H_

// What a database must provide for the statistics store: transactions and primitive row reads
// and writes, in the stored (column) form. Every rule of the store (validation, version
// numbering, the layout and partial-version guards, alias history and the rollback walk,
// delete guards, job checkpoints, error messages) lives once, in StatsStore
// (store/stats_store.cc) over this interface; a backend only owns its connections, its
// migrations and its SQL text. Not part of the public API: callers use StatsStore.

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/stats_store.h"

namespace logn {

// One row of stats_models.
struct ModelRow {
  int64_t id = 0;
  int64_t num_classes = 0;
  std::string background;  // BackgroundPositionName
  int64_t next_version = 1;
};

// A RoiSamplingRecord as stored (store_internal encodes and decodes it): the columns of
// stats_version_sampling, and the sampling columns of stats_job_checkpoints.
struct SamplingRow {
  std::string roi_source;  // RoiSourceName
  int64_t num_rois = 0;
  double positive_fraction = 0.0;
  double positive_iou = 0.0;  // a float, exactly
  int64_t images = 0;
  int64_t rois = 0;
  int64_t positive_rois = 0;
  double rfs_threshold = 0.0;
};

// A CalibrationProfileRecord as stored: the columns of stats_version_profile.
struct ProfileRow {
  std::string profile;  // the bytes as given
  int64_t set_at_us = 0;
};

// One row of stats_versions, columns as stored (store_internal encodes and decodes them), with
// the version's rows of stats_version_sampling and stats_version_profile when it has them.
struct VersionRow {
  int64_t version = 0;
  int64_t created_at_us = 0;
  std::string job_id;
  std::string description;
  std::string source;  // VersionSourceName
  int64_t rows_seen = 0;
  int64_t images_seen = 0;
  std::string method;  // AccumulationMethodName
  double momentum = 0.0;
  std::string parents;  // "1,2,3"
  std::string payload_sha256;
  bool partial = false;
  std::optional<SamplingRow> sampling;  // none: the version has no sampling record
  std::optional<ProfileRow> profile;    // none: the version has no calibration profile
  std::string payload;  // empty unless read with the payload
};

// A VersionFilter in stored form: the database applies it in the WHERE clause.
struct VersionRowFilter {
  bool by_job_id = false;  // match job_id exactly (which may be empty)
  std::string job_id;
  std::string source;  // empty: any source
  int partial = -1;    // -1: any; 0: complete versions only; 1: partial versions only
};

// One row of stats_aliases.
struct AliasRow {
  std::string alias;
  int64_t version = 0;
  int64_t updated_at_us = 0;
};

// One row of stats_alias_history.
struct HistoryRow {
  int64_t id = 0;  // assigned by the database
  std::string alias;
  std::string kind;                 // "set", "remove" or "rollback"
  std::optional<int64_t> version;   // where the alias points after the change (none: removed)
  std::optional<int64_t> previous;  // where it pointed before (none: it was new)
  int64_t changed_at_us = 0;
};

// One row of stats_job_checkpoints.
struct CheckpointRow {
  std::string job_id;
  int64_t batches = 0;
  int64_t images_seen = 0;
  std::string source;  // VersionSourceName
  int64_t updated_at_us = 0;
  std::string payload_sha256;
  std::string payload;
  std::optional<SamplingRow> sampling;
};

// The stats_versions columns every backend writes (after model_id) and reads, in this order.
inline constexpr char kVersionColumns[] =
    "version, created_at_us, job_id, description, source, rows_seen, images_seen, method, "
    "momentum, parents, payload_sha256, partial";

// A version's sampling record lives in the side table stats_version_sampling, keyed by
// (model_id, version), one row per version that has a record (none for versions stored
// before schema 4 / 3). Not columns of stats_versions: SQLite's ALTER TABLE ADD COLUMN
// appends after the payload blob, and a column read past a large blob walks its overflow
// pages, on every row of every List; rebuilding stats_versions instead would rewrite every
// payload in one migration transaction. The side table costs a primary-key join.
inline constexpr char kSamplingColumns[] =
    "roi_source, num_rois, positive_fraction, positive_iou, sampled_images, sampled_rois, "
    "positive_rois, rfs_threshold";
// A version's calibration profile lives in the side table stats_version_profile, keyed by
// (model_id, version), one row per version that has a profile (none before schema 5 / 4), for
// the same reason as the sampling record, and because, unlike the rest of a version, it is
// replaced and cleared: an upsert or a delete of one small row, never an UPDATE of the row
// that holds the payload.
inline constexpr char kProfileColumns[] = "profile, set_at_us";
// What every version query reads FROM: the version rows with their sampling and profile
// columns (NULL for a version without a record / a profile). The join column names (model_id,
// version) stay unqualified.
inline constexpr char kVersionsWithSideTables[] =
    "stats_versions LEFT JOIN stats_version_sampling USING (model_id, version) "
    "LEFT JOIN stats_version_profile USING (model_id, version)";

// The 8 columns of kSamplingColumns from column `first` on; none when roi_source is NULL.
template <typename Row>
std::optional<SamplingRow> ReadSamplingColumns(const Row& r, int first) {
  if (r.IsNull(first)) return std::nullopt;
  return SamplingRow{r.Text(first),       r.Int(first + 1), r.Double(first + 2),
                     r.Double(first + 3), r.Int(first + 4), r.Int(first + 5),
                     r.Int(first + 6),    r.Double(first + 7)};
}

// The 2 columns of kProfileColumns from column `first` on; none when set_at_us is
// NULL (the profile itself may be empty).
template <typename Row>
std::optional<ProfileRow> ReadProfileColumns(const Row& r, int first) {
  if (r.IsNull(first + 1)) return std::nullopt;
  return ProfileRow{r.Blob(first), r.Int(first + 1)};
}

// Maps a result row of kVersionColumns, kSamplingColumns, kProfileColumns (then `payload` when
// `with_payload`).
// `Row` is the backend's cursor over one result row: Int(i), Double(i), Bool(i), Text(i),
// Blob(i) and IsNull(i) read column i.
template <typename Row>
VersionRow ReadVersionRow(const Row& r, bool with_payload) {
  VersionRow row;
  row.version = r.Int(0);
  row.created_at_us = r.Int(1);
  row.job_id = r.Text(2);
  row.description = r.Text(3);
  row.source = r.Text(4);
  row.rows_seen = r.Int(5);
  row.images_seen = r.Int(6);
  row.method = r.Text(7);
  row.momentum = r.Double(8);
  row.parents = r.Text(9);
  row.payload_sha256 = r.Text(10);
  row.partial = r.Bool(11);
  row.sampling = ReadSamplingColumns(r, 12);
  row.profile = ReadProfileColumns(r, 20);
  if (with_payload) row.payload = r.Blob(22);
  return row;
}

// The stats_models columns every backend reads, in this order.
inline constexpr char kModelColumns[] = "model_id, num_classes, background, next_version";

template <typename Row>
ModelRow ReadModelRow(const Row& r) {
  return ModelRow{r.Int(0), r.Int(1), r.Text(2), r.Int(3)};
}

// The stats_job_checkpoints columns every backend reads (after job_id, which the query names),
// in this order: the sampling columns (kSamplingColumns, NULL without a record) follow the
// payload there, which costs nothing since every read of a checkpoint reads its payload.
inline constexpr char kCheckpointColumns[] =
    "batches, images_seen, source, updated_at_us, payload_sha256, payload, roi_source, "
    "num_rois, positive_fraction, positive_iou, sampled_images, sampled_rois, positive_rois, "
    "rfs_threshold";

template <typename Row>
CheckpointRow ReadCheckpointRow(const Row& r, absl::string_view job_id) {
  return CheckpointRow{std::string(job_id), r.Int(0),  r.Int(1),  r.Text(2),
                       r.Int(3),            r.Text(4), r.Blob(5), ReadSamplingColumns(r, 6)};
}

// The stats_aliases columns every backend reads, in this order.
inline constexpr char kAliasColumns[] = "alias, version, updated_at_us";

template <typename Row>
AliasRow ReadAliasRow(const Row& r) {
  return AliasRow{r.Text(0), r.Int(1), r.Int(2)};
}

// The stats_alias_history columns LastUndoneSet reads, in this order.
inline constexpr char kHistoryColumns[] = "id, version, previous_version";

template <typename Row>
HistoryRow ReadSetHistoryRow(const Row& r, absl::string_view alias) {
  return HistoryRow{r.Int(0), std::string(alias), "set", r.OptionalInt(1), r.OptionalInt(2), 0};
}

// A payload column's value, so that a backend binds it as bytes (BLOB / BYTEA), not as text.
struct PayloadBytes {
  absl::string_view bytes;
};

// Calls `bind` with the values of the columns (model_id, kVersionColumns..., payload), in that
// order: the column list of every backend's INSERT INTO stats_versions.
template <typename F>
decltype(auto) WithVersionValues(int64_t model_id, const VersionRow& r, F&& bind) {
  return bind(model_id, r.version, r.created_at_us, r.job_id, r.description, r.source,
              r.rows_seen, r.images_seen, r.method, r.momentum, r.parents, r.payload_sha256,
              r.partial, PayloadBytes{r.payload});
}

// Likewise for (model_id, version, kSamplingColumns...) of stats_version_sampling.
template <typename F>
decltype(auto) WithSamplingValues(int64_t model_id, int64_t version, const SamplingRow& s,
                                  F&& bind) {
  return bind(model_id, version, s.roi_source, s.num_rois, s.positive_fraction, s.positive_iou,
              s.images, s.rois, s.positive_rois, s.rfs_threshold);
}

// Likewise for (model_id, version, kProfileColumns...) of stats_version_profile.
template <typename F>
decltype(auto) WithProfileValues(int64_t model_id, int64_t version, const ProfileRow& p,
                                 F&& bind) {
  return bind(model_id, version, PayloadBytes{p.profile}, p.set_at_us);
}

// Likewise for (model_id, job_id, kCheckpointColumns...) of stats_job_checkpoints. Without a
// sampling record roi_source is bound as '' (the statement stores NULLIF(roi_source, ''), so
// NULL) and the other sampling columns as 0.
template <typename F>
decltype(auto) WithCheckpointValues(int64_t model_id, const CheckpointRow& r, F&& bind) {
  const SamplingRow s = r.sampling.value_or(SamplingRow{});
  return bind(model_id, r.job_id, r.batches, r.images_seen, r.source, r.updated_at_us,
              r.payload_sha256, PayloadBytes{r.payload}, s.roi_source, s.num_rois,
              s.positive_fraction, s.positive_iou, s.images, s.rois, s.positive_rois,
              s.rfs_threshold);
}

// The primitive operations of one transaction. Each is one statement (or, for InsertModel, the
// statements one logical insert needs in that database). Lookups return nullopt for a missing
// row; they never decide what a missing row means: that is the caller's rule.
class StoreTxn {
 public:
  virtual ~StoreTxn() = default;

  // The model's row. In a write transaction it stays locked until the transaction ends, so
  // the writes of one model serialise across processes.
  virtual absl::StatusOr<std::optional<ModelRow>> FindModel(const ModelKey& key) = 0;
  // Inserts the model's row with next_version 1 (unless a concurrent transaction just did) and
  // returns the row now stored, locked like FindModel's.
  virtual absl::StatusOr<ModelRow> InsertModel(const ModelKey& key, int64_t num_classes,
                                               absl::string_view background) = 0;
  virtual absl::Status SetNextVersion(int64_t model_id, int64_t next_version) = 0;
  // Every model, by name then sha256.
  virtual absl::StatusOr<std::vector<ModelKey>> ListModels() = 0;

  // Inserts the version's row, and its rows of stats_version_sampling and
  // stats_version_profile when row.sampling / row.profile are set.
  virtual absl::Status InsertVersion(int64_t model_id, const VersionRow& row) = 0;
  virtual absl::StatusOr<std::optional<VersionRow>> FindVersion(int64_t model_id,
                                                                int64_t version,
                                                                bool with_payload) = 0;
  // Up to `limit` rows (no payload) with version > `after` that match `filter`, ascending.
  virtual absl::StatusOr<std::vector<VersionRow>> ListVersions(int64_t model_id, int64_t after,
                                                               int64_t limit,
                                                               const VersionRowFilter& filter) = 0;
  // Deletes the version's row (its sampling and profile rows go with it: ON DELETE CASCADE).
  virtual absl::Status DeleteVersion(int64_t model_id, int64_t version) = 0;
  // Inserts or replaces the version's row of stats_version_profile.
  virtual absl::Status WriteProfile(int64_t model_id, int64_t version, const ProfileRow& row) = 0;
  // Deletes the version's row of stats_version_profile, if any.
  virtual absl::Status DeleteProfile(int64_t model_id, int64_t version) = 0;

  // The model's aliases, by name.
  virtual absl::StatusOr<std::vector<AliasRow>> ListAliases(int64_t model_id) = 0;
  virtual absl::StatusOr<std::optional<int64_t>> AliasTarget(int64_t model_id,
                                                             absl::string_view alias) = 0;
  // Inserts or replaces the alias.
  virtual absl::Status WriteAlias(int64_t model_id, const AliasRow& row) = 0;
  virtual absl::Status DeleteAlias(int64_t model_id, absl::string_view alias) = 0;
  virtual absl::Status AddHistory(int64_t model_id, const HistoryRow& row) = 0;
  // The newest "set" entry of `alias` not yet marked undone.
  virtual absl::StatusOr<std::optional<HistoryRow>> LastUndoneSet(int64_t model_id,
                                                                  absl::string_view alias) = 0;
  virtual absl::Status MarkUndone(int64_t history_id) = 0;
  // Tells the other store instances (processes, replicas) that an alias or a calibration
  // profile of `model` changed, once this transaction commits: their
  // ExternalAliasGeneration() moves.
  virtual absl::Status PublishAliasChange(const ModelKey& model) = 0;

  // Inserts or replaces the checkpoint of (model, row.job_id).
  virtual absl::Status PutCheckpoint(int64_t model_id, const CheckpointRow& row) = 0;
  virtual absl::StatusOr<std::optional<CheckpointRow>> FindCheckpoint(
      int64_t model_id, absl::string_view job_id) = 0;
  // Whether a checkpoint was deleted.
  virtual absl::StatusOr<bool> DeleteCheckpoint(int64_t model_id, absl::string_view job_id) = 0;
};

// A database. Thread-safe. Errors use the codes documented on StatsStore (UNAVAILABLE,
// RESOURCE_EXHAUSTED, ABORTED, ...). A backend whose client library reports errors by
// exception may let them leave StoreTxn's methods: its own Read / Write catch them (the code
// in between holds no resources across those calls).
class StoreBackend {
 public:
  using Body = absl::FunctionRef<absl::Status(StoreTxn&)>;

  virtual ~StoreBackend() = default;

  // Runs `body` in one read-only snapshot. `what` names the operation in error messages.
  virtual absl::Status Read(absl::string_view what, Body body) = 0;
  // Runs `body` in one write transaction, committed when it returns OK and rolled back
  // otherwise. After a conflict that retrying can resolve the backend may run `body` again on
  // a fresh transaction, so `body` must set its results afresh on every run.
  virtual absl::Status Write(absl::string_view what, Body body) = 0;

  // A counter that grows whenever another store instance or process may have published an
  // alias or calibration profile change (seen within ~1 s). An atomic read: it never touches
  // the database.
  virtual uint64_t ExternalAliasGeneration() const {
    return alias_generation_.load(std::memory_order_acquire);
  }

  // "sqlite" or "postgres".
  virtual absl::string_view name() const = 0;

 protected:
  // Called by a backend's watcher when an alias may have changed elsewhere (or when it cannot
  // tell, e.g. after losing its connection).
  void BumpAliasGeneration() { alias_generation_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  std::atomic<uint64_t> alias_generation_{1};
};

}  // namespace logn

#endif  // LOGN_STORE_STORE_BACKEND_H_
