#include "server/core/calibration_job.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/proto_convert.h"
#include "server/core/testing/test_inputs.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

using core_testing::ContractModelPath;
using core_testing::SyntheticPng;

// A job's dependencies built by hand, as the server core would: a loaded runtime, a fresh
// SQLite store and a fixed clock.
class CalibrationJobTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DetectorRuntime::Options options;
    options.model_path = ContractModelPath();
    options.intra_op_threads = 1;
    auto runtime = DetectorRuntime::Load(options);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    runtime_ = runtime->release();
  }
  static void TearDownTestSuite() {
    delete runtime_;
    runtime_ = nullptr;
  }

  void SetUp() override {
    store_ = OpenStatsStore(store_testing::FreshSqliteUrl("calibration_job_test")).value();
    deps_.store = store_.get();
    deps_.runtime = runtime_;
    deps_.model = store_testing::UniqueModel("calibration_job_test");
    deps_.now = [] { return kNow; };
    width_ = runtime_->layout().width();
  }

  v1::LogitBatch RandomBatch(int64_t rows) {
    std::vector<float> values(rows * width_);
    for (float& v : values) v = static_cast<float>(absl::Gaussian<double>(gen_, 0.0, 2.0));
    v1::LogitBatch batch;
    LogitsToProto(values, rows, width_, &batch);
    return batch;
  }

  static v1::CalibrateHeader LogitsHeader() {
    v1::CalibrateHeader header;
    header.set_source(v1::VERSION_SOURCE_LOGITS);
    return header;
  }

  static inline const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);
  static inline DetectorRuntime* runtime_ = nullptr;
  std::unique_ptr<StatsStore> store_;
  CalibrationJobDeps deps_;
  int32_t width_ = 0;
  absl::BitGen gen_;
};

TEST_F(CalibrationJobTest, CommitsOneVersionStampedByTheGivenClockAndModel) {
  v1::CalibrateHeader header = LogitsHeader();
  header.set_description("from the test");
  header.set_activate(true);
  auto job = CalibrationJob::Start(deps_, header).value();
  ASSERT_TRUE(job->AddLogits(RandomBatch(40)).ok());
  ASSERT_TRUE(job->AddLogits(RandomBatch(60)).ok());
  const v1::CalibrateResponse response = job->Commit().value();
  EXPECT_EQ(response.rows_seen(), 100);
  EXPECT_EQ(response.batches_seen(), 2);
  EXPECT_EQ(response.statistics_version().version(), 1);
  EXPECT_EQ(response.statistics_version().source(), v1::VERSION_SOURCE_LOGITS);
  EXPECT_THAT(response.statistics_version().aliases(), ::testing::ElementsAre("active"));

  const VersionRecord stored = store_->Get(deps_.model, VersionSelector::Active()).value();
  EXPECT_EQ(stored.statistics.count, 100);
  EXPECT_EQ(stored.statistics.provenance.created_at, kNow);
  EXPECT_EQ(stored.statistics.provenance.model_sha256, deps_.model.sha256);
  EXPECT_EQ(stored.statistics.provenance.description, "from the test");
  EXPECT_EQ(stored.statistics.provenance.batches_seen, 2);

  const absl::Status again = job->Commit().status();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.message()), HasSubstr("already committed"));
}

TEST_F(CalibrationJobTest, LimitsComeFromTheDependencies) {
  deps_.max_rows_per_batch = 10;
  deps_.max_rows_per_job = 15;
  deps_.max_images_per_batch = 1;
  auto job = CalibrationJob::Start(deps_, LogitsHeader()).value();
  EXPECT_EQ(job->AddLogits(RandomBatch(11)).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(job->AddLogits(RandomBatch(10)).ok());
  const absl::Status over = job->AddLogits(RandomBatch(6));
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.message()), HasSubstr("would exceed 15 rows"));
  EXPECT_EQ(job->rows(), 10);
  EXPECT_EQ(job->batches(), 1);

  v1::CalibrateHeader images_header;
  images_header.set_source(v1::VERSION_SOURCE_IMAGES);
  auto images_job = CalibrationJob::Start(deps_, images_header).value();
  v1::ImageBatch two;
  for (int i = 0; i < 2; ++i) {
    two.add_annotated_images()->mutable_image()->set_encoded(
        SyntheticPng(40, 56, static_cast<uint8_t>(i)));
  }
  EXPECT_EQ(images_job->AddImages(two).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(CalibrationJobTest, BatchesOfTheOtherSourceAndSenselessHeadersAreRefused) {
  auto job = CalibrationJob::Start(deps_, LogitsHeader()).value();
  v1::ImageBatch images;
  images.add_annotated_images()->mutable_image()->set_encoded(SyntheticPng(40, 56, 1));
  const absl::Status status = job->AddImages(images);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("declared source LOGITS"));
  EXPECT_EQ(job->Commit().status().code(), absl::StatusCode::kFailedPrecondition);  // no rows

  v1::CalibrateHeader header = LogitsHeader();
  header.set_partial(true);
  header.set_activate(true);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
  header = LogitsHeader();
  header.set_resume(true);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
  header = LogitsHeader();
  header.mutable_ema()->set_momentum(0.1);
  header.mutable_ema()->mutable_init()->set_alias("Bad Alias");
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CalibrationJobTest, CheckpointIntervalFollowsTheHeaderThenTheDefault) {
  deps_.default_checkpoint_every_batches = 2;
  v1::CalibrateHeader header = LogitsHeader();
  header.set_job_id("by-default");
  {
    auto job = CalibrationJob::Start(deps_, header).value();
    for (int b = 0; b < 3; ++b) ASSERT_TRUE(job->AddLogits(RandomBatch(20)).ok());
  }
  EXPECT_EQ(store_->GetCheckpoint(deps_.model, "by-default").value().batches, 2);

  header.set_job_id("never");
  header.set_checkpoint_every_batches(-1);
  {
    auto job = CalibrationJob::Start(deps_, header).value();
    for (int b = 0; b < 3; ++b) ASSERT_TRUE(job->AddLogits(RandomBatch(20)).ok());
  }
  EXPECT_EQ(store_->GetCheckpoint(deps_.model, "never").status().code(),
            absl::StatusCode::kNotFound);

  // Resuming "by-default" after its checkpoint continues its counts; committing clears it.
  header.set_job_id("by-default");
  header.set_checkpoint_every_batches(0);
  header.set_resume(true);
  header.set_resume_from_batch(2);
  auto resumed = CalibrationJob::Start(deps_, header).value();
  EXPECT_EQ(resumed->rows(), 40);
  EXPECT_EQ(resumed->batches(), 2);
  ASSERT_TRUE(resumed->AddLogits(RandomBatch(20)).ok());
  EXPECT_EQ(resumed->Commit().value().rows_seen(), 60);
  EXPECT_EQ(store_->GetCheckpoint(deps_.model, "by-default").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CalibrationJobTest, ImagesWithoutGroundTruthAccumulateTheModelsCandidates) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  auto job = CalibrationJob::Start(deps_, header).value();
  v1::ImageBatch batch;
  std::vector<std::string> pngs;
  for (int i = 0; i < 2; ++i) pngs.push_back(SyntheticPng(48, 64, static_cast<uint8_t>(i)));
  for (const std::string& png : pngs) {
    batch.add_annotated_images()->mutable_image()->set_encoded(png);
  }
  ASSERT_TRUE(job->AddImages(batch).ok());
  const std::vector<ImageSource> sources = {ImageSource::Encoded(pngs[0]),
                                            ImageSource::Encoded(pngs[1])};
  const DetectorRuntime::ForwardResult forward = runtime_->Forward(sources).value();
  EXPECT_EQ(job->rows(),
            forward.images[0].num_candidates + forward.images[1].num_candidates);
  EXPECT_EQ(job->images(), 2);
}

}  // namespace
}  // namespace logn
