// logn::Client's ModelService and DriftService calls against in-process fakes: what each call
// sends (fields, the bearer token), what comes back, and which calls are retried.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/lib/client.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::ElementsAre;

constexpr char kAdminToken[] = "admin-s3cret";

// What the fakes saw, shared by both services: calls per method, the last authorization header,
// and how many more calls of each method fail with UNAVAILABLE before one is answered.
struct Recorder {
  absl::Mutex mu;
  std::map<std::string, int> calls ABSL_GUARDED_BY(mu);
  std::map<std::string, int> unavailable ABSL_GUARDED_BY(mu);
  std::string authorization ABSL_GUARDED_BY(mu);

  // Counts the call; UNAVAILABLE while `unavailable[method]` lasts, UNAUTHENTICATED /
  // PERMISSION_DENIED for an admin call without / with a wrong token (as the server does).
  grpc::Status Enter(grpc::ServerContext* context, const std::string& method, bool admin) {
    absl::MutexLock lock(&mu);
    ++calls[method];
    auto it = context->client_metadata().find("authorization");
    authorization = it == context->client_metadata().end()
                        ? ""
                        : std::string(it->second.data(), it->second.size());
    if (unavailable[method] > 0) {
      --unavailable[method];
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
    }
    if (admin && authorization.empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "send the admin token");
    }
    if (admin && authorization != absl::StrCat("Bearer ", kAdminToken)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "wrong admin token");
    }
    return grpc::Status::OK;
  }
  int Calls(const std::string& method) {
    absl::MutexLock lock(&mu);
    return calls[method];
  }
  std::string Authorization() {
    absl::MutexLock lock(&mu);
    return authorization;
  }
  void FailNext(const std::string& method, int times) {
    absl::MutexLock lock(&mu);
    unavailable[method] = times;
  }
};

v1::ModelVersionStatus VersionStatus(const std::string& name, int64_t version,
                                     v1::ModelVersionState state) {
  v1::ModelVersionStatus s;
  s.set_model_name(name);
  s.set_model_version(version);
  s.set_state(state);
  return s;
}

class FakeModels final : public v1::ModelService::Service {
 public:
  explicit FakeModels(Recorder* recorder) : recorder_(recorder) {}
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "ListModels", false); !s.ok()) return s;
    for (int64_t version : {1, 2}) {
      if (!request->model_name().empty() && request->model_name() != "lvis") continue;
      *response->add_model_versions() =
          VersionStatus("lvis", version, v1::MODEL_VERSION_STATE_AVAILABLE);
    }
    if (response->model_versions_size() == 2) {
      response->mutable_model_versions(1)->set_is_default(true);
    }
    response->set_repository("/models");
    return grpc::Status::OK;
  }
  grpc::Status LoadModel(grpc::ServerContext* context, const v1::LoadModelRequest* request,
                         v1::LoadModelResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "LoadModel", true); !s.ok()) return s;
    *response->mutable_model_version_status() = VersionStatus(
        request->model_name(), request->model_version(), v1::MODEL_VERSION_STATE_AVAILABLE);
    response->mutable_model_version_status()->set_pinned(true);
    return grpc::Status::OK;
  }
  grpc::Status UnloadModel(grpc::ServerContext* context, const v1::UnloadModelRequest* request,
                           v1::UnloadModelResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "UnloadModel", true); !s.ok()) return s;
    *response->mutable_model_version_status() = VersionStatus(
        request->model_name(), request->model_version(), v1::MODEL_VERSION_STATE_UNLOADING);
    return grpc::Status::OK;
  }
  grpc::Status ReloadModels(grpc::ServerContext* context, const v1::ReloadModelsRequest* request,
                            v1::ReloadModelsResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "ReloadModels", true); !s.ok()) return s;
    *response->add_model_versions() = VersionStatus(request->model_name(), request->model_version(),
                                                    v1::MODEL_VERSION_STATE_LOADING);
    return grpc::Status::OK;
  }

 private:
  Recorder* recorder_;
};

class FakeDrift final : public v1::DriftService::Service {
 public:
  explicit FakeDrift(Recorder* recorder) : recorder_(recorder) {}
  grpc::Status GetDrift(grpc::ServerContext* context, const v1::GetDriftRequest* request,
                        v1::GetDriftResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "GetDrift", false); !s.ok()) return s;
    response->set_model_name(request->model_name());
    response->set_model_version(request->model_version() == 0 ? 2 : request->model_version());
    response->set_state(v1::DRIFT_STATE_MONITORING);
    response->set_reference_version(7);
    response->mutable_overall()->set_score(0.25);
    for (int k = 0; k < request->top_k(); ++k) {
      v1::ClassDrift* c = response->add_classes();
      c->set_category_id(k + 1);
      c->mutable_drift()->set_score(1.0 / (k + 1));
    }
    return grpc::Status::OK;
  }
  grpc::Status CaptureDriftReference(grpc::ServerContext* context,
                                     const v1::CaptureDriftReferenceRequest* request,
                                     v1::CaptureDriftReferenceResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "CaptureDriftReference", true); !s.ok()) {
      return s;
    }
    response->set_state(request->from_next_window() ? v1::DRIFT_STATE_COLLECTING_REFERENCE
                                                    : v1::DRIFT_STATE_MONITORING);
    if (!request->from_next_window()) {
      response->mutable_statistics_version()->set_version(8);
      response->mutable_statistics_version()->set_description(request->description());
      response->mutable_statistics_version()->set_source(v1::VERSION_SOURCE_SERVED_TRAFFIC);
    }
    return grpc::Status::OK;
  }
  grpc::Status SnapshotLiveStatistics(grpc::ServerContext* context,
                                      const v1::SnapshotLiveStatisticsRequest* request,
                                      v1::SnapshotLiveStatisticsResponse* response) override {
    if (grpc::Status s = recorder_->Enter(context, "SnapshotLiveStatistics", true); !s.ok()) {
      return s;
    }
    response->mutable_statistics_version()->set_version(9);
    response->mutable_statistics_version()->set_description(request->description());
    return grpc::Status::OK;
  }

 private:
  Recorder* recorder_;
};

class ClientServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&models_);
    builder.RegisterService(&drift_);
    server_ = builder.BuildAndStart();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<Client> Connect(const std::string& token) {
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port_);
    options.bearer_token = token;
    options.retry.max_attempts = 4;
    options.retry.initial_backoff = absl::Milliseconds(1);
    options.retry.max_backoff = absl::Milliseconds(5);
    options.on_retry = [this](absl::string_view method, int attempt, const absl::Status&) {
      absl::MutexLock lock(&retries_mu_);
      retries_.emplace_back(std::string(method), attempt);
    };
    auto client = Client::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::vector<std::pair<std::string, int>> Retries() {
    absl::MutexLock lock(&retries_mu_);
    return retries_;
  }

  Recorder recorder_;
  FakeModels models_{&recorder_};
  FakeDrift drift_{&recorder_};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex retries_mu_;
  std::vector<std::pair<std::string, int>> retries_ ABSL_GUARDED_BY(retries_mu_);
};

using Retry = std::pair<std::string, int>;

TEST_F(ClientServicesTest, ListModelsFiltersAndIsRetried) {
  std::unique_ptr<Client> client = Connect("");
  ASSERT_NE(client, nullptr);
  recorder_.FailNext("ListModels", 2);
  auto listed = client->ListModels();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->model_versions_size(), 2);
  EXPECT_EQ(listed->model_versions(1).model_version(), 2);
  EXPECT_TRUE(listed->model_versions(1).is_default());
  EXPECT_EQ(listed->repository(), "/models");
  EXPECT_EQ(recorder_.Calls("ListModels"), 3);
  EXPECT_THAT(Retries(), ElementsAre(Retry{"ListModels", 2}, Retry{"ListModels", 3}));

  v1::ListModelsRequest other;
  other.set_model_name("coco");
  auto none = client->ListModels(other);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->model_versions_size(), 0) << "the filter reached the server";
}

TEST_F(ClientServicesTest, LoadModelSendsTheAdminTokenAndIsNeverRetried) {
  v1::LoadModelRequest load;
  load.set_model_name("lvis");
  load.set_model_version(3);

  // The server's own refusals come back as they are.
  EXPECT_EQ(Connect("")->LoadModel(load).status().code(), absl::StatusCode::kUnauthenticated);
  absl::Status wrong = Connect("guess")->LoadModel(load).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(wrong.message(), "wrong admin token");

  std::unique_ptr<Client> admin = Connect(kAdminToken);
  auto loaded = admin->LoadModel(load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(recorder_.Authorization(), absl::StrCat("Bearer ", kAdminToken));
  EXPECT_EQ(loaded->model_version_status().model_name(), "lvis");
  EXPECT_EQ(loaded->model_version_status().model_version(), 3);
  EXPECT_TRUE(loaded->model_version_status().pinned());
  EXPECT_EQ(recorder_.Calls("LoadModel"), 3);

  // UNAVAILABLE on a mutation: one attempt, the status as the server sent it.
  recorder_.FailNext("LoadModel", 1);
  absl::Status unavailable = admin->LoadModel(load).status();
  EXPECT_EQ(unavailable.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(unavailable.message(), "restarting");
  EXPECT_EQ(recorder_.Calls("LoadModel"), 4);
  EXPECT_THAT(Retries(), ::testing::IsEmpty());
}

TEST_F(ClientServicesTest, UnloadAndReloadAreAdminMutations) {
  std::unique_ptr<Client> admin = Connect(kAdminToken);
  v1::UnloadModelRequest unload;
  unload.set_model_name("lvis");
  unload.set_model_version(1);
  auto unloaded = admin->UnloadModel(unload);
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->model_version_status().state(), v1::MODEL_VERSION_STATE_UNLOADING);
  auto reloaded = admin->ReloadModels();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->model_versions(0).model_name(), "") << "every model";

  recorder_.FailNext("UnloadModel", 1);
  recorder_.FailNext("ReloadModels", 1);
  EXPECT_EQ(admin->UnloadModel(unload).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(admin->ReloadModels().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(recorder_.Calls("UnloadModel"), 2);
  EXPECT_EQ(recorder_.Calls("ReloadModels"), 2);
  EXPECT_EQ(Connect("")->ReloadModels().status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ClientServicesTest, GetDriftPassesTheRequestAndIsRetried) {
  std::unique_ptr<Client> client = Connect("");
  v1::GetDriftRequest request;
  request.set_model_name("lvis");
  request.set_model_version(1);
  request.set_top_k(3);
  recorder_.FailNext("GetDrift", 1);
  auto drift = client->GetDrift(request);
  ASSERT_TRUE(drift.ok()) << drift.status();
  EXPECT_EQ(drift->model_name(), "lvis");
  EXPECT_EQ(drift->model_version(), 1);
  EXPECT_EQ(drift->state(), v1::DRIFT_STATE_MONITORING);
  EXPECT_EQ(drift->reference_version(), 7);
  EXPECT_DOUBLE_EQ(drift->overall().score(), 0.25);
  ASSERT_EQ(drift->classes_size(), 3);
  EXPECT_EQ(drift->classes(2).category_id(), 3);
  EXPECT_THAT(Retries(), ElementsAre(Retry{"GetDrift", 2}));
  auto newest = client->GetDrift();
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->model_version(), 2) << "0 asks for the newest available version";
}

TEST_F(ClientServicesTest, DriftCapturesAndSnapshotsAreAdminMutations) {
  std::unique_ptr<Client> admin = Connect(kAdminToken);
  v1::CaptureDriftReferenceRequest capture;
  capture.set_description("after the v2 rollout");
  auto captured = admin->CaptureDriftReference(capture);
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_EQ(captured->statistics_version().version(), 8);
  EXPECT_EQ(captured->statistics_version().source(), v1::VERSION_SOURCE_SERVED_TRAFFIC);
  capture.set_from_next_window(true);
  auto next = admin->CaptureDriftReference(capture);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(next->has_statistics_version());
  EXPECT_EQ(next->state(), v1::DRIFT_STATE_COLLECTING_REFERENCE);

  v1::SnapshotLiveStatisticsRequest snapshot;
  snapshot.set_description("monday");
  auto stored = admin->SnapshotLiveStatistics(snapshot);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->statistics_version().description(), "monday");

  recorder_.FailNext("CaptureDriftReference", 1);
  recorder_.FailNext("SnapshotLiveStatistics", 1);
  EXPECT_EQ(admin->CaptureDriftReference(capture).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(admin->SnapshotLiveStatistics(snapshot).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(recorder_.Calls("CaptureDriftReference"), 3);
  EXPECT_EQ(recorder_.Calls("SnapshotLiveStatistics"), 2);
  EXPECT_THAT(Retries(), ::testing::IsEmpty());
  EXPECT_EQ(Connect("")->SnapshotLiveStatistics(snapshot).status().code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace logn
