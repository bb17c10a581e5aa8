// logn compare: one Detect request per val image carrying every setting of the paper's tables,
// each setting evaluated with the LVIS protocol, printed as one table.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/cli/progress.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/lvis_eval.h"
#include "client/lib/enum_names.h"

namespace logn::cli {

std::vector<v1::CalibrationSetting> CompareSettings(bool include_loga) {
  std::vector<v1::CalibrationSetting> settings;
  auto add = [&](const std::string& name, v1::CalibrationMethod method) -> v1::CalibrationSetting& {
    settings.emplace_back();
    settings.back().set_name(name);
    settings.back().set_calibration_method(method);
    return settings.back();
  };
  // The plain methods' rows are named after them.
  auto add_method = [&](v1::CalibrationMethod method) {
    add(std::string(EnumName(method)), method);
  };
  add_method(v1::CALIBRATION_METHOD_NONE);
  if (include_loga) add_method(v1::CALIBRATION_METHOD_LOGA);
  {
    // Plain BatchNorm inference over all C+1 logits: LogN without beta, background normalised.
    v1::LogNParams* p = add("bn", v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_use_beta(false);
    p->set_normalize_background(true);
  }
  add_method(v1::CALIBRATION_METHOD_LOGN);
  // The model's default (the statistics version's calibration profile, e.g. `logn tune`'s
  // choice; LogN when it has none).
  add("default", v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  // Table 2: which of mu, sigma, beta are on.
  const struct {
    const char* name;
    bool mu, sigma, beta;
  } kTable2[] = {{"t2:-", false, false, false},
                 {"t2:mu", true, false, false},
                 {"t2:sigma", false, true, false},
                 {"t2:beta", false, false, true},
                 {"t2:mu+sigma+beta", true, true, true}};
  for (const auto& row : kTable2) {
    v1::LogNParams* p = add(row.name, v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_use_mean(row.mu);
    p->set_use_std(row.sigma);
    p->set_use_beta(row.beta);
  }
  // Table 3: how beta is chosen.
  const struct {
    const char* name;
    v1::BetaPolicy policy;
    double constant;
  } kTable3[] = {{"t3:const-4", v1::BETA_POLICY_CONSTANT, -4},
                 {"t3:const-12", v1::BETA_POLICY_CONSTANT, -12},
                 {"t3:background_mean", v1::BETA_POLICY_BACKGROUND_MEAN, 0},
                 {"t3:max_fg_mean", v1::BETA_POLICY_MAX_FOREGROUND_MEAN, 0},
                 {"t3:avg_fg_mean", v1::BETA_POLICY_AVG_FOREGROUND_MEAN, 0},
                 {"t3:min_fg_mean", v1::BETA_POLICY_MIN_FOREGROUND_MEAN, 0}};
  for (const auto& row : kTable3) {
    v1::LogNParams* p = add(row.name, v1::CALIBRATION_METHOD_LOGN).mutable_logn();
    p->set_beta_policy(row.policy);
    if (row.policy == v1::BETA_POLICY_CONSTANT) p->set_beta_constant(row.constant);
  }
  return settings;
}

bool ModelHasInstanceCounts(const v1::GetModelInfoResponse& info) {
  if (info.manifest().classes_size() == 0) return false;
  for (const v1::ClassInfo& c : info.manifest().classes()) {
    if (c.instance_count() <= 0) return false;
  }
  return true;
}

namespace {

namespace fs = std::filesystem;

using Row = std::pair<std::string, LvisEvalResult>;  // setting name, its evaluation

// The detections of every setting over the ground truth's images, and the statistics version the
// server used.
struct Detections {
  std::vector<std::vector<LvisDetection>> by_setting;
  int64_t statistics_version = 0;
};

absl::StatusOr<Detections> DetectAll(Client& client, const CompareOptions& options,
                                     const LvisDataset& gt,
                                     const std::vector<v1::CalibrationSetting>& settings,
                                     const Io& io) {
  Detections out;
  out.by_setting.resize(settings.size());
  ProgressOptions progress_options;
  progress_options.terminal = io.terminal;
  progress_options.total_images = static_cast<int64_t>(gt.images.size());
  progress_options.rows_known = false;  // detection has no rows
  progress_options.label = "detect";
  ProgressReporter progress(io.terminal ? io.out : io.err, progress_options);
  int64_t done = 0;
  for (const LvisImage& image : gt.images) {
    // One request per image carrying every setting: all settings share one forward pass.
    v1::DetectRequest request;
    absl::StatusOr<std::string> bytes =
        ReadFileToString((fs::path(options.images_dir) / image.file_name).string());
    if (!bytes.ok()) return bytes.status();
    request.add_images()->set_encoded(*std::move(bytes));
    request.mutable_images(0)->set_image_id(absl::StrCat(image.id));
    SetModel(options.model, &request);
    SetSelector(options.selector, &request);
    *request.mutable_postprocess() = options.postprocess;
    for (const auto& s : settings) *request.add_calibrations() = s;
    absl::StatusOr<v1::DetectResponse> response = client.Detect(request);
    if (!response.ok()) {
      return absl::Status(response.status().code(),
                          absl::StrCat("image ", image.id, ": ", response.status().message()));
    }
    out.statistics_version = response->version();
    for (int k = 0; k < response->results_size() && k < static_cast<int>(settings.size()); ++k) {
      for (const v1::Detection& d : response->results(k).image_detections(0).detections()) {
        out.by_setting[k].push_back(ToLvisDetection(image.id, d));
      }
    }
    progress.Update(0, ++done);
  }
  progress.Finish();
  return out;
}

std::string TableJson(const std::vector<Row>& rows, int64_t statistics_version, size_t images) {
  std::vector<std::string> items;
  for (const auto& [name, r] : rows) {
    items.push_back(absl::StrFormat(
        "{\"setting\":%s,\"AP\":%.17g,\"AP50\":%.17g,\"AP75\":%.17g,\"APr\":%.17g,\"APc\":%.17g,"
        "\"APf\":%.17g,\"detections\":%d}",
        JsonString(name), r.ap, r.ap50, r.ap75, r.ap_rare, r.ap_common, r.ap_frequent,
        r.num_detections));
  }
  return absl::StrCat("{\"statistics_version\":", statistics_version, ",\"images\":", images,
                      ",\"settings\":[", absl::StrJoin(items, ","), "]}");
}

std::string TableText(const std::vector<Row>& rows, int64_t statistics_version, size_t images) {
  auto cell = [](double v) { return v < 0 ? std::string("     -") : absl::StrFormat("%6.3f", v); };
  std::string out =
      absl::StrFormat("%d images, statistics version %d\n", images, statistics_version);
  absl::StrAppendFormat(&out, "%-20s %6s %6s %6s %6s %6s %6s\n", "setting", "AP", "AP50", "AP75",
                        "APr", "APc", "APf");
  for (const auto& [name, r] : rows) {
    absl::StrAppendFormat(&out, "%-20s %s %s %s %s %s %s\n", name, cell(r.ap), cell(r.ap50),
                          cell(r.ap75), cell(r.ap_rare), cell(r.ap_common), cell(r.ap_frequent));
  }
  return out;
}

CompareOptions ParseCompareOptions(const Args& args) {
  CompareOptions o;
  o.gt_path = args.Required("--gt");
  o.images_dir = args.Required("--images");
  o.model = ReadModel(args);
  o.selector = ReadSelector(args);
  o.postprocess = ReadPostprocess(args);
  o.json = args.Has("--json");
  o.out_path = args.Get("--out");
  return o;
}

int RunCompare(Client& client, const CompareOptions& options, const Io& io) {
  absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
  if (!gt.ok()) return ReportError(io, "compare", gt.status());
  v1::GetModelInfoRequest info_request;
  SetModel(options.model, &info_request);
  absl::StatusOr<v1::GetModelInfoResponse> info = client.GetModelInfo(info_request);
  if (!info.ok()) return ReportError(io, "compare", info.status());
  const bool include_loga = ModelHasInstanceCounts(*info);
  if (!include_loga) *io.err << "logn compare: skipping LogA (the model has no instance counts)\n";
  const std::vector<v1::CalibrationSetting> settings = CompareSettings(include_loga);
  // Every image on the model version whose manifest decided the settings.
  CompareOptions pinned = options;
  pinned.model = PinModelVersion(options.model, info->model_version());
  absl::StatusOr<Detections> detections = DetectAll(client, pinned, *gt, settings, io);
  if (!detections.ok()) return ReportError(io, "compare", detections.status());
  std::vector<Row> rows;
  for (size_t k = 0; k < settings.size(); ++k) {
    absl::StatusOr<LvisEvalResult> result = EvaluateLvis(*gt, detections->by_setting[k]);
    if (!result.ok()) return ReportError(io, "compare", result.status());
    rows.emplace_back(settings[k].name(), *std::move(result));
  }
  const int64_t version = detections->statistics_version;
  const std::string json = TableJson(rows, version, gt->images.size());
  if (!options.out_path.empty()) {
    if (absl::Status s = WriteFile(options.out_path, json + "\n"); !s.ok()) {
      return ReportError(io, "compare", s);
    }
  }
  *io.out << (options.json ? json + "\n" : TableText(rows, version, gt->images.size()));
  return kExitOk;
}

}  // namespace

Command CompareCommand() {
  return {"compare",
          "evaluate none/LogA/BN/LogN and the paper's ablations on a val set",
          absl::StrCat(
              R"(usage: logn compare --server ADDR --gt VAL.json --images DIR [flags]

Runs ONE Detect request per val image carrying every setting (none, LogA, plain BN,
LogN, the paper's Table 2 mu/sigma/beta ablations and Table 3 beta policies),
evaluates each with the LVIS protocol and prints one table (AP AP50 AP75 APr APc APf).
  --gt FILE              LVIS-format val annotations
  --images DIR           directory holding the val images' file_name entries
  --json                 print the table as JSON
  --out FILE             also write the JSON table to FILE
)",
              ModelGroup().help, SelectorGroup().help, PostprocessGroup().help, "\n",
              ConnectionGroup().help),
          FlagSpec{{"--gt", "--images", "--out"}, {"--json"}}.Add(
              {&ModelGroup(), &SelectorGroup(), &PostprocessGroup()}),
          ParseInto(&ParseCompareOptions),
          RunWithClient(&RunCompare)};
}

}  // namespace logn::cli
