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
  EXPECT_EQ(job->SamplingRecord()->roi_source, RoiSource::kDetections);
  EXPECT_EQ(job->SamplingRecord()->rois, job->rows());
}

TEST_F(CalibrationJobTest, EmaNeedsAStartAndReportsTheWeightItStillHas) {
  v1::CalibrateHeader header = LogitsHeader();
  header.mutable_ema()->set_momentum(0.1);
  const absl::Status no_start = CalibrationJob::Start(deps_, header).status();
  EXPECT_EQ(no_start.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_start.message()), HasSubstr("from_prior"));
  header.mutable_ema()->mutable_init()->set_alias("active");
  header.mutable_ema()->set_from_prior(true);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);  // both

  header.mutable_ema()->clear_init();
  auto job = CalibrationJob::Start(deps_, header).value();
  for (int b = 0; b < 3; ++b) ASSERT_TRUE(job->AddLogits(RandomBatch(20)).ok());
  const v1::CalibrateResponse response = job->Commit().value();
  EXPECT_DOUBLE_EQ(response.ema_start_weight(), 0.9 * 0.9 * 0.9);

  // From that version: the new job's start is the stored version.
  header.mutable_ema()->set_from_prior(false);
  header.mutable_ema()->mutable_init()->set_version(response.statistics_version().version());
  auto from_version = CalibrationJob::Start(deps_, header).value();
  ASSERT_TRUE(from_version->AddLogits(RandomBatch(20)).ok());
  EXPECT_DOUBLE_EQ(from_version->Commit().value().ema_start_weight(), 0.9);
}

TEST_F(CalibrationJobTest, RowWeightsCountEachRowThatManyTimes) {
  // Weighted rows equal the same rows repeated: weight 2 on a batch = that batch twice.
  const v1::LogitBatch batch = RandomBatch(30);
  v1::LogitBatch weighted = batch;
  for (int r = 0; r < 30; ++r) weighted.add_row_weights(r < 10 ? 2.0 : 1.0);
  auto job = CalibrationJob::Start(deps_, LogitsHeader()).value();
  ASSERT_TRUE(job->AddLogits(weighted).ok());
  const int64_t version = job->Commit().value().statistics_version().version();
  const Statistics stats =
      store_->Get(deps_.model, VersionSelector::Number(version)).value().statistics;
  const std::vector<float> values = LogitsFromProto(batch).value();
  std::vector<float> repeated = values;
  repeated.insert(repeated.end(), values.begin(), values.begin() + 10 * width_);
  ExactAccumulator reference(runtime_->layout());
  ASSERT_TRUE(reference.Add(LogitBatchView::Of(repeated, width_)).ok());
  const Statistics expected = reference.Snapshot().value();
  EXPECT_EQ(stats.count, 30);
  EXPECT_DOUBLE_EQ(stats.total_weight, 40);
  for (int c = 0; c < width_; ++c) {
    EXPECT_NEAR(stats.mean[c], expected.mean[c], 1e-12);
    EXPECT_NEAR(stats.variance[c], expected.variance[c], 1e-12 * (1 + expected.variance[c]));
  }

  v1::LogitBatch bad = batch;
  bad.add_row_weights(1.0);  // one weight for 30 rows
  auto refused = CalibrationJob::Start(deps_, LogitsHeader()).value();
  const absl::Status status = refused->AddLogits(bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("row weights"));
  bad.clear_row_weights();
  for (int r = 0; r < 30; ++r) bad.add_row_weights(r == 7 ? -1.0 : 1.0);
  EXPECT_EQ(refused->AddLogits(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused->rows(), 0);
}

// Images with ground truth on a model that exports proposals: RoIs sampled from the proposals,
// as in training, counted in the job's tally; the candidates only when asked for.
TEST_F(CalibrationJobTest, ImagesWithGroundTruthSampleFromProposals) {
  DetectorRuntime::Options options;
  options.model_path = ContractModelPath("contract_proposals");
  options.intra_op_threads = 1;
  const std::unique_ptr<DetectorRuntime> runtime = DetectorRuntime::Load(options).value();
  ASSERT_TRUE(runtime->has_proposals());
  deps_.runtime = runtime.get();
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  header.mutable_sampler()->set_num_rois(32);
  v1::ImageBatch batch;
  std::vector<std::string> pngs;
  for (int i = 0; i < 2; ++i) pngs.push_back(SyntheticPng(48, 64, static_cast<uint8_t>(i)));
  for (const std::string& png : pngs) {
    v1::AnnotatedImage* image = batch.add_annotated_images();
    image->mutable_image()->set_encoded(png);
    v1::BoundingBox* box = image->mutable_ground_truth()->add_boxes();
    box->set_x1(4);
    box->set_y1(4);
    box->set_x2(40);
    box->set_y2(30);
    image->mutable_ground_truth()->add_category_ids(1);
  }

  // The reference: the same sampler over the runtime's own proposals.
  const std::vector<ImageSource> sources = {ImageSource::Encoded(pngs[0]),
                                            ImageSource::Encoded(pngs[1])};
  const DetectorRuntime::ProposalResult proposals = runtime->Proposals(sources).value();
  RoiSamplingOptions sampler;
  sampler.num_rois = 32;
  int64_t rois = 0, positives = 0;
  for (int i = 0; i < 2; ++i) {
    const std::vector<float> gt = {4, 4, 40, 30};
    const SampledRois sampled =
        SampleImageRois(proposals.boxes[i], gt, sources[i], sampler, deps_.sampling_seed);
    rois += sampled.count();
    positives += sampled.positives;
  }

  auto job = CalibrationJob::Start(deps_, header).value();
  ASSERT_TRUE(job->AddImages(batch).ok());
  EXPECT_EQ(job->SamplingRecord()->roi_source, RoiSource::kProposals);
  EXPECT_EQ(job->SamplingRecord()->images, 2);
  EXPECT_EQ(job->SamplingRecord()->rois, rois);
  EXPECT_EQ(job->SamplingRecord()->positive_rois, positives);
  EXPECT_GT(positives, 0);
  EXPECT_EQ(job->rows(), rois);

  header.mutable_sampler()->set_from(v1::ROI_SOURCE_CANDIDATES);
  auto from_candidates = CalibrationJob::Start(deps_, header).value();
  ASSERT_TRUE(from_candidates->AddImages(batch).ok());
  EXPECT_EQ(from_candidates->SamplingRecord()->roi_source, RoiSource::kCandidates);

  // Proposals asked of a model without them.
  deps_.runtime = runtime_;
  header.mutable_sampler()->set_from(v1::ROI_SOURCE_PROPOSALS);
  auto refused = CalibrationJob::Start(deps_, header).value();
  const absl::Status status = refused->AddImages(batch);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("no proposals method"));
}

// A resumed job must weight and sample as its checkpointed rows were.
TEST_F(CalibrationJobTest, ResumingWithAnotherRfsThresholdOrSamplerIsRefused) {
  v1::CalibrateHeader header = LogitsHeader();
  header.set_job_id("weighted");
  header.set_checkpoint_every_batches(1);
  header.set_rfs_threshold(0.001);
  {
    auto job = CalibrationJob::Start(deps_, header).value();
    ASSERT_TRUE(job->AddLogits(RandomBatch(20)).ok());
  }
  header.set_resume(true);
  header.set_resume_from_batch(1);
  header.set_rfs_threshold(0.01);
  const absl::Status status = CalibrationJob::Start(deps_, header).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("rfs_threshold"));
  header.set_rfs_threshold(0.001);
  auto resumed = CalibrationJob::Start(deps_, header).value();
  ASSERT_TRUE(resumed->AddLogits(RandomBatch(20)).ok());
  const int64_t version = resumed->Commit().value().statistics_version().version();
  const VersionRecord stored =
      store_->Get(deps_.model, VersionSelector::Number(version)).value();
  ASSERT_TRUE(stored.info.sampling.has_value());
  EXPECT_EQ(stored.info.sampling->rois, 40);  // both streams' rows, counted once
  EXPECT_EQ(stored.info.sampling->rfs_threshold, 0.001);
}

TEST_F(CalibrationJobTest, ResumingWithAnotherSamplerIsRefused) {
  DetectorRuntime::Options options;
  options.model_path = ContractModelPath("contract_proposals");
  options.intra_op_threads = 1;
  const std::unique_ptr<DetectorRuntime> runtime = DetectorRuntime::Load(options).value();
  deps_.runtime = runtime.get();
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  header.set_job_id("sampled");
  header.set_checkpoint_every_batches(1);
  header.mutable_sampler()->set_num_rois(32);
  v1::ImageBatch batch;
  v1::AnnotatedImage* image = batch.add_annotated_images();
  image->mutable_image()->set_encoded(SyntheticPng(48, 64, 3));
  v1::BoundingBox* box = image->mutable_ground_truth()->add_boxes();
  box->set_x2(40);
  box->set_y2(30);
  image->mutable_ground_truth()->add_category_ids(1);
  {
    auto job = CalibrationJob::Start(deps_, header).value();
    ASSERT_TRUE(job->AddImages(batch).ok());
  }
  header.set_resume(true);
  header.set_resume_from_batch(1);
  header.mutable_sampler()->set_num_rois(64);
  const absl::Status status = CalibrationJob::Start(deps_, header).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("same sampler"));
  header.mutable_sampler()->set_num_rois(32);
  EXPECT_TRUE(CalibrationJob::Start(deps_, header).ok());
}

TEST_F(CalibrationJobTest, SamplerOverridesAreValidatedOverTheServersDefaults) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  header.mutable_sampler()->set_positive_fraction(1.5);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
  header.mutable_sampler()->set_positive_fraction(0.5);
  header.mutable_sampler()->set_num_rois(-3);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
  header.mutable_sampler()->set_num_rois(64);
  EXPECT_TRUE(CalibrationJob::Start(deps_, header).ok());
  header.set_rfs_threshold(-0.1);
  EXPECT_EQ(CalibrationJob::Start(deps_, header).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
