#ifndef LOGN_CLIENT_CLI_COMMANDS_H_
#define LOGN_CLIENT_CLI_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/lib/client.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/stats_service.pb.h"

namespace logn::cli {

// The `logn` subcommands, each a function of an options struct (main.cc parses the flags). Every
// Run* returns the process exit code: 0 success, 1 a server error (printed as
// "logn CMD: CODE_NAME: message") or an unreadable/invalid input file, 2 a bad argument found
// only while running (e.g. an image name that yields no LVIS image id).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Where a command writes: results to `out`, diagnostics and progress to `err`.
struct Io {
  std::ostream* out;
  std::ostream* err;
  // stdout is a terminal: progress is a redrawn bar instead of periodic lines.
  bool terminal = false;
};

// Prints "logn <command>: <CODE_NAME>: <message>" and returns kExitError (kExitUsage for
// INVALID_ARGUMENT raised by the client itself before any RPC is made is the caller's choice).
int ReportError(const Io& io, const std::string& command, const absl::Status& status);

struct DetectOptions {
  std::vector<std::string> images;
  v1::StatisticsSelector statistics;  // unset: "active"
  v1::CalibrationSetting setting;     // method NONE / LOGN / LOGA
  v1::PostprocessOptions postprocess;
  int images_per_request = 4;
  // Write an LVIS/COCO results file instead of JSON lines.
  std::string lvis_results_path;
  // Ground truth used to map image file names to LVIS image ids (else the numeric file stem).
  std::string gt_path;
  // Send the requests over one DetectStream instead of unary Detect calls.
  bool stream = false;
};
int RunDetect(Client& client, const DetectOptions& options, const Io& io);

struct CalibrateOptions {
  // Either a dataset (LVIS JSON + image directory) ...
  std::string dataset_path;
  std::string images_dir;
  int images_per_batch = 8;
  // ... or a logits file (.npy, or raw float32 with `width`).
  std::string logits_path;
  int32_t width = 0;
  int64_t rows_per_batch = 0;  // 0: as many rows as fit in ~4 MiB
  bool activate = false;
  std::optional<double> ema_momentum;
  std::optional<v1::StatisticsSelector> ema_init;
  std::string description;
  std::string job_id;
  // Send only shard `shard_index` (0-based) of `shard_count`: the i-th of n contiguous slices
  // of the dataset's images (in file order) or of the logits file's rows.
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
int RunCalibrate(Client& client, const CalibrateOptions& options, const Io& io);

struct ApplyOptions {
  std::string logits_path;
  int32_t width = 0;
  std::string out_path;
  std::string scores_path;  // optional softmax scores
  v1::StatisticsSelector statistics;
  v1::CalibrationSetting setting;
  int64_t rows_per_batch = 0;
};
int RunApply(Client& client, const ApplyOptions& options, const Io& io);

enum class StatsAction {
  kList, kShow, kActivate, kRollback, kAlias, kDelete, kExport, kImport, kMerge, kJob
};
struct StatsOptions {
  StatsAction action = StatsAction::kList;
  v1::StatisticsSelector version;   // show / export
  int64_t version_number = 0;       // activate / alias / delete
  std::string alias;                // alias NAME
  bool include_statistics = false;  // show --statistics
  bool json = false;
  std::string path;  // export --out (empty: stdout) / import FILE
  v1::ExportFormat format = v1::EXPORT_FORMAT_UNSPECIFIED;
  std::string description;  // import / merge
  bool activate = false;    // import / merge
  std::vector<int64_t> merge_versions;  // merge
  bool partial = false;                 // merge
  std::string job_id;                   // merge (recorded) / job (looked up)
};
int RunStats(Client& client, const StatsOptions& options, const Io& io);

struct EvalOptions {
  std::string gt_path;
  std::string dt_path;
  bool per_class = false;
  bool json = false;
};
int RunEval(const EvalOptions& options, const Io& io);

struct CompareOptions {
  std::string gt_path;
  std::string images_dir;
  v1::StatisticsSelector statistics;
  v1::PostprocessOptions postprocess;
  bool json = false;
  std::string out_path;  // the JSON table, also written when printing text
};
// The settings `logn compare` evaluates, in table order: none, LogA (when `include_loga`), plain
// BN, LogN, the paper's Table 2 (mu / sigma / beta on-off) and Table 3 (beta policies).
std::vector<v1::CalibrationSetting> CompareSettings(bool include_loga);
int RunCompare(Client& client, const CompareOptions& options, const Io& io);

struct HealthOptions {
  std::string service;
};
int RunHealth(Client& client, const HealthOptions& options, const Io& io);

// GetModelInfo as one JSON object: manifest, model sha256, active version, device.
int RunInfo(Client& client, const Io& io);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_COMMANDS_H_
