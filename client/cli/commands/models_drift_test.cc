// `logn models`, `logn drift` and the --model / --model-version flags: their parsing (through the
// registry entries), and the commands run against in-process fakes of ModelService and
// DriftService (what they send, what they print, --watch).
#include <any>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/cli/commands.h"
#include "client/cli/registry.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The command's options for `argv`, and its usage error ("" when none).
template <typename Options>
Options Parse(const Command& command, const std::vector<std::string>& argv,
              std::string* error = nullptr) {
  Args args(command.flags);
  EXPECT_EQ(args.Parse(argv), "") << ::testing::PrintToString(argv);
  std::any options = command.parse(args);
  if (error != nullptr) {
    *error = args.error();
  } else {
    EXPECT_EQ(args.error(), "") << ::testing::PrintToString(argv);
  }
  return std::any_cast<Options>(options);
}

template <typename Options>
std::string UsageError(const Command& command, const std::vector<std::string>& argv) {
  std::string error;
  Parse<Options>(command, argv, &error);
  return error;
}

// Every command whose requests concern one model version reads the same two flags.
TEST(ModelFlagsTest, EveryModelCommandTakesModelAndModelVersion) {
  const std::vector<std::string> flags = {"--model", "lvis", "--model-version", "3"};
  auto with = [&](std::vector<std::string> argv) {
    argv.insert(argv.end(), flags.begin(), flags.end());
    return argv;
  };
  auto expect = [](const ModelRef& model, const char* command) {
    EXPECT_EQ(model.name, "lvis") << command;
    EXPECT_EQ(model.version, 3) << command;
  };
  expect(Parse<DetectOptions>(DetectCommand(), with({"a.png"})).model, "detect");
  expect(Parse<CalibrateOptions>(CalibrateCommand(), with({"--logits", "x.npy"})).model,
         "calibrate");
  expect(Parse<ApplyOptions>(ApplyCommand(), with({"--logits", "x.npy", "--out", "o.npy"})).model,
         "apply");
  expect(Parse<CompareOptions>(CompareCommand(), with({"--gt", "g", "--images", "d"})).model,
         "compare");
  expect(Parse<TuneOptions>(TuneCommand(), with({"--gt", "g", "--images", "d"})).model, "tune");
  expect(Parse<InfoOptions>(InfoCommand(), with({})).model, "info");
  expect(Parse<DriftOptions>(DriftCommand(), with({})).model, "drift");
  expect(Parse<DriftOptions>(DriftCommand(), with({"snapshot"})).model, "drift snapshot");
  for (std::vector<std::string> action : {std::vector<std::string>{"list"},
                                          {"show", "2"},
                                          {"activate", "2"},
                                          {"rollback"},
                                          {"alias", "canary", "2"},
                                          {"delete", "2"},
                                          {"export", "2"},
                                          {"import", "f"},
                                          {"merge", "1", "2"},
                                          {"job", "j"},
                                          {"profile", "2", "--clear"}}) {
    expect(Parse<StatsOptions>(StatsCommand(), with(action)).model, action[0].c_str());
  }
  const BenchCommandOptions bench =
      Parse<BenchCommandOptions>(BenchCommand(), with({"--images", "d"}));
  EXPECT_EQ(bench.bench.request_template.model_name(), "lvis");
  EXPECT_EQ(bench.bench.request_template.model_version(), 3);
  // Unset: the server's choice.
  const DetectOptions plain = Parse<DetectOptions>(DetectCommand(), {"a.png"});
  EXPECT_EQ(plain.model.name, "");
  EXPECT_EQ(plain.model.version, 0);
  EXPECT_EQ(UsageError<InfoOptions>(InfoCommand(), {"--model-version", "-1"}),
            "--model-version must be a positive integer, got '-1'");
  EXPECT_EQ(UsageError<InfoOptions>(InfoCommand(), {"--model-version", "v2"}),
            "--model-version must be a positive integer, got 'v2'");
  EXPECT_EQ(UsageError<InfoOptions>(InfoCommand(), {"--model="}), "--model needs a name");
  // Commands that concern no model version do not take them.
  Args health(HealthCommand().flags);
  EXPECT_EQ(health.Parse({"--model-version", "1"}), "unknown flag --model-version");
}

TEST(StatsServedTrafficTest, ActivateAndAliasTakeAllowServedTraffic) {
  EXPECT_TRUE(Parse<StatsOptions>(StatsCommand(), {"activate", "4", "--allow-served-traffic"})
                  .allow_served_traffic);
  EXPECT_TRUE(Parse<StatsOptions>(StatsCommand(), {"alias", "x", "4", "--allow-served-traffic"})
                  .allow_served_traffic);
  EXPECT_FALSE(Parse<StatsOptions>(StatsCommand(), {"activate", "4"}).allow_served_traffic);
  EXPECT_EQ(Parse<StatsOptions>(StatsCommand(), {"list", "--source", "served"}).source,
            v1::VERSION_SOURCE_SERVED_TRAFFIC);
  EXPECT_EQ(UsageError<StatsOptions>(StatsCommand(), {"list", "--source", "x"}),
            "--source must be logits, images, merge, import or served");
}

TEST(ModelsCommandTest, ActionsAndArguments) {
  ModelsOptions o = Parse<ModelsOptions>(ModelsCommand(), {});
  EXPECT_EQ(o.action, ModelsAction::kList);
  EXPECT_EQ(o.model_name, "");
  o = Parse<ModelsOptions>(ModelsCommand(), {"list", "--model", "lvis", "--json"});
  EXPECT_EQ(o.action, ModelsAction::kList);
  EXPECT_EQ(o.model_name, "lvis");
  EXPECT_TRUE(o.json);
  o = Parse<ModelsOptions>(ModelsCommand(), {"load", "lvis", "3"});
  EXPECT_EQ(o.action, ModelsAction::kLoad);
  EXPECT_EQ(o.model_name, "lvis");
  EXPECT_EQ(o.model_version, 3);
  o = Parse<ModelsOptions>(ModelsCommand(), {"unload", "lvis", "1"});
  EXPECT_EQ(o.action, ModelsAction::kUnload);
  o = Parse<ModelsOptions>(ModelsCommand(), {"reload"});
  EXPECT_EQ(o.action, ModelsAction::kReload);
  EXPECT_EQ(o.model_name, "");
  EXPECT_EQ(o.model_version, 0);
  o = Parse<ModelsOptions>(ModelsCommand(), {"reload", "lvis", "2"});
  EXPECT_EQ(o.model_name, "lvis");
  EXPECT_EQ(o.model_version, 2);

  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"bogus"}, "unknown models action 'bogus' (list, load, unload, reload)"},
      {{"list", "x"}, "models list takes no arguments (--model NAME filters)"},
      {{"load", "lvis"}, "models load takes NAME VERSION"},
      {{"unload"}, "models unload takes NAME VERSION"},
      {{"reload", "a", "1", "2"}, "models reload takes [NAME [VERSION]]"},
      {{"load", "lvis", "0"}, "VERSION must be a positive integer, got '0'"},
      {{"load", "lvis", "x"}, "VERSION must be a positive integer, got 'x'"},
      {{"load", "lvis", "1", "--model", "m"}, "models load takes the model as NAME, not --model"},
  };
  for (const auto& [argv, expected] : cases) {
    EXPECT_EQ(UsageError<ModelsOptions>(ModelsCommand(), argv), expected)
        << ::testing::PrintToString(argv);
  }
}

TEST(DriftCommandTest, ReportWatchAndActions) {
  DriftOptions o = Parse<DriftOptions>(DriftCommand(), {});
  EXPECT_EQ(o.action, DriftAction::kReport);
  EXPECT_EQ(o.top_k, 0);
  EXPECT_FALSE(o.watch);
  o = Parse<DriftOptions>(DriftCommand(), {"--top-k", "5", "--watch", "--json"});
  EXPECT_EQ(o.top_k, 5);
  EXPECT_TRUE(o.watch);
  EXPECT_EQ(o.watch_interval, absl::Seconds(10)) << "--watch alone: every 10 s";
  EXPECT_TRUE(o.json);
  o = Parse<DriftOptions>(DriftCommand(), {"--watch", "2.5", "--watch-count", "3"});
  EXPECT_EQ(o.watch_interval, absl::Milliseconds(2500));
  EXPECT_EQ(o.watch_count, 3);
  o = Parse<DriftOptions>(DriftCommand(), {"--watch=1"});
  EXPECT_EQ(o.watch_interval, absl::Seconds(1));
  o = Parse<DriftOptions>(DriftCommand(), {"snapshot", "--description", "monday"});
  EXPECT_EQ(o.action, DriftAction::kSnapshot);
  EXPECT_EQ(o.description, "monday");
  o = Parse<DriftOptions>(DriftCommand(), {"reference", "--next-window"});
  EXPECT_EQ(o.action, DriftAction::kReference);
  EXPECT_TRUE(o.next_window);

  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"bogus"}, "unknown drift action 'bogus' (snapshot, reference)"},
      {{"snapshot", "x"}, "unexpected argument 'x'"},
      {{"--watch-count", "2"}, "--watch-count only applies with --watch"},
      {{"--watch", "0"}, "--watch must be a number in [0.1, 86400], got '0'"},
      {{"--top-k", "0"}, "--top-k must be an integer in [1, 1048576], got '0'"},
      {{"--next-window"},
       "--description and --next-window only apply to drift snapshot / drift reference"},
      {{"snapshot", "--watch"},
       "--top-k, --watch and --watch-count only apply to the drift report"},
      {{"snapshot", "--next-window"}, "--next-window only applies to drift reference"},
  };
  for (const auto& [argv, expected] : cases) {
    EXPECT_EQ(UsageError<DriftOptions>(DriftCommand(), argv), expected)
        << ::testing::PrintToString(argv);
  }
  // --watch takes only a number as its value: an action after it stays an action.
  Args args(DriftCommand().flags);
  ASSERT_EQ(args.Parse({"--watch", "reference"}), "");
  EXPECT_THAT(args.positional(), ::testing::ElementsAre("reference"));
}

constexpr char kAdminToken[] = "admin-t0ken";

// ModelService and DriftService doubles: record the last requests and the token, answer from
// fixed data.
class FakeModels final : public v1::ModelService::Service {
 public:
  grpc::Status LoadModel(grpc::ServerContext* context, const v1::LoadModelRequest* request,
                         v1::LoadModelResponse* response) override {
    absl::MutexLock lock(&mu);
    auto it = context->client_metadata().find("authorization");
    if (it == context->client_metadata().end() ||
        std::string(it->second.data(), it->second.size()) != absl::StrCat("Bearer ", kAdminToken)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "LoadModel needs the admin token");
    }
    last_load = *request;
    v1::ModelVersionStatus* s = response->mutable_model_version_status();
    s->set_model_name(request->model_name());
    s->set_model_version(request->model_version());
    const bool missing = request->model_version() == 99;
    s->set_state(missing ? v1::MODEL_VERSION_STATE_FAILED : v1::MODEL_VERSION_STATE_AVAILABLE);
    if (missing) s->set_reason("no file 99/model.pt");
    s->set_pinned(!missing);
    return grpc::Status::OK;
  }
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override {
    absl::MutexLock lock(&mu);
    last_list = *request;
    v1::ModelVersionStatus* s = response->add_model_versions();
    s->set_model_name("lvis");
    s->set_model_version(1);
    s->set_state(v1::MODEL_VERSION_STATE_AVAILABLE);
    s->set_is_default(true);
    return grpc::Status::OK;
  }
  absl::Mutex mu;
  v1::LoadModelRequest last_load ABSL_GUARDED_BY(mu);
  v1::ListModelsRequest last_list ABSL_GUARDED_BY(mu);
};

class FakeDrift final : public v1::DriftService::Service {
 public:
  grpc::Status GetDrift(grpc::ServerContext*, const v1::GetDriftRequest* request,
                        v1::GetDriftResponse* response) override {
    absl::MutexLock lock(&mu);
    ++reports;
    last_get = *request;
    response->set_model_name("lvis");
    response->set_model_version(request->model_version() ? request->model_version() : 4);
    response->set_state(v1::DRIFT_STATE_MONITORING);
    response->set_reference_version(7);
    response->set_classes_scored(reports);
    return grpc::Status::OK;
  }
  grpc::Status SnapshotLiveStatistics(grpc::ServerContext*,
                                      const v1::SnapshotLiveStatisticsRequest* request,
                                      v1::SnapshotLiveStatisticsResponse* response) override {
    v1::StatisticsVersion* v = response->mutable_statistics_version();
    v->set_version(8);
    v->set_source(v1::VERSION_SOURCE_SERVED_TRAFFIC);
    v->set_description(request->description());
    v->mutable_model()->set_name("lvis");
    return grpc::Status::OK;
  }
  absl::Mutex mu;
  int reports ABSL_GUARDED_BY(mu) = 0;
  v1::GetDriftRequest last_get ABSL_GUARDED_BY(mu);
};

class ModelsDriftRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LOGN_SERVER");
    unsetenv("LOGN_TOKEN");
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&models_);
    builder.RegisterService(&drift_);
    server_ = builder.BuildAndStart();
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs `logn ARGV --server ADDRESS` with stdout a terminal or not.
  int Run(std::vector<std::string> argv, bool terminal = false) {
    argv.insert(argv.end(), {"--server", address_});
    std::ostringstream out, err;
    const int exit = RunCommandLine(Commands(), argv, Io{&out, &err, terminal});
    out_ = out.str();
    err_ = err.str();
    return exit;
  }

  FakeModels models_;
  FakeDrift drift_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_, out_, err_;
};

TEST_F(ModelsDriftRunTest, DriftWatchPrintsSuccessiveReportsOffATerminal) {
  ASSERT_EQ(Run({"drift", "--model", "lvis", "--model-version", "2", "--top-k", "3", "--watch",
                 "0.1", "--watch-count", "2"}),
            kExitOk)
      << err_;
  {
    absl::MutexLock lock(&drift_.mu);
    EXPECT_EQ(drift_.reports, 2);
    EXPECT_EQ(drift_.last_get.model_name(), "lvis");
    EXPECT_EQ(drift_.last_get.model_version(), 2);
    EXPECT_EQ(drift_.last_get.top_k(), 3);
  }
  const std::vector<std::string> reports = absl::StrSplit(out_, "\n\nat ");
  ASSERT_EQ(reports.size(), 2u) << out_;
  EXPECT_THAT(reports[0], StartsWith("at "));
  EXPECT_THAT(reports[0], HasSubstr(", every 100ms (Ctrl-C stops)\n"
                                    "model lvis version 2: drift monitoring\n"));
  EXPECT_THAT(reports[0], HasSubstr("\nclasses scored 1 "));
  EXPECT_THAT(reports[1], HasSubstr("\nclasses scored 2 "));
  EXPECT_THAT(out_, Not(HasSubstr("\x1b[")));
}

TEST_F(ModelsDriftRunTest, DriftWatchClearsATerminalAndJsonIsOneLineEach) {
  ASSERT_EQ(Run({"drift", "--watch", "0.1", "--watch-count", "2"}, /*terminal=*/true), kExitOk);
  EXPECT_THAT(out_, StartsWith("\x1b[H\x1b[2Jat "));
  const std::vector<std::string> screens = absl::StrSplit(out_, "\x1b[H\x1b[2J");
  EXPECT_EQ(screens.size(), 3u) << "each report replaces the last";
  EXPECT_THAT(screens[2], StartsWith("at "));
  ASSERT_EQ(Run({"drift", "--json", "--watch", "0.1", "--watch-count", "2"}), kExitOk);
  const std::vector<std::string> lines = absl::StrSplit(out_, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out_;
  EXPECT_THAT(lines[0], StartsWith("{\"model_name\":\"lvis\",\"model_version\":\"4\""));
  // One report without --watch: no time line.
  ASSERT_EQ(Run({"drift"}), kExitOk);
  EXPECT_THAT(out_, StartsWith("model lvis version 4: drift monitoring\n"));
}

TEST_F(ModelsDriftRunTest, DriftSnapshotPrintsTheVersionAsStatsShow) {
  ASSERT_EQ(Run({"drift", "snapshot", "--description", "monday"}), kExitOk) << err_;
  EXPECT_THAT(out_, StartsWith("version  created"));
  EXPECT_THAT(out_, HasSubstr("  served   -                 monday\n"));
  EXPECT_THAT(out_, HasSubstr("\nserved traffic: logits of served Detect requests"));
}

TEST_F(ModelsDriftRunTest, ModelsLoadSendsTheAdminTokenAndFailsOnAFailedLoad) {
  EXPECT_EQ(Run({"models", "load", "lvis", "3"}), kExitError);
  EXPECT_EQ(err_, "logn models load: UNAUTHENTICATED: LoadModel needs the admin token\n");
  ASSERT_EQ(Run({"models", "load", "lvis", "3", "--token", kAdminToken}), kExitOk) << err_;
  {
    absl::MutexLock lock(&models_.mu);
    EXPECT_EQ(models_.last_load.model_name(), "lvis");
    EXPECT_EQ(models_.last_load.model_version(), 3);
  }
  EXPECT_THAT(out_, HasSubstr("\nlvis         3  available"));
  EXPECT_THAT(out_, HasSubstr("pinned (loaded by LoadModel)\n"));
  EXPECT_EQ(Run({"models", "load", "lvis", "99", "--token", kAdminToken}), kExitError);
  EXPECT_EQ(err_, "logn models load: model lvis version 99 failed to load: no file 99/model.pt\n");
  EXPECT_THAT(out_, HasSubstr("  failed  ")) << "the row is printed too";
}

TEST_F(ModelsDriftRunTest, ModelsListsWithTheFilter) {
  ASSERT_EQ(Run({"models", "--model", "lvis"}), kExitOk) << err_;
  {
    absl::MutexLock lock(&models_.mu);
    EXPECT_EQ(models_.last_list.model_name(), "lvis");
  }
  EXPECT_THAT(out_, StartsWith("model  version  state      default"));
  EXPECT_THAT(out_, HasSubstr("\nlvis         1  available  *  "));
  ASSERT_EQ(Run({"models", "--json"}), kExitOk);
  EXPECT_THAT(out_, StartsWith("{\"model_versions\":[{\"model_name\":\"lvis\""));
}

}  // namespace
}  // namespace logn::cli
