#include "server/core/server_core.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "calibration/softmax.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"
#include "server/core/proto_convert.h"
#include "store/stats_export.h"
#include "store/version_proto.h"

namespace logn {
namespace {

absl::Status Positive(const char* name, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", value));
}

// The softmax score of each detection's class in its candidate's uncalibrated logits.
std::vector<float> UncalibratedScores(const RawOutputs& raw, const std::vector<Detection>& dets,
                                      const LogitLayout& layout) {
  const int32_t width = layout.width();
  std::vector<float> probabilities(width);
  std::vector<float> scores;
  scores.reserve(dets.size());
  for (const Detection& d : dets) {
    SoftmaxRows(raw.logits.data() + static_cast<int64_t>(d.candidate) * width,
                probabilities.data(), 1, width);
    scores.push_back(probabilities[layout.foreground_column(d.label)]);
  }
  return scores;
}

// The versions to merge, ascending; INVALID_ARGUMENT for a non-positive or repeated one.
absl::StatusOr<std::vector<int64_t>> MergeParents(const v1::MergeRequest& request) {
  std::vector<int64_t> parents(request.versions().begin(), request.versions().end());
  std::sort(parents.begin(), parents.end());
  for (size_t i = 0; i < parents.size(); ++i) {
    if (parents[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", parents[i], " is not a positive version number"));
    }
    if (i > 0 && parents[i] == parents[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "version ", parents[i], " is named twice: its rows would be counted twice"));
    }
  }
  return parents;
}

// The names of the aliases that point at `version`.
std::vector<std::string> AliasNames(const std::vector<AliasInfo>& aliases, int64_t version) {
  std::vector<std::string> names;
  for (const AliasInfo& alias : aliases) {
    if (alias.version == version) names.push_back(alias.alias);
  }
  return names;
}

}  // namespace

absl::Status ServerCoreOptions::Validate() const {
  LOGN_RETURN_IF_ERROR(Positive("max_images_per_request", max_images_per_request));
  LOGN_RETURN_IF_ERROR(Positive("max_rows_per_batch", max_rows_per_batch));
  LOGN_RETURN_IF_ERROR(Positive("max_rows_per_job", max_rows_per_job));
  const RuntimeLimits& limits = runtime.limits;
  LOGN_RETURN_IF_ERROR(Positive("runtime max_images_per_call", limits.max_images_per_call));
  LOGN_RETURN_IF_ERROR(Positive("runtime max_rois_per_image", limits.max_rois_per_image));
  LOGN_RETURN_IF_ERROR(Positive("image max_bytes", limits.image.max_bytes));
  LOGN_RETURN_IF_ERROR(Positive("image max_pixels", limits.image.max_pixels));
  LOGN_RETURN_IF_ERROR(Positive("image max_side", limits.image.max_side));
  if (max_images_per_request > limits.max_images_per_call) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_images_per_request ", max_images_per_request,
        " is larger than the runtime's max_images_per_call ", limits.max_images_per_call,
        ": such a request could never run in one forward pass"));
  }
  if (drift.sample_rate > 0) LOGN_RETURN_IF_ERROR(drift.Validate());
  LOGN_RETURN_IF_ERROR(ValidateModelConfig(default_model_config));
  if (checkpoint_every_batches < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint_every_batches must be >= 0 (0: never), got ", checkpoint_every_batches));
  }
  return ValidateRoiSamplingOptions(sampling);
}

// ---------------------------------------------------------------------------------------------
// ServerCore

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerCoreOptions& options) {
  // Before any model loads (seconds each): a misconfiguration fails at once.
  LOGN_RETURN_IF_ERROR(options.Validate());
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<StatsStore> store,
                        OpenStatsStore(options.store_url, options.store));
  std::unique_ptr<ServerCore> core(new ServerCore(options, std::move(store)));
  LOGN_ASSIGN_OR_RETURN(core->models_, ModelManager::Create(core->ManagerOptions()));
  return core;
}

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::CreateFrom(
    const ServerCoreOptions& options, std::unique_ptr<DetectorRuntime> runtime,
    std::unique_ptr<StatsStore> store) {
  LOGN_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<ServerCore> core(new ServerCore(options, std::move(store)));
  core->models_ = ModelManager::ForRuntime(std::move(runtime), core->ManagerOptions());
  return core;
}

ServerCore::ServerCore(const ServerCoreOptions& options, std::unique_ptr<StatsStore> store)
    : options_(options), store_(std::move(store)) {
  cache_ = std::make_unique<StatsCache>(store_.get(), options_.cache);
}

// The manager (and its poller) goes first: it calls back into the store and the cache.
ServerCore::~ServerCore() { models_.reset(); }

ModelManagerOptions ServerCore::ManagerOptions() {
  ModelManagerOptions manager;
  manager.repository = options_.model_repository;
  manager.runtime = options_.runtime;
  manager.poll_interval = options_.repository_poll_interval;
  manager.default_config = options_.default_model_config;
  manager.on_loaded = [this](LoadedModel& model) { OnModelLoaded(model); };
  return manager;
}

void ServerCore::OnModelLoaded(LoadedModel& model) {
  if (options_.drift.sample_rate <= 0) return;
  const LoadedModel* target = &model;
  // The monitor lives inside the model it stores versions for: a raw pointer cannot dangle.
  auto store = [this, target](const Statistics& statistics,
                              const std::string& description) -> absl::StatusOr<int64_t> {
    LOGN_ASSIGN_OR_RETURN(const StoredVersion stored,
                          StoreServedTraffic(*target, statistics, description));
    return stored.info.version;
  };
  model.set_drift(std::make_unique<DriftMonitor>(model.runtime().manifest(),
                                                 model.runtime().layout(), options_.drift,
                                                 std::move(store)));
}

std::shared_ptr<const LoadedModel> ServerCore::DefaultModel() const {
  absl::StatusOr<Model> only = models_->Resolve("", 0);
  if (only.ok()) return *only;
  const std::vector<Model> available = models_->Available();
  return available.empty() ? nullptr : available.front();
}

absl::StatusOr<ServerCore::Model> ServerCore::ResolveModel(const std::string& name,
                                                           int64_t version) const {
  if (version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_version must be >= 0 (0: the newest available), got ", version));
  }
  return models_->Resolve(name, version);
}

int64_t ServerCore::ActiveVersion(const LoadedModel& model) {
  auto version = store_->Resolve(model.key(), VersionSelector::Active());
  return version.ok() ? *version : 0;
}

int64_t ServerCore::ActiveVersion() {
  const Model model = DefaultModel();
  return model == nullptr ? 0 : ActiveVersion(*model);
}

absl::StatusOr<std::shared_ptr<const CachedVersion>> ServerCore::CachedStatistics(
    const LoadedModel& model, const StatisticsChoice& statistics) {
  LOGN_ASSIGN_OR_RETURN(const VersionSelector selector, statistics.selector);
  auto cached = cache_->Get(model.key(), selector);
  if (cached.ok()) return cached;
  // No "active" version yet is a state to fix (calibrate first), not a missing name.
  const bool active = selector.version == 0 && selector.alias == kActiveAlias;
  if (absl::IsNotFound(cached.status()) && (active || !statistics.explicitly_set)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", model.name(), "' version ", model.version(),
        " has no active LogN statistics yet: run Calibrate (with activate) or "
        "Activate a version, or ask for calibration method NONE / LOGA (",
        cached.status().message(), ")"));
  }
  return cached.status();
}

absl::StatusOr<NamedSpec> ServerCore::ModelDefaultSetting(const VersionInfo* version,
                                                          const std::string& name) const {
  NamedSpec resolved{CalibrationSpec(), name.empty() ? "default" : name};
  if (version == nullptr || !version->calibration_profile.has_value()) return resolved;
  v1::CalibrationProfile profile;
  if (!CalibrationProfileToProto(*version->calibration_profile, &profile).ok()) {
    return absl::DataLossError(absl::StrCat("the calibration profile of version ",
                                            version->version, " does not parse"));
  }
  LOGN_ASSIGN_OR_RETURN(resolved.spec, SpecFromProto(profile.default_setting()));
  if (name.empty() && !profile.default_setting().name().empty()) {
    resolved.name = profile.default_setting().name();
  }
  return resolved;
}

absl::StatusOr<NamedSpec> ServerCore::FallbackSetting(const LoadedModel& model,
                                                      const std::string& name) const {
  const v1::ModelConfig& config = model.config();
  if (config.missing_statistics() != v1::MISSING_STATISTICS_ACTION_FALLBACK) {
    return absl::NotFoundError("the model's policy refuses to serve without statistics");
  }
  NamedSpec fallback;
  fallback.spec.method = config.fallback_method() == v1::CALIBRATION_METHOD_LOGA
                             ? CalibrationMethod::kLogA
                             : CalibrationMethod::kNone;
  fallback.name = name.empty() ? "default (fallback: no active statistics)" : name;
  return fallback;
}

absl::StatusOr<Calibrator> ServerCore::CalibratorFor(const LoadedModel& model,
                                                     const CalibrationSpec& spec,
                                                     const Statistics* statistics) const {
  if (spec.method == CalibrationMethod::kLogA && model.instance_counts().empty()) {
    return absl::FailedPreconditionError(
        "LogA needs every class's training instance_count in the model manifest");
  }
  return MakeCalibrator(spec, model.runtime().layout(), statistics, model.instance_counts());
}

absl::Status ServerCore::ValidateProfile(const LoadedModel& model,
                                         const v1::CalibrationProfile& profile,
                                         const Statistics& statistics) const {
  LOGN_ASSIGN_OR_RETURN(const CalibrationSpec spec, SpecFromProto(profile.default_setting()));
  const absl::StatusOr<Calibrator> calibrator = CalibratorFor(model, spec, &statistics);
  if (!calibrator.ok()) {
    return absl::Status(calibrator.status().code(),
                        absl::StrCat("calibration profile: ", calibrator.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerCore::Calibrators> ServerCore::ResolveCalibrators(
    const LoadedModel& model, absl::Span<const NamedSpec> settings,
    const StatisticsChoice& statistics) {
  Calibrators out;
  std::shared_ptr<const CachedVersion> version;
  const auto needs = [&](bool with_default) {
    return std::any_of(settings.begin(), settings.end(), [&](const NamedSpec& s) {
      return s.model_default ? with_default : s.spec.method == CalibrationMethod::kLogN;
    });
  };
  if (needs(true)) {
    absl::StatusOr<std::shared_ptr<const CachedVersion>> cached =
        CachedStatistics(model, statistics);
    // Only the model default may fall back, and only from "no active statistics": an explicit
    // LogN request, or an explicit selector, still fails.
    out.fallback = absl::IsFailedPrecondition(cached.status()) && !needs(false) &&
                   !statistics.explicitly_set &&
                   model.config().missing_statistics() == v1::MISSING_STATISTICS_ACTION_FALLBACK;
    if (!out.fallback) {
      LOGN_RETURN_IF_ERROR(cached.status());
      version = *std::move(cached);
      out.statistics_version = version->info.version;
    }
  }
  for (const NamedSpec& requested : settings) {
    NamedSpec setting = requested;
    if (requested.model_default) {
      LOGN_ASSIGN_OR_RETURN(setting, out.fallback
                                         ? FallbackSetting(model, requested.name)
                                         : ModelDefaultSetting(&version->info, requested.name));
    }
    const CalibrationSpec& spec = setting.spec;
    out.settings.push_back(setting);
    // The cache holds each version's calibrator for the default options: no rebuild per request.
    if (spec.method == CalibrationMethod::kLogN && spec.logn == options_.cache.logn) {
      out.calibrators.push_back(version->calibrator);
      continue;
    }
    LOGN_ASSIGN_OR_RETURN(Calibrator calibrator,
                          CalibratorFor(model, spec, version ? &version->statistics : nullptr));
    out.calibrators.push_back(std::move(calibrator));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Detection

absl::StatusOr<ServerCore::PreparedDetect> ServerCore::PrepareDetect(
    const v1::DetectRequest& request) {
  // The model and the image count first: cheap checks that need nothing converted.
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  if (request.images().empty()) {
    return absl::InvalidArgumentError("Detect needs at least one image");
  }
  if (request.images_size() > options_.max_images_per_request) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Detect got ", request.images_size(), " images; at most ",
        options_.max_images_per_request, " per request (split the request)"));
  }
  PreparedDetect prepared;
  prepared.model = model;
  LOGN_ASSIGN_OR_RETURN(prepared.query, DetectQueryFromProto(request));
  LOGN_ASSIGN_OR_RETURN(prepared.calibrators,
                        ResolveCalibrators(*model, prepared.query.settings,
                                           prepared.query.statistics));
  return prepared;
}

absl::StatusOr<DetectOutcome> ServerCore::FinishDetect(const PreparedDetect& prepared,
                                                       absl::Span<const RawOutputs> outputs,
                                                       const StageTimings& timings) const {
  const absl::Time post_start = absl::Now();
  const DetectQuery& query = prepared.query;
  const DetectorRuntime& runtime = prepared.model->runtime();
  std::vector<const Calibrator*> calibrators;
  for (const Calibrator& c : prepared.calibrators.calibrators) calibrators.push_back(&c);
  DetectOutcome outcome;
  LOGN_ASSIGN_OR_RETURN(
      DetectorRuntime::Detections detections,
      runtime.PostprocessOutputs(outputs, calibrators, query.postprocess, &outcome.dropped));
  outcome.request_id = query.request_id;
  outcome.statistics_version = prepared.calibrators.statistics_version;
  for (size_t s = 0; s < prepared.calibrators.settings.size(); ++s) {
    DetectOutcome::Setting& result = outcome.results.emplace_back();
    result.setting = prepared.calibrators.settings[s];
    for (size_t i = 0; i < outputs.size(); ++i) {
      DetectOutcome::Image& image = result.images.emplace_back();
      image.image_id = query.image_ids[i];
      image.detections = std::move(detections[s][i]);
      if (query.include_uncalibrated_score) {
        image.uncalibrated_scores =
            UncalibratedScores(outputs[i], image.detections, runtime.layout());
      }
    }
  }
  outcome.decode = timings.decode;
  outcome.inference = timings.preprocess + timings.forward;
  outcome.postprocess = absl::Now() - post_start;
  return outcome;
}

absl::Status ServerCore::Respond(const PreparedDetect& prepared,
                                 absl::Span<const RawOutputs> outputs,
                                 const StageTimings& timings,
                                 v1::DetectResponse* response) const {
  const LoadedModel& model = *prepared.model;
  ObserveDrift(model, outputs);
  LOGN_ASSIGN_OR_RETURN(const DetectOutcome outcome, FinishDetect(prepared, outputs, timings));
  DetectOutcomeToProto(outcome, model.runtime().manifest(), response);
  response->set_model_version(model.version());
  response->set_calibration_fallback(prepared.calibrators.fallback);
  if (prepared.query.include_raw_candidates) {
    for (size_t i = 0; i < outputs.size(); ++i) {
      RawCandidatesToProto(outputs[i], prepared.query.image_ids[i],
                           model.runtime().layout().width(), response);
    }
  }
  if (observer_ != nullptr) {
    observer_->OnDetect(model, static_cast<int64_t>(outputs.size()),
                        prepared.calibrators.fallback);
  }
  return absl::OkStatus();
}

void ServerCore::ObserveDrift(const LoadedModel& model,
                              absl::Span<const RawOutputs> outputs) const {
  DriftMonitor* drift = model.drift();
  if (drift == nullptr || !drift->Sample()) return;
  std::vector<const float*> logits;
  std::vector<int64_t> rows;
  for (const RawOutputs& image : outputs) {
    logits.push_back(image.logits.data());
    rows.push_back(image.num_candidates);
  }
  drift->Observe(logits, rows);
}

absl::Status ServerCore::Detect(const v1::DetectRequest& request, v1::DetectResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const PreparedDetect prepared, PrepareDetect(request));
  LOGN_ASSIGN_OR_RETURN(const DetectorRuntime::ForwardResult forward,
                        prepared.model->runtime().Forward(prepared.query.images));
  return Respond(prepared, forward.images, forward.timings, response);
}

std::vector<absl::Status> ServerCore::DetectBatch(
    absl::Span<const v1::DetectRequest* const> requests,
    absl::Span<v1::DetectResponse* const> responses) {
  std::vector<absl::Status> statuses(requests.size());
  std::vector<PreparedDetect> prepared(requests.size());
  // The requests that passed validation, by the model version serving them: one forward pass
  // per model version (requests for different models never share a batch).
  std::vector<std::pair<const LoadedModel*, std::vector<size_t>>> groups;
  for (size_t r = 0; r < requests.size(); ++r) {
    absl::StatusOr<PreparedDetect> p = PrepareDetect(*requests[r]);
    if (!p.ok()) {
      statuses[r] = p.status();
      continue;
    }
    prepared[r] = *std::move(p);
    const LoadedModel* model = prepared[r].model.get();
    auto group = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& g) { return g.first == model; });
    if (group == groups.end()) group = groups.insert(groups.end(), {model, {}});
    group->second.push_back(r);
  }
  for (const auto& [model, ready] : groups) {
    RunDetectGroup(*model, ready, prepared, responses, statuses);
  }
  return statuses;
}

void ServerCore::RunDetectGroup(const LoadedModel& model, absl::Span<const size_t> ready,
                                absl::Span<const PreparedDetect> prepared,
                                absl::Span<v1::DetectResponse* const> responses,
                                std::vector<absl::Status>& statuses) const {
  std::vector<ImageSource> images;
  for (size_t r : ready) {
    const std::vector<ImageSource>& own = prepared[r].query.images;
    images.insert(images.end(), own.begin(), own.end());
  }
  absl::StatusOr<DetectorRuntime::ForwardResult> forward = model.runtime().Forward(images);
  if (!forward.ok()) {
    // One bad image fails the whole batch: run each request alone so only its own fails.
    for (size_t r : ready) {
      absl::StatusOr<DetectorRuntime::ForwardResult> alone =
          model.runtime().Forward(prepared[r].query.images);
      statuses[r] = alone.ok() ? Respond(prepared[r], alone->images, alone->timings, responses[r])
                               : alone.status();
    }
    return;
  }
  size_t offset = 0;
  for (size_t r : ready) {
    const size_t n = prepared[r].query.images.size();
    statuses[r] = Respond(prepared[r], absl::MakeConstSpan(forward->images).subspan(offset, n),
                          forward->timings, responses[r]);
    offset += n;
  }
}

absl::Status ServerCore::GetModelInfo(const v1::GetModelInfoRequest& request,
                                      v1::GetModelInfoResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  *response->mutable_manifest() = model->runtime().manifest();
  response->set_model_sha256(model->runtime().model_sha256());
  response->set_device(model->runtime().device());
  response->set_model_version(model->version());
  response->set_memory_bytes(model->memory_bytes());
  // One read, so the number and the record cannot disagree; no active version is not an error.
  absl::StatusOr<VersionRecord> active = store_->Get(model->key(), VersionSelector::Active());
  if (!active.ok()) {
    if (!absl::IsNotFound(active.status())) return active.status();
    response->set_active_version(0);
    absl::StatusOr<NamedSpec> fallback = FallbackSetting(*model, "");
    response->set_calibration_fallback(fallback.ok());
    LOGN_ASSIGN_OR_RETURN(const NamedSpec built_in,
                          fallback.ok() ? fallback : ModelDefaultSetting(nullptr, ""));
    *response->mutable_default_calibration() = SpecToProto(built_in.spec, built_in.name);
    return absl::OkStatus();
  }
  response->set_active_version(active->info.version);
  LOGN_ASSIGN_OR_RETURN(std::vector<std::string> aliases,
                        AliasesOf(model->key(), active->info.version));
  VersionToProto(active->info, aliases, response->mutable_active_statistics_version());
  LOGN_ASSIGN_OR_RETURN(const NamedSpec resolved, ModelDefaultSetting(&active->info, ""));
  *response->mutable_default_calibration() = SpecToProto(resolved.spec, resolved.name);
  response->set_default_calibration_version(
      active->info.calibration_profile.has_value() ? active->info.version : 0);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Calibration

absl::StatusOr<std::unique_ptr<CalibrationJob>> ServerCore::StartCalibration(
    const v1::CalibrateHeader& header) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(header.model_name(), header.model_version()));
  CalibrationJobDeps deps;
  deps.store = store_.get();
  deps.runtime = &model->runtime();
  deps.model = model->key();
  deps.model_hold = model;
  deps.max_rows_per_batch = options_.max_rows_per_batch;
  deps.max_rows_per_job = options_.max_rows_per_job;
  deps.max_images_per_batch = options_.runtime.limits.max_images_per_call;
  deps.sampling = options_.sampling;
  deps.sampling_seed = options_.sampling_seed;
  deps.default_checkpoint_every_batches = options_.checkpoint_every_batches;
  return CalibrationJob::Start(std::move(deps), header);
}

absl::Status ServerCore::Apply(const v1::ApplyRequest& request, v1::ApplyResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  const LogitLayout& layout = model->runtime().layout();
  const int32_t width = layout.width();
  if (request.logits().width() != width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit batch has width ", request.logits().width(), " but model '", model->key().name,
        "' has ", width, " logits per row (", layout.DebugString(), ")"));
  }
  if (request.logits().rows() > options_.max_rows_per_batch) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Apply got ", request.logits().rows(), " rows; at most ", options_.max_rows_per_batch,
        " per request"));
  }
  LOGN_ASSIGN_OR_RETURN(std::vector<float> values, LogitsFromProto(request.logits()));
  const LogitBatchView view{values.data(), request.logits().rows(), width};
  LOGN_RETURN_IF_ERROR(ValidateLogitBatch(layout, view));
  LOGN_ASSIGN_OR_RETURN(const NamedSpec setting, SettingFromProto(request.calibration()));
  LOGN_ASSIGN_OR_RETURN(
      Calibrators resolved,
      ResolveCalibrators(*model, {setting},
                         StatisticsChoiceFromProto(request.selector(), request.has_selector())));
  resolved.calibrators[0].ApplyUnchecked(values.data(), view.rows);
  response->set_version(resolved.statistics_version);
  if (request.include_scores()) {
    std::vector<float> scores(values.size());
    SoftmaxRows(values.data(), scores.data(), view.rows, width);
    LogitsToProto(scores, view.rows, width, response->mutable_scores());
  }
  LogitsToProto(values, view.rows, width, response->mutable_logits());
  return absl::OkStatus();
}

absl::StatusOr<NewVersion> ServerCore::MergedVersion(const LoadedModel& model,
                                                     VersionOrigin origin) {
  const LogitLayout& layout = model.runtime().layout();
  ExactAccumulator merged(layout);
  for (int64_t parent : origin.parent_versions) {
    LOGN_ASSIGN_OR_RETURN(VersionRecord record,
                          store_->Get(model.key(), VersionSelector::Number(parent)));
    if (record.info.source == VersionSource::kServedTraffic) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", parent, " holds served traffic (a drift reference or snapshot), not "
          "training RoIs: it is not merged into calibration statistics"));
    }
    if (record.statistics.method != AccumulationMethod::kExact) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", parent, " holds EMA statistics; running averages cannot be merged "
          "exactly: calibrate the shards in exact mode"));
    }
    if (record.statistics.layout != layout) {
      return absl::FailedPreconditionError(absl::StrCat(
          "version ", parent, " has layout ", record.statistics.layout.DebugString(),
          ", model '", model.name(), "' has ", layout.DebugString()));
    }
    LOGN_RETURN_IF_ERROR(merged.MergeSnapshot(record.statistics));
    origin.images_seen += record.statistics.provenance.images_seen;
    origin.batches_seen += record.statistics.provenance.batches_seen;
  }
  LOGN_ASSIGN_OR_RETURN(Statistics stats, merged.Snapshot());
  return BuildNewVersion(model.key(), std::move(stats), std::move(origin), absl::Now());
}

absl::Status ServerCore::StoreVersion(const LoadedModel& model, const NewVersion& version,
                                      bool activate, v1::StatisticsVersion* stored_version) {
  const LogitLayout& layout = model.runtime().layout();
  // Statistics the served model cannot use never enter the store (an imported file with the
  // background on the other side would otherwise be kept, and fail every request using it).
  if (version.statistics.layout != layout) {
    return absl::FailedPreconditionError(absl::StrCat(
        "statistics for ", version.statistics.layout.DebugString(), " but model '",
        model.name(), "' has ", layout.DebugString(),
        " (a checkpoint's background-last statistics for a background-first model: convert "
        "with tools/import_mmdet_logn.py --background first)"));
  }
  LOGN_ASSIGN_OR_RETURN(const StoredVersion stored, StoreNewVersion(*store_, version, activate));
  VersionToProto(stored, stored_version);
  return absl::OkStatus();
}

absl::Status ServerCore::Merge(const v1::MergeRequest& request, v1::MergeResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  if (request.versions_size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("Merge needs at least two versions, got ", request.versions_size()));
  }
  if (request.partial() && request.activate()) {
    return absl::InvalidArgumentError("a partial merge cannot be activated");
  }
  VersionOrigin origin;
  LOGN_ASSIGN_OR_RETURN(origin.parent_versions, MergeParents(request));
  origin.source = VersionSource::kMerge;
  origin.job_id = request.job_id();
  origin.description = request.description();
  origin.partial = request.partial();
  LOGN_ASSIGN_OR_RETURN(const NewVersion version, MergedVersion(*model, std::move(origin)));
  return StoreVersion(*model, version, request.activate(), response->mutable_statistics_version());
}

absl::Status ServerCore::GetCalibrationJob(const v1::GetCalibrationJobRequest& request,
                                           v1::GetCalibrationJobResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  if (request.job_id().empty()) {
    return absl::InvalidArgumentError("GetCalibrationJob needs a job_id");
  }
  LOGN_ASSIGN_OR_RETURN(const JobCheckpoint checkpoint,
                        store_->GetCheckpoint(model->key(), request.job_id()));
  CheckpointToProto(checkpoint, response->mutable_job());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Statistics store

absl::StatusOr<std::vector<std::string>> ServerCore::AliasesOf(const ModelKey& model,
                                                               int64_t version) {
  LOGN_ASSIGN_OR_RETURN(const std::vector<AliasInfo> aliases, store_->Aliases(model));
  return AliasNames(aliases, version);
}

absl::Status ServerCore::ListVersions(const v1::ListVersionsRequest& request,
                                      v1::ListVersionsResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(const VersionFilter filter, VersionFilterFromProto(request));
  auto listed = store_->List(model->key(), request.page_token(), request.page_size(), filter);
  // A model nothing was stored for yet simply has no versions.
  if (absl::IsNotFound(listed.status()) && request.page_token().empty()) return absl::OkStatus();
  LOGN_ASSIGN_OR_RETURN(const VersionPage page, std::move(listed));
  LOGN_ASSIGN_OR_RETURN(const std::vector<AliasInfo> aliases, store_->Aliases(model->key()));
  for (const VersionInfo& info : page.versions) {
    VersionToProto(info, AliasNames(aliases, info.version), response->add_statistics_versions());
  }
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status ServerCore::GetVersion(const v1::GetVersionRequest& request,
                                    v1::GetVersionResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(const bool full, FullViewFromProto(request.view()));
  LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(request.selector()));
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store_->Get(model->key(), selector));
  LOGN_ASSIGN_OR_RETURN(std::vector<std::string> aliases, AliasesOf(model->key(), record.info.version));
  v1::StatisticsVersion* version = response->mutable_statistics_version();
  VersionToProto(record.info, aliases, version);
  if (full) StatisticsToProto(record.statistics, version->mutable_statistics());
  return absl::OkStatus();
}

absl::Status ServerCore::SetAlias(const v1::SetAliasRequest& request,
                                  v1::SetAliasResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_RETURN_IF_ERROR(ValidateAliasName(request.alias()));
  if (request.version() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version must be > 0, got ", request.version()));
  }
  LOGN_ASSIGN_OR_RETURN(const int64_t previous,
                        store_->SetAlias(model->key(), request.alias(), request.version(),
                                         request.allow_served_traffic()));
  response->set_previous_version(previous);
  return absl::OkStatus();
}

absl::Status ServerCore::Activate(const v1::ActivateRequest& request,
                                  v1::ActivateResponse* response) {
  v1::SetAliasRequest set;
  set.set_model_name(request.model_name());
  set.set_model_version(request.model_version());
  set.set_allow_served_traffic(request.allow_served_traffic());
  set.set_alias(std::string(kActiveAlias));
  set.set_version(request.version());
  v1::SetAliasResponse set_response;
  LOGN_RETURN_IF_ERROR(SetAlias(set, &set_response));
  response->set_previous_version(set_response.previous_version());
  return absl::OkStatus();
}

absl::Status ServerCore::Rollback(const v1::RollbackRequest& request,
                                  v1::RollbackResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  auto rolled = store_->Rollback(model->key());
  if (absl::IsNotFound(rolled.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nothing to roll back to: model '", model->key().name, "' has no alias history (",
        rolled.status().message(), ")"));
  }
  LOGN_ASSIGN_OR_RETURN(int64_t active, std::move(rolled));
  response->set_active_version(active);
  return absl::OkStatus();
}

absl::Status ServerCore::DeleteVersion(const v1::DeleteVersionRequest& request,
                                       v1::DeleteVersionResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_RETURN_IF_ERROR(store_->Delete(model->key(), request.version()));
  cache_->Clear();
  return absl::OkStatus();
}

absl::Status ServerCore::ExportVersion(const v1::ExportVersionRequest& request,
                                       v1::ExportVersionResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(request.selector()));
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store_->Get(model->key(), selector));
  if (request.export_format() == v1::EXPORT_FORMAT_BINARY) {
    response->set_content(VersionToBinary(record));
    response->set_export_format(v1::EXPORT_FORMAT_BINARY);
  } else {
    response->set_content(VersionToJson(record));
    response->set_export_format(v1::EXPORT_FORMAT_JSON);
  }
  return absl::OkStatus();
}

absl::Status ServerCore::ImportVersion(const v1::ImportVersionRequest& request,
                                       v1::ImportVersionResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  if (request.content().empty()) {
    return absl::InvalidArgumentError("ImportVersion needs content (an exported file)");
  }
  // The format is always detected from the content (store/stats_export.h).
  LOGN_ASSIGN_OR_RETURN(NewVersion version, ParseImport(request.content(), model->key()));
  if (!request.description().empty()) version.description = request.description();
  if (version.calibration_profile.has_value()) {
    v1::CalibrationProfile profile;
    if (!profile.ParseFromString(*version.calibration_profile)) {
      return absl::InvalidArgumentError("the file's calibration profile does not parse");
    }
    LOGN_RETURN_IF_ERROR(ValidateProfile(*model, profile, version.statistics));
  }
  return StoreVersion(*model, version, request.activate(), response->mutable_statistics_version());
}

absl::Status ServerCore::SetCalibrationProfile(const v1::SetCalibrationProfileRequest& request,
                                               v1::SetCalibrationProfileResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        ResolveModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(VersionSelector selector, SelectorFromProto(request.selector()));
  std::optional<std::string> profile_bytes;
  if (request.has_calibration_profile()) {
    const v1::CalibrationProfile& profile = request.calibration_profile();
    LOGN_ASSIGN_OR_RETURN(const VersionRecord record, store_->Get(model->key(), selector));
    LOGN_RETURN_IF_ERROR(ValidateProfile(*model, profile, record.statistics));
    profile_bytes = CalibrationProfileToBytes(profile);  // set_at cleared: the store keeps it
    // The version validated, even if the alias moves meanwhile.
    selector = VersionSelector::Number(record.info.version);
  }
  LOGN_ASSIGN_OR_RETURN(const VersionInfo info,
                        store_->SetCalibrationProfile(model->key(), selector, profile_bytes));
  LOGN_ASSIGN_OR_RETURN(std::vector<std::string> aliases, AliasesOf(model->key(), info.version));
  VersionToProto(info, aliases, response->mutable_statistics_version());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Model repository

void ServerCore::ModelStatusToProto(const ModelVersionInfo& info, v1::ModelVersionStatus* status) {
  status->set_model_name(info.name);
  status->set_model_version(info.version);
  status->set_state(info.state);
  status->set_reason(info.reason);
  status->set_path(info.path);
  status->set_is_default(info.is_default);
  status->set_pinned(info.pinned);
  if (info.model == nullptr) return;
  const LoadedModel& model = *info.model;
  status->set_model_sha256(model.key().sha256);
  status->set_memory_bytes(model.memory_bytes());
  TimeToProto(model.loaded_at(), status->mutable_loaded_at());
  status->set_missing_statistics(model.config().missing_statistics());
  status->set_fallback_method(model.config().fallback_method());
  if (info.state == v1::MODEL_VERSION_STATE_AVAILABLE) {
    status->set_active_version(ActiveVersion(model));
  }
}

absl::Status ServerCore::ListModels(const v1::ListModelsRequest& request,
                                    v1::ListModelsResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const std::vector<ModelVersionInfo> listed,
                        models_->List(request.model_name()));
  for (const ModelVersionInfo& info : listed) {
    ModelStatusToProto(info, response->add_model_versions());
  }
  response->set_repository(models_->repository());
  const absl::Time scanned = models_->scanned_at();
  if (scanned != absl::InfinitePast()) {
    TimeToProto(scanned, response->mutable_scanned_at());
  }
  return absl::OkStatus();
}

absl::Status ServerCore::LoadModel(const v1::LoadModelRequest& request,
                                   v1::LoadModelResponse* response) {
  if (request.model_version() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadModel needs a model_version > 0, got ", request.model_version()));
  }
  LOGN_ASSIGN_OR_RETURN(const ModelVersionInfo info,
                        models_->Load(request.model_name(), request.model_version()));
  ModelStatusToProto(info, response->mutable_model_version_status());
  return absl::OkStatus();
}

absl::Status ServerCore::UnloadModel(const v1::UnloadModelRequest& request,
                                     v1::UnloadModelResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const ModelVersionInfo info,
                        models_->Unload(request.model_name(), request.model_version()));
  ModelStatusToProto(info, response->mutable_model_version_status());
  return absl::OkStatus();
}

absl::Status ServerCore::ReloadModels(const v1::ReloadModelsRequest& request,
                                      v1::ReloadModelsResponse* response) {
  if (request.model_version() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_version must be >= 0, got ", request.model_version()));
  }
  LOGN_ASSIGN_OR_RETURN(const std::vector<ModelVersionInfo> listed,
                        models_->Reload(request.model_name(), request.model_version()));
  for (const ModelVersionInfo& info : listed) {
    ModelStatusToProto(info, response->add_model_versions());
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Drift

absl::StatusOr<ServerCore::Model> ServerCore::DriftModel(const std::string& name,
                                                         int64_t version) const {
  LOGN_ASSIGN_OR_RETURN(Model model, ResolveModel(name, version));
  if (model->drift() == nullptr) {
    return absl::FailedPreconditionError(
        "drift monitoring is off on this server (start it with --drift_sample_rate > 0)");
  }
  return model;
}

absl::StatusOr<StoredVersion> ServerCore::StoreServedTraffic(const LoadedModel& model,
                                                             const Statistics& statistics,
                                                             const std::string& description) {
  VersionOrigin origin;
  origin.source = VersionSource::kServedTraffic;
  origin.description = description;
  RoiSamplingRecord sampling;
  sampling.roi_source = RoiSource::kCandidates;
  origin.sampling = sampling;
  const NewVersion version =
      BuildNewVersion(model.key(), statistics, std::move(origin), absl::Now());
  return StoreNewVersion(*store_, version, /*activate=*/false);
}

absl::Status ServerCore::GetDrift(const v1::GetDriftRequest& request,
                                  v1::GetDriftResponse* response) {
  if (request.top_k() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", request.top_k()));
  }
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        DriftModel(request.model_name(), request.model_version()));
  const DriftStatusReport report = model->drift()->Report();
  DriftReportToProto(report, model->drift()->options(), model->runtime().manifest(),
                     request.top_k() == 0 ? 10 : request.top_k(), response);
  response->set_model_name(model->name());
  response->set_model_version(model->version());
  return absl::OkStatus();
}

absl::Status ServerCore::CaptureDriftReference(const v1::CaptureDriftReferenceRequest& request,
                                               v1::CaptureDriftReferenceResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        DriftModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(const int64_t version,
                        model->drift()->CaptureReference(request.from_next_window(),
                                                         request.description()));
  response->set_state(request.from_next_window() ? v1::DRIFT_STATE_COLLECTING_REFERENCE
                                                 : v1::DRIFT_STATE_MONITORING);
  if (version == 0) return absl::OkStatus();
  LOGN_ASSIGN_OR_RETURN(const VersionRecord record,
                        store_->Get(model->key(), VersionSelector::Number(version)));
  VersionToProto(record.info, {}, response->mutable_statistics_version());
  return absl::OkStatus();
}

absl::Status ServerCore::SnapshotLiveStatistics(const v1::SnapshotLiveStatisticsRequest& request,
                                                v1::SnapshotLiveStatisticsResponse* response) {
  LOGN_ASSIGN_OR_RETURN(const Model model,
                        DriftModel(request.model_name(), request.model_version()));
  LOGN_ASSIGN_OR_RETURN(const Statistics live, model->drift()->LiveStatistics());
  const std::string description =
      request.description().empty() ? "live window of served traffic" : request.description();
  LOGN_ASSIGN_OR_RETURN(const StoredVersion stored,
                        StoreServedTraffic(*model, live, description));
  VersionToProto(stored, response->mutable_statistics_version());
  return absl::OkStatus();
}

}  // namespace logn
