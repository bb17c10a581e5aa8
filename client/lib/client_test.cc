// logn::Client against a real logn_server process on 127.0.0.1:0, plus the retry rules against
// a port where nothing listens.
#include "client/lib/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A port that was free a moment ago: connecting to it fails fast with UNAVAILABLE.
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A minimal RGB PNG (one IDAT, zlib via compress2): the client sends encoded files as-is.
std::string Png(int height, int width, int seed) {
  auto chunk = [](const std::string& type, const std::string& data) {
    std::string out;
    const uint32_t n = htonl(static_cast<uint32_t>(data.size()));
    out.append(reinterpret_cast<const char*>(&n), 4);
    out += type + data;
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(type.data()), type.size());
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data()), data.size());
    const uint32_t c = htonl(static_cast<uint32_t>(crc));
    out.append(reinterpret_cast<const char*>(&c), 4);
    return out;
  };
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    for (int x = 0; x < width * 3; ++x)
      raw.push_back(static_cast<char>((x * 7 + y * 13 + seed * 31) % 251));
  }
  std::string packed(compressBound(raw.size()), '\0');
  uLongf packed_size = packed.size();
  compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
            reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 6);
  packed.resize(packed_size);
  std::string ihdr;
  const uint32_t w = htonl(width), h = htonl(height);
  ihdr.append(reinterpret_cast<const char*>(&w), 4);
  ihdr.append(reinterpret_cast<const char*>(&h), 4);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", packed) +
         chunk("IEND", "");
}

// logn_server in a child process, killed at the end of the suite.
class ServerProcess {
 public:
  explicit ServerProcess(const fs::path& dir) {
    const char* model_dir = std::getenv("LOGN_TEST_MODEL_DIR");
    const std::string model = std::string(model_dir ? model_dir : "server/runtime/testdata") +
                              "/contract/contract_agnostic.pt";
    const fs::path port_file = dir / "port";
    const std::string store = "sqlite://" + (dir / "stats.db").string();
    pid_ = fork();
    if (pid_ == 0) {
      execl(LOGN_SERVER_BINARY, LOGN_SERVER_BINARY, "--listen=127.0.0.1:0",
            "--metrics_listen=", ("--port_file=" + port_file.string()).c_str(),
            ("--model=" + model).c_str(), ("--store=" + store).c_str(), "--intra_op_threads=1",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::ifstream in(port_file);
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("grpc=", 0) == 0) port_ = std::stoi(line.substr(5));
      }
      if (port_ == 0) usleep(100000);
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

class ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("client_test_", getpid());
    fs::remove_all(dir);
    fs::create_directories(dir);
    server_ = new ServerProcess(dir);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_GT(server_->port(), 0) << "logn_server did not start";
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", server_->port());
    options.deadline = absl::Seconds(60);
    options.bearer_token = "test-token";  // the server ignores it; it must not break calls
    auto client = Client::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    auto info = client_->GetModelInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    width_ = info->manifest().classes_size() + 1;
  }

  std::vector<float> Logits(int64_t rows, int seed) const {
    std::vector<float> values(rows * width_);
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<float>(((i * 2654435761u + seed * 97) % 1000) / 100.0 - 5.0);
    }
    return values;
  }

  int64_t CalibrateVersion(bool activate, int seed) {
    v1::CalibrateHeader header;
    header.set_source(v1::VERSION_SOURCE_LOGITS);
    header.set_activate(activate);
    header.set_description("client_test");
    auto writer = client_->Calibrate(header);
    EXPECT_TRUE(writer.ok()) << writer.status();
    if (!writer.ok()) return 0;
    const std::vector<float> a = Logits(300, seed), b = Logits(200, seed + 1);
    EXPECT_TRUE((*writer)->WriteLogits(a.data(), 300, width_).ok());
    EXPECT_TRUE((*writer)->WriteLogits(b.data(), 200, width_).ok());
    EXPECT_EQ((*writer)->batches_written(), 2);
    auto committed = (*writer)->Commit();
    EXPECT_TRUE(committed.ok()) << committed.status();
    if (!committed.ok()) return 0;
    EXPECT_EQ(committed->rows_seen(), 500);
    EXPECT_EQ(committed->batches_seen(), 2);
    return committed->statistics_version().version();
  }

  std::vector<int64_t> Versions() {
    auto list = client_->ListVersions({});
    // The server answers NOT_FOUND while the model has no version at all.
    if (list.status().code() == absl::StatusCode::kNotFound) return {};
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<int64_t> out;
    if (list.ok()) {
      for (const auto& v : list->statistics_versions()) out.push_back(v.version());
    }
    return out;
  }

  static ServerProcess* server_;
  std::unique_ptr<Client> client_;
  int width_ = 0;
};

ServerProcess* ClientTest::server_ = nullptr;

TEST(ClientOptionsTest, RejectsBadOptionsWithTheFieldName) {
  ClientOptions options;
  EXPECT_THAT(ValidateClientOptions(options).message(), HasSubstr("target"));
  options.target = "127.0.0.1:1";
  EXPECT_TRUE(ValidateClientOptions(options).ok());
  options.retry.max_attempts = 0;
  EXPECT_EQ(ValidateClientOptions(options).code(), absl::StatusCode::kInvalidArgument);
  options.retry.max_attempts = 2;
  options.retry.jitter = 1.5;
  EXPECT_THAT(ValidateClientOptions(options).message(), HasSubstr("jitter"));
  options.retry.jitter = 0.1;
  options.tls.enabled = true;
  options.tls.cert_chain_file = "/nonexistent/cert.pem";
  EXPECT_THAT(ValidateClientOptions(options).message(), HasSubstr("private_key_file"));
  options.tls.private_key_file = "/nonexistent/key.pem";
  auto client = Client::Create(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(client.status().message(), HasSubstr("/nonexistent/cert.pem"));
}

TEST(ClientRetryTest, IdempotentCallsRetryOnUnavailableAndMutationsNever) {
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", UnusedPort());
  options.deadline = absl::Seconds(5);
  options.retry.max_attempts = 3;
  options.retry.initial_backoff = absl::Milliseconds(1);
  options.retry.max_backoff = absl::Milliseconds(4);
  std::vector<std::pair<std::string, int>> retries;
  options.on_retry = [&](absl::string_view method, int attempt, const absl::Status& cause) {
    EXPECT_EQ(cause.code(), absl::StatusCode::kUnavailable);
    retries.emplace_back(std::string(method), attempt);
  };
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();

  EXPECT_EQ((*client)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->ListVersions({}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->Health().status().code(), absl::StatusCode::kUnavailable);
  v1::GetCalibrationJobRequest job;
  job.set_job_id("j");
  EXPECT_EQ((*client)->GetCalibrationJob(job).status().code(), absl::StatusCode::kUnavailable);
  using Retry = std::pair<std::string, int>;
  EXPECT_THAT(retries, ::testing::ElementsAre(Retry{"GetModelInfo", 2}, Retry{"GetModelInfo", 3},
                                              Retry{"ListVersions", 2}, Retry{"ListVersions", 3},
                                              Retry{"Health", 2}, Retry{"Health", 3},
                                              Retry{"GetCalibrationJob", 2},
                                              Retry{"GetCalibrationJob", 3}));
  retries.clear();
  v1::ActivateRequest activate;
  activate.set_version(1);
  EXPECT_EQ((*client)->Activate(activate).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->Rollback({}).status().code(), absl::StatusCode::kUnavailable);
  v1::DeleteVersionRequest del;
  del.set_version(1);
  EXPECT_EQ((*client)->DeleteVersion(del).status().code(), absl::StatusCode::kUnavailable);
  v1::ImportVersionRequest import;
  EXPECT_EQ((*client)->ImportVersion(import).status().code(), absl::StatusCode::kUnavailable);
  v1::SetAliasRequest alias;
  EXPECT_EQ((*client)->SetAlias(alias).status().code(), absl::StatusCode::kUnavailable);
  v1::MergeRequest merge;
  EXPECT_EQ((*client)->Merge(merge).status().code(), absl::StatusCode::kUnavailable);
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  auto writer = (*client)->Calibrate(header);
  absl::Status calibrate_status = writer.ok() ? (*writer)->Commit().status() : writer.status();
  EXPECT_EQ(calibrate_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(retries, ::testing::IsEmpty());
}

// Test doubles of two services, to observe what the client sends: GetModelInfo fails with
// UNAVAILABLE `failures` times before answering, Activate always fails with UNAVAILABLE.
class FakeDetection final : public v1::DetectionService::Service {
 public:
  explicit FakeDetection(int failures) : failures_(failures) {}
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest*,
                            v1::GetModelInfoResponse* response) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    auto it = context->client_metadata().find("authorization");
    authorization_ = it == context->client_metadata().end()
                         ? ""
                         : std::string(it->second.data(), it->second.size());
    if (calls_ <= failures_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "warming up");
    response->set_device("fake");
    return grpc::Status::OK;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }

 private:
  absl::Mutex mu_;
  const int failures_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string authorization_ ABSL_GUARDED_BY(mu_);
};

class FakeStats final : public v1::StatsStoreService::Service {
 public:
  grpc::Status Activate(grpc::ServerContext*, const v1::ActivateRequest*,
                        v1::ActivateResponse*) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "store briefly unreachable");
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

struct FakeServer {
  FakeServer(int failures, std::shared_ptr<grpc::ServerCredentials> credentials)
      : detection(failures) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port);
    builder.RegisterService(&detection);
    builder.RegisterService(&stats);
    server = builder.BuildAndStart();
  }
  ~FakeServer() { server->Shutdown(); }
  FakeDetection detection;
  FakeStats stats;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

ClientOptions FastRetries(int port) {
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", port);
  options.deadline = absl::Seconds(10);
  options.retry.max_attempts = 4;
  options.retry.initial_backoff = absl::Milliseconds(1);
  options.retry.max_backoff = absl::Milliseconds(5);
  return options;
}

TEST(ClientFakeServerTest, RetriesUntilTheServerAnswersAndSendsTheToken) {
  FakeServer server(/*failures=*/2, grpc::InsecureServerCredentials());
  ClientOptions options = FastRetries(server.port);
  options.bearer_token = "s3cret";
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto info = (*client)->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->device(), "fake");
  EXPECT_EQ(server.detection.calls(), 3);
  EXPECT_EQ(server.detection.authorization(), "Bearer s3cret");

  // Activate is not idempotent: one attempt, the server's status as-is.
  v1::ActivateRequest activate;
  activate.set_version(3);
  absl::Status status = (*client)->Activate(activate).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "store briefly unreachable");
  EXPECT_EQ(server.stats.calls(), 1);
}

TEST(ClientFakeServerTest, GivesUpAfterMaxAttempts) {
  FakeServer server(/*failures=*/100, grpc::InsecureServerCredentials());
  auto client = Client::Create(FastRetries(server.port));
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.detection.calls(), 4);
}

// A self-signed certificate for "localhost" made with the openssl tool.
bool MakeCertificate(const fs::path& dir) {
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost -keyout ",
      (dir / "key.pem").string(), " -out ", (dir / "cert.pem").string(), " >/dev/null 2>&1");
  return std::system(command.c_str()) == 0;
}

std::string Slurp(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(ClientTlsTest, ServerAndMutualTls) {
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("client_tls_", getpid());
  fs::create_directories(dir);
  if (!MakeCertificate(dir)) GTEST_SKIP() << "the openssl tool is not installed";
  const std::string cert = Slurp(dir / "cert.pem"), key = Slurp(dir / "key.pem");

  grpc::SslServerCredentialsOptions server_tls(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  server_tls.pem_root_certs = cert;  // self-signed: the client presents the same certificate
  server_tls.pem_key_cert_pairs.push_back({key, cert});
  FakeServer server(/*failures=*/0, grpc::SslServerCredentials(server_tls));
  ASSERT_GT(server.port, 0);

  ClientOptions options = FastRetries(server.port);
  options.retry.max_attempts = 1;
  options.tls.enabled = true;
  options.tls.root_ca_file = (dir / "cert.pem").string();
  options.tls.server_name_override = "localhost";
  options.tls.cert_chain_file = (dir / "cert.pem").string();
  options.tls.private_key_file = (dir / "key.pem").string();
  auto mutual = Client::Create(options);
  ASSERT_TRUE(mutual.ok()) << mutual.status();
  auto info = (*mutual)->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->device(), "fake");

  // Without a client certificate the server refuses the handshake.
  options.tls.cert_chain_file.clear();
  options.tls.private_key_file.clear();
  auto anonymous = Client::Create(options);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_EQ((*anonymous)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  // Plaintext to a TLS port fails too.
  ClientOptions plain = FastRetries(server.port);
  plain.retry.max_attempts = 1;
  auto plaintext = Client::Create(plain);
  ASSERT_TRUE(plaintext.ok());
  EXPECT_EQ((*plaintext)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientTest, HealthIsServing) {
  auto health = client_->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);
}

TEST_F(ClientTest, EveryStatsRpcRoundTrips) {
  const int64_t first = CalibrateVersion(/*activate=*/true, 1);
  const int64_t second = CalibrateVersion(/*activate=*/false, 2);
  ASSERT_GT(first, 0);
  ASSERT_EQ(second, first + 1);
  EXPECT_THAT(Versions(), ::testing::IsSupersetOf({first, second}));

  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->active_version(), first);

  v1::GetVersionRequest get;
  get.mutable_selector()->set_version(second);
  get.set_view(v1::VERSION_VIEW_FULL);
  auto got = client_->GetVersion(get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->statistics_version().rows_seen(), 500);
  EXPECT_EQ(got->statistics_version().description(), "client_test");
  EXPECT_EQ(got->statistics_version().statistics().mean_size(), width_);

  v1::ActivateRequest activate;
  activate.set_version(second);
  auto activated = client_->Activate(activate);
  ASSERT_TRUE(activated.ok()) << activated.status();
  EXPECT_EQ(activated->previous_version(), first);
  auto rolled = client_->Rollback({});
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(rolled->active_version(), first);

  v1::SetAliasRequest alias;
  alias.set_alias("canary");
  alias.set_version(second);
  ASSERT_TRUE(client_->SetAlias(alias).ok());
  v1::GetVersionRequest by_alias;
  by_alias.mutable_selector()->set_alias("canary");
  auto canary = client_->GetVersion(by_alias);
  ASSERT_TRUE(canary.ok()) << canary.status();
  EXPECT_EQ(canary->statistics_version().version(), second);

  // Delete refuses an aliased version with the server's code and message intact.
  v1::DeleteVersionRequest del;
  del.set_version(second);
  absl::Status refused = client_->DeleteVersion(del).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_FALSE(refused.message().empty());

  v1::ExportVersionRequest exp;
  exp.mutable_selector()->set_version(second);
  exp.set_export_format(v1::EXPORT_FORMAT_BINARY);
  auto exported = client_->ExportVersion(exp);
  ASSERT_TRUE(exported.ok()) << exported.status();
  v1::ImportVersionRequest imp;
  imp.set_content(exported->content());
  imp.set_description("reimported");
  auto imported = client_->ImportVersion(imp);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_GT(imported->statistics_version().version(), second);
  EXPECT_EQ(imported->statistics_version().payload_sha256(),
            got->statistics_version().payload_sha256());

  v1::DeleteVersionRequest del_imported;
  del_imported.set_version(imported->statistics_version().version());
  ASSERT_TRUE(client_->DeleteVersion(del_imported).ok());
  EXPECT_THAT(Versions(),
              ::testing::Not(::testing::Contains(imported->statistics_version().version())));

  v1::GetVersionRequest missing;
  missing.mutable_selector()->set_version(987654);
  EXPECT_EQ(client_->GetVersion(missing).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, MergeAndResumableJobs) {
  const int64_t a = CalibrateVersion(false, 11);
  const int64_t b = CalibrateVersion(false, 12);
  v1::MergeRequest merge;
  merge.add_versions(a);
  merge.add_versions(b);
  merge.set_description("client_test merge");
  auto merged = client_->Merge(merge);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->statistics_version().rows_seen(), 1000);
  EXPECT_THAT(merged->statistics_version().parent_versions(), ::testing::ElementsAre(a, b));

  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  header.set_job_id("client-test-job");
  header.set_checkpoint_every_batches(1);
  auto writer = client_->Calibrate(header);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<float> rows = Logits(100, 13);
  ASSERT_TRUE((*writer)->WriteLogits(rows.data(), 100, width_).ok());
  v1::GetCalibrationJobRequest job;
  job.set_job_id("client-test-job");
  absl::StatusOr<v1::GetCalibrationJobResponse> checkpoint;
  for (int i = 0; i < 200; ++i) {  // the checkpoint is saved when the server has the batch
    checkpoint = client_->GetCalibrationJob(job);
    if (checkpoint.ok()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->job().batches_seen(), 1);
  EXPECT_EQ(checkpoint->job().rows_seen(), 100);
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ(client_->GetCalibrationJob(job).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, CalibrationWriterReportsTheServersErrorAndCancelCommitsNothing) {
  const std::vector<int64_t> before = Versions();
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  {
    auto writer = client_->Calibrate(header);
    ASSERT_TRUE(writer.ok());
    const std::vector<float> wrong(3 * (width_ + 1), 0.5f);
    absl::Status status = (*writer)->WriteLogits(wrong.data(), 3, width_ + 1);
    if (status.ok()) status = (*writer)->Commit().status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr("width"));
    // Later calls keep the error.
    EXPECT_EQ((*writer)->Commit().status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    auto writer = client_->Calibrate(header);
    ASSERT_TRUE(writer.ok());
    const std::vector<float> rows = Logits(50, 3);
    ASSERT_TRUE((*writer)->WriteLogits(rows.data(), 50, width_).ok());
    (*writer)->Cancel();
    EXPECT_EQ((*writer)->Commit().status().code(), absl::StatusCode::kCancelled);
  }
  EXPECT_EQ(Versions(), before);
}

TEST_F(ClientTest, DetectApplyAndDetectStream) {
  CalibrateVersion(/*activate=*/true, 4);
  v1::DetectRequest request;
  request.add_images()->set_encoded(Png(48, 64, 1));
  request.mutable_images(0)->set_image_id("a");
  request.add_images()->set_encoded(Png(40, 56, 2));
  request.mutable_images(1)->set_image_id("b");
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  request.mutable_postprocess()->set_score_threshold(0.0f);
  auto detected = client_->Detect(request);
  ASSERT_TRUE(detected.ok()) << detected.status();
  ASSERT_EQ(detected->results_size(), 2);
  EXPECT_EQ(detected->results(1).image_detections(1).image_id(), "b");
  EXPECT_GT(detected->version(), 0);

  std::unique_ptr<DetectStream> stream = client_->OpenDetectStream();
  for (int i = 0; i < 3; ++i) {
    request.set_request_id(absl::StrCat("r", i));
    // Both overloads: a copy of `request`, and the last one moved.
    ASSERT_TRUE(i < 2 ? stream->Write(request) : stream->Write(std::move(request)));
  }
  stream->WritesDone();
  std::vector<std::string> ids;
  while (auto response = stream->Read()) ids.push_back(response->request_id());
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_THAT(ids, ::testing::ElementsAre("r0", "r1", "r2"));

  v1::ApplyRequest apply;
  const std::vector<float> rows = Logits(4, 9);
  apply.mutable_logits()->set_rows(4);
  apply.mutable_logits()->set_width(width_);
  apply.mutable_logits()->set_data(rows.data(), rows.size() * sizeof(float));
  apply.mutable_calibration()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  apply.set_include_scores(true);
  auto applied = client_->Apply(apply);
  ASSERT_TRUE(applied.ok()) << applied.status();
  // NONE returns the logits unchanged.
  EXPECT_EQ(applied->logits().data(), apply.logits().data());
  EXPECT_EQ(applied->scores().rows(), 4);

  v1::DetectRequest bad;
  bad.add_images()->set_encoded("not an image");
  absl::Status status = client_->Detect(bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

}  // namespace
}  // namespace logn
