#include "store/stats_store.h"

#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "store/store_backend.h"
#include "store/store_internal.h"

namespace logn {
namespace {

constexpr size_t kMaxModelNameBytes = 256;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status ModelKey::Validate() const {
  if (name.empty() || name.size() > kMaxModelNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model name must be 1..", kMaxModelNameBytes,
                                                   " bytes, got ", name.size()));
  }
  if (sha256.size() != 64 || !IsLowerHex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model sha256 for '", name,
                     "' must be 64 lowercase hex digits (sha256sum of the TorchScript file), got '",
                     sha256, "'"));
  }
  return absl::OkStatus();
}

std::string ModelKey::DebugString() const {
  return absl::StrCat(name, "@", sha256.substr(0, 12));
}

absl::string_view VersionSourceName(VersionSource source) {
  switch (source) {
    case VersionSource::kLogits: return "logits";
    case VersionSource::kImages: return "images";
    case VersionSource::kMerge: return "merge";
    case VersionSource::kImport: return "import";
    case VersionSource::kServedTraffic: return "served-traffic";
  }
  return "unknown";
}

absl::Status ParseVersionSource(absl::string_view text, VersionSource* out) {
  for (VersionSource s : {VersionSource::kLogits, VersionSource::kImages, VersionSource::kMerge,
                          VersionSource::kImport, VersionSource::kServedTraffic}) {
    if (text == VersionSourceName(s)) {
      *out = s;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown version source '", text, "': expected logits, images, merge, import or served-traffic"));
}

absl::string_view RoiSourceName(RoiSource source) {
  switch (source) {
    case RoiSource::kUnspecified: return "unspecified";
    case RoiSource::kProposals: return "proposals";
    case RoiSource::kCandidates: return "candidates";
    case RoiSource::kDetections: return "detections";
    case RoiSource::kLogits: return "logits";
    case RoiSource::kImported: return "imported";
    case RoiSource::kMixed: return "mixed";
  }
  return "unknown";
}

absl::Status ParseRoiSource(absl::string_view text, RoiSource* out) {
  for (RoiSource s : {RoiSource::kUnspecified, RoiSource::kProposals, RoiSource::kCandidates,
                      RoiSource::kDetections, RoiSource::kLogits, RoiSource::kImported,
                      RoiSource::kMixed}) {
    if (text == RoiSourceName(s)) {
      *out = s;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown RoI source '", text,
                   "': expected proposals, candidates, detections, logits, imported or mixed"));
}

absl::Status RoiSamplingRecord::Validate() const {
  if (roi_source == RoiSource::kUnspecified || RoiSourceName(roi_source) == "unknown") {
    return absl::InvalidArgumentError(
        "a sampling record must name its RoI source: leave the record unset when it is unknown");
  }
  if (num_rois < 0 || images < 0 || rois < 0 || positive_rois < 0 || positive_rois > rois) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling record counts must be >= 0 with positive_rois <= rois, got num_rois ",
        num_rois, ", images ", images, ", rois ", rois, ", positive_rois ", positive_rois));
  }
  // Written so that NaN fails too.
  if (!(positive_fraction >= 0 && positive_fraction <= 1) ||
      !(positive_iou >= 0 && positive_iou <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling record positive_fraction and positive_iou must be in [0, 1], got ",
        positive_fraction, " and ", positive_iou));
  }
  if (!(rfs_threshold >= 0 && rfs_threshold <= std::numeric_limits<double>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling record rfs_threshold must be finite and >= 0, got ", rfs_threshold));
  }
  return absl::OkStatus();
}

std::string RoiSamplingRecord::DebugString() const {
  return absl::StrCat(RoiSourceName(roi_source), " num_rois=", num_rois,
                      " positive_fraction=", positive_fraction, " positive_iou=", positive_iou,
                      " images=", images, " rois=", rois, " positive_rois=", positive_rois,
                      " rfs_threshold=", rfs_threshold);
}

std::optional<RoiSamplingRecord> MergeRoiSampling(
    const std::vector<std::optional<RoiSamplingRecord>>& parents) {
  // How part of the rows were obtained is unknown: so is how the merge's were.
  if (parents.empty()) return std::nullopt;
  for (const std::optional<RoiSamplingRecord>& p : parents) {
    if (!p.has_value()) return std::nullopt;
  }
  RoiSamplingRecord merged = *parents[0];
  merged.images = merged.rois = merged.positive_rois = 0;
  for (const std::optional<RoiSamplingRecord>& p : parents) {
    if (p->roi_source != merged.roi_source) merged.roi_source = RoiSource::kMixed;
    // A parameter the parents disagree on describes none of the merged rows: 0.
    if (p->num_rois != merged.num_rois) merged.num_rois = 0;
    if (p->positive_fraction != merged.positive_fraction) merged.positive_fraction = 0;
    if (p->positive_iou != merged.positive_iou) merged.positive_iou = 0;
    if (p->rfs_threshold != merged.rfs_threshold) merged.rfs_threshold = 0;
    merged.images += p->images;
    merged.rois += p->rois;
    merged.positive_rois += p->positive_rois;
  }
  return merged;
}

absl::Status ValidateAliasName(absl::string_view alias) {
  bool ok = !alias.empty() && alias.size() <= 63 && alias[0] >= 'a' && alias[0] <= 'z';
  for (char c : alias) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alias '", alias, "' is malformed: use 1..63 of [a-z0-9_-], starting with a letter"));
  }
  return absl::OkStatus();
}

absl::StatusOr<VersionSelector> VersionSelector::Parse(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("empty version selector: give a number or an alias");
  }
  if (absl::ascii_isdigit(text[0]) || text[0] == '-') {
    int64_t v = 0;
    if (!absl::SimpleAtoi(text, &v) || v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version selector '", text, "' is not a positive version number"));
    }
    return Number(v);
  }
  LOGN_RETURN_IF_ERROR(ValidateAliasName(text));
  return Alias(text);
}

absl::Status VersionSelector::Validate() const {
  if (version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", version, " is not a positive version number"));
  }
  return version > 0 ? absl::OkStatus() : ValidateAliasName(alias);
}

std::string VersionSelector::DebugString() const {
  return version > 0 ? absl::StrCat("version ", version) : absl::StrCat("alias '", alias, "'");
}

// ---- StatsStore: the store's rules, over any backend ----

namespace {

using store_internal::ToMicros;

constexpr absl::string_view kSet = "set";
constexpr absl::string_view kRemove = "remove";
constexpr absl::string_view kRollback = "rollback";

absl::Status ModelNotFound(const ModelKey& model) {
  return absl::NotFoundError(
      absl::StrCat("model ", model.DebugString(), " (sha256 ", model.sha256,
                   ") has no statistics in the store: Put a version first"));
}

absl::Status VersionNotFound(const ModelKey& model, int64_t version) {
  return absl::NotFoundError(
      absl::StrCat("model ", model.DebugString(), " has no version ", version,
                   " (never written, or deleted): List shows the versions that exist"));
}

absl::Status AliasNotFound(const ModelKey& model, absl::string_view alias) {
  return absl::NotFoundError(absl::StrCat("model ", model.DebugString(), " has no alias '", alias,
                                          "': set it with SetAlias / Activate"));
}

absl::Status CheckpointNotFound(const ModelKey& model, absl::string_view job_id) {
  return absl::NotFoundError(absl::StrCat(
      "no checkpoint for job '", job_id, "' of ", model.DebugString(),
      ": it never reached its first checkpoint, or it was committed (see ListVersions)"));
}

// A model row with its layout decoded.
struct Model {
  int64_t id = 0;
  LogitLayout layout;
  int64_t next_version = 1;
};

absl::StatusOr<Model> ToModel(const ModelRow& row) {
  LOGN_ASSIGN_OR_RETURN(LogitLayout layout, store_internal::DecodeModelLayout(row));
  return Model{row.id, layout, row.next_version};
}

absl::StatusOr<std::optional<Model>> FindModel(StoreTxn& txn, const ModelKey& key) {
  LOGN_ASSIGN_OR_RETURN(std::optional<ModelRow> row, txn.FindModel(key));
  if (!row.has_value()) return std::optional<Model>();
  LOGN_ASSIGN_OR_RETURN(Model model, ToModel(*row));
  return std::optional<Model>(model);
}

absl::StatusOr<Model> RequireModel(StoreTxn& txn, const ModelKey& key) {
  LOGN_ASSIGN_OR_RETURN(std::optional<Model> model, FindModel(txn, key));
  if (!model.has_value()) return ModelNotFound(key);
  return *model;
}

// The model's row, created by its first write. The layout guard: every version and checkpoint
// of a model has the layout of its first write (FAILED_PRECONDITION otherwise).
absl::StatusOr<Model> FindOrCreateModel(StoreTxn& txn, const ModelKey& key,
                                        const LogitLayout& layout) {
  LOGN_ASSIGN_OR_RETURN(std::optional<Model> model, FindModel(txn, key));
  if (!model.has_value()) {
    LOGN_ASSIGN_OR_RETURN(ModelRow row, txn.InsertModel(key, layout.num_classes,
                                                        BackgroundPositionName(layout.background)));
    LOGN_ASSIGN_OR_RETURN(model, ToModel(row));
  }
  if (model->layout != layout) {
    return absl::FailedPreconditionError(absl::StrCat(
        "statistics have layout ", layout.DebugString(), " but ", key.DebugString(), " has ",
        model->layout.DebugString(), ": they were not computed for this model"));
  }
  return *model;
}

absl::StatusOr<VersionRow> RequireVersion(StoreTxn& txn, const Model& model, const ModelKey& key,
                                          int64_t version, bool with_payload) {
  LOGN_ASSIGN_OR_RETURN(std::optional<VersionRow> row,
                        txn.FindVersion(model.id, version, with_payload));
  if (!row.has_value()) return VersionNotFound(key, version);
  return *std::move(row);
}

// The number `selector` names: itself, or where the alias points.
absl::StatusOr<int64_t> ResolveIn(StoreTxn& txn, const Model& model, const ModelKey& key,
                                  const VersionSelector& selector) {
  LOGN_RETURN_IF_ERROR(selector.Validate());
  if (selector.version > 0) return selector.version;
  LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> version,
                        txn.AliasTarget(model.id, selector.alias));
  if (!version.has_value()) return AliasNotFound(key, selector.alias);
  return *version;
}

// Points `alias` at `version` (removes it when unset), records the change in the alias history
// as `kind` (`previous`: where it pointed before) and publishes it to the other instances.
absl::Status ChangeAlias(StoreTxn& txn, const ModelKey& key, int64_t model_id,
                         absl::string_view alias, absl::string_view kind,
                         std::optional<int64_t> version, std::optional<int64_t> previous) {
  const int64_t now = ToMicros(absl::Now());
  if (version.has_value()) {
    LOGN_RETURN_IF_ERROR(txn.WriteAlias(model_id, AliasRow{std::string(alias), *version, now}));
  } else {
    LOGN_RETURN_IF_ERROR(txn.DeleteAlias(model_id, alias));
  }
  LOGN_RETURN_IF_ERROR(txn.AddHistory(
      model_id, HistoryRow{0, std::string(alias), std::string(kind), version, previous, now}));
  return txn.PublishAliasChange(key);
}

// The rollback walk: the entry of the alias history that the next Rollback undoes, and the
// version it returns to.
absl::StatusOr<HistoryRow> RollbackStep(StoreTxn& txn, const Model& model, const ModelKey& key,
                                        int64_t current) {
  LOGN_ASSIGN_OR_RETURN(std::optional<HistoryRow> last,
                        txn.LastUndoneSet(model.id, kActiveAlias));
  // Only the newest "set" not yet undone can be undone, and only if it is what made active
  // point where it points now and had a previous target; otherwise the walk has ended.
  if (!last.has_value() || !last->previous.has_value() || last->version != current) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot roll back ", key.DebugString(), ": active (version ", current,
                     ") has no earlier version to return to"));
  }
  LOGN_ASSIGN_OR_RETURN(std::optional<VersionRow> target,
                        txn.FindVersion(model.id, *last->previous, /*with_payload=*/false));
  if (!target.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot roll back ", key.DebugString(), ": the previous active version ",
                     *last->previous, " has been deleted; Activate another version"));
  }
  return *std::move(last);
}

}  // namespace

StatsStore::StatsStore(std::unique_ptr<StoreBackend> backend) : backend_(std::move(backend)) {}

StatsStore::~StatsStore() = default;

absl::StatusOr<VersionRecord> StatsStore::Put(const NewVersion& v) {
  LOGN_ASSIGN_OR_RETURN(store_internal::PreparedVersion prepared,
                        store_internal::PrepareVersion(v, absl::Now()));
  VersionInfo& info = prepared.info;
  VersionRow row = store_internal::EncodeVersionRow(info, std::move(prepared.payload));
  LOGN_RETURN_IF_ERROR(backend_->Write("put", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model model, FindOrCreateModel(txn, info.model, prepared.layout));
    std::vector<std::optional<RoiSamplingRecord>> parent_sampling;
    for (int64_t parent : info.parent_versions) {
      LOGN_ASSIGN_OR_RETURN(std::optional<VersionRow> found,
                            txn.FindVersion(model.id, parent, /*with_payload=*/false));
      if (!found.has_value()) {
        return absl::NotFoundError(absl::StrCat("parent version ", parent, " of ",
                                                info.model.DebugString(), " does not exist"));
      }
      LOGN_ASSIGN_OR_RETURN(VersionInfo parent_info,
                            store_internal::DecodeVersionRow(info.model, *found));
      parent_sampling.push_back(std::move(parent_info.sampling));
    }
    // A merge's rows are its parents' rows: so is their sampling (read in this transaction,
    // so it is the parents' as they are when the merge commits).
    if (info.source == VersionSource::kMerge) {
      info.sampling = MergeRoiSampling(parent_sampling);
      row.sampling = store_internal::EncodeSampling(info.sampling);
    }
    // Numbers come from the model row, never from the versions left: a deleted number is
    // never handed out again.
    info.version = row.version = model.next_version;
    LOGN_RETURN_IF_ERROR(txn.SetNextVersion(model.id, info.version + 1));
    LOGN_RETURN_IF_ERROR(txn.InsertVersion(model.id, row));
    // A committed job can never be resumed and committed a second time.
    if (!v.clear_job_checkpoint || info.job_id.empty()) return absl::OkStatus();
    return txn.DeleteCheckpoint(model.id, info.job_id).status();
  }));
  VersionRecord record;
  record.info = std::move(info);
  LOGN_ASSIGN_OR_RETURN(record.statistics,
                        store_internal::DecodePayload(record.info.model, record.info.version,
                                                      row.payload, row.payload_sha256));
  return record;
}

absl::StatusOr<VersionRecord> StatsStore::Get(const ModelKey& model,
                                              const VersionSelector& selector) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  VersionRow row;
  LOGN_RETURN_IF_ERROR(backend_->Read("get", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveIn(txn, m, model, selector));
    LOGN_ASSIGN_OR_RETURN(row, RequireVersion(txn, m, model, version, /*with_payload=*/true));
    return absl::OkStatus();
  }));
  VersionRecord record;
  LOGN_ASSIGN_OR_RETURN(record.info, store_internal::DecodeVersionRow(model, row));
  LOGN_ASSIGN_OR_RETURN(record.statistics,
                        store_internal::DecodePayload(model, row.version, row.payload,
                                                      row.payload_sha256));
  return record;
}

absl::StatusOr<VersionInfo> StatsStore::GetInfo(const ModelKey& model,
                                                const VersionSelector& selector) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  VersionRow row;
  LOGN_RETURN_IF_ERROR(backend_->Read("get info", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveIn(txn, m, model, selector));
    LOGN_ASSIGN_OR_RETURN(row, RequireVersion(txn, m, model, version, /*with_payload=*/false));
    return absl::OkStatus();
  }));
  return store_internal::DecodeVersionRow(model, row);
}

absl::StatusOr<int64_t> StatsStore::Resolve(const ModelKey& model,
                                            const VersionSelector& selector) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  int64_t version = 0;
  LOGN_RETURN_IF_ERROR(backend_->Read("resolve", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(version, ResolveIn(txn, m, model, selector));
    if (selector.version == 0) return absl::OkStatus();  // an alias points at a version
    return RequireVersion(txn, m, model, version, /*with_payload=*/false).status();
  }));
  return version;
}

absl::StatusOr<VersionPage> StatsStore::List(const ModelKey& model, absl::string_view page_token,
                                             int32_t page_size, const VersionFilter& filter) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  LOGN_ASSIGN_OR_RETURN(int64_t after, store_internal::DecodePageToken(page_token));
  LOGN_ASSIGN_OR_RETURN(int32_t limit, store_internal::NormalizePageSize(page_size));
  const VersionRowFilter row_filter = store_internal::EncodeFilter(filter);
  std::vector<VersionRow> rows;
  LOGN_RETURN_IF_ERROR(backend_->Read("list", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    // One row more than the page: whether it exists decides the next page token.
    LOGN_ASSIGN_OR_RETURN(rows, txn.ListVersions(m.id, after, int64_t{limit} + 1, row_filter));
    return absl::OkStatus();
  }));
  VersionPage page;
  for (const VersionRow& row : rows) {
    if (static_cast<int32_t>(page.versions.size()) == limit) {
      page.next_page_token = store_internal::EncodePageToken(page.versions.back().version);
      break;
    }
    LOGN_ASSIGN_OR_RETURN(VersionInfo info, store_internal::DecodeVersionRow(model, row));
    page.versions.push_back(std::move(info));
  }
  return page;
}

absl::StatusOr<std::vector<ModelKey>> StatsStore::Models() {
  std::vector<ModelKey> models;
  LOGN_RETURN_IF_ERROR(backend_->Read("models", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(models, txn.ListModels());
    return absl::OkStatus();
  }));
  return models;
}

absl::StatusOr<int64_t> StatsStore::SetAlias(const ModelKey& model, absl::string_view alias,
                                             int64_t version, bool allow_served_traffic) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
  bool changed = false;
  int64_t previous = 0;
  LOGN_RETURN_IF_ERROR(backend_->Write("set alias", [&](StoreTxn& txn) -> absl::Status {
    changed = false;
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(VersionRow row,
                          RequireVersion(txn, m, model, version, /*with_payload=*/false));
    // The partial-version guard: one shard of a job never serves.
    if (row.partial) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", version, " of ", model.DebugString(),
          " is partial (one shard of a job): merge the shards and alias the merged version"));
    }
    if (row.source == VersionSourceName(VersionSource::kServedTraffic) && !allow_served_traffic) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", version, " of ", model.DebugString(),
          " holds served traffic (a drift reference or snapshot), not training RoIs: alias it "
          "only on purpose, with allow_served_traffic"));
    }
    LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, txn.AliasTarget(m.id, alias));
    previous = current.value_or(0);
    if (current == version) return absl::OkStatus();  // a no-op: no history entry
    LOGN_RETURN_IF_ERROR(ChangeAlias(txn, model, m.id, alias, kSet, version, current));
    changed = true;
    return absl::OkStatus();
  }));
  if (changed) local_alias_changes_.fetch_add(1, std::memory_order_acq_rel);
  return previous;
}

absl::Status StatsStore::RemoveAlias(const ModelKey& model, absl::string_view alias) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  LOGN_RETURN_IF_ERROR(ValidateAliasName(alias));
  LOGN_RETURN_IF_ERROR(backend_->Write("remove alias", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, txn.AliasTarget(m.id, alias));
    if (!current.has_value()) return AliasNotFound(model, alias);
    return ChangeAlias(txn, model, m.id, alias, kRemove, std::nullopt, current);
  }));
  local_alias_changes_.fetch_add(1, std::memory_order_acq_rel);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> StatsStore::Rollback(const ModelKey& model) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  int64_t target = 0;
  LOGN_RETURN_IF_ERROR(backend_->Write("rollback", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(std::optional<int64_t> current, txn.AliasTarget(m.id, kActiveAlias));
    if (!current.has_value()) return AliasNotFound(model, kActiveAlias);
    LOGN_ASSIGN_OR_RETURN(HistoryRow step, RollbackStep(txn, m, model, *current));
    target = *step.previous;
    LOGN_RETURN_IF_ERROR(txn.MarkUndone(step.id));
    return ChangeAlias(txn, model, m.id, kActiveAlias, kRollback, target, current);
  }));
  local_alias_changes_.fetch_add(1, std::memory_order_acq_rel);
  return target;
}

absl::StatusOr<std::vector<AliasInfo>> StatsStore::Aliases(const ModelKey& model) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  std::vector<AliasRow> rows;
  LOGN_RETURN_IF_ERROR(backend_->Read("aliases", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_ASSIGN_OR_RETURN(rows, txn.ListAliases(m.id));
    return absl::OkStatus();
  }));
  std::vector<AliasInfo> aliases;
  for (const AliasRow& row : rows) {
    aliases.push_back(
        AliasInfo{row.alias, row.version, store_internal::FromMicros(row.updated_at_us)});
  }
  return aliases;
}

absl::Status StatsStore::Delete(const ModelKey& model, int64_t version) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  return backend_->Write("delete", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
    LOGN_RETURN_IF_ERROR(RequireVersion(txn, m, model, version, /*with_payload=*/false).status());
    // The delete guard: what an alias serves cannot disappear under it.
    LOGN_ASSIGN_OR_RETURN(std::vector<AliasRow> aliases, txn.ListAliases(m.id));
    std::vector<std::string> pointing;
    for (const AliasRow& a : aliases) {
      if (a.version == version) pointing.push_back(a.alias);
    }
    if (!pointing.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot delete version ", version, " of ", model.DebugString(), ": aliases point at it (",
          absl::StrJoin(pointing, ", "), "); move them first"));
    }
    return txn.DeleteVersion(m.id, version);
  });
}

absl::StatusOr<VersionInfo> StatsStore::SetCalibrationProfile(
    const ModelKey& model, const VersionSelector& selector, std::optional<std::string> profile) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  LOGN_RETURN_IF_ERROR(selector.Validate());
  if (profile.has_value()) {
    LOGN_RETURN_IF_ERROR(store_internal::CheckCalibrationProfile(
        *profile, absl::StrCat(selector.DebugString(), " of ", model.DebugString())));
  }
  std::optional<ProfileRow> new_row;
  if (profile.has_value()) new_row = ProfileRow{*std::move(profile), ToMicros(absl::Now())};
  bool changed = false;
  VersionRow row;
  LOGN_RETURN_IF_ERROR(
      backend_->Write("set calibration profile", [&](StoreTxn& txn) -> absl::Status {
        changed = false;
        LOGN_ASSIGN_OR_RETURN(Model m, RequireModel(txn, model));
        LOGN_ASSIGN_OR_RETURN(int64_t version, ResolveIn(txn, m, model, selector));
        LOGN_ASSIGN_OR_RETURN(row, RequireVersion(txn, m, model, version, /*with_payload=*/false));
        LOGN_RETURN_IF_ERROR(store_internal::CheckProfileTarget(
            row.partial, store_internal::VersionName(model, version)));
        if (new_row.has_value()) {
          LOGN_RETURN_IF_ERROR(txn.WriteProfile(m.id, version, *new_row));
        } else if (row.profile.has_value()) {
          LOGN_RETURN_IF_ERROR(txn.DeleteProfile(m.id, version));
        } else {
          return absl::OkStatus();  // clearing what is not there: no change to publish
        }
        row.profile = new_row;
        changed = true;
        // Caches (StatsCache, in every process) re-read a version's metadata when it moves.
        return txn.PublishAliasChange(model);
      }));
  if (changed) local_alias_changes_.fetch_add(1, std::memory_order_acq_rel);
  return store_internal::DecodeVersionRow(model, row);
}

absl::Status StatsStore::PutCheckpoint(const JobCheckpoint& checkpoint) {
  LOGN_ASSIGN_OR_RETURN(store_internal::PreparedCheckpoint prepared,
                        store_internal::PrepareCheckpoint(checkpoint, absl::Now()));
  return backend_->Write("put checkpoint", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(Model m, FindOrCreateModel(txn, checkpoint.model, prepared.layout));
    return txn.PutCheckpoint(m.id, prepared.row);
  });
}

absl::StatusOr<JobCheckpoint> StatsStore::GetCheckpoint(const ModelKey& model,
                                                        absl::string_view job_id) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  std::optional<CheckpointRow> row;
  LOGN_RETURN_IF_ERROR(backend_->Read("get checkpoint", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(std::optional<Model> m, FindModel(txn, model));
    if (!m.has_value()) return CheckpointNotFound(model, job_id);
    LOGN_ASSIGN_OR_RETURN(row, txn.FindCheckpoint(m->id, job_id));
    if (!row.has_value()) return CheckpointNotFound(model, job_id);
    return absl::OkStatus();
  }));
  return store_internal::DecodeCheckpointRow(model, *row);
}

absl::Status StatsStore::DeleteCheckpoint(const ModelKey& model, absl::string_view job_id) {
  LOGN_RETURN_IF_ERROR(model.Validate());
  return backend_->Write("delete checkpoint", [&](StoreTxn& txn) -> absl::Status {
    LOGN_ASSIGN_OR_RETURN(std::optional<Model> m, FindModel(txn, model));
    if (!m.has_value()) return CheckpointNotFound(model, job_id);
    LOGN_ASSIGN_OR_RETURN(bool deleted, txn.DeleteCheckpoint(m->id, job_id));
    if (!deleted) return CheckpointNotFound(model, job_id);
    return absl::OkStatus();
  });
}

uint64_t StatsStore::AliasGeneration() const {
  // Both terms only grow, so their sum does too.
  return backend_->ExternalAliasGeneration() +
         local_alias_changes_.load(std::memory_order_acquire);
}

absl::string_view StatsStore::backend() const { return backend_->name(); }

}  // namespace logn
