#ifndef LOGN_CLIENT_CLI_COMMANDS_H_
#define LOGN_CLIENT_CLI_COMMANDS_H_

// The `logn` commands as a library: per command, its options struct and its registry entry
// *Command() (name, help, flags; `parse` turns flags into the options struct, `run` runs one:
// see command.h). Each command is implemented in one file under commands/; docs/cli.md
// documents them.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/cli/args.h"
#include "client/cli/bench.h"
#include "client/cli/command.h"
#include "client/cli/tune.h"
#include "client/lib/client.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/stats_service.pb.h"

namespace logn::cli {

// ----- detect (commands/detect.cc) -----
struct DetectOptions {
  std::vector<std::string> images;
  ModelRef model;
  v1::StatisticsSelector selector;  // unset: "active"
  v1::CalibrationSetting setting;   // calibration_method NONE / LOGN / LOGA
  // The settings after the first of a comma-separated --method (none,logn,loga): computed from
  // the same forward pass, printed as one table (or JSON line) each.
  std::vector<v1::CalibrationSetting> more_settings;
  v1::PostprocessOptions postprocess;
  int images_per_request = 4;
  // JSON lines (every detection) instead of a table per image.
  bool json = false;
  // Rows per table and boxes per drawn image; 0: all.
  int top = 10;
  // Write DIR/<image stem>.png with the detections drawn (--draw DIR); "" to draw nothing.
  std::string draw_dir;
  // Enlargement of the drawn images; 0: auto (client/cli/draw.h AutoScale).
  int draw_scale = 0;
  // Write an LVIS/COCO results file instead of printing.
  std::string lvis_results_path;
  // Ground truth used to map image file names to LVIS image ids (else the numeric file stem);
  // an image without an id is a usage error (exit 2), found before any request.
  std::string gt_path;
  // Send the requests over one DetectStream instead of unary Detect calls.
  bool stream = false;
};
Command DetectCommand();

// ----- calibrate (commands/calibrate.cc) -----
struct CalibrateOptions {
  ModelRef model;
  // Either a dataset (LVIS JSON + image directory) ...
  std::string dataset_path;
  std::string images_dir;
  int images_per_batch = 8;
  // ... or a logits file (.npy, or raw float32 with `width`).
  std::string logits_path;
  int32_t width = 0;
  int64_t rows_per_batch = 0;  // 0: DefaultRowsPerBatch (~4 MiB messages)
  bool activate = false;
  std::optional<double> ema_momentum;
  std::optional<v1::StatisticsSelector> ema_init;
  bool ema_from_prior = false;  // start the EMA from mean 0 / variance 1
  // The RoI sampler's settings; unset: the server's (training defaults).
  v1::RoiSamplerOptions sampler;
  // Repeat-factor sampling threshold t: each image weighs its repeat factor; 0: off.
  double rfs_threshold = 0.0;
  std::string description;
  std::string job_id;
  // Send only shard `shard_index` (0-based) of `shard_count` (client/lib/calibration_jobs.h).
  int shard_index = 0;
  int shard_count = 1;
  // Commit a partial version, for Merge.
  bool partial = false;
  // Checkpoint interval in batches (needs job_id); 0: the server's default, -1: never.
  int32_t checkpoint_every = 0;
  // Continue job_id from its last checkpoint (sending only the batches after it); without a
  // checkpoint the job starts from the beginning.
  bool resume = false;
  bool json = false;
  absl::Duration progress_interval = absl::Seconds(2);
};
Command CalibrateCommand();

// ----- apply (commands/apply.cc) -----
struct ApplyOptions {
  ModelRef model;
  std::string logits_path;
  int32_t width = 0;
  std::string out_path;
  std::string scores_path;  // optional softmax scores
  v1::StatisticsSelector selector;
  v1::CalibrationSetting setting;
  int64_t rows_per_batch = 0;
};
Command ApplyCommand();

// ----- stats (commands/stats.cc, one commands/stats_ACTION.cc per action) -----
enum class StatsAction {
  kProfile,
  kList,
  kShow,
  kActivate,
  kRollback,
  kAlias,
  kDelete,
  kExport,
  kImport,
  kMerge,
  kJob
};
struct StatsOptions {
  StatsAction action = StatsAction::kList;
  ModelRef model;                   // every action
  v1::StatisticsSelector selector;  // show / export
  int64_t version_number = 0;       // activate / alias / delete
  std::string alias;                // alias NAME
  bool include_statistics = false;  // show --statistics
  bool json = false;
  std::string out_path;  // export --out (empty: stdout)
  std::string path;      // import FILE
  v1::ExportFormat export_format = v1::EXPORT_FORMAT_UNSPECIFIED;  // export
  std::string description;              // import / merge
  bool activate = false;                // import / merge
  std::vector<int64_t> merge_versions;  // merge
  bool partial = false;                 // merge (store partial) / list (only partial versions)
  bool complete = false;                // list (only complete versions)
  // merge (recorded) / job (looked up) / list (only this job's versions; "": those without one).
  std::optional<std::string> job_id;
  std::optional<v1::VersionSource> source;  // list (only this source's versions)
  std::string setting_name;  // profile --setting (a `logn tune` grid name)
  bool clear = false;        // profile --clear
  // activate / alias: allow a served-traffic version (a drift reference or snapshot).
  bool allow_served_traffic = false;
};
Command StatsCommand();

// ----- eval (commands/eval.cc; local, no server) -----
struct EvalOptions {
  std::string gt_path;
  std::string dt_path;
  bool per_class = false;
  bool json = false;
};
Command EvalCommand();

// ----- compare (commands/compare.cc) -----
struct CompareOptions {
  ModelRef model;
  std::string gt_path;
  std::string images_dir;
  v1::StatisticsSelector selector;
  v1::PostprocessOptions postprocess;
  bool json = false;
  std::string out_path;  // the JSON table, also written when printing text
};
// The settings `logn compare` evaluates, in table order: none, LogA (when `include_loga`), plain
// BN, LogN, the model's default (MODEL_DEFAULT), the paper's Table 2 (mu / sigma / beta on-off) and Table 3 (beta policies).
std::vector<v1::CalibrationSetting> CompareSettings(bool include_loga);
// Whether LogA is possible: every class has a training instance count (compare and tune).
bool ModelHasInstanceCounts(const v1::GetModelInfoResponse& info);
Command CompareCommand();

// ----- info (commands/info.cc: GetModelInfo as a summary, a class table or JSON) -----
struct InfoOptions {
  ModelRef model;
  bool json = false;     // the GetModelInfoResponse as one JSON object
  bool classes = false;  // the class table instead of the summary
};
Command InfoCommand();

// ----- health (commands/health.cc; exit 0 iff SERVING) -----
struct HealthOptions {
  std::string service;
};
Command HealthCommand();

// ----- bench (commands/bench.cc; the load generator is bench.h) -----
struct BenchCommandOptions {
  BenchOptions bench;  // everything but the images, which are loaded when the command runs
  std::string images_dir;
  std::string dataset_path;
  int max_images = 256;
};
Command BenchCommand();

// ----- tune (commands/tune.cc) -----
struct TuneOptions {
  ModelRef model;
  std::string gt_path;
  std::string images_dir;
  v1::StatisticsSelector selector;  // the version tuned (and given the profile); unset: active
  TuningOptions engine;             // objective, held-out fraction, seeds, threads
  std::vector<int64_t> reference_versions;  // full LogN with these versions, reported only
  int images_per_request = 4;
  bool apply = false;  // store the first seed's choice as the version's calibration profile
  bool json = false;
  std::string report_path;   // JSON report
  std::string heatmap_path;  // SVG heat map
};
Command TuneCommand();

// ----- models (commands/models.cc: ModelService) -----
enum class ModelsAction { kList, kLoad, kUnload, kReload };
struct ModelsOptions {
  ModelsAction action = ModelsAction::kList;
  // list: only this model's versions ("": every model); load / unload / reload: the model.
  std::string model_name;
  // load / unload: the version; reload: 0 (rescan only) or the version to load afresh.
  int64_t model_version = 0;
  bool json = false;
};
Command ModelsCommand();

// ----- drift (commands/drift.cc: DriftService) -----
enum class DriftAction { kReport, kSnapshot, kReference };
struct DriftOptions {
  DriftAction action = DriftAction::kReport;
  ModelRef model;
  int32_t top_k = 0;  // report: 0 is the server's default (10)
  bool json = false;
  // report --watch: print a report every `watch_interval` until interrupted, or `watch_count`
  // reports (0: no limit).
  bool watch = false;
  absl::Duration watch_interval = absl::Seconds(10);
  int64_t watch_count = 0;
  std::string description;   // snapshot / reference
  bool next_window = false;  // reference: gather the next full window instead
};
Command DriftCommand();

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_COMMANDS_H_
