#ifndef LOGN_STORE_STATS_STORE_H_
#define LOGN_STORE_STATS_STORE_H_

// The versioned LogN statistics store: every statistics snapshot the service ever computed, kept
// as an immutable numbered version per model, plus named aliases ("active", "canary", ...) that
// point at versions. See docs/statistics-store.md.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "calibration/statistics.h"

namespace logn {

// A model is its name plus the sha256 of its TorchScript file, so statistics computed for one
// model can never be applied to another.
struct ModelKey {
  std::string name;    // non-empty, at most 256 bytes
  std::string sha256;  // 64 lowercase hex digits

  // INVALID_ARGUMENT unless both fields are well formed.
  absl::Status Validate() const;
  std::string DebugString() const;  // "name@0123abcd…"

  friend bool operator==(const ModelKey& a, const ModelKey& b) {
    return a.name == b.name && a.sha256 == b.sha256;
  }
  friend bool operator!=(const ModelKey& a, const ModelKey& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const ModelKey& key) {
    return H::combine(std::move(h), key.name, key.sha256);
  }
};

// What produced a version.
// kServedTraffic: logits of served Detect requests (drift references and snapshots).
enum class VersionSource { kLogits, kImages, kMerge, kImport, kServedTraffic };
absl::string_view VersionSourceName(VersionSource source);  // "logits", "images", "merge", "import"
absl::Status ParseVersionSource(absl::string_view text, VersionSource* out);

// Where a version's RoIs (its rows) came from: logn.v1.RoiSource.
enum class RoiSource {
  kUnspecified,  // never stored: a recorded RoiSamplingRecord always names its source
  kProposals,    // sampled from the RPN's proposals plus ground truth, as the RoI head trains
  kCandidates,   // sampled from the model's output candidates plus ground truth (a fallback)
  kDetections,   // the model's output candidates as they are (images without ground truth)
  kLogits,       // logit rows a client sent
  kImported,     // imported statistics (a version file or a checkpoint's)
  kMixed,        // a merge of versions, or a job, whose rows came from different sources
};
// "unspecified", "proposals", "candidates", "detections", "logits", "imported", "mixed": the
// names the store writes in its roi_source columns.
absl::string_view RoiSourceName(RoiSource source);
// The inverse of RoiSourceName, "unspecified" included; INVALID_ARGUMENT for anything else.
absl::Status ParseRoiSource(absl::string_view text, RoiSource* out);

// How a version's rows were sampled (logn.v1.RoiSampling), so that statistics that match
// training can be told from an approximation. Counts add up when versions merge (see
// StatsStore::Put).
struct RoiSamplingRecord {
  RoiSource roi_source = RoiSource::kUnspecified;
  // The sampler's parameters (kProposals and kCandidates; 0 otherwise, and in a merge whose
  // parents disagree on that parameter).
  int32_t num_rois = 0;            // RoIs per image requested
  double positive_fraction = 0.0;  // at most this fraction of them positive, in [0, 1]
  float positive_iou = 0.0f;       // IoU with a ground-truth box that makes a RoI positive
  // What was achieved: images that yielded rows, the RoIs (rows) accumulated from them, and
  // how many of those were positives (kProposals and kCandidates only). >= 0, positive_rois <=
  // rois.
  int64_t images = 0;
  int64_t rois = 0;
  int64_t positive_rois = 0;
  // The repeat-factor sampling threshold the rows were weighted with; 0: unweighted (or, in a
  // merge, parents weighted with different thresholds).
  double rfs_threshold = 0.0;

  // INVALID_ARGUMENT unless roi_source is set (not kUnspecified) and every field is in range.
  absl::Status Validate() const;
  // "proposals num_rois=512 positive_fraction=0.25 ... rfs_threshold=0".
  std::string DebugString() const;

  friend bool operator==(const RoiSamplingRecord& a, const RoiSamplingRecord& b) {
    return a.roi_source == b.roi_source && a.num_rois == b.num_rois &&
           a.positive_fraction == b.positive_fraction && a.positive_iou == b.positive_iou &&
           a.images == b.images && a.rois == b.rois && a.positive_rois == b.positive_rois &&
           a.rfs_threshold == b.rfs_threshold;
  }
  friend bool operator!=(const RoiSamplingRecord& a, const RoiSamplingRecord& b) {
    return !(a == b);
  }
};

// The record of a merge of versions whose records are `parents` (in any order): counts are
// the sums; roi_source the parents' common source, else kMixed; num_rois, positive_fraction,
// positive_iou and rfs_threshold each kept when every parent has the same value, else 0.
// Unset (unknown) when any parent has no record, or there are no parents.
std::optional<RoiSamplingRecord> MergeRoiSampling(
    const std::vector<std::optional<RoiSamplingRecord>>& parents);

// The alias Detect uses by default.
inline constexpr absl::string_view kActiveAlias = "active";

// INVALID_ARGUMENT unless `alias` matches [a-z][a-z0-9_-]{0,62} (never all digits, so a selector
// string is unambiguous).
absl::Status ValidateAliasName(absl::string_view alias);

// The most bytes a calibration profile may take.
inline constexpr size_t kMaxCalibrationProfileBytes = 64 * 1024;

// A version's calibration profile: the binary logn.v1.CalibrationProfile (set_at cleared) and
// when it was set. The default calibration setting the server uses with that version when a
// Detect request names none. Opaque to the store, which only checks its size and that it parses
// (store/version_proto.h writes and reads the message).
struct CalibrationProfileRecord {
  std::string profile;  // opaque to the store, at most kMaxCalibrationProfileBytes
  absl::Time set_at = absl::UnixEpoch();  // UTC, microsecond precision

  friend bool operator==(const CalibrationProfileRecord& a, const CalibrationProfileRecord& b) {
    return a.profile == b.profile && a.set_at == b.set_at;
  }
  friend bool operator!=(const CalibrationProfileRecord& a, const CalibrationProfileRecord& b) {
    return !(a == b);
  }
};

// Everything about a version except the snapshot itself (what List returns).
struct VersionInfo {
  ModelKey model;
  int64_t version = 0;  // from 1, per model, only grows (never reused, even after Delete)
  absl::Time created_at = absl::UnixEpoch();  // UTC, microsecond precision
  std::string job_id;
  std::string description;
  VersionSource source = VersionSource::kLogits;
  int64_t rows_seen = 0;    // = statistics.count
  int64_t images_seen = 0;  // = statistics.provenance.images_seen
  AccumulationMethod method = AccumulationMethod::kExact;  // = statistics.method
  double momentum = 0.0;                                   // = statistics.momentum
  std::vector<int64_t> parent_versions;  // merges: the versions merged, ascending
  // sha256 (lowercase hex) of the binary proto payload (StatisticsToBinary) as stored.
  std::string payload_sha256;
  // A partial result (e.g. one shard of a sharded job): never aliasable.
  bool partial = false;
  // How the rows were sampled; unset for versions stored before the store recorded it.
  std::optional<RoiSamplingRecord> sampling;
  // The version's calibration profile; unset: none. Unlike the rest of a version it can be
  // set, replaced and cleared (StatsStore::SetCalibrationProfile).
  std::optional<CalibrationProfileRecord> calibration_profile;
};

// One stored version.
struct VersionRecord {
  VersionInfo info;
  Statistics statistics;  // provenance.model_name / model_sha256 always equal info.model
};

// What a caller hands to Put; the store assigns the number, the checksum and the derived fields.
struct NewVersion {
  ModelKey model;
  Statistics statistics;
  std::string job_id;       // at most 256 bytes
  std::string description;  // at most 64 KiB
  VersionSource source = VersionSource::kLogits;
  std::vector<int64_t> parent_versions;  // each must be an existing version of the same model
  bool partial = false;
  // How the rows were sampled (validated: RoiSamplingRecord::Validate). Put decides it for two
  // sources: kMerge always gets MergeRoiSampling of the parents' records (whatever is set
  // here), and kImport, when unset, gets a record with roi_source kImported.
  std::optional<RoiSamplingRecord> sampling;
  // The calibration profile to store with the version (the binary logn.v1.CalibrationProfile,
  // set_at cleared; checked like SetCalibrationProfile's, and refused on a partial version).
  // An import carries it over from the file; its set_at is Put's time. A merge never inherits
  // its parents' profiles: it has the one set here, usually none.
  std::optional<std::string> calibration_profile;
  // When unset (InfinitePast), Put uses the current time.
  absl::Time created_at = absl::InfinitePast();
  // Also delete the checkpoint of `job_id` (if any) in the same transaction, so a committed
  // job can never be resumed and committed a second time.
  bool clear_job_checkpoint = false;
};

// A calibration job's accumulation so far, saved every N batches so that the job can resume
// after a dropped connection or a replica restart (on any replica sharing the store).
struct JobCheckpoint {
  ModelKey model;
  std::string job_id;       // non-empty, at most 256 bytes
  int64_t batches = 0;      // batches accumulated: where the client resumes; > 0
  int64_t images_seen = 0;
  VersionSource source = VersionSource::kLogits;
  // The partial statistics (count = rows so far). For exact jobs mean and unbiased variance
  // determine the moments (M2 = variance·(count−1)) to float64 rounding.
  Statistics statistics;
  // How the rows so far were sampled, so that a resumed job records all of them on commit.
  // Optional; validated like NewVersion::sampling when set.
  std::optional<RoiSamplingRecord> sampling;
  absl::Time updated_at = absl::UnixEpoch();  // set by PutCheckpoint
};

// Names a version either by number or by alias.
struct VersionSelector {
  int64_t version = 0;  // > 0 selects by number
  std::string alias;    // used when version == 0

  static VersionSelector Number(int64_t v) { return VersionSelector{v, ""}; }
  static VersionSelector Alias(absl::string_view a) { return VersionSelector{0, std::string(a)}; }
  static VersionSelector Active() { return Alias(kActiveAlias); }
  // "7" selects version 7, anything else an alias. INVALID_ARGUMENT for an empty string, "0",
  // a negative number or a malformed alias.
  static absl::StatusOr<VersionSelector> Parse(absl::string_view text);
  // INVALID_ARGUMENT for a negative number or (when selecting by alias) a malformed alias.
  absl::Status Validate() const;
  std::string DebugString() const;
};

struct VersionPage {
  std::vector<VersionInfo> versions;  // ascending version numbers
  std::string next_page_token;        // empty on the last page
};

struct AliasInfo {
  std::string alias;
  int64_t version = 0;
  absl::Time updated_at = absl::UnixEpoch();
};

// Narrows List to the versions a caller looks for. The database applies it (in the WHERE clause
// of the page query), so finding e.g. the version a job committed never pages through every
// version. Unset fields match every version; the default filter matches all of them.
struct VersionFilter {
  std::optional<std::string> job_id;    // only versions written by this job ("" included)
  std::optional<VersionSource> source;  // only versions with this source
  std::optional<bool> partial;          // only partial (true) or only complete (false) versions
};

class StoreBackend;  // store/store_backend.h

// The store: every rule about versions, aliases and checkpoints, over a database backend
// (store/store_backend.h) that only stores rows. Thread-safe; every write is one transaction,
// so a crash leaves either the whole write or none of it. Error codes, for every method:
//   INVALID_ARGUMENT    malformed key, alias, selector, page token, snapshot or calibration
//                       profile
//   NOT_FOUND           unknown model, version or alias (the message names which)
//   FAILED_PRECONDITION statistics for another model or layout, aliasing a partial version or
//                       giving it a calibration profile, deleting an aliased version, nothing
//                       to roll back to
//   DATA_LOSS           a stored payload whose checksum does not verify
//   UNAVAILABLE         the database cannot be reached (retryable)
//   RESOURCE_EXHAUSTED  disk full / out of database resources
//   ABORTED             a concurrent write won a race that retrying did not resolve
class StatsStore final {
 public:
  // Usually made by OpenStatsStore.
  explicit StatsStore(std::unique_ptr<StoreBackend> backend);
  ~StatsStore();
  StatsStore(const StatsStore&) = delete;
  StatsStore& operator=(const StatsStore&) = delete;

  // Stores a new immutable version and returns it with its number (the model's highest number
  // so far + 1, never a number used before, even after Delete). The snapshot must validate;
  // its provenance model name / sha256, when set, must equal `v.model`, and its layout must
  // equal the layout of the model's earlier versions (FAILED_PRECONDITION otherwise). Empty
  // provenance model fields are filled in. The sampling record: a merge's is derived from its
  // parents (MergeRoiSampling), an import without one is marked kImported, any other is
  // stored as given (INVALID_ARGUMENT when it does not validate). The calibration profile is
  // stored as given (set_at: now), checked as SetCalibrationProfile checks it.
  absl::StatusOr<VersionRecord> Put(const NewVersion& v);

  // The version `selector` names; its payload checksum is verified (DATA_LOSS otherwise).
  absl::StatusOr<VersionRecord> Get(const ModelKey& model, const VersionSelector& selector);

  // The metadata of the version `selector` names (Get without the snapshot: the payload is
  // not read).
  absl::StatusOr<VersionInfo> GetInfo(const ModelKey& model, const VersionSelector& selector);

  // The version number `selector` names, without reading the payload (cheap).
  absl::StatusOr<int64_t> Resolve(const ModelKey& model, const VersionSelector& selector);

  // The versions that match `filter`, in ascending order, `page_size` (1..1000; 0 means 100) at
  // a time, starting after `page_token` (empty for the first page; otherwise a
  // next_page_token from this store, listed with the same filter).
  absl::StatusOr<VersionPage> List(const ModelKey& model, absl::string_view page_token,
                                   int32_t page_size, const VersionFilter& filter = {});

  // Every model ever written to (even if all its versions were deleted), by name then sha256.
  absl::StatusOr<std::vector<ModelKey>> Models();

  // Points `alias` at `version` (creating the alias if needed) and returns the version it
  // pointed at before (0 if it is new). FAILED_PRECONDITION for a partial version, and for a
  // served-traffic version unless `allow_served_traffic` (served logits are not training RoIs:
  // calibrating with them is a deliberate choice). Each change is recorded in the alias
  // history; pointing an alias where it already points is a no-op.
  absl::StatusOr<int64_t> SetAlias(const ModelKey& model, absl::string_view alias,
                                   int64_t version, bool allow_served_traffic = false);
  // SetAlias(model, "active", version).
  absl::StatusOr<int64_t> Activate(const ModelKey& model, int64_t version) {
    return SetAlias(model, kActiveAlias, version);
  }
  // Removes an alias (NOT_FOUND if it does not exist).
  absl::Status RemoveAlias(const ModelKey& model, absl::string_view alias);
  // Points "active" back at the version it pointed to before the last change that has not
  // been rolled back yet; repeated calls walk further back. Returns the version now active.
  // FAILED_PRECONDITION when there is nothing to go back to (or that version was deleted).
  absl::StatusOr<int64_t> Rollback(const ModelKey& model);
  // The model's aliases, by name.
  absl::StatusOr<std::vector<AliasInfo>> Aliases(const ModelKey& model);

  // Deletes a version (and its calibration profile). FAILED_PRECONDITION while an alias
  // points at it.
  absl::Status Delete(const ModelKey& model, int64_t version);

  // Sets (profile) or clears (nullopt) the calibration profile of the version `selector` names:
  // the binary logn.v1.CalibrationProfile with set_at cleared, which the store keeps as it is
  // (set_at: now). NOT_FOUND for an unknown model/version/alias; FAILED_PRECONDITION for a
  // partial version; INVALID_ARGUMENT for a profile over kMaxCalibrationProfileBytes or bytes
  // that are not a logn.v1.CalibrationProfile. Counts as a metadata change: AliasGeneration()
  // moves (here and, through the backends' notification, in other processes sharing the
  // store), so StatsCache never serves a stale profile. Clearing a version that has none
  // changes nothing. Returns the version's info after the change.
  absl::StatusOr<VersionInfo> SetCalibrationProfile(const ModelKey& model,
                                                    const VersionSelector& selector,
                                                    std::optional<std::string> profile);

  // Saves (replacing any earlier one) the checkpoint of (model, job_id). The statistics must
  // validate and match the model's layout (FAILED_PRECONDITION otherwise).
  absl::Status PutCheckpoint(const JobCheckpoint& checkpoint);
  // The checkpoint of (model, job_id); NOT_FOUND when there is none (never written, or the job
  // committed); DATA_LOSS when its checksum does not verify.
  absl::StatusOr<JobCheckpoint> GetCheckpoint(const ModelKey& model, absl::string_view job_id);
  // Deletes a checkpoint (a job abandoned for good). NOT_FOUND when there is none.
  absl::Status DeleteCheckpoint(const ModelKey& model, absl::string_view job_id);

  // A process-local counter that grows whenever an alias or a version's calibration profile
  // (the mutable metadata) of any model may have changed, including changes made through other
  // store instances and other processes (seen within ~1 s). Reading it never touches the
  // database: caches compare it to decide when to re-resolve aliases and re-read versions'
  // metadata.
  uint64_t AliasGeneration() const;

  // "sqlite" or "postgres".
  absl::string_view backend() const;

 private:
  const std::unique_ptr<StoreBackend> backend_;
  // Alias and calibration profile changes made through this instance: seen by
  // AliasGeneration() as soon as they commit, before any watcher notices them.
  std::atomic<uint64_t> local_alias_changes_{0};
};

// Tuning shared by the backends.
struct StatsStoreOptions {
  // How long a write waits for another writer's lock before UNAVAILABLE (SQLite busy_timeout).
  absl::Duration busy_timeout = absl::Seconds(10);
  // How often a background thread checks for alias changes made by other processes (SQLite;
  // PostgreSQL is notified with LISTEN/NOTIFY and only polls as a fallback).
  absl::Duration watch_interval = absl::Milliseconds(200);
  // Idle connections kept per store.
  int max_idle_connections = 4;
  // SQLite only: refuse writes (RESOURCE_EXHAUSTED) once the database file would exceed this
  // many bytes; 0 = no limit (the disk is the limit, reported the same way).
  int64_t sqlite_max_bytes = 0;
};

// Opens (creating / migrating the schema if needed) the store a URL names (defined in the
// target logn::store, store/open_stats_store.cc, which links the backends):
//   sqlite:///absolute/path/to/stats.db
//   postgres://user:password@host:port/database   (also postgresql://; libpq query parameters
//                                                   are passed through)
// INVALID_ARGUMENT for a malformed URL or unknown scheme; UNAVAILABLE / PERMISSION_DENIED /
// NOT_FOUND when the database cannot be opened; FAILED_PRECONDITION when its schema is newer
// than this binary understands; UNIMPLEMENTED for a postgres:// URL in a build without
// PostgreSQL (-DLOGN_WITH_POSTGRES=OFF).
absl::StatusOr<std::unique_ptr<StatsStore>> OpenStatsStore(absl::string_view url,
                                                           const StatsStoreOptions& options = {});

}  // namespace logn

#endif  // LOGN_STORE_STATS_STORE_H_
