// The commands' flag parsing (through their registry entries) and the logic that runs before
// any RPC; the commands against a live server are client/testing/cli_e2e_test.py.
#include "client/cli/commands.h"

#include <any>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "client/cli/logits_file.h"
#include "client/cli/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The command's options for `argv` (after its name), and the usage error if any.
template <typename Options>
Options ParseAs(const Command& command, const std::vector<std::string>& argv,
                std::string* error = nullptr) {
  Args args(command.flags);
  EXPECT_EQ(args.Parse(argv), "");
  std::any options = command.parse(args);
  if (error != nullptr) {
    *error = args.error();
  } else {
    EXPECT_EQ(args.error(), "");
  }
  return std::any_cast<Options>(options);
}

template <typename Options>
std::string UsageError(const Command& command, const std::vector<std::string>& argv) {
  std::string error;
  ParseAs<Options>(command, argv, &error);
  return error;
}

// Arguments of a command and the usage error they must give.
struct UsageCase {
  std::vector<std::string> argv;
  std::string error;
};

template <typename Options>
void ExpectUsageErrors(const Command& command, const std::vector<UsageCase>& cases) {
  for (const UsageCase& c : cases) {
    EXPECT_EQ(UsageError<Options>(command, c.argv), c.error)
        << command.name << " " << ::testing::PrintToString(c.argv);
  }
}

TEST(DetectCommandTest, Flags) {
  const DetectOptions o = ParseAs<DetectOptions>(
      DetectCommand(), {"a.png", "b.png", "--batch", "2", "--stream", "--alias", "canary",
                        "--method", "none", "--lvis-results", "r.json", "--gt", "g.json"});
  EXPECT_THAT(o.images, ElementsAre("a.png", "b.png"));
  EXPECT_EQ(o.images_per_request, 2);
  EXPECT_TRUE(o.stream);
  EXPECT_EQ(o.selector.alias(), "canary");
  EXPECT_EQ(o.setting.calibration_method(), v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(o.lvis_results_path, "r.json");
  EXPECT_EQ(o.gt_path, "g.json");
  EXPECT_EQ(UsageError<DetectOptions>(DetectCommand(), {}), "no IMAGE given");
  EXPECT_EQ(UsageError<DetectOptions>(DetectCommand(), {"a.png", "--gt", "g.json"}),
            "--gt only applies with --lvis-results");
}

TEST(CalibrateCommandTest, JobFlags) {
  const CalibrateOptions o = ParseAs<CalibrateOptions>(
      CalibrateCommand(),
      {"--logits", "x.npy", "--shard", "1/3", "--partial", "--job-id", "j", "--resume",
       "--checkpoint-every", "5", "--ema", "0.5", "--ema-init", "canary", "--batch-rows", "100"});
  EXPECT_EQ(o.logits_path, "x.npy");
  EXPECT_EQ(o.shard_index, 1);
  EXPECT_EQ(o.shard_count, 3);
  EXPECT_TRUE(o.partial);
  EXPECT_TRUE(o.resume);
  EXPECT_EQ(o.checkpoint_every, 5);
  EXPECT_EQ(o.ema_momentum, 0.5);
  ASSERT_TRUE(o.ema_init.has_value());
  EXPECT_EQ(o.ema_init->alias(), "canary");
  EXPECT_EQ(o.rows_per_batch, 100);
  // 0 on the command line is "never" (-1); without the flag, the server's default (0).
  EXPECT_EQ(ParseAs<CalibrateOptions>(CalibrateCommand(), {"--logits", "x.npy", "--job-id", "j",
                                                           "--checkpoint-every", "0"})
                .checkpoint_every,
            -1);
  EXPECT_EQ(ParseAs<CalibrateOptions>(CalibrateCommand(), {"--logits", "x.npy"}).checkpoint_every,
            0);
}

TEST(CalibrateCommandTest, UsageErrors) {
  ExpectUsageErrors<CalibrateOptions>(
      CalibrateCommand(),
      {
          {{}, "give exactly one of --dataset or --logits"},
          {{"--dataset", "t.json", "--logits", "x.npy"},
           "give exactly one of --dataset or --logits"},
          {{"--dataset", "t.json"}, "--dataset needs --images DIR"},
          {{"--logits", "x.npy", "--images", "d"}, "--images only applies with --dataset"},
          {{"--logits", "x.f32"}, "raw logits file needs --width (or use a .npy file)"},
          {{"--logits", "x.npy", "--ema", "0"}, "--ema momentum must be in (0, 1]"},
          {{"--logits", "x.npy", "--ema-init", "2"}, "--ema-init only applies with --ema"},
          {{"--logits", "x.npy", "--shard", "3/3"}, "--shard takes I/N with 0 <= I < N, got '3/3'"},
          {{"--logits", "x.npy", "--shard", "1"}, "--shard takes I/N with 0 <= I < N, got '1'"},
          {{"--logits", "x.npy", "--partial", "--activate"},
           "--partial versions cannot be --activate'd"},
          {{"--logits", "x.npy", "--resume"}, "--resume and --checkpoint-every need --job-id"},
          {{"--logits", "x.npy", "--checkpoint-every", "3"},
           "--resume and --checkpoint-every need --job-id"},
      });
}

// A logits file of `rows` x 6 zeros.
std::string LogitsFile(const std::string& name, int64_t rows) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
  const std::vector<float> zeros(static_cast<size_t>(rows) * 6, 0.0f);
  EXPECT_TRUE(WriteLogitsFile(path, zeros.data(), rows, 6).ok());
  return path;
}

int RunLine(const std::vector<std::string>& argv, std::string* err) {
  std::ostringstream out, errors;
  const int exit = RunCommandLine(Commands(), argv, Io{&out, &errors, false});
  *err = errors.str();
  return exit;
}

TEST(CalibrateCommandTest, InputErrorsBeforeAnyRpc) {
  // Nothing listens on the address: these fail before the first call would.
  std::string err;
  const std::string npy = LogitsFile("ten_rows.npy", 10);
  EXPECT_EQ(
      RunLine({"calibrate", "--server", "127.0.0.1:1", "--logits", npy, "--shard", "0/11"}, &err),
      kExitError);
  EXPECT_EQ(err,
            "logn calibrate: INVALID_ARGUMENT: shard 0/11 of 10 rows is empty: use fewer "
            "shards\n");
  EXPECT_EQ(RunLine({"calibrate", "--server", "127.0.0.1:1", "--logits", "/nonexistent.npy"}, &err),
            kExitError);
  EXPECT_THAT(err, HasSubstr("logn calibrate: NOT_FOUND: cannot open '/nonexistent.npy'"));
}

TEST(ApplyCommandTest, FlagsAndUsageErrors) {
  const ApplyOptions o = ParseAs<ApplyOptions>(
      ApplyCommand(), {"--logits", "x.f32", "--width", "6", "--out", "o.f32", "--scores-out",
                       "s.npy", "--version", "2", "--method", "loga"});
  EXPECT_EQ(o.width, 6);
  EXPECT_EQ(o.scores_path, "s.npy");
  EXPECT_EQ(o.selector.version(), 2);
  EXPECT_EQ(o.setting.calibration_method(), v1::CALIBRATION_METHOD_LOGA);
  EXPECT_EQ(UsageError<ApplyOptions>(ApplyCommand(), {"--logits", "x.npy"}), "--out is required");
  EXPECT_EQ(UsageError<ApplyOptions>(ApplyCommand(), {"--logits", "x.f32", "--out", "o"}),
            "raw logits file needs --width (or use a .npy file)");
}

TEST(StatsCommandTest, ActionsAndTheirArguments) {
  StatsOptions o = ParseAs<StatsOptions>(StatsCommand(), {"alias", "canary", "3"});
  EXPECT_EQ(o.action, StatsAction::kAlias);
  EXPECT_EQ(o.alias, "canary");
  EXPECT_EQ(o.version_number, 3);
  o = ParseAs<StatsOptions>(StatsCommand(), {"show", "canary", "--statistics", "--json"});
  EXPECT_EQ(o.action, StatsAction::kShow);
  EXPECT_EQ(o.selector.alias(), "canary");
  EXPECT_TRUE(o.include_statistics);
  EXPECT_TRUE(o.json);
  o = ParseAs<StatsOptions>(StatsCommand(), {"export", "2", "--format", "BINARY", "--out", "f"});
  EXPECT_EQ(o.action, StatsAction::kExport);
  EXPECT_EQ(o.selector.version(), 2);
  EXPECT_EQ(o.export_format, v1::EXPORT_FORMAT_BINARY);
  EXPECT_EQ(o.out_path, "f");
  o = ParseAs<StatsOptions>(StatsCommand(), {"merge", "1", "2", "3", "--partial", "--job-id", "m"});
  EXPECT_EQ(o.action, StatsAction::kMerge);
  EXPECT_THAT(o.merge_versions, ElementsAre(1, 2, 3));
  EXPECT_TRUE(o.partial);
  EXPECT_EQ(o.job_id, "m");
  o = ParseAs<StatsOptions>(StatsCommand(), {"job", "j-1", "--job-id", "ignored"});
  EXPECT_EQ(o.action, StatsAction::kJob);
  EXPECT_EQ(o.job_id, "j-1") << "the positional JOB_ID";
  o = ParseAs<StatsOptions>(StatsCommand(), {"import", "v.json", "--activate"});
  EXPECT_EQ(o.path, "v.json");
  EXPECT_TRUE(o.activate);
}

TEST(StatsCommandTest, ListFilters) {
  StatsOptions o = ParseAs<StatsOptions>(StatsCommand(), {"list"});
  EXPECT_EQ(o.action, StatsAction::kList);
  EXPECT_FALSE(o.job_id.has_value());
  EXPECT_FALSE(o.source.has_value());
  EXPECT_FALSE(o.partial);
  EXPECT_FALSE(o.complete);
  o = ParseAs<StatsOptions>(StatsCommand(),
                            {"list", "--job-id", "j", "--source", "Images", "--complete"});
  EXPECT_EQ(o.job_id, "j");
  EXPECT_EQ(o.source, v1::VERSION_SOURCE_IMAGES);
  EXPECT_TRUE(o.complete);
  o = ParseAs<StatsOptions>(StatsCommand(), {"list", "--job-id=", "--partial"});
  EXPECT_EQ(o.job_id, "") << "set but empty: the versions without a job id";
  EXPECT_TRUE(o.partial);
}

TEST(StatsCommandTest, UsageErrors) {
  ExpectUsageErrors<StatsOptions>(
      StatsCommand(),
      {
          {{}, "missing ACTION (list, show, activate, ...)"},
          {{"bogus"}, "unknown stats action 'bogus'"},
          {{"list", "x"}, "stats list takes no arguments"},
          {{"show"}, "stats show takes VERSION|ALIAS"},
          {{"activate", "abc"}, "VERSION must be a positive integer, got 'abc'"},
          {{"alias", "x"}, "stats alias takes NAME VERSION"},
          {{"delete", "-3"}, "VERSION must be a positive integer, got '-3'"},
          {{"export", "1", "--format", "xml"}, "--format must be json or binary"},
          {{"bogus", "--format", "xml"}, "--format must be json or binary"},
          {{"import", "v.json", "--format", "binary"},
           "stats import takes no --format: the server detects it from the file's content"},
          {{"list", "--source", "unspecified"},
           "--source must be logits, images, merge, import or served"},
          {{"list", "--partial", "--complete"}, "--partial and --complete are exclusive"},
          {{"merge", "1"}, "stats merge takes two or more VERSIONs"},
          {{"merge", "1", "2", "--partial", "--activate"},
           "a --partial merge cannot be --activate'd"},
          {{"job", "a", "b"}, "stats job takes JOB_ID"},
      });
}

TEST(StatsCommandTest, MissingActionIsTheErrorEvenWithoutAServer) {
  unsetenv("LOGN_SERVER");
  std::string err;
  EXPECT_EQ(RunLine({"stats"}, &err), kExitUsage);
  EXPECT_EQ(err, "logn stats: missing ACTION (list, show, activate, ...) (see --help)\n");
  EXPECT_EQ(RunLine({"stats", "list"}, &err), kExitUsage);
  EXPECT_EQ(err, "logn stats: --server is required (see --help)\n");
}

TEST(StatsCommandTest, HelpListsEveryAction) {
  const std::string usage = StatsCommand().usage;
  for (const char* action : {"list", "show", "activate", "rollback", "alias", "delete", "export",
                             "import", "merge", "job"}) {
    EXPECT_THAT(usage, HasSubstr(std::string("\n  ") + action + " ")) << action;
  }
}

TEST(BenchCommandTest, Flags) {
  const BenchCommandOptions o = ParseAs<BenchCommandOptions>(
      BenchCommand(), {"--images", "d", "--concurrency", "1,2,8", "--rate", "20", "--batch", "3",
                       "--method", "none", "--max-images", "5"});
  EXPECT_EQ(o.images_dir, "d");
  EXPECT_EQ(o.max_images, 5);
  EXPECT_THAT(o.bench.concurrency, ElementsAre(1, 2, 8));
  EXPECT_EQ(o.bench.request_rate, 20);
  EXPECT_EQ(o.bench.images_per_request, 3);
  EXPECT_EQ(o.bench.request_template.calibrations(0).calibration_method(),
            v1::CALIBRATION_METHOD_NONE);
  EXPECT_THAT(ParseAs<BenchCommandOptions>(BenchCommand(), {"--images", "d"}).bench.concurrency,
              ElementsAre(1, 4, 8, 16));
  EXPECT_EQ(
      UsageError<BenchCommandOptions>(BenchCommand(), {"--images", "d", "--concurrency", "1,0"}),
      "--concurrency takes a list of 1..1024, e.g. 1,4,8,16");
  EXPECT_EQ(UsageError<BenchCommandOptions>(BenchCommand(), {}), "--images is required");
}

TEST(OtherCommandsTest, EvalCompareHealth) {
  const EvalOptions e =
      ParseAs<EvalOptions>(EvalCommand(), {"--gt", "g.json", "--dt", "d.json", "--per-class"});
  EXPECT_EQ(e.gt_path, "g.json");
  EXPECT_EQ(e.dt_path, "d.json");
  EXPECT_TRUE(e.per_class);
  EXPECT_FALSE(e.json);
  EXPECT_EQ(UsageError<EvalOptions>(EvalCommand(), {"--gt", "g.json"}), "--dt is required");
  const CompareOptions c = ParseAs<CompareOptions>(
      CompareCommand(), {"--gt", "v.json", "--images", "d", "--max-detections", "9", "--out", "o"});
  EXPECT_EQ(c.postprocess.max_detections(), 9);
  EXPECT_EQ(c.out_path, "o");
  EXPECT_EQ(ParseAs<HealthOptions>(HealthCommand(), {"--service", "s"}).service, "s");
}

TEST(CompareSettingsTest, ThePapersTablesInOrder) {
  std::vector<std::string> names;
  const std::vector<v1::CalibrationSetting> settings = CompareSettings(/*include_loga=*/true);
  for (const auto& s : settings) names.push_back(s.name());
  EXPECT_THAT(names,
              ElementsAre("none", "loga", "bn", "logn", "default", "t2:-", "t2:mu", "t2:sigma",
                          "t2:beta", "t2:mu+sigma+beta", "t3:const-4", "t3:const-12", "t3:background_mean",
                          "t3:max_fg_mean", "t3:avg_fg_mean", "t3:min_fg_mean"));
  EXPECT_EQ(settings[1].calibration_method(), v1::CALIBRATION_METHOD_LOGA);
  EXPECT_FALSE(settings[2].logn().use_beta());
  EXPECT_TRUE(settings[2].logn().normalize_background());
  EXPECT_EQ(settings[4].calibration_method(), v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  EXPECT_EQ(settings[10].logn().beta_constant(), -4);
  EXPECT_EQ(CompareSettings(/*include_loga=*/false).size(), settings.size() - 1);
  EXPECT_EQ(CompareSettings(false)[1].name(), "bn");
}

}  // namespace
}  // namespace logn::cli
