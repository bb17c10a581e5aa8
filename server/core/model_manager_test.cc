// The model repository through ServerCore: versions swapped under concurrent Detect load with
// no failed request, failed versions reported, in-flight requests keeping a retired version
// alive, two models with their own statistics, the missing-statistics policy, memory returned.
#include "server/core/model_manager.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/model_repository.h"
#include "server/core/proto_convert.h"
#include "server/core/server_core.h"
#include "server/core/testing/test_inputs.h"

namespace logn {
namespace {

namespace fs = std::filesystem;
using core_testing::ContractModelPath;
using core_testing::SyntheticPng;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteAll(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// Resident set size of this process, in bytes.
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

class ModelRepositoryTest : public ::testing::Test {
 public:
  static v1::DetectRequest DetectNone(const std::string& model, int64_t version = 0) {
    v1::DetectRequest request;
    request.set_model_name(model);
    request.set_model_version(version);
    v1::Image* image = request.add_images();
    image->set_encoded(SyntheticPng(48, 64, 7));
    request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
    return request;
  }

 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("model_repository_test_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "repo");
  }
  void TearDown() override {
    core_.reset();
    fs::remove_all(dir_);
  }

  // Puts the contract model `source` in the repository as `name` version `version` (its
  // manifest renamed to match).
  void AddVersion(const std::string& name, int64_t version,
                  const std::string& source = "contract_agnostic") {
    const fs::path target = dir_ / "repo" / name / std::to_string(version);
    fs::create_directories(target);
    fs::copy_file(ContractModelPath(source), target / "model.pt",
                  fs::copy_options::overwrite_existing);
    std::string manifest = ReadAll(ContractModelPath(source).substr(
                                       0, ContractModelPath(source).size() - 3) +
                                   ".json");
    manifest = absl::StrReplaceAll(
        manifest, {{absl::StrCat("\"name\": \"", source, "\""), absl::StrCat("\"name\": \"", name,
                                                                            "\"")}});
    WriteAll(target / "model.json", manifest);
  }

  void StartCore(absl::Duration poll = absl::ZeroDuration()) {
    ServerCoreOptions options;
    options.model_repository = (dir_ / "repo").string();
    options.repository_poll_interval = poll;
    options.runtime.intra_op_threads = 1;
    options.runtime.optimize_for_inference = false;
    options.store_url = "sqlite://" + (dir_ / "stats.db").string();
    options.max_images_per_request = 4;
    options.drift.sample_rate = 0;
    auto core = ServerCore::Create(options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
  }

  std::vector<ModelVersionInfo> Listed(const std::string& name) {
    auto listed = core_->models().List(name);
    EXPECT_TRUE(listed.ok()) << listed.status();
    return listed.ok() ? *listed : std::vector<ModelVersionInfo>{};
  }

  fs::path dir_;
  std::unique_ptr<ServerCore> core_;
};

// Eight threads of Detect while versions come and go: every request succeeds.
class DetectLoad {
 public:
  DetectLoad(ServerCore* core, const std::string& model) {
    for (int t = 0; t < 8; ++t) {
      threads_.emplace_back([this, core, model] {
        const v1::DetectRequest request = ModelRepositoryTest::DetectNone(model);
        while (!stop_.load()) {
          v1::DetectResponse response;
          const absl::Status status = core->Detect(request, &response);
          absl::MutexLock lock(&mu_);
          ++requests_;
          if (!status.ok()) {
            failures_.push_back(std::string(status.ToString()));
          } else {
            served_by_.insert(response.model_version());
            last_version_ = response.model_version();
          }
        }
      });
    }
  }
  ~DetectLoad() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Waits until `n` more requests have finished.
  void WaitRequests(int64_t n) {
    const int64_t target = requests() + n;
    while (requests() < target) absl::SleepFor(absl::Milliseconds(5));
  }
  int64_t requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  std::vector<std::string> failures() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }
  std::set<int64_t> served_by() {
    absl::MutexLock lock(&mu_);
    return served_by_;
  }
  int64_t last_version() {
    absl::MutexLock lock(&mu_);
    return last_version_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> served_by_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ModelRepositoryTest, SwapsVersionsUnderLoadWithoutAFailedRequest) {
  AddVersion("detector", 1);
  StartCore();
  DetectLoad load(core_.get(), "detector");
  load.WaitRequests(40);

  // Version 2 appears: loaded and warmed, then the default.
  AddVersion("detector", 2, "contract_specific");
  ASSERT_TRUE(core_->models().Sync().ok());
  load.WaitRequests(40);
  EXPECT_EQ(load.last_version(), 2);
  std::vector<ModelVersionInfo> listed = Listed("detector");
  ASSERT_EQ(listed.size(), 1u) << "latest-1 retires version 1 once 2 is available";
  EXPECT_EQ(listed[0].version, 2);
  EXPECT_TRUE(listed[0].is_default);

  // A corrupt version 3: reported FAILED with its reason, version 2 keeps serving.
  fs::create_directories(dir_ / "repo" / "detector" / "3");
  WriteAll(dir_ / "repo" / "detector" / "3" / "model.pt", "not a TorchScript archive");
  fs::copy_file(dir_ / "repo" / "detector" / "2" / "model.json",
                dir_ / "repo" / "detector" / "3" / "model.json");
  ASSERT_TRUE(core_->models().Sync().ok());
  load.WaitRequests(40);
  listed = Listed("detector");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].version, 2);
  EXPECT_EQ(listed[0].state, v1::MODEL_VERSION_STATE_AVAILABLE);
  EXPECT_TRUE(listed[0].is_default);
  EXPECT_EQ(listed[1].version, 3);
  EXPECT_EQ(listed[1].state, v1::MODEL_VERSION_STATE_FAILED);
  EXPECT_THAT(listed[1].reason, HasSubstr("cannot load TorchScript model"));
  // The failure is remembered: the next scan does not retry the same files.
  ASSERT_TRUE(core_->models().Sync().ok());
  EXPECT_EQ(Listed("detector")[1].state, v1::MODEL_VERSION_STATE_FAILED);

  load.Stop();
  EXPECT_THAT(load.failures(), ::testing::IsEmpty());
  EXPECT_EQ(load.served_by(), (std::set<int64_t>{1, 2}));
  EXPECT_GE(load.requests(), 120);
}

TEST_F(ModelRepositoryTest, RetiredVersionFinishesItsInFlightRequestsFirst) {
  AddVersion("detector", 1);
  AddVersion("detector", 2);
  fs::create_directories(dir_ / "repo" / "detector");
  WriteAll(dir_ / "repo" / "detector" / "model_config.json",
           R"({"versionPolicy": {"all": {}}})");
  StartCore();
  ASSERT_EQ(Listed("detector").size(), 2u);
  // A request in flight on version 1 holds it.
  auto in_flight = core_->models().Resolve("detector", 1);
  ASSERT_TRUE(in_flight.ok()) << in_flight.status();
  fs::remove_all(dir_ / "repo" / "detector" / "1");
  ASSERT_TRUE(core_->models().Sync().ok());
  std::vector<ModelVersionInfo> listed = Listed("detector");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].version, 1);
  EXPECT_EQ(listed[0].state, v1::MODEL_VERSION_STATE_UNLOADING);
  // New requests for it are refused; the held one still runs.
  EXPECT_EQ(core_->models().Resolve("detector", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*in_flight)->runtime().manifest().name(), "detector");
  listed.clear();  // holds the version too
  in_flight->reset();
  ASSERT_TRUE(core_->models().Sync().ok());
  listed = Listed("detector");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].version, 2);
}

TEST_F(ModelRepositoryTest, AdminLoadUnloadAndReload) {
  AddVersion("detector", 1);
  AddVersion("detector", 2);
  StartCore();
  ASSERT_EQ(Listed("detector").size(), 1u);
  // Load pins version 1 beside the policy's version 2.
  v1::LoadModelRequest load;
  load.set_model_name("detector");
  load.set_model_version(1);
  v1::LoadModelResponse loaded;
  ASSERT_TRUE(core_->LoadModel(load, &loaded).ok());
  EXPECT_EQ(loaded.model_version_status().state(), v1::MODEL_VERSION_STATE_AVAILABLE);
  EXPECT_TRUE(loaded.model_version_status().pinned());
  ASSERT_TRUE(core_->models().Sync().ok());
  EXPECT_EQ(Listed("detector").size(), 2u) << "a pinned version survives the policy";
  v1::DetectResponse response;
  ASSERT_TRUE(core_->Detect(DetectNone("detector", 1), &response).ok());
  EXPECT_EQ(response.model_version(), 1);

  // Unload the default version 2: requests naming no version go to 1.
  v1::UnloadModelRequest unload;
  unload.set_model_name("detector");
  unload.set_model_version(2);
  v1::UnloadModelResponse unloaded;
  ASSERT_TRUE(core_->UnloadModel(unload, &unloaded).ok());
  ASSERT_TRUE(core_->models().Sync().ok());
  ASSERT_TRUE(core_->Detect(DetectNone("detector"), &response).ok());
  EXPECT_EQ(response.model_version(), 1);
  // The last available version cannot be unloaded.
  unload.set_model_version(1);
  EXPECT_EQ(core_->UnloadModel(unload, &unloaded).code(), absl::StatusCode::kFailedPrecondition);
  // Errors a user can act on.
  load.set_model_version(9);
  EXPECT_EQ(core_->LoadModel(load, &loaded).code(), absl::StatusCode::kNotFound);
  load.set_model_name("nope");
  EXPECT_EQ(core_->LoadModel(load, &loaded).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->Detect(DetectNone("detector", 7), &response).code(),
            absl::StatusCode::kNotFound);

  // Reload clears the pins: back to the policy (version 2 only).
  v1::ReloadModelsRequest reload;
  v1::ReloadModelsResponse reloaded;
  ASSERT_TRUE(core_->ReloadModels(reload, &reloaded).ok());
  ASSERT_TRUE(core_->Detect(DetectNone("detector"), &response).ok());
  EXPECT_EQ(response.model_version(), 2);
}

TEST_F(ModelRepositoryTest, ManifestNameMustMatchTheDirectory) {
  AddVersion("detector", 1);
  AddVersion("other", 1);
  fs::rename(dir_ / "repo" / "other" / "1" / "model.json", dir_ / "tmp.json");
  fs::copy_file(dir_ / "repo" / "detector" / "1" / "model.json",
                dir_ / "repo" / "other" / "1" / "model.json");
  StartCore();
  const std::vector<ModelVersionInfo> listed = Listed("other");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].state, v1::MODEL_VERSION_STATE_FAILED);
  EXPECT_THAT(listed[0].reason, HasSubstr("names model 'detector'"));
  v1::DetectResponse response;
  EXPECT_EQ(core_->Detect(DetectNone("other"), &response).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ModelRepositoryTest, TwoModelsKeepTheirOwnStatistics) {
  AddVersion("alpha", 1);
  AddVersion("beta", 1);
  fs::create_directories(dir_ / "repo" / "beta");
  WriteAll(dir_ / "repo" / "beta" / "model_config.json",
           R"({"missingStatistics": "MISSING_STATISTICS_ACTION_FALLBACK",
               "fallbackMethod": "CALIBRATION_METHOD_NONE"})");
  StartCore();
  // Without a name, a request is ambiguous.
  v1::DetectResponse response;
  EXPECT_EQ(core_->Detect(DetectNone(""), &response).code(), absl::StatusCode::kInvalidArgument);

  // Statistics for alpha only.
  v1::CalibrateHeader header;
  header.set_model_name("alpha");
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  header.set_activate(true);
  auto job = core_->StartCalibration(header);
  ASSERT_TRUE(job.ok()) << job.status();
  const int32_t width = 6;  // 5 classes + background
  std::vector<float> rows(64 * width);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>((i * 7919) % 13) - 6.0f;
  v1::LogitBatch batch;
  LogitsToProto(rows, 64, width, &batch);
  ASSERT_TRUE((*job)->AddLogits(batch).ok());
  ASSERT_TRUE((*job)->Commit().ok());

  v1::DetectRequest logn = DetectNone("alpha");
  logn.mutable_calibrations(0)->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  ASSERT_TRUE(core_->Detect(logn, &response).ok());
  EXPECT_EQ(response.version(), 1);
  // beta never sees alpha's statistics: LogN asked explicitly fails, the default falls back.
  logn.set_model_name("beta");
  EXPECT_EQ(core_->Detect(logn, &response).code(), absl::StatusCode::kFailedPrecondition);
  v1::DetectRequest by_default = DetectNone("beta");
  by_default.mutable_calibrations(0)->set_calibration_method(
      v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  response.Clear();  // Detect appends to its response, as a fresh gRPC one
  const absl::Status fell_back = core_->Detect(by_default, &response);
  ASSERT_TRUE(fell_back.ok()) << fell_back;
  EXPECT_TRUE(response.calibration_fallback());
  EXPECT_EQ(response.version(), 0);
  EXPECT_EQ(response.results(0).setting().calibration_method(), v1::CALIBRATION_METHOD_NONE);
  // An empty selector (what older clients always send) means "active" too: still a fallback.
  by_default.mutable_selector();
  response.Clear();
  ASSERT_TRUE(core_->Detect(by_default, &response).ok());
  EXPECT_TRUE(response.calibration_fallback());
  // A selector naming a version is explicit: no fallback.
  by_default.mutable_selector()->set_version(1);
  EXPECT_EQ(core_->Detect(by_default, &response).code(), absl::StatusCode::kNotFound);
  by_default.clear_selector();
  // alpha's policy refuses: its default without statistics would fail (it has them: served).
  by_default.set_model_name("alpha");
  ASSERT_TRUE(core_->Detect(by_default, &response).ok());
  EXPECT_FALSE(response.calibration_fallback());

  v1::ListVersionsRequest list;
  list.set_model_name("beta");
  v1::ListVersionsResponse versions;
  ASSERT_TRUE(core_->ListVersions(list, &versions).ok());
  EXPECT_EQ(versions.statistics_versions_size(), 0);
  v1::SetAliasRequest alias;
  alias.set_model_name("beta");
  alias.set_alias("prod");
  alias.set_version(1);
  v1::SetAliasResponse aliased;
  EXPECT_EQ(core_->SetAlias(alias, &aliased).code(), absl::StatusCode::kNotFound);
  v1::GetModelInfoRequest info_request;
  info_request.set_model_name("beta");
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(core_->GetModelInfo(info_request, &info).ok());
  EXPECT_TRUE(info.calibration_fallback());
  EXPECT_EQ(info.model_version(), 1);
}

TEST_F(ModelRepositoryTest, UnloadingAVersionReturnsItsMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer quarantines freed memory: RSS does not fall on free";
#endif
  AddVersion("detector", 1);
  AddVersion("detector", 2, "contract_heavy");
  fs::create_directories(dir_ / "repo" / "detector");
  WriteAll(dir_ / "repo" / "detector" / "model_config.json",
           R"({"versionPolicy": {"specific": {"versions": ["1"]}}})");
  StartCore();
  v1::DetectResponse response;
  ASSERT_TRUE(core_->Detect(DetectNone("detector"), &response).ok());
  const int64_t before = ResidentBytes();

  v1::LoadModelRequest load;
  load.set_model_name("detector");
  load.set_model_version(2);
  v1::LoadModelResponse loaded;
  ASSERT_TRUE(core_->LoadModel(load, &loaded).ok());
  EXPECT_GE(loaded.model_version_status().memory_bytes(), int64_t{128} << 20);
  ASSERT_TRUE(core_->Detect(DetectNone("detector", 2), &response).ok());
  const int64_t loaded_rss = ResidentBytes();
  EXPECT_GT(loaded_rss - before, int64_t{100} << 20) << "the heavy version did not load";

  v1::UnloadModelRequest unload;
  unload.set_model_name("detector");
  unload.set_model_version(2);
  v1::UnloadModelResponse unloaded;
  ASSERT_TRUE(core_->UnloadModel(unload, &unloaded).ok());
  const int64_t after = ResidentBytes();
  EXPECT_LT(std::abs(after - before), before / 10)
      << "RSS before " << before << ", loaded " << loaded_rss << ", after unload " << after;
}

TEST(ModelRepositoryScanTest, ParsesConfigsAndSelectsVersions) {
  EXPECT_EQ(SelectVersions(v1::VersionPolicy(), {1, 3, 7}), (std::set<int64_t>{7}));
  v1::VersionPolicy latest;
  latest.mutable_latest()->set_num_versions(2);
  EXPECT_EQ(SelectVersions(latest, {1, 3, 7}), (std::set<int64_t>{3, 7}));
  v1::VersionPolicy all;
  all.mutable_all();
  EXPECT_EQ(SelectVersions(all, {1, 3}), (std::set<int64_t>{1, 3}));
  v1::VersionPolicy specific;
  specific.mutable_specific()->add_versions(3);
  specific.mutable_specific()->add_versions(9);
  EXPECT_EQ(SelectVersions(specific, {1, 3}), (std::set<int64_t>{3}));

  EXPECT_TRUE(ParseModelConfig(R"({"versionPolicy": {"latest": {"numVersions": 2}}})").ok());
  EXPECT_EQ(ParseModelConfig(R"({"versionPolicy": {"latest": {"numVersions": -1}}})")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelConfig(R"({"fallbackMethod": "CALIBRATION_METHOD_LOGN"})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelConfig(R"({"unknownField": 1})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsValidModelName("demo_ce-2.v1"));
  EXPECT_FALSE(IsValidModelName(".hidden"));
  EXPECT_FALSE(IsValidModelName("a/b"));
}

}  // namespace
}  // namespace logn
