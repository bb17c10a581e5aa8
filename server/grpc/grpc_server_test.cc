// End-to-end tests of the gRPC services, each run in-process and over a real 127.0.0.1:0 port,
// plus tests of the logn_server process (health transitions, /metrics, SIGTERM drain).
#include "server/grpc/grpc_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "calibration/accumulator.h"
#include "calibration/statistics_codec.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "server/core/proto_convert.h"
#include "server/grpc/testing/http_request.h"
#include "server/runtime/image.h"
#include "client/lib/health_client.h"

namespace logn {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string ModelDir() {
  const char* dir = std::getenv("LOGN_TEST_MODEL_DIR");
  return std::string(dir ? dir : "server/runtime/testdata") + "/contract";
}

std::string TestPng(int height, int width, uint8_t seed) {
  Image image;
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * width * 3);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = static_cast<uint8_t>((i * 13 + seed * 29) % 253);
  }
  return EncodePng(image).value();
}

fs::path FreshDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       absl::StrCat("grpc_server_test_", getpid(), "_", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

enum class Transport { kInProcess, kLoopbackPort };

class GrpcServerTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override { StartServer(/*executor_threads=*/2, /*max_queued=*/16); }

  // Stubs and channels go before the server they talk to (an in-process channel must not
  // outlive its server), the server before the core it serves.
  void StopServer() {
    detection_.reset();
    calibration_.reset();
    stats_.reset();
    channel_.reset();
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    core_.reset();
  }

  void StartServer(int executor_threads, int64_t max_queued, const std::string& admin_token = "",
                   bool require_token_for_detect = false, int max_batch = 1) {
    StopServer();
    const std::string name = absl::StrCat(
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), "_",
        GetParam() == Transport::kInProcess ? "inproc" : "port");
    std::replace(const_cast<std::string&>(name).begin(), const_cast<std::string&>(name).end(),
                 '/', '_');
    dir_ = FreshDir(name);
    ServerCoreOptions core_options;
    core_options.runtime.model_path = ModelDir() + "/contract_agnostic.pt";
    core_options.runtime.intra_op_threads = 1;
    core_options.store_url = "sqlite://" + (dir_ / "stats.db").string();
    auto core = ServerCore::Create(core_options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    width_ = core_->runtime().layout().width();

    GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.max_message_bytes = 1 << 20;
    options.executor.num_threads = executor_threads;
    options.executor.max_queued = max_queued;
    options.admin_token = admin_token;
    options.require_token_for_detect = require_token_for_detect;
    options.batching.max_batch_images = max_batch;
    options.batching.max_queue_delay = absl::Milliseconds(20);
    auto server = GrpcServer::Start(options, &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->SetCore(core_.get()).ok());
    channel_ = GetParam() == Transport::kInProcess
                   ? server_->InProcessChannel()
                   : grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                         grpc::InsecureChannelCredentials());
    detection_ = v1::DetectionService::NewStub(channel_);
    calibration_ = v1::CalibrationService::NewStub(channel_);
    stats_ = v1::StatsStoreService::NewStub(channel_);
  }

  void TearDown() override { StopServer(); }

  std::vector<float> RandomLogits(int64_t rows, double shift = 0) {
    std::vector<float> values(rows * width_);
    for (int64_t r = 0; r < rows; ++r) {
      for (int j = 0; j < width_; ++j) {
        values[r * width_ + j] = static_cast<float>(
            absl::Gaussian<double>(gen_, (j == 0 ? 4.0 : -2.0 - j) + shift, 1.0 + 0.5 * j));
      }
    }
    return values;
  }

  v1::CalibrateRequest Batch(const std::vector<float>& values) {
    v1::CalibrateRequest request;
    LogitsToProto(values, static_cast<int64_t>(values.size()) / width_, width_,
                  request.mutable_logit_batch());
    return request;
  }

  // Streams a header and `batches` through Calibrate (with `token` as bearer token if set).
  grpc::Status Calibrate(const std::vector<v1::CalibrateRequest>& messages,
                         v1::CalibrateResponse* response, const std::string& token = "") {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    auto writer = calibration_->Calibrate(&ctx, response);
    for (const v1::CalibrateRequest& message : messages) {
      if (!writer->Write(message)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  v1::CalibrateRequest Header(bool activate) {
    v1::CalibrateRequest header;
    header.mutable_header()->set_source(v1::VERSION_SOURCE_LOGITS);
    header.mutable_header()->set_activate(activate);
    return header;
  }

  int64_t CalibrateVersion(const std::vector<float>& rows, bool activate) {
    v1::CalibrateResponse response;
    const grpc::Status status = Calibrate({Header(activate), Batch(rows)}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.statistics_version().version();
  }

  v1::DetectRequest DetectRequestFor(int images) {
    v1::DetectRequest request;
    for (int i = 0; i < images; ++i) {
      request.add_images()->set_encoded(TestPng(40 + 8 * i, 56, static_cast<uint8_t>(i)));
    }
    return request;
  }

  fs::path dir_;
  ServerMetrics metrics_;
  std::unique_ptr<ServerCore> core_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DetectionService::Stub> detection_;
  std::unique_ptr<v1::CalibrationService::Stub> calibration_;
  std::unique_ptr<v1::StatsStoreService::Stub> stats_;
  int32_t width_ = 0;
  absl::BitGen gen_;
};

TEST_P(GrpcServerTest, CalibrateStatisticsEqualTheCoreOnePassAndApplyEqualsTheCore) {
  const std::vector<float> a = RandomLogits(700), b = RandomLogits(300);
  v1::CalibrateResponse response;
  const grpc::Status status = Calibrate({Header(true), Batch(a), Batch(b)}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.rows_seen(), 1000);
  EXPECT_EQ(response.statistics_version().version(), 1);

  std::vector<float> all = a;
  all.insert(all.end(), b.begin(), b.end());
  ExactAccumulator reference(core_->runtime().layout());
  ASSERT_TRUE(reference.Add({all.data(), 1000, width_}).ok());
  const Statistics expected = reference.Snapshot().value();
  grpc::ClientContext get_ctx;
  v1::GetVersionRequest get;
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse got;
  ASSERT_TRUE(stats_->GetVersion(&get_ctx, get, &got).ok());
  const v1::Statistics& statistics = got.statistics_version().statistics();
  for (int j = 0; j < width_; ++j) {
    EXPECT_NEAR(statistics.mean(j), expected.mean[j], 1e-12 * std::abs(expected.mean[j]));
    EXPECT_NEAR(statistics.variance(j), expected.variance[j],
                1e-12 * expected.variance[j]);
  }

  const std::vector<float> logits = RandomLogits(9);
  v1::ApplyRequest apply;
  LogitsToProto(logits, 9, width_, apply.mutable_logits());
  grpc::ClientContext apply_ctx;
  v1::ApplyResponse applied;
  ASSERT_TRUE(calibration_->Apply(&apply_ctx, apply, &applied).ok());
  std::vector<float> calibrated = logits;
  ASSERT_TRUE(Calibrator::ForLogN(StatisticsFromProto(statistics).value(), LogNOptions())
                  .value()
                  .Apply(absl::MakeSpan(calibrated))
                  .ok());
  EXPECT_EQ(LogitsFromProto(applied.logits()).value(), calibrated);
}

TEST_P(GrpcServerTest, DetectUnaryAndStreamAgreeAndPinnedEqualsAlias) {
  CalibrateVersion(RandomLogits(400), true);
  v1::DetectRequest request = DetectRequestFor(2);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  grpc::ClientContext ctx;
  v1::DetectResponse unary;
  ASSERT_TRUE(detection_->Detect(&ctx, request, &unary).ok());
  EXPECT_EQ(unary.version(), 1);
  ASSERT_EQ(unary.results_size(), 2);
  unary.clear_timing();

  request.mutable_selector()->set_version(1);
  grpc::ClientContext pinned_ctx;
  v1::DetectResponse pinned;
  ASSERT_TRUE(detection_->Detect(&pinned_ctx, request, &pinned).ok());
  pinned.clear_timing();
  EXPECT_EQ(pinned.SerializeAsString(), unary.SerializeAsString());

  // The stream answers every request, in order.
  grpc::ClientContext stream_ctx;
  auto stream = detection_->DetectStream(&stream_ctx);
  std::thread writer([&] {
    for (int i = 0; i < 5; ++i) {
      v1::DetectStreamRequest message;
      *message.mutable_request() = request;
      message.mutable_request()->set_request_id(absl::StrCat("r", i));
      ASSERT_TRUE(stream->Write(message));
    }
    stream->WritesDone();
  });
  v1::DetectStreamResponse message;
  int received = 0;
  while (stream->Read(&message)) {
    v1::DetectResponse& streamed = *message.mutable_response();
    EXPECT_EQ(streamed.request_id(), absl::StrCat("r", received));
    streamed.clear_timing();
    streamed.clear_request_id();
    EXPECT_EQ(streamed.SerializeAsString(), unary.SerializeAsString());
    ++received;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(received, 5);

  grpc::ClientContext info_ctx;
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(detection_->GetModelInfo(&info_ctx, {}, &info).ok());
  EXPECT_EQ(info.active_version(), 1);
  EXPECT_EQ(info.model_sha256(), core_->runtime().model_sha256());
}

TEST_P(GrpcServerTest, StoreRpcs) {
  CalibrateVersion(RandomLogits(200), true);
  CalibrateVersion(RandomLogits(200), false);
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext ctx;
    return (stats_.get()->*method)(&ctx, request, response);
  };
  v1::DeleteVersionRequest delete_active;
  delete_active.set_version(1);
  v1::DeleteVersionResponse deleted;
  EXPECT_EQ(call(&v1::StatsStoreService::Stub::DeleteVersion, delete_active, &deleted)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  v1::ActivateRequest activate;
  activate.set_version(2);
  v1::ActivateResponse activated;
  ASSERT_TRUE(call(&v1::StatsStoreService::Stub::Activate, activate, &activated).ok());
  EXPECT_EQ(activated.previous_version(), 1);
  v1::RollbackResponse rolled;
  ASSERT_TRUE(call(&v1::StatsStoreService::Stub::Rollback, v1::RollbackRequest(), &rolled).ok());
  EXPECT_EQ(rolled.active_version(), 1);
  v1::SetAliasRequest alias;
  alias.set_alias("canary");
  alias.set_version(2);
  v1::SetAliasResponse set;
  ASSERT_TRUE(call(&v1::StatsStoreService::Stub::SetAlias, alias, &set).ok());
  v1::ListVersionsResponse list;
  ASSERT_TRUE(
      call(&v1::StatsStoreService::Stub::ListVersions, v1::ListVersionsRequest(), &list).ok());
  ASSERT_EQ(list.statistics_versions_size(), 2);
  EXPECT_THAT(list.statistics_versions(1).aliases(), ::testing::ElementsAre("canary"));
  v1::ExportVersionRequest export_request;
  export_request.mutable_selector()->set_alias("canary");
  v1::ExportVersionResponse exported;
  ASSERT_TRUE(call(&v1::StatsStoreService::Stub::ExportVersion, export_request, &exported).ok());
  v1::ImportVersionRequest import_request;
  import_request.set_content(exported.content());
  import_request.set_activate(true);
  v1::ImportVersionResponse imported;
  ASSERT_TRUE(call(&v1::StatsStoreService::Stub::ImportVersion, import_request, &imported).ok());
  EXPECT_EQ(imported.statistics_version().version(), 3);
  v1::DeleteVersionRequest delete_old;
  delete_old.set_version(1);
  EXPECT_EQ(call(&v1::StatsStoreService::Stub::DeleteVersion, delete_old, &deleted).error_code(),
            grpc::StatusCode::OK);
  v1::GetVersionRequest missing;
  missing.mutable_selector()->set_version(1);
  v1::GetVersionResponse got;
  EXPECT_EQ(call(&v1::StatsStoreService::Stub::GetVersion, missing, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_P(GrpcServerTest, ListVersionsFiltersAndGetVersionViews) {
  v1::CalibrateRequest shard = Header(false);
  shard.mutable_header()->set_partial(true);
  shard.mutable_header()->set_job_id("job-a");
  v1::CalibrateResponse response;
  ASSERT_TRUE(Calibrate({shard, Batch(RandomLogits(60))}, &response).ok());
  CalibrateVersion(RandomLogits(60), true);  // version 2: no job id, complete
  auto list = [&](const v1::ListVersionsRequest& request, std::vector<int64_t>* numbers) {
    grpc::ClientContext ctx;
    v1::ListVersionsResponse listed;
    const grpc::Status status = stats_->ListVersions(&ctx, request, &listed);
    numbers->clear();
    for (const v1::StatisticsVersion& v : listed.statistics_versions()) {
      EXPECT_EQ(v.format(), "logn.statistics_version.v1");
      numbers->push_back(v.version());
    }
    return status;
  };
  std::vector<int64_t> numbers;
  v1::ListVersionsRequest request;
  request.set_job_id("job-a");
  ASSERT_TRUE(list(request, &numbers).ok());
  EXPECT_THAT(numbers, ::testing::ElementsAre(1));
  request.Clear();
  request.set_partial(false);
  request.set_source(v1::VERSION_SOURCE_LOGITS);
  ASSERT_TRUE(list(request, &numbers).ok());
  EXPECT_THAT(numbers, ::testing::ElementsAre(2));
  request.set_source(v1::VERSION_SOURCE_UNSPECIFIED);
  const grpc::Status refused = list(request, &numbers);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("source must be"));

  v1::GetVersionRequest get;
  get.mutable_selector()->set_version(1);
  for (v1::VersionView view : {v1::VERSION_VIEW_BASIC, v1::VERSION_VIEW_FULL}) {
    grpc::ClientContext ctx;
    get.set_view(view);
    v1::GetVersionResponse got;
    ASSERT_TRUE(stats_->GetVersion(&ctx, get, &got).ok());
    EXPECT_EQ(got.statistics_version().has_statistics(), view == v1::VERSION_VIEW_FULL);
    EXPECT_TRUE(got.statistics_version().partial());
  }
}

TEST_P(GrpcServerTest, BadInputsGetPreciseStatusesAndTheServerKeepsServing) {
  CalibrateVersion(RandomLogits(200), true);
  v1::CalibrateResponse response;
  // Wrong width.
  v1::CalibrateRequest wide;
  LogitsToProto(std::vector<float>(4 * (width_ + 2)), 4, width_ + 2, wide.mutable_logit_batch());
  grpc::Status status = Calibrate({Header(false), wide}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("width"));
  // NaN and Inf.
  std::vector<float> bad = RandomLogits(3);
  bad[width_ + 1] = std::numeric_limits<float>::quiet_NaN();
  status = Calibrate({Header(false), Batch(bad)}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("row 1, column 1"));
  bad[width_ + 1] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Calibrate({Header(false), Batch(bad)}, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Empty stream; header only; batch before header.
  EXPECT_EQ(Calibrate({}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Calibrate({Header(false)}, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Calibrate({Batch(RandomLogits(3))}, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // None of these committed anything.
  grpc::ClientContext list_ctx;
  v1::ListVersionsResponse list;
  ASSERT_TRUE(stats_->ListVersions(&list_ctx, {}, &list).ok());
  EXPECT_EQ(list.statistics_versions_size(), 1);

  // Unknown version and alias; corrupt image; statistics of another model.
  auto detect = [&](const v1::DetectRequest& request) {
    grpc::ClientContext ctx;
    v1::DetectResponse out;
    return detection_->Detect(&ctx, request, &out).error_code();
  };
  v1::DetectRequest unknown = DetectRequestFor(1);
  unknown.mutable_selector()->set_version(77);
  EXPECT_EQ(detect(unknown), grpc::StatusCode::NOT_FOUND);
  unknown.mutable_selector()->set_alias("nope");
  EXPECT_EQ(detect(unknown), grpc::StatusCode::NOT_FOUND);
  v1::DetectRequest corrupt = DetectRequestFor(1);
  corrupt.mutable_images(0)->set_encoded("\x89PNG\r\n\x1a\n garbage");
  EXPECT_EQ(detect(corrupt), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ImportVersionRequest foreign;
  Statistics other;
  other.layout = {3, BackgroundPosition::kLast};
  other.count = 10;
  other.mean = {1, 2, 3, 4};
  other.variance = {1, 1, 1, 1};
  other.provenance.model_name = "other";
  other.provenance.model_sha256 = std::string(64, 'b');
  foreign.set_content(StatisticsToJson(other));
  grpc::ClientContext import_ctx;
  v1::ImportVersionResponse imported;
  EXPECT_EQ(stats_->ImportVersion(&import_ctx, foreign, &imported).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // A message over the 1 MiB limit.
  v1::DetectRequest huge = DetectRequestFor(1);
  huge.mutable_images(0)->set_encoded(std::string(2 << 20, 'x'));
  EXPECT_EQ(detect(huge), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // An expired deadline.
  grpc::ClientContext late;
  late.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  v1::DetectResponse out;
  EXPECT_EQ(detection_->Detect(&late, DetectRequestFor(1), &out).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  // Still serving.
  EXPECT_EQ(detect(DetectRequestFor(1)), grpc::StatusCode::OK);
}

TEST_P(GrpcServerTest, ShardedJobsCheckpointAndMerge) {
  const std::vector<float> a = RandomLogits(200), b = RandomLogits(150), c = RandomLogits(120);
  std::vector<int64_t> shards;
  for (const std::vector<float>* rows : {&a, &b}) {
    v1::CalibrateRequest header = Header(false);
    header.mutable_header()->set_partial(true);
    header.mutable_header()->set_job_id(absl::StrCat("shard-", shards.size()));
    header.mutable_header()->set_checkpoint_every_batches(1);
    v1::CalibrateResponse response;
    const std::vector<float> second = rows == &b ? c : std::vector<float>();
    std::vector<v1::CalibrateRequest> messages = {header, Batch(*rows)};
    if (!second.empty()) messages.push_back(Batch(second));
    ASSERT_TRUE(Calibrate(messages, &response).ok());
    EXPECT_TRUE(response.statistics_version().partial());
    shards.push_back(response.statistics_version().version());
  }
  // The jobs committed, so their checkpoints are gone.
  grpc::ClientContext job_ctx;
  v1::GetCalibrationJobRequest job_request;
  job_request.set_job_id("shard-1");
  v1::GetCalibrationJobResponse job;
  EXPECT_EQ(calibration_->GetCalibrationJob(&job_ctx, job_request, &job).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // A job dropped mid-stream leaves its checkpoint, readable over gRPC.
  {
    grpc::ClientContext ctx;
    v1::CalibrateResponse response;
    auto writer = calibration_->Calibrate(&ctx, &response);
    v1::CalibrateRequest header = Header(false);
    header.mutable_header()->set_job_id("dropped");
    header.mutable_header()->set_checkpoint_every_batches(1);
    ASSERT_TRUE(writer->Write(header));
    ASSERT_TRUE(writer->Write(Batch(a)));
    // The checkpoint is written by the batch's executor task: wait for it, then drop the call.
    grpc::Status found;
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext poll;
      job_request.set_job_id("dropped");
      found = calibration_->GetCalibrationJob(&poll, job_request, &job);
      if (found.ok()) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_TRUE(found.ok()) << found.error_message();
    EXPECT_EQ(job.job().batches_seen(), 1);
    EXPECT_EQ(job.job().rows_seen(), 200);
    ctx.TryCancel();
  }

  grpc::ClientContext merge_ctx;
  v1::MergeRequest merge;
  for (int64_t v : shards) merge.add_versions(v);
  merge.set_activate(true);
  v1::MergeResponse merged;
  const grpc::Status status = calibration_->Merge(&merge_ctx, merge, &merged);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(merged.statistics_version().rows_seen(), 470);
  std::vector<float> all = a;
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  ExactAccumulator reference(core_->runtime().layout());
  ASSERT_TRUE(reference.Add({all.data(), 470, width_}).ok());
  grpc::ClientContext get_ctx;
  v1::GetVersionRequest get;
  get.mutable_selector()->set_alias("active");
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse got;
  ASSERT_TRUE(stats_->GetVersion(&get_ctx, get, &got).ok());
  EXPECT_EQ(got.statistics_version().version(), merged.statistics_version().version());
  const Statistics expected = reference.Snapshot().value();
  const v1::Statistics& statistics = got.statistics_version().statistics();
  for (int j = 0; j < width_; ++j) {
    EXPECT_NEAR(statistics.mean(j), expected.mean[j], 1e-12 * std::abs(expected.mean[j]));
    EXPECT_NEAR(statistics.variance(j), expected.variance[j],
                1e-12 * std::abs(expected.variance[j]));
  }
}

TEST_P(GrpcServerTest, AdminTokenGuardsEveryMutatingRpc) {
  StartServer(2, 16, "s3cret-token");
  auto with_token = [](grpc::ClientContext* ctx, const std::string& token) {
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  };
  v1::CalibrateResponse calibrated;
  EXPECT_EQ(Calibrate({Header(true), Batch(RandomLogits(50))}, &calibrated).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Calibrate({Header(true), Batch(RandomLogits(50))}, &calibrated, "wrong").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status ok =
      Calibrate({Header(true), Batch(RandomLogits(50))}, &calibrated, "s3cret-token");
  ASSERT_TRUE(ok.ok()) << ok.error_message();

  for (const std::string& token : {std::string(), std::string("s3cret-tokeN")}) {
    const grpc::StatusCode want =
        token.empty() ? grpc::StatusCode::UNAUTHENTICATED : grpc::StatusCode::PERMISSION_DENIED;
    grpc::ClientContext activate_ctx, merge_ctx, delete_ctx, import_ctx;
    with_token(&activate_ctx, token);
    with_token(&merge_ctx, token);
    with_token(&delete_ctx, token);
    with_token(&import_ctx, token);
    v1::ActivateRequest activate;
    activate.set_version(1);
    v1::ActivateResponse activated;
    EXPECT_EQ(stats_->Activate(&activate_ctx, activate, &activated).error_code(), want);
    v1::MergeRequest merge;
    merge.add_versions(1);
    merge.add_versions(1);
    v1::MergeResponse merged;
    EXPECT_EQ(calibration_->Merge(&merge_ctx, merge, &merged).error_code(), want);
    v1::DeleteVersionRequest del;
    del.set_version(1);
    v1::DeleteVersionResponse deleted;
    EXPECT_EQ(stats_->DeleteVersion(&delete_ctx, del, &deleted).error_code(), want);
    v1::ImportVersionRequest import;
    import.set_content("{}");
    v1::ImportVersionResponse imported;
    const grpc::Status s = stats_->ImportVersion(&import_ctx, import, &imported);
    EXPECT_EQ(s.error_code(), want);
    EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("s3cret")));
  }
  // Reads and Detect stay open.
  grpc::ClientContext list_ctx, detect_ctx;
  v1::ListVersionsResponse list;
  EXPECT_TRUE(stats_->ListVersions(&list_ctx, {}, &list).ok());
  EXPECT_EQ(list.statistics_versions_size(), 1);
  v1::DetectResponse detected;
  EXPECT_TRUE(detection_->Detect(&detect_ctx, DetectRequestFor(1), &detected).ok());

  StartServer(2, 16, "s3cret-token", /*require_token_for_detect=*/true);
  grpc::ClientContext open_ctx, authorized_ctx;
  EXPECT_EQ(detection_->Detect(&open_ctx, DetectRequestFor(1), &detected).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  with_token(&authorized_ctx, "s3cret-token");
  v1::DetectRequest none = DetectRequestFor(1);
  none.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  const grpc::Status detect = detection_->Detect(&authorized_ctx, none, &detected);
  EXPECT_TRUE(detect.ok()) << detect.error_message();
}

TEST_P(GrpcServerTest, BatchedDetectEqualsUnbatchedAndStreamsBatchToo) {
  constexpr int kCallers = 6;
  std::vector<v1::DetectRequest> requests(kCallers);
  std::vector<v1::DetectResponse> unbatched(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    requests[i].add_images()->set_encoded(TestPng(40 + 4 * i, 56, static_cast<uint8_t>(i)));
    requests[i].add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
    requests[i].add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  }
  // A batching server on a fresh store: calibrate it, then compare with the unbatched core.
  StartServer(2, 16, "", false, /*max_batch=*/8);
  ASSERT_EQ(CalibrateVersion(RandomLogits(300), /*activate=*/true), 1);
  for (int i = 0; i < kCallers; ++i) {
    unbatched[i].Clear();
    ASSERT_TRUE(core_->Detect(requests[i], &unbatched[i]).ok());
    unbatched[i].clear_timing();
  }
  std::vector<v1::DetectResponse> batched(kCallers);
  std::vector<grpc::Status> statuses(kCallers);
  std::vector<std::string> trailers(kCallers);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      statuses[i] = detection_->Detect(&ctx, requests[i], &batched[i]);
      auto it = ctx.GetServerTrailingMetadata().find("logn-server-timing");
      if (it != ctx.GetServerTrailingMetadata().end()) {
        trailers[i] = std::string(it->second.data(), it->second.size());
      }
    });
  }
  for (std::thread& t : callers) t.join();
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_THAT(trailers[i], HasSubstr("queue="));
    batched[i].clear_timing();
    EXPECT_EQ(batched[i].SerializeAsString(), unbatched[i].SerializeAsString()) << i;
  }
  // DetectStream goes through the batcher as well, responses still in order.
  grpc::ClientContext stream_ctx;
  auto stream = detection_->DetectStream(&stream_ctx);
  v1::DetectStreamResponse message;
  for (int i = 0; i < kCallers; ++i) {
    v1::DetectStreamRequest request;
    *request.mutable_request() = requests[i];
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&message));
    v1::DetectResponse& response = *message.mutable_response();
    response.clear_timing();
    EXPECT_EQ(response.SerializeAsString(), unbatched[i].SerializeAsString()) << i;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0", 2), "a"));
}

// GrpcServer::Validate: options that cannot work are refused, naming the flag.
absl::Status ValidateWith(const std::function<void(GrpcServerOptions&)>& change,
                          int32_t max_images_per_request = 32) {
  GrpcServerOptions options;
  change(options);
  ServerCoreOptions core;
  core.max_images_per_request = max_images_per_request;
  core.runtime.limits.max_images_per_call = max_images_per_request;
  return GrpcServer::Validate(options, &core);
}

TEST(GrpcServerValidateTest, DefaultsAndSensibleBatchingPass) {
  EXPECT_TRUE(GrpcServer::Validate(GrpcServerOptions()).ok());
  EXPECT_TRUE(ValidateWith([](GrpcServerOptions&) {}).ok());
  // A batch of exactly the per-request limit fits one forward pass.
  EXPECT_TRUE(ValidateWith([](GrpcServerOptions& o) { o.batching.max_batch_images = 32; }).ok());
  EXPECT_TRUE(ValidateWith([](GrpcServerOptions& o) {
                o.admin_token = "secret";
                o.require_token_for_detect = true;
              }).ok());
}

TEST(GrpcServerValidateTest, MaxBatchOverTheRequestLimitIsRefused) {
  const absl::Status status =
      ValidateWith([](GrpcServerOptions& o) { o.batching.max_batch_images = 64; });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("--max_batch 64 is larger than --max_images_per_request 32"));
  // Without the core's options the server alone cannot tell.
  GrpcServerOptions options;
  options.batching.max_batch_images = 64;
  EXPECT_TRUE(GrpcServer::Validate(options).ok());
}

TEST(GrpcServerValidateTest, NonsenseValuesAreRefusedNamingTheFlag) {
  const std::vector<std::pair<std::function<void(GrpcServerOptions&)>, std::string>> cases = {
      {[](GrpcServerOptions& o) { o.executor.num_threads = 0; }, "--executor_threads"},
      {[](GrpcServerOptions& o) { o.executor.max_queued = 0; }, "--max_queue"},
      {[](GrpcServerOptions& o) { o.max_message_bytes = 0; }, "--max_message_bytes"},
      {[](GrpcServerOptions& o) { o.batching.max_batch_images = 0; }, "--max_batch"},
      {[](GrpcServerOptions& o) {
         o.batching.max_batch_images = 8;
         o.batching.max_queue_delay = absl::Microseconds(-1);
       },
       "--max_queue_delay_us"},
      {[](GrpcServerOptions& o) {
         o.batching.max_batch_images = 8;
         o.batching.max_queued_requests = 0;
       },
       "--max_queue"},
      {[](GrpcServerOptions& o) { o.require_token_for_detect = true; },
       "--require_token_for_detect needs --admin_token_file"},
  };
  for (const auto& [change, flag] : cases) {
    const absl::Status status = ValidateWith(change);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(status.message(), HasSubstr(flag));
  }
  // A negative delay does not matter while batching is off.
  EXPECT_TRUE(ValidateWith([](GrpcServerOptions& o) {
                o.batching.max_queue_delay = absl::Microseconds(-1);
              }).ok());
}

TEST(GrpcServerValidateTest, StartRefusesInvalidOptions) {
  GrpcServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.executor.num_threads = 0;
  ServerMetrics metrics;
  auto server = GrpcServer::Start(options, &metrics);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(GrpcServerTest, FullQueueIsResourceExhausted) {
  StartServer(/*executor_threads=*/1, /*max_queued=*/1);
  // Shared, so the worker may still be inside WaitForNotification when the test body ends.
  auto release = std::make_shared<absl::Notification>();
  absl::Cleanup release_on_exit = [release] { release->Notify(); };
  // One task holds the only worker, one fills the queue.
  ASSERT_TRUE(server_->executor()->TrySchedule([release] { release->WaitForNotification(); }));
  while (server_->executor()->running() == 0) std::this_thread::yield();
  ASSERT_TRUE(server_->executor()->TrySchedule([] {}));
  grpc::ClientContext ctx;
  v1::DetectResponse out;
  const grpc::Status status = detection_->Detect(&ctx, DetectRequestFor(1), &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("queue is full"));
}

TEST_P(GrpcServerTest, AliasSwitchesNeverMixVersionsUnderConcurrentDetect) {
  CalibrateVersion(RandomLogits(300), true);
  CalibrateVersion(RandomLogits(300, /*shift=*/3.0), false);
  // What each version gives, pinned.
  v1::DetectRequest request = DetectRequestFor(1);
  request.mutable_postprocess()->set_max_detections(20);
  std::string expected[3];
  for (int v : {1, 2}) {
    v1::DetectRequest pinned = request;
    pinned.mutable_selector()->set_version(v);
    grpc::ClientContext ctx;
    v1::DetectResponse out;
    ASSERT_TRUE(detection_->Detect(&ctx, pinned, &out).ok());
    out.clear_timing();
    expected[v] = out.results(0).SerializeAsString();
  }
  ASSERT_NE(expected[1], expected[2]);

  std::atomic<bool> stop{false};
  std::thread switcher([&] {
    for (int i = 0; !stop.load(); ++i) {
      grpc::ClientContext ctx;
      v1::ActivateRequest activate;
      activate.set_version(1 + i % 2);
      v1::ActivateResponse out;
      ASSERT_TRUE(stats_->Activate(&ctx, activate, &out).ok());
    }
  });
  int seen[3] = {0, 0, 0};
  for (int i = 0; i < 40; ++i) {
    grpc::ClientContext ctx;
    v1::DetectResponse out;
    ASSERT_TRUE(detection_->Detect(&ctx, request, &out).ok());
    const int64_t v = out.version();
    ASSERT_TRUE(v == 1 || v == 2);
    EXPECT_EQ(out.results(0).SerializeAsString(), expected[v]) << "response mixes versions";
    ++seen[v];
  }
  stop = true;
  switcher.join();
  EXPECT_GT(seen[1] + seen[2], 0);
}

TEST_P(GrpcServerTest, HealthIsNotServingUntilTheCoreIsSet) {
  GrpcServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto loading = GrpcServer::Start(options, &metrics_);
  ASSERT_TRUE(loading.ok());
  auto channel = GetParam() == Transport::kInProcess
                     ? (*loading)->InProcessChannel()
                     : grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*loading)->port()),
                                           grpc::InsecureChannelCredentials());
  EXPECT_EQ(CheckHealth(channel, "logn.v1.DetectionService", absl::Seconds(5)).value(),
            ServingStatus::kNotServing);
  grpc::ClientContext ctx;
  v1::DetectResponse out;
  EXPECT_EQ(v1::DetectionService::NewStub(channel)->Detect(&ctx, DetectRequestFor(1), &out)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CheckHealth(channel, "logn.model.contract_agnostic", absl::Seconds(5)).status().code(),
            absl::StatusCode::kNotFound);  // no model is known before the core
  ASSERT_TRUE((*loading)->SetCore(core_.get()).ok());
  EXPECT_EQ(CheckHealth(channel, "logn.v1.DetectionService", absl::Seconds(5)).value(),
            ServingStatus::kServing);
  EXPECT_EQ(CheckHealth(channel, "logn.model.contract_agnostic", absl::Seconds(5)).value(),
            ServingStatus::kServing);
  channel.reset();
  (*loading)->Shutdown(absl::Seconds(1));
}

TEST_P(GrpcServerTest, ABatchLargerThanTheCoreAcceptsIsRefusedAndNeverServes) {
  GrpcServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.batching.max_batch_images = core_->options().runtime.limits.max_images_per_call + 1;
  auto server = GrpcServer::Start(options, &metrics_);
  ASSERT_TRUE(server.ok()) << server.status();  // without a core, nothing to compare with
  const absl::Status status = (*server)->SetCore(core_.get());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--max_batch"));
  auto channel = (*server)->InProcessChannel();
  EXPECT_EQ(CheckHealth(channel, "logn.v1.DetectionService", absl::Seconds(5)).value(),
            ServingStatus::kNotServing);
  channel.reset();
  (*server)->Shutdown(absl::Seconds(1));
}

TEST_P(GrpcServerTest, HealthReportsEachServiceAndMetricsHaveTheFamilies) {
  for (const std::string service :
       {"", "logn.v1.DetectionService", "logn.v1.CalibrationService", "logn.v1.StatsStoreService",
        "logn.v1.ModelService", "logn.v1.DriftService", "logn.model.contract_agnostic"}) {
    const auto health = CheckHealth(channel_, service, absl::Seconds(5));
    ASSERT_TRUE(health.ok()) << service << ": " << health.status();
    EXPECT_EQ(*health, ServingStatus::kServing) << service;
  }
  EXPECT_EQ(CheckHealth(channel_, "no.such.Service", absl::Seconds(5)).status().code(),
            absl::StatusCode::kNotFound);
  CalibrateVersion(RandomLogits(100), true);
  grpc::ClientContext ctx;
  v1::DetectResponse out;
  ASSERT_TRUE(detection_->Detect(&ctx, DetectRequestFor(1), &out).ok());
  const std::string text = prometheus::TextSerializer().Serialize(metrics_.registry()->Collect());
  for (const char* family :
       {"logn_requests_total{code=\"OK\",method=\"Detect\"} 1",
        "logn_request_duration_seconds_count{method=\"Calibrate\"} 1",
        "logn_inference_duration_seconds_count 1", "logn_queue_duration_seconds_count",
        "logn_batch_images_count 1", "logn_batch_images_sum 1",
        "logn_calibration_rows_total 100", "logn_calibration_jobs{state=\"committed\"} 1",
        "logn_stats_active_version{model=\"contract_agnostic\",model_version=\"1\"} 1",
        "logn_model_info{",
        "logn_model_detect_images_total{model=\"contract_agnostic\",model_version=\"1\"} 1",
        "logn_build_info{version="}) {
    EXPECT_THAT(text, HasSubstr(family));
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, GrpcServerTest,
                         ::testing::Values(Transport::kInProcess, Transport::kLoopbackPort),
                         [](const auto& info) {
                           return info.param == Transport::kInProcess ? "InProcess" : "Port";
                         });

// ---------------------------------------------------------------------------------------------
// The logn_server process.

class ServerProcess {
 public:
  explicit ServerProcess(const fs::path& dir) : port_file_(dir / "ports") {
    const std::string model = ModelDir() + "/contract_agnostic.pt";
    const std::string store = "sqlite://" + (dir / "stats.db").string();
    pid_ = fork();
    if (pid_ == 0) {
      execl(LOGN_SERVER_BINARY, LOGN_SERVER_BINARY, "--listen=127.0.0.1:0",
            "--metrics_listen=127.0.0.1:0", ("--port_file=" + port_file_.string()).c_str(),
            ("--model=" + model).c_str(), ("--store=" + store).c_str(), "--intra_op_threads=1",
            "--drain_timeout=20s", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Waits for the port file (the server writes it once serving).
  bool WaitServing() {
    for (int i = 0; i < 600 && !fs::exists(port_file_); ++i) usleep(100000);
    std::ifstream in(port_file_);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("grpc=", 0) == 0) grpc_port_ = std::stoi(line.substr(5));
      if (line.rfind("metrics=", 0) == 0) metrics_port_ = std::stoi(line.substr(8));
    }
    return grpc_port_ > 0;
  }
  int Terminate() {
    kill(pid_, SIGTERM);
    return Wait();
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  fs::path port_file_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
};

std::string HttpGet(int port, const std::string& path) {
  return testing::HttpRequest(port, "GET", path);
}

TEST(ServerProcessTest, ServesScrapesAndDrainsAnInFlightCalibrationOnSigterm) {
  const fs::path dir = FreshDir("process");
  ServerProcess process(dir);
  ASSERT_TRUE(process.WaitServing());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", process.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  EXPECT_EQ(CheckHealth(channel, "", absl::Seconds(5)).value(), ServingStatus::kServing);

  const std::string metrics = HttpGet(process.metrics_port(), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("200 OK"));
  EXPECT_THAT(metrics, HasSubstr("logn_build_info"));
  EXPECT_THAT(metrics, HasSubstr("logn_model_info{model=\"contract_agnostic\""));

  // A calibration stream is in flight when SIGTERM arrives; it may finish and commit.
  auto calibration = v1::CalibrationService::NewStub(channel);
  grpc::ClientContext ctx;
  v1::CalibrateResponse response;
  auto writer = calibration->Calibrate(&ctx, &response);
  v1::CalibrateRequest header;
  header.mutable_header()->set_source(v1::VERSION_SOURCE_LOGITS);
  ASSERT_TRUE(writer->Write(header));
  v1::CalibrateRequest batch;
  const int width = 6;  // contract_agnostic: 5 classes + background
  std::vector<float> rows(50 * width);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>((i * 37) % 11) - 5.0f;
  LogitsToProto(rows, 50, width, batch.mutable_logit_batch());
  ASSERT_TRUE(writer->Write(batch));
  // Only a call the server has accepted is in flight: wait until its job is running.
  bool running = false;
  for (int i = 0; i < 200 && !running; ++i) {
    running = HttpGet(process.metrics_port(), "/metrics")
                  .find("logn_calibration_jobs{state=\"running\"} 1") != std::string::npos;
    if (!running) usleep(50000);
  }
  ASSERT_TRUE(running) << "the server never started the calibration job";
  kill(process.pid(), SIGTERM);
  usleep(300000);
  // Health stops reporting SERVING while draining (new calls are refused or NOT_SERVING)...
  const auto draining = CheckHealth(channel, "", absl::Seconds(2));
  EXPECT_FALSE(draining.ok() && *draining == ServingStatus::kServing);
  // ...but the open stream completes.
  ASSERT_TRUE(writer->Write(batch));
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.rows_seen(), 100);
  EXPECT_EQ(process.Wait(), 0);
}

TEST(ServerProcessTest, BadFlagsAndMissingModelExitNonZero) {
  const fs::path dir = FreshDir("bad_model");
  const pid_t pid = fork();
  if (pid == 0) {
    execl(LOGN_SERVER_BINARY, LOGN_SERVER_BINARY, "--listen=127.0.0.1:0",
          "--metrics_listen=", ("--model=" + (dir / "missing.pt").string()).c_str(),
          ("--store=sqlite://" + (dir / "s.db").string()).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(ServerProcessTest, MaxBatchOverTheRequestLimitIsRefusedAtStartup) {
  const fs::path dir = FreshDir("bad_batch");
  const fs::path err = dir / "stderr";
  const pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(err.c_str(), "w", stderr)) _exit(126);
    execl(LOGN_SERVER_BINARY, LOGN_SERVER_BINARY, "--listen=127.0.0.1:0",
          "--metrics_listen=", ("--model=" + ModelDir() + "/contract_agnostic.pt").c_str(),
          ("--store=sqlite://" + (dir / "s.db").string()).c_str(), "--max_batch=64",
          "--max_images_per_request=32", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("--max_batch 64 is larger than --max_images_per_request 32"));
  // Refused before anything was opened: no store file.
  EXPECT_FALSE(fs::exists(dir / "s.db"));
}

}  // namespace
}  // namespace logn
