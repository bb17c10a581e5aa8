// The job helpers against in-process fakes of GetCalibrationJob and ListVersions, so every
// branch (checkpoint, none, committed, server errors) is reached on purpose.
#include "client/lib/calibration_jobs.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

// GetCalibrationJob: the checkpoints in `jobs`, NOT_FOUND for the rest, or `error` when set.
class FakeCalibration final : public v1::CalibrationService::Service {
 public:
  grpc::Status GetCalibrationJob(grpc::ServerContext*, const v1::GetCalibrationJobRequest* request,
                                 v1::GetCalibrationJobResponse* response) override {
    absl::MutexLock lock(&mu);
    last_request = *request;
    if (!error.ok()) return error;
    auto it = jobs.find(request->job_id());
    if (it == jobs.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no checkpoint");
    *response->mutable_job() = it->second;
    return grpc::Status::OK;
  }

  absl::Mutex mu;
  std::map<std::string, v1::CalibrationJob> jobs ABSL_GUARDED_BY(mu);
  grpc::Status error ABSL_GUARDED_BY(mu);
  v1::GetCalibrationJobRequest last_request ABSL_GUARDED_BY(mu);
};

// ListVersions over `versions` with the real server's filters, `page_size` at a time (the token
// is the next index); NOT_FOUND while there is no version, as a server may answer.
class FakeStats final : public v1::StatsStoreService::Service {
 public:
  grpc::Status ListVersions(grpc::ServerContext*, const v1::ListVersionsRequest* request,
                            v1::ListVersionsResponse* response) override {
    absl::MutexLock lock(&mu);
    ++pages;
    last_request = *request;
    if (!error.ok()) return error;
    if (versions.empty()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no version yet");
    size_t next = 0;
    if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &next)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad token");
    }
    const int page_size = request->page_size() > 0 ? request->page_size() : 100;
    for (; next < versions.size(); ++next) {
      if (response->statistics_versions_size() == page_size) {
        response->set_next_page_token(absl::StrCat(next));
        break;
      }
      if (Matches(*request, versions[next])) *response->add_statistics_versions() = versions[next];
    }
    return grpc::Status::OK;
  }

  static bool Matches(const v1::ListVersionsRequest& filter, const v1::StatisticsVersion& v) {
    return (!filter.has_job_id() || filter.job_id() == v.job_id()) &&
           (!filter.has_source() || filter.source() == v.source()) &&
           (!filter.has_partial() || filter.partial() == v.partial());
  }

  absl::Mutex mu;
  std::vector<v1::StatisticsVersion> versions ABSL_GUARDED_BY(mu);
  grpc::Status error ABSL_GUARDED_BY(mu);
  int pages ABSL_GUARDED_BY(mu) = 0;
  v1::ListVersionsRequest last_request ABSL_GUARDED_BY(mu);
};

class CalibrationJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&calibration_);
    builder.RegisterService(&stats_);
    server_ = builder.BuildAndStart();
    ASSERT_GT(port, 0);
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port);
    options.retry.max_attempts = 1;
    auto client = Client::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  void TearDown() override { server_->Shutdown(); }

  // Versions 1..n; version k was committed by job "job-k", partial when k is odd.
  void AddVersions(int n) {
    absl::MutexLock lock(&stats_.mu);
    for (int k = 1; k <= n; ++k) AddVersion(absl::StrCat("job-", k), k % 2 == 1);
  }
  void AddVersion(const std::string& job_id, bool partial)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_.mu) {
    v1::StatisticsVersion& v = stats_.versions.emplace_back();
    v.set_version(static_cast<int64_t>(stats_.versions.size()));
    v.set_job_id(job_id);
    v.set_partial(partial);
  }
  void AddCheckpoint(const std::string& job_id, int64_t batches) {
    absl::MutexLock lock(&calibration_.mu);
    v1::CalibrationJob& job = calibration_.jobs[job_id];
    job.set_job_id(job_id);
    job.set_batches_seen(batches);
    job.set_rows_seen(batches * 10);
  }
  int Pages() {
    absl::MutexLock lock(&stats_.mu);
    return stats_.pages;
  }
  v1::ListVersionsRequest LastListRequest() {
    absl::MutexLock lock(&stats_.mu);
    return stats_.last_request;
  }
  v1::CalibrateHeader Header(const std::string& job_id) {
    v1::CalibrateHeader header;
    header.set_job_id(job_id);
    return header;
  }

  FakeCalibration calibration_;
  FakeStats stats_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
};

TEST(DefaultRowsPerBatchTest, AboutFourMebibytesAndAtLeastOneRow) {
  EXPECT_EQ(DefaultRowsPerBatch(6), (4 << 20) / 24);
  EXPECT_EQ(DefaultRowsPerBatch(1204), (4 << 20) / (4 * 1204));
  EXPECT_EQ(DefaultRowsPerBatch(0), 1 << 20);  // treated as one column
  EXPECT_EQ(DefaultRowsPerBatch(1 << 21), 1);
}

TEST(ShardRangeTest, ContiguousSlicesCoverTheInputOnce) {
  int64_t next = 0;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ItemRange> range = ShardRange(1001, i, 3, "rows");
    ASSERT_TRUE(range.ok()) << range.status();
    EXPECT_EQ(range->begin, next);
    EXPECT_GE(range->size(), 333);
    EXPECT_LE(range->size(), 334);
    next = range->end;
  }
  EXPECT_EQ(next, 1001);
  absl::StatusOr<ItemRange> whole = ShardRange(7, 0, 1, "images");
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->begin, 0);
  EXPECT_EQ(whole->end, 7);
}

TEST(ShardRangeTest, EmptyAndInvalidShardsAreRefused) {
  absl::StatusOr<ItemRange> empty = ShardRange(10, 0, 11, "rows");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(), "shard 0/11 of 10 rows is empty: use fewer shards");
  EXPECT_THAT(ShardRange(0, 0, 1, "images").status().message(), HasSubstr("0 images is empty"));
  for (auto [index, count] : {std::pair{3, 3}, std::pair{-1, 2}, std::pair{0, 0}}) {
    EXPECT_EQ(ShardRange(100, index, count, "rows").status().code(),
              absl::StatusCode::kInvalidArgument)
        << index << "/" << count;
  }
}

TEST(RemainingItemsTest, SkipsTheCheckpointedBatchesOfTheShard) {
  const ItemRange shard{100, 200};
  ResumePoint resume;
  absl::StatusOr<ItemRange> all = RemainingItems(shard, 30, resume, "j");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->begin, 100);
  resume.first_batch = 3;
  absl::StatusOr<ItemRange> rest = RemainingItems(shard, 30, resume, "j");
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->begin, 190);
  EXPECT_EQ(rest->end, 200);
  resume.first_batch = 4;  // 220: another input or batch size than the job's
  absl::StatusOr<ItemRange> past = RemainingItems(shard, 30, resume, "j");
  EXPECT_EQ(past.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(past.status().message(),
            "job 'j' checkpointed after batch 4, past the end of this input: is it the same "
            "input and batch size?");
}

TEST_F(CalibrationJobsTest, FindVersionByJobIdAsksTheServerToFilter) {
  AddVersions(2500);
  absl::StatusOr<int64_t> found = FindVersionByJobId(*client_, "job-2345");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, 2345) << "a partial version counts";
  EXPECT_EQ(Pages(), 1);
  const v1::ListVersionsRequest request = LastListRequest();
  EXPECT_TRUE(request.has_job_id());
  EXPECT_EQ(request.job_id(), "job-2345");
  EXPECT_FALSE(request.has_partial());
  EXPECT_FALSE(request.has_source());
  absl::StatusOr<int64_t> missing = FindVersionByJobId(*client_, "job-0");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, 0);
  EXPECT_EQ(Pages(), 2);
  found = FindVersionByJobId(*client_, "job-2000");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, 2000) << "a complete version counts";
}

TEST_F(CalibrationJobsTest, FindVersionByJobIdReturnsTheJobsFirstVersion) {
  {
    absl::MutexLock lock(&stats_.mu);
    AddVersion("other", false);
    AddVersion("twice", true);
    AddVersion("", false);
    AddVersion("twice", false);
  }
  absl::StatusOr<int64_t> found = FindVersionByJobId(*client_, "twice");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, 2);
  absl::StatusOr<int64_t> anonymous = FindVersionByJobId(*client_, "");
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  EXPECT_EQ(*anonymous, 3) << "an empty id finds the versions without one";
}

TEST_F(CalibrationJobsTest, FindVersionByJobIdOnAnEmptyStoreAndOnErrors) {
  absl::StatusOr<int64_t> none = FindVersionByJobId(*client_, "job-1");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0);
  {
    absl::MutexLock lock(&stats_.mu);
    stats_.error = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no listing for you");
  }
  absl::StatusOr<int64_t> denied = FindVersionByJobId(*client_, "job-1");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.status().message(), "no listing for you");
}

TEST_F(CalibrationJobsTest, PrepareResumeContinuesAfterTheCheckpoint) {
  AddCheckpoint("job-42", 5);
  v1::CalibrateHeader header = Header("job-42");
  absl::StatusOr<ResumePoint> resume = PrepareResume(*client_, &header);
  ASSERT_TRUE(resume.ok()) << resume.status();
  EXPECT_EQ(resume->first_batch, 5);
  ASSERT_TRUE(resume->checkpoint.has_value());
  EXPECT_EQ(resume->checkpoint->rows_seen(), 50);
  EXPECT_TRUE(header.resume());
  EXPECT_EQ(header.resume_from_batch(), 5);
  EXPECT_EQ(Pages(), 0) << "a checkpoint needs no version lookup";
}

TEST_F(CalibrationJobsTest, PrepareResumeWithoutCheckpointStartsOver) {
  AddVersions(3);
  v1::CalibrateHeader header = Header("job-new");
  absl::StatusOr<ResumePoint> resume = PrepareResume(*client_, &header);
  ASSERT_TRUE(resume.ok()) << resume.status();
  EXPECT_EQ(resume->first_batch, 0);
  EXPECT_FALSE(resume->checkpoint.has_value());
  EXPECT_FALSE(header.resume());
  EXPECT_EQ(header.resume_from_batch(), 0);
}

TEST_F(CalibrationJobsTest, PrepareResumeRefusesACommittedJob) {
  AddVersions(3);
  v1::CalibrateHeader header = Header("job-2");
  absl::StatusOr<ResumePoint> resume = PrepareResume(*client_, &header);
  EXPECT_EQ(resume.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(resume.status().message(),
            "job 'job-2' already committed as version 2; nothing to resume");
  EXPECT_FALSE(header.resume());
}

TEST_F(CalibrationJobsTest, PrepareResumeLooksInTheHeadersModelVersion) {
  AddVersions(1);
  v1::CalibrateHeader header = Header("job-9");
  header.set_model_name("lvis");
  header.set_model_version(3);
  ASSERT_TRUE(PrepareResume(*client_, &header).ok());
  {
    absl::MutexLock lock(&calibration_.mu);
    EXPECT_EQ(calibration_.last_request.model_name(), "lvis");
    EXPECT_EQ(calibration_.last_request.model_version(), 3);
  }
  EXPECT_EQ(LastListRequest().model_name(), "lvis");
  EXPECT_EQ(LastListRequest().model_version(), 3);
  // Without a model in the header both calls name none: the server's default.
  v1::CalibrateHeader plain = Header("job-9");
  ASSERT_TRUE(PrepareResume(*client_, &plain).ok());
  EXPECT_EQ(LastListRequest().model_name(), "");
  EXPECT_EQ(LastListRequest().model_version(), 0);
}

TEST_F(CalibrationJobsTest, PrepareResumePassesServerErrorsAndNeedsAJobId) {
  {
    absl::MutexLock lock(&calibration_.mu);
    calibration_.error = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "who are you");
  }
  v1::CalibrateHeader header = Header("job-1");
  EXPECT_EQ(PrepareResume(*client_, &header).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Pages(), 0);
  v1::CalibrateHeader anonymous;
  EXPECT_EQ(PrepareResume(*client_, &anonymous).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
