// logn: the command-line client of LogN Serve. All flag parsing lives here; the commands
// themselves are in commands.cc. docs/cli.md documents every command.
//
// Exit codes: 0 success, 1 server error or unreadable input, 2 bad arguments.

#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cli/bench.h"
#include "client/cli/commands.h"
#include "client/cli/logits_file.h"
#include "client/lib/client.h"

namespace {

using logn::cli::kExitOk;
using logn::cli::kExitUsage;

constexpr char kMainUsage[] =
    "usage: logn COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  detect      detect objects in images (JSON lines or an LVIS results file)\n"
    "  calibrate   compute a new LogN statistics version from a dataset or logits\n"
    "  apply       calibrate a logits file through the service\n"
    "  stats       list|show|activate|rollback|alias|delete|export|import|merge|job\n"
    "  eval        LVIS bbox evaluation of a results file\n"
    "  compare     evaluate none/LogA/BN/LogN and the paper's ablations on a val set\n"
    "  info        the served model: manifest, classes, sha256, active version (JSON)\n"
    "  health      grpc.health.v1 check (exit 0 iff SERVING)\n"
    "  bench       load-test Detect: throughput, latency percentiles, server/client split\n"
    "\n"
    "`logn COMMAND --help` describes a command. Exit codes: 0 ok, 1 server error or unreadable\n"
    "input, 2 bad arguments.\n";

constexpr char kConnectionHelp[] =
    "Connection:\n"
    "  --server ADDR          host:port of logn_server (required; env LOGN_SERVER)\n"
    "  --deadline SECONDS     per-call deadline (default 60)\n"
    "  --retries N            attempts of idempotent calls on UNAVAILABLE (default 4)\n"
    "  --token TOKEN          bearer token (env LOGN_TOKEN)\n"
    "  --tls                  use TLS (implied by the --tls-* files)\n"
    "  --tls-ca FILE          PEM root CA\n"
    "  --tls-cert FILE        PEM client certificate (mutual TLS, with --tls-key)\n"
    "  --tls-key FILE         PEM client private key\n"
    "  --tls-server-name NAME override the name checked against the server certificate\n";

constexpr char kSelectorHelp[] =
    "  --version N            statistics version (default: the alias \"active\")\n"
    "  --alias NAME           statistics alias\n";

constexpr char kMethodHelp[] = "  --method M             none | logn | loga (default logn)\n";

constexpr char kPostprocessHelp[] =
    "  --score-threshold X    foreground score threshold before NMS (server default 1e-4)\n"
    "  --nms-iou X            class-wise NMS IoU (server default 0.5)\n"
    "  --max-detections N     detections kept per image (server default 300)\n";

struct CommandSpec {
  std::string usage;                  // printed by --help
  std::set<std::string> value_flags;  // --name VALUE
  std::set<std::string> bool_flags;   // --name
  bool connects = true;               // takes the connection flags
};

const std::set<std::string> kConnectionValueFlags = {"--server",  "--deadline",       "--retries",
                                                     "--token",   "--tls-ca",         "--tls-cert",
                                                     "--tls-key", "--tls-server-name"};

// Parsed command line of one command: flags by name and the positional arguments.
class Args {
 public:
  explicit Args(const CommandSpec& spec) : spec_(spec) {}

  // Returns a reason on failure; empty on success. Sets help_ for --help / -h.
  std::string Parse(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        help_ = true;
        return "";
      }
      if (arg == "--") {
        for (++i; i < argc; ++i) positional_.push_back(argv[i]);
        break;
      }
      if (!absl::StartsWith(arg, "--") || arg == "-") {
        positional_.push_back(arg);
        continue;
      }
      std::string name = arg, value;
      bool has_value = false;
      if (const size_t eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        has_value = true;
      }
      const bool valued = spec_.value_flags.count(name) > 0 ||
                          (spec_.connects && kConnectionValueFlags.count(name) > 0);
      const bool boolean = spec_.bool_flags.count(name) > 0 || (spec_.connects && name == "--tls");
      if (!valued && !boolean) return "unknown flag " + name;
      if (boolean) {
        if (has_value) return name + " takes no value";
        flags_[name] = "1";
        continue;
      }
      if (!has_value) {
        if (i + 1 >= argc) return name + " needs a value";
        value = argv[++i];
      }
      flags_[name] = value;
    }
    return "";
  }

  bool help() const { return help_; }
  bool Has(const std::string& name) const { return flags_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = flags_.find(name);
    return it == flags_.end() ? fallback : it->second;
  }
  const std::vector<std::string>& positional() const { return positional_; }

  // Records a usage error found while reading the flags (the first one wins); the command
  // checks error() before doing anything.
  void Fail(std::string reason) const {
    if (error_.empty()) error_ = std::move(reason);
  }
  const std::string& error() const { return error_; }

  std::string Required(const std::string& name) const {
    if (!Has(name) || Get(name).empty()) Fail(name + " is required");
    return Get(name);
  }
  int64_t Int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
    if (!Has(name)) return fallback;
    int64_t v;
    if (!absl::SimpleAtoi(Get(name), &v) || v < min || v > max) {
      Fail(absl::StrCat(name, " must be an integer in [", min, ", ", max, "], got '", Get(name),
                        "'"));
      return fallback;
    }
    return v;
  }
  double Double(const std::string& name, double fallback, double min, double max) const {
    if (!Has(name)) return fallback;
    double v;
    if (!absl::SimpleAtod(Get(name), &v) || !(v >= min && v <= max)) {
      Fail(
          absl::StrCat(name, " must be a number in [", min, ", ", max, "], got '", Get(name), "'"));
      return fallback;
    }
    return v;
  }

 private:
  const CommandSpec& spec_;
  std::map<std::string, std::string> flags_;
  std::vector<std::string> positional_;
  bool help_ = false;
  mutable std::string error_;
};

logn::ClientOptions ConnectionOptions(const Args& args) {
  logn::ClientOptions options;
  options.target = args.Get("--server");
  if (options.target.empty()) {
    const char* env = std::getenv("LOGN_SERVER");
    if (env != nullptr) options.target = env;
  }
  if (options.target.empty()) args.Fail("--server is required");
  options.deadline = absl::Seconds(args.Double("--deadline", 60, 1e-3, 1e7));
  options.retry.max_attempts = static_cast<int>(args.Int("--retries", 4, 1, 100));
  options.bearer_token = args.Get("--token");
  if (options.bearer_token.empty()) {
    const char* env = std::getenv("LOGN_TOKEN");
    if (env != nullptr) options.bearer_token = env;
  }
  options.tls.root_ca_file = args.Get("--tls-ca");
  options.tls.cert_chain_file = args.Get("--tls-cert");
  options.tls.private_key_file = args.Get("--tls-key");
  options.tls.server_name_override = args.Get("--tls-server-name");
  options.tls.enabled = args.Has("--tls") || !options.tls.root_ca_file.empty() ||
                        !options.tls.cert_chain_file.empty();
  if (absl::Status s = logn::ValidateClientOptions(options); !s.ok()) {
    args.Fail(std::string(s.message()));
  }
  return options;
}

logn::v1::StatisticsSelector SelectorFromText(const Args& args, const std::string& text) {
  logn::v1::StatisticsSelector selector;
  int64_t version;
  if (absl::SimpleAtoi(text, &version)) {
    if (version <= 0) args.Fail(absl::StrCat("version must be > 0, got ", text));
    selector.set_version(version);
  } else {
    if (text.empty()) args.Fail("empty version or alias");
    selector.set_alias(text);
  }
  return selector;
}

logn::v1::StatisticsSelector SelectorFlags(const Args& args) {
  if (args.Has("--version") && args.Has("--alias")) {
    args.Fail("--version and --alias are exclusive");
  }
  logn::v1::StatisticsSelector selector;
  if (args.Has("--version")) selector.set_version(args.Int("--version", 0, 1, INT64_MAX));
  if (args.Has("--alias")) {
    if (args.Get("--alias").empty()) args.Fail("--alias needs a name");
    selector.set_alias(args.Get("--alias"));
  }
  return selector;
}

logn::v1::CalibrationSetting MethodFlag(const Args& args) {
  logn::v1::CalibrationSetting setting;
  const std::string method = absl::AsciiStrToLower(args.Get("--method", "logn"));
  if (method == "none") {
    setting.set_method(logn::v1::CALIBRATION_METHOD_NONE);
  } else if (method == "logn") {
    setting.set_method(logn::v1::CALIBRATION_METHOD_LOGN);
  } else if (method == "loga") {
    setting.set_method(logn::v1::CALIBRATION_METHOD_LOGA);
  } else {
    args.Fail("--method must be none, logn or loga, got '" + method + "'");
  }
  setting.set_name(method);
  return setting;
}

logn::v1::PostprocessOptions PostprocessFlags(const Args& args) {
  logn::v1::PostprocessOptions p;
  if (args.Has("--score-threshold")) {
    p.set_score_threshold(static_cast<float>(args.Double("--score-threshold", 0, 0, 1)));
  }
  if (args.Has("--nms-iou")) p.set_nms_iou(static_cast<float>(args.Double("--nms-iou", 0, 0, 1)));
  if (args.Has("--max-detections")) {
    p.set_max_detections(static_cast<int32_t>(args.Int("--max-detections", 0, 1, 100000)));
  }
  return p;
}

const std::set<std::string> kSelectorFlags = {"--version", "--alias"};
const std::set<std::string> kPostprocessFlags = {"--score-threshold", "--nms-iou",
                                                 "--max-detections"};

std::set<std::string> Union(std::initializer_list<std::set<std::string>> sets) {
  std::set<std::string> out;
  for (const auto& s : sets) out.insert(s.begin(), s.end());
  return out;
}

std::map<std::string, CommandSpec> Specs() {
  std::map<std::string, CommandSpec> specs;
  specs["detect"] = {
      absl::StrCat(
          "usage: logn detect --server ADDR [flags] IMAGE...\n\n"
          "Detects objects in JPEG/PNG files. Prints one JSON line per image:\n"
          "  {\"image\":PATH,\"setting\":\"logn\",\"statistics_version\":N,\n"
          "   \"detections\":[{\"category_id\":C,\"score\":S,\"box\":[x1,y1,x2,y2]},...]}\n"
          "or writes an LVIS/COCO results file with --lvis-results.\n\n",
          kSelectorHelp, kMethodHelp, kPostprocessHelp,
          "  --lvis-results FILE    write [{image_id,category_id,bbox:[x,y,w,h],score}] to FILE\n"
          "  --gt FILE              LVIS ground truth mapping file names to image ids (default:\n"
          "                         the numeric file stem, e.g. 42.png -> 42)\n"
          "  --batch N              images per request (default 4)\n"
          "  --stream               send the requests over one DetectStream (bidirectional,\n"
          "                         ordered, flow-controlled) instead of unary Detect calls\n\n",
          kConnectionHelp),
      Union({kSelectorFlags, kPostprocessFlags, {"--method", "--lvis-results", "--gt", "--batch"}}),
      {"--stream"}};
  specs["calibrate"] = {
      absl::StrCat(
          "usage: logn calibrate --server ADDR (--dataset TRAIN.json --images DIR | --logits "
          "FILE)\n"
          "                      [flags]\n\n"
          "Streams a training set through the service and commits one new statistics version.\n"
          "  --dataset FILE         LVIS/COCO-format training annotations; images are sent with\n"
          "                         their ground-truth boxes and category ids\n"
          "  --images DIR           directory holding the dataset's file_name entries\n"
          "  --batch-images N       images per ImageBatch message (default 8)\n"
          "  --logits FILE          precomputed logits: .npy float32 2-D, or raw float32\n"
          "  --width N              columns per row of a raw logits file (C+1)\n"
          "  --batch-rows N         rows per LogitBatch message (default: ~4 MiB)\n"
          "  --ema MOMENTUM         exponential moving average in (0, 1] instead of exact\n"
          "  --ema-init VERSION     start the EMA from this version or alias\n"
          "  --activate             point \"active\" at the new version on commit\n"
          "  --description TEXT     stored with the version\n"
          "  --job-id ID            recorded in the version's provenance; with it the server\n"
          "                         checkpoints the job so that --resume can continue it\n"
          "  --shard I/N            send only the I-th (0-based) of N contiguous slices of the\n"
          "                         images (file order) or rows, e.g. one per replica\n"
          "  --partial              commit a partial version, to merge with `logn stats merge`\n"
          "  --checkpoint-every N   checkpoint every N batches (default: the server's; 0 never)\n"
          "  --resume               continue --job-id from its last checkpoint, on any replica\n"
          "                         sharing the store (same input, shard and batch size)\n"
          "  --json                 print the CalibrateResponse as JSON\n"
          "  --progress-interval S  seconds between plain progress lines (default 2)\n\n"
          "Progress (rows/s, images/s, ETA) is a bar when stdout is a terminal, periodic lines\n"
          "on stderr otherwise.\n\n",
          kConnectionHelp),
      {"--dataset", "--images", "--batch-images", "--logits", "--width", "--batch-rows", "--ema",
       "--ema-init", "--description", "--job-id", "--progress-interval", "--shard",
       "--checkpoint-every"},
      {"--activate", "--json", "--partial", "--resume"}};
  specs["apply"] = {
      absl::StrCat(
          "usage: logn apply --server ADDR --logits FILE --out FILE [flags]\n\n"
          "Calibrates logits with a stored statistics version and writes them back in the\n"
          "input's format (.npy when the output path ends in .npy, raw float32 otherwise).\n"
          "  --logits FILE          .npy float32 2-D, or raw float32 with --width\n"
          "  --width N              columns per row of a raw file\n"
          "  --out FILE             calibrated logits\n"
          "  --scores-out FILE      also write the softmax scores\n"
          "  --batch-rows N         rows per request (default: ~4 MiB)\n",
          kSelectorHelp, kMethodHelp, "\n", kConnectionHelp),
      Union({kSelectorFlags,
             {"--logits", "--width", "--out", "--scores-out", "--batch-rows", "--method"}}),
      {}};
  specs["stats"] = {
      absl::StrCat(
          "usage: logn stats ACTION [args] --server ADDR [flags]\n\n"
          "Actions:\n"
          "  list [--json]                          every version, ascending\n"
          "  show VERSION|ALIAS [--statistics] [--json]\n"
          "  activate VERSION                       point \"active\" at VERSION\n"
          "  rollback                               point \"active\" back where it was\n"
          "  alias NAME VERSION                     point alias NAME at VERSION\n"
          "  delete VERSION\n"
          "  export VERSION|ALIAS [--out FILE] [--format json|binary]   (stdout without --out)\n"
          "  import FILE [--format json|binary] [--description TEXT] [--activate] [--json]\n"
          "  merge VERSION VERSION... [--activate] [--partial] [--description TEXT]\n"
          "        [--job-id ID] [--json]           one version from exact-mode shards\n"
          "  job JOB_ID [--json]                    a resumable job's last checkpoint\n\n",
          kConnectionHelp),
      {"--out", "--format", "--description", "--job-id"},
      {"--json", "--statistics", "--activate", "--partial"}};
  specs["eval"] = {
      "usage: logn eval --gt GT.json --dt RESULTS.json [--per-class] [--json]\n\n"
      "LVIS bbox evaluation (lvis-api protocol: IoU 0.50:0.05:0.95, 101 recall points, at most\n"
      "300 detections per image, federated neg/not-exhaustive rules; see docs/evaluation.md).\n\n"
      "  --gt PATH      LVIS-format ground truth\n"
      "  --dt PATH      results: JSON array of {image_id, category_id, bbox [x,y,w,h], score}\n"
      "  --per-class    also print the AP of every category\n"
      "  --json         print one JSON object instead of the text summary\n",
      {"--gt", "--dt"},
      {"--per-class", "--json"},
      /*connects=*/false};
  specs["compare"] = {
      absl::StrCat(
          "usage: logn compare --server ADDR --gt VAL.json --images DIR [flags]\n\n"
          "Runs ONE Detect request per val image carrying every setting (none, LogA, plain BN,\n"
          "LogN, the paper's Table 2 mu/sigma/beta ablations and Table 3 beta policies),\n"
          "evaluates each with the LVIS protocol and prints one table (AP AP50 AP75 APr APc APf).\n"
          "  --gt FILE              LVIS-format val annotations\n"
          "  --images DIR           directory holding the val images' file_name entries\n"
          "  --json                 print the table as JSON\n"
          "  --out FILE             also write the JSON table to FILE\n",
          kSelectorHelp, kPostprocessHelp, "\n", kConnectionHelp),
      Union({kSelectorFlags, kPostprocessFlags, {"--gt", "--images", "--out"}}),
      {"--json"}};
  specs["info"] = {
      absl::StrCat("usage: logn info --server ADDR\n\n"
                   "GetModelInfo: the manifest (classes with their r/c/f groups), the model's\n"
                   "sha256, the active statistics version and the device, as one JSON object.\n\n",
                   kConnectionHelp),
      {},
      {}};
  specs["bench"] = {
      absl::StrCat(
          "usage: logn bench --server ADDR --images DIR [--dataset FILE.json] [flags]\n\n"
          "Load-tests Detect (like Triton's perf_analyzer): per concurrency level, a warm-up,\n"
          "then DURATION of closed-loop requests (or --rate requests/s, open loop); reports\n"
          "images/s, latency p50/p90/p95/p99, errors by status and the server's own queue /\n"
          "decode / inference / post-processing time against the rest (client overhead).\n"
          "  --images DIR           images to cycle through (every .png/.jpg, or the dataset's)\n"
          "  --dataset FILE         LVIS/COCO JSON naming the files in DIR\n"
          "  --max-images N         images loaded into memory (default 256)\n"
          "  --concurrency LIST     levels, e.g. 1,4,8,16 (default)\n"
          "  --rate R               open loop at R requests/s (concurrency caps those in flight)\n"
          "  --warmup S             seconds per level before measuring (default 2)\n"
          "  --duration S           seconds measured per level (default 10)\n"
          "  --batch N              images per request (default 1)\n"
          "  --csv FILE, --json FILE  also write the report\n",
          kSelectorHelp, kMethodHelp, kPostprocessHelp, "\n", kConnectionHelp),
      Union({kSelectorFlags, kPostprocessFlags,
             {"--images", "--dataset", "--max-images", "--concurrency", "--rate", "--warmup",
              "--duration", "--batch", "--csv", "--json", "--method"}}),
      {}};
  specs["health"] = {
      absl::StrCat("usage: logn health --server ADDR [--service NAME]\n\n"
                   "grpc.health.v1 Check. Prints the serving status; exit 0 iff SERVING.\n"
                   "  --service NAME         a service (default: the whole server)\n\n",
                   kConnectionHelp),
      {"--service"},
      {}};
  return specs;
}

int Usage(const std::string& command, const std::string& reason) {
  std::cerr << "logn" << (command.empty() ? "" : " " + command) << ": " << reason
            << " (see --help)\n";
  return kExitUsage;
}

int Run(const std::string& command, const Args& args) {
  const logn::cli::Io io{&std::cout, &std::cerr, isatty(STDOUT_FILENO) == 1};
  const std::vector<std::string>& pos = args.positional();

  if (command == "eval") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::EvalOptions o;
    o.gt_path = args.Required("--gt");
    o.dt_path = args.Required("--dt");
    o.per_class = args.Has("--per-class");
    o.json = args.Has("--json");
    if (!args.error().empty()) return Usage(command, args.error());
    return logn::cli::RunEval(o, io);
  }

  // Parse everything before connecting so a usage error never waits on the network.
  const logn::ClientOptions client_options = ConnectionOptions(args);
  std::function<int(logn::Client&)> run;

  if (command == "detect") {
    if (pos.empty()) args.Fail("no IMAGE given");
    logn::cli::DetectOptions o;
    o.images = pos;
    o.statistics = SelectorFlags(args);
    o.setting = MethodFlag(args);
    o.postprocess = PostprocessFlags(args);
    o.images_per_request = static_cast<int>(args.Int("--batch", 4, 1, 1024));
    o.lvis_results_path = args.Get("--lvis-results");
    o.gt_path = args.Get("--gt");
    o.stream = args.Has("--stream");
    if (!o.gt_path.empty() && o.lvis_results_path.empty()) {
      args.Fail("--gt only applies with --lvis-results");
    }
    run = [o, io](logn::Client& c) { return logn::cli::RunDetect(c, o, io); };
  } else if (command == "calibrate") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::CalibrateOptions o;
    o.dataset_path = args.Get("--dataset");
    o.images_dir = args.Get("--images");
    o.logits_path = args.Get("--logits");
    if (o.dataset_path.empty() == o.logits_path.empty()) {
      args.Fail("give exactly one of --dataset or --logits");
    }
    if (!o.dataset_path.empty() && o.images_dir.empty()) {
      args.Fail("--dataset needs --images DIR");
    }
    if (o.dataset_path.empty() && !o.images_dir.empty()) {
      args.Fail("--images only applies with --dataset");
    }
    if (!o.logits_path.empty() && !logn::IsNpyPath(o.logits_path) && !args.Has("--width")) {
      args.Fail("raw logits file needs --width (or use a .npy file)");
    }
    o.width = static_cast<int32_t>(args.Int("--width", 0, 1, 1 << 20));
    o.images_per_batch = static_cast<int>(args.Int("--batch-images", 8, 1, 4096));
    o.rows_per_batch = args.Int("--batch-rows", 0, 1, int64_t{1} << 30);
    o.activate = args.Has("--activate");
    if (args.Has("--ema")) {
      const double m = args.Double("--ema", 0, 0, 1);
      if (m <= 0) args.Fail("--ema momentum must be in (0, 1]");
      o.ema_momentum = m;
    }
    if (args.Has("--ema-init")) {
      if (!o.ema_momentum) args.Fail("--ema-init only applies with --ema");
      o.ema_init = SelectorFromText(args, args.Get("--ema-init"));
    }
    o.description = args.Get("--description");
    o.job_id = args.Get("--job-id");
    if (args.Has("--shard")) {
      const std::vector<std::string> parts = absl::StrSplit(args.Get("--shard"), '/');
      int i = -1, n = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &i) || !absl::SimpleAtoi(parts[1], &n) ||
          n < 1 || i < 0 || i >= n) {
        args.Fail("--shard takes I/N with 0 <= I < N, got '" + args.Get("--shard") + "'");
      }
      o.shard_index = i;
      o.shard_count = n;
    }
    o.partial = args.Has("--partial");
    if (o.partial && o.activate) args.Fail("--partial versions cannot be --activate'd");
    if (args.Has("--checkpoint-every")) {
      // 0 on the command line means never; the server's default is what omitting the flag gets.
      const int64_t every = args.Int("--checkpoint-every", 0, 0, 1 << 30);
      o.checkpoint_every = every == 0 ? -1 : static_cast<int32_t>(every);
    }
    o.resume = args.Has("--resume");
    if ((o.resume || args.Has("--checkpoint-every")) && o.job_id.empty()) {
      args.Fail("--resume and --checkpoint-every need --job-id");
    }
    o.json = args.Has("--json");
    o.progress_interval = absl::Seconds(args.Double("--progress-interval", 2, 0, 86400));
    run = [o, io](logn::Client& c) { return logn::cli::RunCalibrate(c, o, io); };
  } else if (command == "apply") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::ApplyOptions o;
    o.logits_path = args.Required("--logits");
    o.out_path = args.Required("--out");
    o.scores_path = args.Get("--scores-out");
    if (!logn::IsNpyPath(o.logits_path) && !args.Has("--width")) {
      args.Fail("raw logits file needs --width (or use a .npy file)");
    }
    o.width = static_cast<int32_t>(args.Int("--width", 0, 1, 1 << 20));
    o.rows_per_batch = args.Int("--batch-rows", 0, 1, int64_t{1} << 30);
    o.statistics = SelectorFlags(args);
    o.setting = MethodFlag(args);
    run = [o, io](logn::Client& c) { return logn::cli::RunApply(c, o, io); };
  } else if (command == "stats") {
    if (pos.empty()) return Usage(command, "missing ACTION (list, show, activate, ...)");
    logn::cli::StatsOptions o;
    const std::string& action = pos[0];
    auto expect_args = [&](size_t n, const char* what) {
      if (pos.size() != n + 1) {
        args.Fail(absl::StrCat("stats ", action, " takes ", what));
      }
    };
    auto at = [&](size_t i) { return i < pos.size() ? pos[i] : std::string(); };
    auto version_number = [&](const std::string& text) -> int64_t {
      int64_t v = 0;
      if (!absl::SimpleAtoi(text, &v) || v <= 0) {
        args.Fail("VERSION must be a positive integer, got '" + text + "'");
      }
      return v;
    };
    o.json = args.Has("--json");
    if (args.Has("--format")) {
      const std::string f = absl::AsciiStrToLower(args.Get("--format"));
      if (f == "json") {
        o.format = logn::v1::EXPORT_FORMAT_JSON;
      } else if (f == "binary") {
        o.format = logn::v1::EXPORT_FORMAT_BINARY;
      } else {
        args.Fail("--format must be json or binary");
      }
    }
    if (action == "list") {
      expect_args(0, "no arguments");
      o.action = logn::cli::StatsAction::kList;
    } else if (action == "show") {
      expect_args(1, "VERSION|ALIAS");
      o.action = logn::cli::StatsAction::kShow;
      o.version = SelectorFromText(args, at(1));
      o.include_statistics = args.Has("--statistics");
    } else if (action == "activate") {
      expect_args(1, "VERSION");
      o.action = logn::cli::StatsAction::kActivate;
      o.version_number = version_number(at(1));
    } else if (action == "rollback") {
      expect_args(0, "no arguments");
      o.action = logn::cli::StatsAction::kRollback;
    } else if (action == "alias") {
      expect_args(2, "NAME VERSION");
      o.action = logn::cli::StatsAction::kAlias;
      o.alias = at(1);
      o.version_number = version_number(at(2));
    } else if (action == "delete") {
      expect_args(1, "VERSION");
      o.action = logn::cli::StatsAction::kDelete;
      o.version_number = version_number(at(1));
    } else if (action == "export") {
      expect_args(1, "VERSION|ALIAS");
      o.action = logn::cli::StatsAction::kExport;
      o.version = SelectorFromText(args, at(1));
      o.path = args.Get("--out");
    } else if (action == "import") {
      expect_args(1, "FILE");
      o.action = logn::cli::StatsAction::kImport;
      o.path = at(1);
      o.description = args.Get("--description");
      o.activate = args.Has("--activate");
    } else if (action == "merge") {
      if (pos.size() < 3) args.Fail("stats merge takes two or more VERSIONs");
      o.action = logn::cli::StatsAction::kMerge;
      for (size_t i = 1; i < pos.size(); ++i) o.merge_versions.push_back(version_number(pos[i]));
      o.description = args.Get("--description");
      o.job_id = args.Get("--job-id");
      o.activate = args.Has("--activate");
      o.partial = args.Has("--partial");
      if (o.partial && o.activate) args.Fail("a --partial merge cannot be --activate'd");
    } else if (action == "job") {
      expect_args(1, "JOB_ID");
      o.action = logn::cli::StatsAction::kJob;
      o.job_id = at(1);
    } else {
      args.Fail("unknown stats action '" + action + "'");
    }
    run = [o, io](logn::Client& c) { return logn::cli::RunStats(c, o, io); };
  } else if (command == "compare") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::CompareOptions o;
    o.gt_path = args.Required("--gt");
    o.images_dir = args.Required("--images");
    o.statistics = SelectorFlags(args);
    o.postprocess = PostprocessFlags(args);
    o.json = args.Has("--json");
    o.out_path = args.Get("--out");
    run = [o, io](logn::Client& c) { return logn::cli::RunCompare(c, o, io); };
  } else if (command == "info") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    run = [io](logn::Client& c) { return logn::cli::RunInfo(c, io); };
  } else if (command == "bench") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::BenchOptions o;
    const std::string dir = args.Required("--images");
    const std::string dataset = args.Get("--dataset");
    const int max_images = static_cast<int>(args.Int("--max-images", 256, 1, 1 << 20));
    if (args.Has("--concurrency")) {
      o.concurrency.clear();
      for (absl::string_view part : absl::StrSplit(args.Get("--concurrency"), ',')) {
        int c = 0;
        if (!absl::SimpleAtoi(part, &c) || c < 1 || c > 1024) {
          args.Fail("--concurrency takes a list of 1..1024, e.g. 1,4,8,16");
          break;
        }
        o.concurrency.push_back(c);
      }
    }
    o.request_rate = args.Double("--rate", 0, 0, 1e6);
    o.warmup = absl::Seconds(args.Double("--warmup", 2, 0, 3600));
    o.duration = absl::Seconds(args.Double("--duration", 10, 0.1, 86400));
    o.images_per_request = static_cast<int>(args.Int("--batch", 1, 1, 1024));
    o.csv_path = args.Get("--csv");
    o.json_path = args.Get("--json");
    *o.request_template.mutable_statistics() = SelectorFlags(args);
    *o.request_template.add_calibrations() = MethodFlag(args);
    *o.request_template.mutable_postprocess() = PostprocessFlags(args);
    run = [o, io, dir, dataset, max_images](logn::Client& c) mutable {
      absl::StatusOr<std::vector<std::string>> images =
          logn::cli::LoadBenchImages(dir, dataset, max_images);
      if (!images.ok()) return logn::cli::ReportError(io, "bench", images.status());
      o.images = *std::move(images);
      return logn::cli::RunBench(c, o, io);
    };
  } else if (command == "health") {
    if (!pos.empty()) args.Fail("unexpected argument '" + pos[0] + "'");
    logn::cli::HealthOptions o;
    o.service = args.Get("--service");
    run = [o, io](logn::Client& c) { return logn::cli::RunHealth(c, o, io); };
  }

  if (!args.error().empty()) return Usage(command, args.error());
  absl::StatusOr<std::unique_ptr<logn::Client>> client = logn::Client::Create(client_options);
  if (!client.ok()) return logn::cli::ReportError(io, command, client.status());
  return run(**client);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("", "missing COMMAND");
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainUsage;
    return kExitOk;
  }
  const std::map<std::string, CommandSpec> specs = Specs();
  auto spec = specs.find(command);
  if (spec == specs.end()) return Usage("", "unknown command '" + command + "'");
  Args args(spec->second);
  if (std::string reason = args.Parse(argc, argv, 2); !reason.empty()) {
    return Usage(command, reason);
  }
  if (args.help()) {
    std::cout << spec->second.usage;
    return kExitOk;
  }
  return Run(command, args);
}
