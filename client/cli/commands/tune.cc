// logn tune: choose a model's default calibration from data. One forward pass per val image
// (the raw candidates kept), every setting of the grid post-processed and evaluated locally
// (client/cli/tune.h), chosen on a tuning part and reported on a held-out part of the images,
// for several splits; --apply stores the choice as the statistics version's calibration profile.

#include <cstring>
#include <filesystem>
#include <tuple>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "calibration/proto_enums.h"
#include "calibration/setting_proto.h"
#include "calibration/statistics_codec.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/cli/progress.h"
#include "client/cli/tune.h"
#include "client/eval/lvis_dataset.h"
#include "common/status_macros.h"

namespace logn::cli {
namespace {

namespace fs = std::filesystem;

// What the model and its statistics give the engine.
struct ModelInputs {
  std::string model_name;
  // The model version every later call names: the one GetModelInfo described.
  ModelRef model;
  LogitLayout layout;
  std::vector<int64_t> category_ids;
  std::vector<double> class_counts;  // empty unless every class has one
  int64_t version = 0;
  Statistics statistics;
  std::vector<std::pair<int64_t, Statistics>> references;  // --reference-version
};

absl::StatusOr<std::pair<int64_t, Statistics>> FetchStatistics(
    Client& client, const ModelRef& model, const v1::StatisticsSelector& selector) {
  v1::GetVersionRequest request;
  SetModel(model, &request);
  *request.mutable_selector() = selector;
  request.set_view(v1::VERSION_VIEW_FULL);
  LOGN_ASSIGN_OR_RETURN(v1::GetVersionResponse got, client.GetVersion(request));
  LOGN_ASSIGN_OR_RETURN(Statistics statistics,
                        StatisticsFromProto(got.statistics_version().statistics()));
  return std::make_pair(got.statistics_version().version(), std::move(statistics));
}

absl::StatusOr<ModelInputs> FetchModelInputs(Client& client, const TuneOptions& options) {
  ModelInputs out;
  v1::GetModelInfoRequest info_request;
  SetModel(options.model, &info_request);
  LOGN_ASSIGN_OR_RETURN(v1::GetModelInfoResponse info, client.GetModelInfo(info_request));
  const v1::ModelManifest& manifest = info.manifest();
  out.model_name = manifest.name();
  out.model = PinModelVersion(options.model, info.model_version());
  LOGN_ASSIGN_OR_RETURN(const BackgroundPosition background,
                        BackgroundPositionFromProto(manifest.background()));
  out.layout = LogitLayout{manifest.classes_size(), background};
  for (const v1::ClassInfo& c : manifest.classes()) {
    out.category_ids.push_back(c.id());
    out.class_counts.push_back(static_cast<double>(c.instance_count()));
  }
  if (!ModelHasInstanceCounts(info)) out.class_counts.clear();
  LOGN_ASSIGN_OR_RETURN(std::tie(out.version, out.statistics),
                        FetchStatistics(client, out.model, options.selector));
  for (int64_t version : options.reference_versions) {
    v1::StatisticsSelector selector;
    selector.set_version(version);
    LOGN_ASSIGN_OR_RETURN(auto reference, FetchStatistics(client, out.model, selector));
    out.references.push_back(std::move(reference));
  }
  return out;
}

// One Detect per `images_per_request` images, asking only for the raw candidates.
absl::StatusOr<std::vector<CachedImage>> FetchCandidates(Client& client, const TuneOptions& options,
                                                         const ModelRef& model,
                                                         const LvisDataset& gt, const Io& io) {
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.total_images = static_cast<int64_t>(gt.images.size());
  progress_options.rows_known = false;
  progress_options.label = "forward";
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);
  std::vector<CachedImage> images;
  const size_t step = static_cast<size_t>(options.images_per_request);
  for (size_t begin = 0; begin < gt.images.size(); begin += step) {
    v1::DetectRequest request;
    SetModel(model, &request);
    const size_t end = std::min(gt.images.size(), begin + step);
    for (size_t i = begin; i < end; ++i) {
      const LvisImage& image = gt.images[i];
      LOGN_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString((fs::path(options.images_dir) /
                                                                 image.file_name)
                                                                    .string()));
      v1::Image* out = request.add_images();
      out->set_encoded(std::move(bytes));
      out->set_image_id(absl::StrCat(image.id));
    }
    // NONE and one detection keep the response to what tuning needs: the raw candidates.
    request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
    request.mutable_postprocess()->set_max_detections(1);
    request.mutable_postprocess()->set_include_raw_candidates(true);
    absl::StatusOr<v1::DetectResponse> response = client.Detect(request);
    if (!response.ok()) {
      return absl::Status(response.status().code(),
                          absl::StrCat("images ", gt.images[begin].id, "..: ",
                                       response.status().message()));
    }
    if (response->raw_candidates_size() != static_cast<int>(end - begin)) {
      return absl::FailedPreconditionError(
          "the server returned no raw candidates: it predates include_raw_candidates");
    }
    for (size_t i = begin; i < end; ++i) {
      const v1::RawCandidates& raw = response->raw_candidates(static_cast<int>(i - begin));
      CachedImage image;
      image.image_id = gt.images[i].id;
      image.num_candidates = raw.logits().rows();
      image.class_specific = raw.box_layout() == v1::BOX_LAYOUT_CLASS_SPECIFIC;
      image.logits.resize(raw.logits().data().size() / sizeof(float));
      std::memcpy(image.logits.data(), raw.logits().data().data(),
                  image.logits.size() * sizeof(float));
      image.boxes.resize(raw.boxes().size() / sizeof(float));
      std::memcpy(image.boxes.data(), raw.boxes().data(), image.boxes.size() * sizeof(float));
      images.push_back(std::move(image));
    }
    progress.Update(0, static_cast<int64_t>(end));
  }
  progress.Finish();
  return images;
}

v1::CalibrationProfile ProfileOf(const TuneResult& result, const TuningOptions& options,
                                 const std::string& description) {
  v1::CalibrationProfile profile;
  const TuneSetting& chosen = result.settings[result.chosen[0]].setting;
  *profile.mutable_default_setting() = SpecToProto(chosen.spec, chosen.name);
  profile.set_description(description);
  v1::TuningRecord* record = profile.mutable_tuning();
  record->set_objective(std::string(TuneObjectiveName(options.objective)));
  record->set_holdout_fraction(options.holdout_fraction);
  for (uint64_t seed : options.seeds) record->add_split_seeds(seed);
  record->set_tuning_images(result.tuning_images[0]);
  record->set_heldout_images(result.heldout_images[0]);
  int evaluated = 0;
  for (const SettingScores& s : result.settings) evaluated += s.reference_only ? 0 : 1;
  record->set_settings_evaluated(evaluated);
  for (const HeldOutRow& row : HeldOutRows(result)) {
    if (row.reference_only) continue;
    v1::HeldOutFigures* figures = record->add_heldout();
    figures->set_setting_name(row.label);
    const auto fill = [&](double (*metric)(const LvisEvalResult&), auto set_mean, auto set_spread) {
      const MeanSpread ms = HeldOutMeanSpread(row.heldout, metric);
      (figures->*set_mean)(ms.mean);
      (figures->*set_spread)(ms.spread);
    };
    fill([](const LvisEvalResult& r) { return r.ap; }, &v1::HeldOutFigures::set_ap_mean,
         &v1::HeldOutFigures::set_ap_spread);
    fill([](const LvisEvalResult& r) { return r.ap_rare; }, &v1::HeldOutFigures::set_apr_mean,
         &v1::HeldOutFigures::set_apr_spread);
    fill([](const LvisEvalResult& r) { return r.ap_common; }, &v1::HeldOutFigures::set_apc_mean,
         &v1::HeldOutFigures::set_apc_spread);
    fill([](const LvisEvalResult& r) { return r.ap_frequent; },
         &v1::HeldOutFigures::set_apf_mean, &v1::HeldOutFigures::set_apf_spread);
  }
  return profile;
}

TuneOptions ParseTuneOptions(const Args& args) {
  TuneOptions o;
  o.gt_path = args.Required("--gt");
  o.images_dir = args.Required("--images");
  o.model = ReadModel(args);
  o.selector = ReadSelector(args);
  const absl::StatusOr<TuneObjective> objective =
      ParseTuneObjective(args.Get("--objective", "ap"));
  if (!objective.ok()) args.Fail(std::string(objective.status().message()));
  o.engine.objective = objective.value_or(TuneObjective::kAp);
  o.engine.holdout_fraction = args.Double("--holdout", 0.5, 0.01, 0.99);
  o.engine.threads = static_cast<int>(args.Int("--threads", 2, 1, 256));
  o.engine.seeds.clear();
  for (absl::string_view part : absl::StrSplit(args.Get("--seeds", "0,1,2"), ',')) {
    uint64_t seed = 0;
    if (!absl::SimpleAtoi(part, &seed)) {
      args.Fail(absl::StrCat("--seeds: '", part, "' is not a non-negative integer"));
    }
    o.engine.seeds.push_back(seed);
  }
  for (absl::string_view part :
       absl::StrSplit(args.Get("--reference-version"), ',', absl::SkipEmpty())) {
    int64_t version = 0;
    if (!absl::SimpleAtoi(part, &version) || version <= 0) {
      args.Fail(absl::StrCat("--reference-version: '", part, "' is not a version number"));
    }
    o.reference_versions.push_back(version);
  }
  o.images_per_request = static_cast<int>(args.Int("--images-per-request", 4, 1, 64));
  o.apply = args.Has("--apply");
  o.json = args.Has("--json");
  o.report_path = args.Get("--report");
  o.heatmap_path = args.Get("--heatmap");
  return o;
}

int RunTune(Client& client, const TuneOptions& options, const Io& io) {
  absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
  if (!gt.ok()) return ReportError(io, "tune", gt.status());
  absl::StatusOr<ModelInputs> model = FetchModelInputs(client, options);
  if (!model.ok()) return ReportError(io, "tune", model.status());
  absl::StatusOr<std::vector<CachedImage>> images =
      FetchCandidates(client, options, model->model, *gt, io);
  if (!images.ok()) return ReportError(io, "tune", images.status());

  TuneInput input;
  input.ground_truth = &*gt;
  input.images = *std::move(images);
  input.layout = model->layout;
  input.category_ids = model->category_ids;
  input.statistics = &model->statistics;
  input.class_counts = model->class_counts;
  for (const auto& [version, statistics] : model->references) {
    input.references.push_back({absl::StrCat("logn@v", version), CalibrationSpec(), &statistics});
  }
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.rows_known = false;
  progress_options.label = "evaluate";
  progress_options.unit = "settings";
  progress_options.total_images = static_cast<int64_t>(
      TuningGrid(input.layout.has_background(), !input.class_counts.empty()).size() +
      input.references.size());
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);
  TuningOptions engine = options.engine;
  engine.progress = [&](int done, int) { progress.Update(0, done); };
  const absl::StatusOr<TuneResult> result = RunTuning(input, engine);
  progress.Finish();
  if (!result.ok()) return ReportError(io, "tune", result.status());

  const std::string json = TuneReportJson(*result, engine, model->model_name, model->version);
  if (!options.report_path.empty()) {
    if (absl::Status s = WriteFile(options.report_path, json + "\n"); !s.ok()) {
      return ReportError(io, "tune", s);
    }
  }
  if (!options.heatmap_path.empty()) {
    if (absl::Status s = WriteFile(options.heatmap_path, TuneHeatMapSvg(*result, engine));
        !s.ok()) {
      return ReportError(io, "tune", s);
    }
  }
  *io.out << (options.json
                  ? json + "\n"
                  : absl::StrCat("model ", model->model_name,
                                 model->model.version > 0
                                     ? absl::StrCat(" version ", model->model.version)
                                     : "",
                                 ", statistics version ", model->version, ", ", input.images.size(),
                                 " images\n", TuneReportText(*result, engine)));
  if (!options.apply) return kExitOk;
  v1::SetCalibrationProfileRequest request;
  SetModel(model->model, &request);
  request.mutable_selector()->set_version(model->version);
  *request.mutable_calibration_profile() = ProfileOf(
      *result, engine,
      absl::StrFormat("logn tune --objective %s --holdout %g --seeds %s on %s (%d images)",
                      TuneObjectiveName(engine.objective), engine.holdout_fraction,
                      absl::StrJoin(engine.seeds, ","), options.gt_path, input.images.size()));
  absl::StatusOr<v1::SetCalibrationProfileResponse> set = client.SetCalibrationProfile(request);
  if (!set.ok()) return ReportError(io, "tune", set.status());
  *(options.json ? io.err : io.out)
      << "default calibration of version " << model->version << " set to "
      << result->settings[result->chosen[0]].setting.name << "\n";
  return kExitOk;
}

}  // namespace

Command TuneCommand() {
  return {
      "tune",
      "choose the model's default calibration on held-out data (--apply stores it)",
      absl::StrCat(
          R"(usage: logn tune --server ADDR --gt VAL.json --images DIR [flags]
One forward pass per val image (raw candidates kept), then every setting of the grid
post-processed and evaluated here: none; LogN's family (x - a*mu + beta) / (var + eps)^(g/2)
over a, g in {0, .25, .5, .75, 1} with beta off / min / avg / max foreground mu /
background mu; plain BN; LogA tau in {.25 .. 1.5}. The images are split by image id into a
tuning part and a held-out part: the setting is chosen on the tuning part and reported on the
held-out part (beside none, LogA and LogN), once per split seed.
  --gt FILE                  LVIS-format val annotations
  --images DIR               directory holding the val images' file_name entries
  --objective ap|apr|group-mean   what the choice maximises (default ap)
  --holdout F                fraction of images held out (default 0.5)
  --seeds S1,S2,...          split seeds (default 0,1,2); the first seed's choice is applied
  --reference-version V,...  also report full LogN with these statistics versions
  --threads N                evaluation threads (default 2)
  --images-per-request N     images per Detect request (default 4)
  --report FILE              write the JSON report (every setting, every split)
  --heatmap FILE             write an SVG heat map of held-out AP / APr over alpha x gamma
  --json                     print the JSON report instead of the table
  --apply                    store the choice as the statistics version's default calibration
)",
          ModelGroup().help, SelectorGroup().help, "\n", ConnectionGroup().help),
      FlagSpec{{"--gt", "--images", "--objective", "--holdout", "--seeds", "--reference-version",
                "--threads", "--images-per-request", "--report", "--heatmap"},
               {"--json", "--apply"}}
          .Add({&ModelGroup(), &SelectorGroup()}),
      ParseInto(&ParseTuneOptions),
      RunWithClient(&RunTune)};
}

}  // namespace logn::cli
