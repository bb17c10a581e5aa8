#include "server/core/server_core.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "calibration/accumulator.h"
#include "calibration/softmax.h"
#include "calibration/statistics_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/proto_convert.h"
#include "server/core/testing/test_inputs.h"
#include "server/runtime/image.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

using core_testing::ContractModelPath;
using core_testing::SyntheticPng;

v1::LogitBatch MakeBatch(const std::vector<float>& values, int64_t rows, int32_t width) {
  v1::LogitBatch batch;
  LogitsToProto(values, rows, width, &batch);
  return batch;
}

class ServerCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("server_core_test_", ::testing::UnitTest::GetInstance()->random_seed(),
                        "_", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ServerCoreOptions options;
    options.runtime.model_path = ContractModelPath();
    options.runtime.intra_op_threads = 1;
    options.store_url = "sqlite://" + (dir_ / "stats.db").string();
    options.max_images_per_request = 4;
    options.max_rows_per_batch = 5000;
    auto core = ServerCore::Create(options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    width_ = core_->runtime().layout().width();
  }

  std::vector<float> RandomLogits(int64_t rows) {
    std::vector<float> values(rows * width_);
    for (int64_t r = 0; r < rows; ++r) {
      for (int j = 0; j < width_; ++j) {
        values[r * width_ + j] =
            static_cast<float>(absl::Gaussian<double>(gen_, j == 0 ? 4.0 : -2.0 - j, 1.0 + j));
      }
    }
    return values;
  }

  // Calibrates from logits (two batches) and returns the committed response.
  v1::CalibrateResponse CalibrateFromLogits(const std::vector<float>& rows, bool activate) {
    v1::CalibrateHeader header;
    header.set_source(v1::VERSION_SOURCE_LOGITS);
    header.set_activate(activate);
    header.set_description("test");
    auto job = core_->StartCalibration(header);
    EXPECT_TRUE(job.ok()) << job.status();
    const int64_t n = static_cast<int64_t>(rows.size()) / width_;
    const int64_t half = n / 2;
    std::vector<float> first(rows.begin(), rows.begin() + half * width_);
    std::vector<float> second(rows.begin() + half * width_, rows.end());
    EXPECT_TRUE((*job)->AddLogits(MakeBatch(first, half, width_)).ok());
    EXPECT_TRUE((*job)->AddLogits(MakeBatch(second, n - half, width_)).ok());
    auto response = (*job)->Commit();
    EXPECT_TRUE(response.ok()) << response.status();
    return *response;
  }

  v1::DetectRequest DetectRequestFor(int images) {
    v1::DetectRequest request;
    for (int i = 0; i < images; ++i) {
      v1::Image* image = request.add_images();
      image->set_encoded(SyntheticPng(48 + 8 * i, 64, static_cast<uint8_t>(i)));
      image->set_image_id(absl::StrCat("img", i));
    }
    return request;
  }

  std::filesystem::path dir_;
  std::unique_ptr<ServerCore> core_;
  int32_t width_ = 0;
  absl::BitGen gen_;
};

TEST_F(ServerCoreTest, CalibrateFromLogitsEqualsTheCoreOnePass) {
  const std::vector<float> rows = RandomLogits(1000);
  const v1::CalibrateResponse response = CalibrateFromLogits(rows, /*activate=*/true);
  EXPECT_EQ(response.statistics_version().version(), 1);
  EXPECT_EQ(response.rows_seen(), 1000);
  EXPECT_EQ(response.batches_seen(), 2);
  EXPECT_THAT(response.statistics_version().aliases(), ::testing::ElementsAre("active"));

  ExactAccumulator reference(core_->runtime().layout());
  ASSERT_TRUE(reference.Add({rows.data(), 1000, width_}).ok());
  const Statistics expected = reference.Snapshot().value();

  v1::GetVersionRequest get;
  get.mutable_selector()->set_alias("active");
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse got;
  ASSERT_TRUE(core_->GetVersion(get, &got).ok());
  const v1::Statistics& statistics = got.statistics_version().statistics();
  ASSERT_EQ(statistics.mean_size(), width_);
  for (int j = 0; j < width_; ++j) {
    EXPECT_NEAR(statistics.mean(j), expected.mean[j], 1e-12 * std::abs(expected.mean[j]));
    EXPECT_NEAR(statistics.variance(j), expected.variance[j],
                1e-12 * std::abs(expected.variance[j]));
  }
  EXPECT_EQ(got.statistics_version().model().sha256(), core_->runtime().model_sha256());
}

TEST_F(ServerCoreTest, DetectNeedsStatisticsForLogNButNotForNone) {
  v1::DetectRequest request = DetectRequestFor(1);
  v1::DetectResponse response;
  const absl::Status status = core_->Detect(request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("Calibrate"));
  request.mutable_selector()->set_alias("active");  // explicitly: the same
  EXPECT_EQ(core_->Detect(request, &response).code(), absl::StatusCode::kFailedPrecondition);
  request.clear_selector();

  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  response.Clear();
  ASSERT_TRUE(core_->Detect(request, &response).ok());
  EXPECT_EQ(response.version(), 0);
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(response.results(0).image_detections(0).image_id(), "img0");
}

TEST_F(ServerCoreTest, SeveralSettingsFromOneForwardPassAndPinnedVersionEqualsAlias) {
  CalibrateFromLogits(RandomLogits(600), /*activate=*/true);
  CalibrateFromLogits(RandomLogits(600), /*activate=*/false);  // version 2, not active

  v1::DetectRequest request = DetectRequestFor(2);
  request.mutable_postprocess()->set_include_uncalibrated_score(true);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  v1::CalibrationSetting* loga = request.add_calibrations();
  loga->set_calibration_method(v1::CALIBRATION_METHOD_LOGA);
  loga->set_name("loga");
  v1::DetectResponse by_alias;
  ASSERT_TRUE(core_->Detect(request, &by_alias).ok());
  EXPECT_EQ(by_alias.version(), 1);
  ASSERT_EQ(by_alias.results_size(), 3);
  EXPECT_EQ(by_alias.results(2).setting().name(), "loga");
  for (const v1::CalibrationResult& result : by_alias.results()) {
    ASSERT_EQ(result.image_detections_size(), 2);
  }
  // Method none: the calibrated score is the uncalibrated one.
  for (const v1::Detection& d : by_alias.results(0).image_detections(0).detections()) {
    EXPECT_FLOAT_EQ(d.score(), d.uncalibrated_score());
  }

  request.mutable_selector()->set_version(1);
  v1::DetectResponse pinned;
  ASSERT_TRUE(core_->Detect(request, &pinned).ok());
  EXPECT_EQ(pinned.version(), 1);
  pinned.clear_timing();
  by_alias.clear_timing();
  EXPECT_EQ(pinned.SerializeAsString(), by_alias.SerializeAsString());

  request.mutable_selector()->set_version(2);
  v1::DetectResponse second;
  ASSERT_TRUE(core_->Detect(request, &second).ok());
  EXPECT_EQ(second.version(), 2);
}

TEST_F(ServerCoreTest, ApplyEqualsTheCalibrationCore) {
  CalibrateFromLogits(RandomLogits(500), /*activate=*/true);
  const std::vector<float> logits = RandomLogits(7);
  v1::ApplyRequest request;
  *request.mutable_logits() = MakeBatch(logits, 7, width_);
  request.set_include_scores(true);
  v1::ApplyResponse response;
  ASSERT_TRUE(core_->Apply(request, &response).ok());
  EXPECT_EQ(response.version(), 1);

  v1::GetVersionRequest get;
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse version;
  ASSERT_TRUE(core_->GetVersion(get, &version).ok());
  const Statistics stats = StatisticsFromProto(version.statistics_version().statistics()).value();
  std::vector<float> expected = logits;
  ASSERT_TRUE(Calibrator::ForLogN(stats, LogNOptions()).value().Apply(absl::MakeSpan(expected)).ok());
  const std::vector<float> got = LogitsFromProto(response.logits()).value();
  EXPECT_EQ(got, expected);
  std::vector<float> scores(expected.size());
  SoftmaxRows(expected.data(), scores.data(), 7, width_);
  EXPECT_EQ(LogitsFromProto(response.scores()).value(), scores);
}

v1::CalibrationSetting MuOnly(const std::string& name) {
  v1::CalibrationSetting setting;
  setting.set_name(name);
  setting.set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  setting.mutable_logn()->set_mean_weight(1.0);
  setting.mutable_logn()->set_std_exponent(0.0);
  setting.mutable_logn()->set_use_beta(false);
  return setting;
}

TEST_F(ServerCoreTest, TheCalibrationProfileIsTheDefaultOfItsVersion) {
  CalibrateFromLogits(RandomLogits(600), /*activate=*/true);
  CalibrateFromLogits(RandomLogits(600), /*activate=*/false);  // version 2
  const v1::DetectRequest request = DetectRequestFor(2);  // names no setting

  // No profile: the built-in LogN, echoed as such.
  v1::DetectResponse before;
  ASSERT_TRUE(core_->Detect(request, &before).ok());
  EXPECT_EQ(before.results(0).setting().name(), "default");
  EXPECT_EQ(before.results(0).setting().calibration_method(), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_TRUE(before.results(0).setting().logn().use_std());
  v1::GetModelInfoResponse info;
  ASSERT_TRUE(core_->GetModelInfo({}, &info).ok());
  EXPECT_EQ(info.default_calibration_version(), 0);
  EXPECT_EQ(info.default_calibration().calibration_method(), v1::CALIBRATION_METHOD_LOGN);

  // μ-only as version 1's profile (through the alias "active").
  v1::SetCalibrationProfileRequest set;
  *set.mutable_calibration_profile()->mutable_default_setting() = MuOnly("mu-only");
  set.mutable_calibration_profile()->set_description("by hand");
  v1::SetCalibrationProfileResponse set_response;
  ASSERT_TRUE(core_->SetCalibrationProfile(set, &set_response).ok());
  EXPECT_EQ(set_response.statistics_version().version(), 1);
  EXPECT_EQ(set_response.statistics_version().calibration_profile().description(), "by hand");
  EXPECT_TRUE(set_response.statistics_version().calibration_profile().has_set_at());

  v1::DetectResponse after;
  ASSERT_TRUE(core_->Detect(request, &after).ok());
  EXPECT_EQ(after.version(), 1);
  EXPECT_EQ(after.results(0).setting().name(), "mu-only");
  EXPECT_FALSE(after.results(0).setting().logn().use_std());
  // The same detections as asking for μ-only by name.
  v1::DetectRequest explicit_request = request;
  *explicit_request.add_calibrations() = MuOnly("mu-only");
  v1::DetectResponse named;
  ASSERT_TRUE(core_->Detect(explicit_request, &named).ok());
  after.clear_timing();
  named.clear_timing();
  EXPECT_EQ(after.SerializeAsString(), named.SerializeAsString());
  EXPECT_NE(before.results(0).SerializeAsString(), named.results(0).SerializeAsString());

  // MODEL_DEFAULT in a list resolves to the profile of the version the request selects: version
  // 2 has none, so there it is LogN.
  v1::DetectRequest mixed = request;
  mixed.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  mixed.mutable_selector()->set_version(2);
  v1::DetectResponse on_two;
  ASSERT_TRUE(core_->Detect(mixed, &on_two).ok());
  EXPECT_EQ(on_two.results(0).setting().calibration_method(), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_EQ(on_two.version(), 2);

  ASSERT_TRUE(core_->GetModelInfo({}, &info).ok());
  EXPECT_EQ(info.default_calibration_version(), 1);
  EXPECT_EQ(info.default_calibration().name(), "mu-only");
  EXPECT_EQ(info.active_statistics_version().calibration_profile().description(), "by hand");

  // Apply follows the profile too.
  v1::ApplyRequest apply;
  *apply.mutable_logits() = MakeBatch(RandomLogits(3), 3, width_);
  apply.mutable_calibration()->set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  v1::ApplyResponse by_default, by_name;
  ASSERT_TRUE(core_->Apply(apply, &by_default).ok());
  *apply.mutable_calibration() = MuOnly("");
  ASSERT_TRUE(core_->Apply(apply, &by_name).ok());
  EXPECT_EQ(by_default.logits().data(), by_name.logits().data());

  // Cleared: back to LogN.
  v1::SetCalibrationProfileRequest clear;
  ASSERT_TRUE(core_->SetCalibrationProfile(clear, &set_response).ok());
  EXPECT_FALSE(set_response.statistics_version().has_calibration_profile());
  v1::DetectResponse cleared;
  ASSERT_TRUE(core_->Detect(request, &cleared).ok());
  cleared.clear_timing();
  before.clear_timing();
  EXPECT_EQ(cleared.SerializeAsString(), before.SerializeAsString());
}

TEST_F(ServerCoreTest, BadCalibrationProfilesAreRefused) {
  CalibrateFromLogits(RandomLogits(300), /*activate=*/true);
  auto set = [&](const v1::CalibrationSetting& setting, int64_t version = 0) {
    v1::SetCalibrationProfileRequest request;
    if (version > 0) request.mutable_selector()->set_version(version);
    *request.mutable_calibration_profile()->mutable_default_setting() = setting;
    v1::SetCalibrationProfileResponse response;
    return core_->SetCalibrationProfile(request, &response);
  };
  v1::CalibrationSetting model_default;
  model_default.set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  EXPECT_THAT(set(model_default).message(), HasSubstr("MODEL_DEFAULT"));
  v1::CalibrationSetting too_far = MuOnly("x");
  too_far.mutable_logn()->set_mean_weight(1.5);
  const absl::Status out_of_range = set(too_far);
  EXPECT_EQ(out_of_range.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out_of_range.message(), HasSubstr("[0, 1]"));
  EXPECT_EQ(set(MuOnly("x"), /*version=*/9).code(), absl::StatusCode::kNotFound);
  // Nothing was stored by the failures.
  v1::GetVersionResponse version;
  ASSERT_TRUE(core_->GetVersion({}, &version).ok());
  EXPECT_FALSE(version.statistics_version().has_calibration_profile());

  // An imported file carrying a bad profile is refused as a whole.
  ASSERT_TRUE(set(MuOnly("fine")).ok());
  v1::ExportVersionRequest export_request;
  export_request.set_export_format(v1::EXPORT_FORMAT_BINARY);
  v1::ExportVersionResponse exported;
  ASSERT_TRUE(core_->ExportVersion(export_request, &exported).ok());
  v1::StatisticsVersion file;
  ASSERT_TRUE(file.ParseFromString(exported.content()));
  EXPECT_EQ(file.calibration_profile().default_setting().name(), "fine");
  file.mutable_calibration_profile()->mutable_default_setting()->mutable_logn()->set_std_exponent(
      -1);
  file.mutable_calibration_profile()->mutable_default_setting()->mutable_logn()->clear_use_std();
  v1::ImportVersionRequest import;
  import.set_content(file.SerializeAsString());
  v1::ImportVersionResponse imported;
  const absl::Status bad_import = core_->ImportVersion(import, &imported);
  EXPECT_EQ(bad_import.code(), absl::StatusCode::kInvalidArgument) << bad_import;
}

TEST_F(ServerCoreTest, ImportedStatisticsOfAnotherLayoutAreRefused) {
  // A bare statistics JSON (what tools/import_mmdet_logn.py writes) with the background on the
  // wrong side: refused, nothing stored, and the right file still imports.
  Statistics stats;
  stats.layout = core_->runtime().layout();
  stats.layout.background = stats.layout.background == BackgroundPosition::kFirst
                                ? BackgroundPosition::kLast
                                : BackgroundPosition::kFirst;
  stats.count = 10;
  stats.mean.assign(stats.layout.width(), 0.5);
  stats.variance.assign(stats.layout.width(), 2.0);
  v1::ImportVersionRequest import;
  import.set_content(StatisticsToJson(stats));
  v1::ImportVersionResponse imported;
  const absl::Status wrong = core_->ImportVersion(import, &imported);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition) << wrong;
  EXPECT_THAT(wrong.message(), HasSubstr("--background first"));
  stats.layout = core_->runtime().layout();
  import.set_content(StatisticsToJson(stats));
  ASSERT_TRUE(core_->ImportVersion(import, &imported).ok());
  EXPECT_EQ(imported.statistics_version().version(), 1);
}

TEST_F(ServerCoreTest, RawCandidatesPostProcessLocallyToTheServersDetections) {
  CalibrateFromLogits(RandomLogits(600), /*activate=*/true);
  v1::DetectRequest request = DetectRequestFor(2);
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  request.mutable_postprocess()->set_include_raw_candidates(true);
  v1::DetectResponse response;
  ASSERT_TRUE(core_->Detect(request, &response).ok());
  ASSERT_EQ(response.raw_candidates_size(), 2);

  v1::GetVersionRequest get;
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse version;
  ASSERT_TRUE(core_->GetVersion(get, &version).ok());
  const Statistics stats = StatisticsFromProto(version.statistics_version().statistics()).value();
  const Calibrator calibrator = Calibrator::ForLogN(stats, LogNOptions()).value();
  for (int i = 0; i < 2; ++i) {
    const v1::RawCandidates& raw = response.raw_candidates(i);
    EXPECT_EQ(raw.image_id(), request.images(i).image_id());
    EXPECT_EQ(raw.logits().width(), width_);
    const std::vector<float> logits = LogitsFromProto(raw.logits()).value();
    std::vector<float> boxes(raw.boxes().size() / sizeof(float));
    std::memcpy(boxes.data(), raw.boxes().data(), raw.boxes().size());
    const CandidatesView view{raw.logits().rows(),
                              raw.box_layout() == v1::BOX_LAYOUT_CLASS_SPECIFIC, boxes, logits};
    const std::vector<Detection> local =
        Postprocess(calibrator, view, PostprocessOptions()).value();
    const v1::ImageDetections& served = response.results(0).image_detections(i);
    ASSERT_EQ(static_cast<int>(local.size()), served.detections_size());
    ASSERT_GT(local.size(), 0u);
    for (size_t k = 0; k < local.size(); ++k) {
      EXPECT_EQ(local[k].score, served.detections(k).score());
      EXPECT_EQ(local[k].box[0], served.detections(k).box().x1());
      EXPECT_EQ(local[k].box[3], served.detections(k).box().y2());
    }
  }
  // Not asked for: not sent.
  request.mutable_postprocess()->set_include_raw_candidates(false);
  v1::DetectResponse without;
  ASSERT_TRUE(core_->Detect(request, &without).ok());
  EXPECT_EQ(without.raw_candidates_size(), 0);
}

TEST_F(ServerCoreTest, CalibrateFromImagesWithGroundTruthSamplesRois) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  header.set_activate(true);
  auto job = core_->StartCalibration(header).value();
  v1::ImageBatch batch;
  for (int i = 0; i < 2; ++i) {
    v1::AnnotatedImage* image = batch.add_annotated_images();
    image->mutable_image()->set_encoded(SyntheticPng(64, 80, static_cast<uint8_t>(i)));
    v1::BoundingBox* box = image->mutable_ground_truth()->add_boxes();
    box->set_x1(10);
    box->set_y1(12);
    box->set_x2(40);
    box->set_y2(50);
    image->mutable_ground_truth()->add_category_ids(core_->runtime().manifest().classes(0).id());
  }
  ASSERT_TRUE(job->AddImages(batch).ok());
  EXPECT_EQ(job->images(), 2);
  EXPECT_GT(job->rows(), 2);
  EXPECT_LE(job->rows(), 2 * 512);
  const v1::CalibrateResponse response = job->Commit().value();
  EXPECT_EQ(response.statistics_version().source(), v1::VERSION_SOURCE_IMAGES);
  EXPECT_EQ(response.statistics_version().images_seen(), 2);

  v1::DetectResponse detections;
  ASSERT_TRUE(core_->Detect(DetectRequestFor(1), &detections).ok());
  EXPECT_EQ(detections.version(), 1);
}

// Runs `batches` through a fresh job with `header` and returns the job (uncommitted).
std::unique_ptr<CalibrationJob> RunJob(ServerCore& core, const v1::CalibrateHeader& header,
                                       const std::vector<v1::LogitBatch>& batches) {
  auto job = core.StartCalibration(header);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return nullptr;
  for (const v1::LogitBatch& b : batches) EXPECT_TRUE((*job)->AddLogits(b).ok());
  return *std::move(job);
}

Statistics StatisticsOf(ServerCore& core, int64_t version) {
  v1::GetVersionRequest get;
  get.mutable_selector()->set_version(version);
  get.set_view(v1::VERSION_VIEW_FULL);
  v1::GetVersionResponse got;
  EXPECT_TRUE(core.GetVersion(get, &got).ok());
  return StatisticsFromProto(got.statistics_version().statistics()).value();
}

void ExpectSameStatistics(const Statistics& got, const Statistics& want, double tolerance) {
  ASSERT_EQ(got.count, want.count);
  ASSERT_EQ(got.mean.size(), want.mean.size());
  for (size_t j = 0; j < want.mean.size(); ++j) {
    EXPECT_NEAR(got.mean[j], want.mean[j], tolerance * std::abs(want.mean[j])) << "column " << j;
    EXPECT_NEAR(got.variance[j], want.variance[j], tolerance * std::abs(want.variance[j]))
        << "column " << j;
  }
}

TEST_F(ServerCoreTest, MergedPartialShardsEqualOnePass) {
  std::vector<v1::LogitBatch> batches;
  std::vector<float> all;
  for (int b = 0; b < 6; ++b) {
    const std::vector<float> rows = RandomLogits(100 + 37 * b);
    all.insert(all.end(), rows.begin(), rows.end());
    batches.push_back(MakeBatch(rows, 100 + 37 * b, width_));
  }
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  header.set_partial(true);
  std::vector<int64_t> shards;
  for (int s = 0; s < 3; ++s) {
    auto job = RunJob(*core_, header, {batches[2 * s], batches[2 * s + 1]});
    const v1::CalibrateResponse r = job->Commit().value();
    EXPECT_TRUE(r.statistics_version().partial());
    shards.push_back(r.statistics_version().version());
  }
  v1::ActivateRequest activate;
  activate.set_version(shards[0]);
  v1::ActivateResponse activated;
  EXPECT_EQ(core_->Activate(activate, &activated).code(), absl::StatusCode::kFailedPrecondition);

  v1::MergeRequest merge;
  for (int64_t v : {shards[2], shards[0], shards[1]}) merge.add_versions(v);
  merge.set_activate(true);
  merge.set_description("three shards");
  v1::MergeResponse merged;
  ASSERT_TRUE(core_->Merge(merge, &merged).ok());
  EXPECT_EQ(merged.statistics_version().source(), v1::VERSION_SOURCE_MERGE);
  EXPECT_THAT(merged.statistics_version().parent_versions(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_THAT(merged.statistics_version().aliases(), ::testing::ElementsAre("active"));
  EXPECT_FALSE(merged.statistics_version().partial());

  ExactAccumulator one_pass(core_->runtime().layout());
  ASSERT_TRUE(one_pass.Add({all.data(), static_cast<int64_t>(all.size()) / width_, width_}).ok());
  ExpectSameStatistics(StatisticsOf(*core_, merged.statistics_version().version()),
                       one_pass.Snapshot().value(), 1e-12);
}

TEST_F(ServerCoreTest, MergeRefusesWhatCannotBeMerged) {
  v1::CalibrateHeader exact;
  exact.set_source(v1::VERSION_SOURCE_LOGITS);
  const int64_t v1 = RunJob(*core_, exact, {MakeBatch(RandomLogits(50), 50, width_)})
                         ->Commit().value().statistics_version().version();
  v1::CalibrateHeader ema = exact;
  ema.mutable_ema()->set_momentum(0.1);
  ema.mutable_ema()->set_from_prior(true);
  const int64_t v2 = RunJob(*core_, ema, {MakeBatch(RandomLogits(50), 50, width_)})
                         ->Commit().value().statistics_version().version();
  v1::MergeResponse response;
  auto merge = [&](std::vector<int64_t> versions, const std::string& model = "") {
    v1::MergeRequest request;
    request.set_model_name(model);
    for (int64_t v : versions) request.add_versions(v);
    return core_->Merge(request, &response);
  };
  absl::Status status = merge({v1, v2});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("EMA"));
  EXPECT_EQ(merge({v1}).code(), absl::StatusCode::kInvalidArgument);
  status = merge({v1, v1});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("twice"));
  EXPECT_EQ(merge({v1, 99}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(merge({v1, v2}, "another-model").code(), absl::StatusCode::kNotFound);
  v1::ListVersionsResponse list;
  ASSERT_TRUE(core_->ListVersions({}, &list).ok());
  EXPECT_EQ(list.statistics_versions_size(), 2);  // nothing was stored
}

TEST_F(ServerCoreTest, ResumedJobEqualsAnUninterruptedOne) {
  std::vector<v1::LogitBatch> batches;
  for (int b = 0; b < 7; ++b) batches.push_back(MakeBatch(RandomLogits(80), 80, width_));
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  const v1::CalibrateResponse uninterrupted = RunJob(*core_, header, batches)->Commit().value();

  header.set_job_id("long-job");
  header.set_checkpoint_every_batches(2);
  {
    // Dropped after 5 batches: the checkpoint holds 4.
    auto dropped = RunJob(*core_, header, {batches.begin(), batches.begin() + 5});
  }
  v1::GetCalibrationJobRequest get;
  get.set_job_id("long-job");
  v1::GetCalibrationJobResponse got_job;
  ASSERT_TRUE(core_->GetCalibrationJob(get, &got_job).ok());
  const v1::CalibrationJob& checkpoint = got_job.job();
  EXPECT_EQ(checkpoint.job_id(), "long-job");
  EXPECT_EQ(checkpoint.batches_seen(), 4);
  EXPECT_EQ(checkpoint.rows_seen(), 4 * 80);
  EXPECT_EQ(checkpoint.source(), v1::VERSION_SOURCE_LOGITS);
  EXPECT_EQ(checkpoint.method(), v1::ACCUMULATION_METHOD_EXACT);

  // Resuming from anywhere but the checkpoint would skip or double-count batches.
  header.set_resume(true);
  header.set_resume_from_batch(5);
  absl::Status wrong = core_->StartCalibration(header).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition) << wrong;
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("resume_from_batch = 4"));
  v1::CalibrateHeader wrong_source = header;
  wrong_source.set_source(v1::VERSION_SOURCE_IMAGES);
  wrong_source.set_resume_from_batch(4);
  EXPECT_EQ(core_->StartCalibration(wrong_source).status().code(),
            absl::StatusCode::kFailedPrecondition);

  header.set_resume_from_batch(4);
  auto resumed = RunJob(*core_, header, {batches.begin() + 4, batches.end()});
  const v1::CalibrateResponse committed = resumed->Commit().value();
  EXPECT_EQ(committed.rows_seen(), uninterrupted.rows_seen());
  EXPECT_EQ(committed.batches_seen(), 7);
  ExpectSameStatistics(StatisticsOf(*core_, committed.statistics_version().version()),
                       StatisticsOf(*core_, uninterrupted.statistics_version().version()), 1e-12);
  // Committing cleared the checkpoint: the job cannot be resumed (and committed) twice.
  EXPECT_EQ(core_->GetCalibrationJob(get, &got_job).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->StartCalibration(header).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerCoreTest, HeaderCombinationsThatMakeNoSenseAreRefused) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  header.set_partial(true);
  header.set_activate(true);
  EXPECT_EQ(core_->StartCalibration(header).status().code(), absl::StatusCode::kInvalidArgument);
  header.set_activate(false);
  header.set_resume(true);
  EXPECT_EQ(core_->StartCalibration(header).status().code(), absl::StatusCode::kInvalidArgument);
  v1::GetCalibrationJobRequest get;
  v1::GetCalibrationJobResponse job;
  EXPECT_EQ(core_->GetCalibrationJob(get, &job).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerCoreTest, RoiSamplesDependOnTheImageNotOnItsBatch) {
  std::vector<v1::AnnotatedImage> images(3);
  for (int i = 0; i < 3; ++i) {
    images[i].mutable_image()->set_encoded(SyntheticPng(64, 80, static_cast<uint8_t>(i + 3)));
    v1::BoundingBox* box = images[i].mutable_ground_truth()->add_boxes();
    box->set_x1(5 + i);
    box->set_y1(8);
    box->set_x2(45);
    box->set_y2(50 - i);
    images[i].mutable_ground_truth()->add_category_ids(
        core_->runtime().manifest().classes(0).id());
  }
  // Few RoIs per image, so the sample is a real random subset of the candidates.
  ServerCoreOptions options = core_->options();
  options.sampling.num_rois = 8;
  options.store_url = "sqlite://" + (dir_ / "few_rois.db").string();
  std::unique_ptr<ServerCore> core = ServerCore::Create(options).value();
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  auto together = core->StartCalibration(header).value();
  v1::ImageBatch all;
  for (const auto& image : images) *all.add_annotated_images() = image;
  ASSERT_TRUE(together->AddImages(all).ok());
  // The same images one per batch, in another order, in another job.
  auto apart = core->StartCalibration(header).value();
  for (int i : {2, 0, 1}) {
    v1::ImageBatch one;
    *one.add_annotated_images() = images[i];
    ASSERT_TRUE(apart->AddImages(one).ok());
  }
  EXPECT_EQ(together->rows(), 3 * 8);
  ASSERT_EQ(together->rows(), apart->rows());
  const v1::CalibrateResponse a = together->Commit().value();
  const v1::CalibrateResponse b = apart->Commit().value();
  ExpectSameStatistics(StatisticsOf(*core, a.statistics_version().version()),
                       StatisticsOf(*core, b.statistics_version().version()), 1e-9);
}

TEST_F(ServerCoreTest, BadCalibrationInputs) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  auto job = core_->StartCalibration(header).value();

  std::vector<float> rows = RandomLogits(4);
  absl::Status status = job->AddLogits(MakeBatch(std::vector<float>(4 * (width_ + 1)), 4, width_ + 1));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("width"));

  rows[2 * width_ + 3] = std::numeric_limits<float>::quiet_NaN();
  status = job->AddLogits(MakeBatch(rows, 4, width_));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("row 2, column 3"));

  v1::LogitBatch short_data = MakeBatch(RandomLogits(4), 4, width_);
  short_data.mutable_data()->resize(10);
  EXPECT_EQ(job->AddLogits(short_data).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(job->AddLogits(MakeBatch(RandomLogits(5001), 5001, width_)).code(),
            absl::StatusCode::kResourceExhausted);

  v1::ImageBatch images;
  images.add_annotated_images()->mutable_image()->set_encoded("x");
  EXPECT_EQ(job->AddImages(images).code(), absl::StatusCode::kInvalidArgument);

  // Nothing was accepted: committing an empty job is refused and stores nothing.
  EXPECT_EQ(job->Commit().status().code(), absl::StatusCode::kFailedPrecondition);
  v1::ListVersionsResponse list;
  ASSERT_TRUE(core_->ListVersions({}, &list).ok());
  EXPECT_EQ(list.statistics_versions_size(), 0);
  v1::RollbackResponse rolled;
  EXPECT_EQ(core_->Rollback({}, &rolled).code(), absl::StatusCode::kFailedPrecondition);

  v1::CalibrateHeader no_source;
  EXPECT_EQ(core_->StartCalibration(no_source).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::CalibrateHeader bad_ema = header;
  bad_ema.mutable_ema()->set_momentum(2.0);
  bad_ema.mutable_ema()->set_from_prior(true);
  EXPECT_EQ(core_->StartCalibration(bad_ema).status().code(), absl::StatusCode::kInvalidArgument);
  v1::CalibrateHeader ema_without_start = header;
  ema_without_start.mutable_ema()->set_momentum(0.1);
  absl::Status no_start = core_->StartCalibration(ema_without_start).status();
  EXPECT_EQ(no_start.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_start.message()), HasSubstr("from_prior"));
  v1::CalibrateHeader other_model = header;
  other_model.set_model_name("someone-else");
  EXPECT_EQ(core_->StartCalibration(other_model).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerCoreTest, BadDetectInputs) {
  CalibrateFromLogits(RandomLogits(300), /*activate=*/true);
  v1::DetectResponse response;
  v1::DetectRequest empty;
  EXPECT_EQ(core_->Detect(empty, &response).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(core_->Detect(DetectRequestFor(5), &response).code(),
            absl::StatusCode::kResourceExhausted);

  v1::DetectRequest corrupt = DetectRequestFor(1);
  corrupt.mutable_images(0)->mutable_encoded()->resize(40);  // truncated PNG
  EXPECT_EQ(core_->Detect(corrupt, &response).code(), absl::StatusCode::kInvalidArgument);

  v1::DetectRequest unknown = DetectRequestFor(1);
  unknown.mutable_selector()->set_version(99);
  EXPECT_EQ(core_->Detect(unknown, &response).code(), absl::StatusCode::kNotFound);
  unknown.mutable_selector()->set_alias("canary");
  EXPECT_EQ(core_->Detect(unknown, &response).code(), absl::StatusCode::kNotFound);

  v1::DetectRequest bad_threshold = DetectRequestFor(1);
  bad_threshold.mutable_postprocess()->set_nms_iou(1.5f);
  EXPECT_EQ(core_->Detect(bad_threshold, &response).code(), absl::StatusCode::kInvalidArgument);
}

// A setting whose calibrated logits overflow to +Inf: statistics of constant logits (variance 0,
// floored at 1e-11 by the official formula: σ ≈ 3e-6) and β = 1e34. Its candidates are dropped
// and counted, never silently lost, and the other setting of the same request is untouched.
TEST_F(ServerCoreTest, NonFiniteCalibratedCandidatesAreDroppedAndCounted) {
  CalibrateFromLogits(std::vector<float>(300 * width_, 1.0f), /*activate=*/true);
  v1::DetectRequest request = DetectRequestFor(1);
  request.clear_calibrations();
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  v1::CalibrationSetting* overflowing = request.add_calibrations();
  overflowing->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  overflowing->mutable_logn()->set_beta_policy(v1::BETA_POLICY_CONSTANT);
  overflowing->mutable_logn()->set_beta_constant(1e34);
  overflowing->mutable_logn()->set_official_formula(true);
  v1::DetectResponse response;
  ASSERT_TRUE(core_->Detect(request, &response).ok());
  v1::DetectRequest alone = request;
  alone.mutable_calibrations()->RemoveLast();
  v1::DetectResponse reference;
  ASSERT_TRUE(core_->Detect(alone, &reference).ok());
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_GT(response.results(0).image_detections(0).detections_size(), 0);
  EXPECT_EQ(response.results(0).image_detections(0).SerializeAsString(),
            reference.results(0).image_detections(0).SerializeAsString());
  EXPECT_EQ(response.results(1).image_detections(0).detections_size(), 0);
  EXPECT_EQ(response.nonfinite_raw_candidates(), 0);
  EXPECT_GT(response.nonfinite_calibrated_candidates(), 0);
  EXPECT_EQ(reference.nonfinite_calibrated_candidates(), 0);
}

TEST(ServerCoreOptionsTest, OptionsOutOfRangeAreRefusedAtCreation) {
  struct Case {
    std::function<void(ServerCoreOptions&)> edit;
    std::string message;
  };
  const Case cases[] = {
      {[](ServerCoreOptions& o) { o.max_images_per_request = 0; },
       "max_images_per_request must be > 0, got 0"},
      {[](ServerCoreOptions& o) { o.max_rows_per_batch = -1; },
       "max_rows_per_batch must be > 0, got -1"},
      {[](ServerCoreOptions& o) { o.max_rows_per_job = 0; }, "max_rows_per_job must be > 0"},
      {[](ServerCoreOptions& o) { o.runtime.limits.max_images_per_call = 0; },
       "runtime max_images_per_call must be > 0"},
      {[](ServerCoreOptions& o) { o.max_images_per_request = 64; },
       "max_images_per_request 64 is larger than the runtime's max_images_per_call 32"},
      {[](ServerCoreOptions& o) { o.checkpoint_every_batches = -2; },
       "checkpoint_every_batches must be >= 0"},
      {[](ServerCoreOptions& o) { o.sampling.num_rois = 0; }, "num_rois must be > 0"},
      {[](ServerCoreOptions& o) { o.sampling.positive_fraction = 1.5; },
       "positive_fraction must be in [0, 1]"},
      {[](ServerCoreOptions& o) { o.sampling.positive_iou = 0; }, "positive_iou must be in (0, 1]"},
  };
  EXPECT_TRUE(ServerCoreOptions().Validate().ok());
  for (const Case& c : cases) {
    ServerCoreOptions options;
    // Refused before anything is loaded: no model or store is needed to find out.
    options.runtime.model_path = "/nonexistent/model.pt";
    c.edit(options);
    const absl::Status status = ServerCore::Create(options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST_F(ServerCoreTest, StoreManagement) {
  CalibrateFromLogits(RandomLogits(300), /*activate=*/true);
  CalibrateFromLogits(RandomLogits(300), /*activate=*/false);

  v1::DeleteVersionRequest delete_active;
  delete_active.set_version(1);
  v1::DeleteVersionResponse deleted;
  EXPECT_EQ(core_->DeleteVersion(delete_active, &deleted).code(),
            absl::StatusCode::kFailedPrecondition);

  v1::ActivateRequest activate;
  activate.set_version(2);
  v1::ActivateResponse activated;
  ASSERT_TRUE(core_->Activate(activate, &activated).ok());
  EXPECT_EQ(activated.previous_version(), 1);
  EXPECT_EQ(core_->ActiveVersion(), 2);

  v1::RollbackResponse rolled;
  ASSERT_TRUE(core_->Rollback({}, &rolled).ok());
  EXPECT_EQ(rolled.active_version(), 1);

  v1::SetAliasRequest canary;
  canary.set_alias("canary");
  canary.set_version(2);
  v1::SetAliasResponse set;
  ASSERT_TRUE(core_->SetAlias(canary, &set).ok());
  v1::ListVersionsResponse list;
  ASSERT_TRUE(core_->ListVersions({}, &list).ok());
  ASSERT_EQ(list.statistics_versions_size(), 2);
  EXPECT_THAT(list.statistics_versions(0).aliases(), ::testing::ElementsAre("active"));
  EXPECT_THAT(list.statistics_versions(1).aliases(), ::testing::ElementsAre("canary"));

  for (v1::ExportFormat format : {v1::EXPORT_FORMAT_JSON, v1::EXPORT_FORMAT_BINARY}) {
    v1::ExportVersionRequest export_request;
    export_request.mutable_selector()->set_version(2);
    export_request.set_export_format(format);
    v1::ExportVersionResponse exported;
    ASSERT_TRUE(core_->ExportVersion(export_request, &exported).ok());
    v1::ImportVersionRequest import_request;
    import_request.set_content(exported.content());
    v1::ImportVersionResponse imported;
    ASSERT_TRUE(core_->ImportVersion(import_request, &imported).ok());
    EXPECT_EQ(imported.statistics_version().source(), v1::VERSION_SOURCE_IMPORT);
    EXPECT_EQ(imported.statistics_version().payload_sha256(),
              list.statistics_versions(1).payload_sha256());
  }

  v1::ImportVersionRequest garbage;
  garbage.set_content("{not json");
  v1::ImportVersionResponse imported;
  EXPECT_EQ(core_->ImportVersion(garbage, &imported).code(), absl::StatusCode::kInvalidArgument);

  v1::GetVersionRequest missing;
  missing.mutable_selector()->set_version(42);
  v1::GetVersionResponse got;
  EXPECT_EQ(core_->GetVersion(missing, &got).code(), absl::StatusCode::kNotFound);

  v1::GetModelInfoResponse info;
  ASSERT_TRUE(core_->GetModelInfo({}, &info).ok());
  EXPECT_EQ(info.active_version(), 1);
  EXPECT_EQ(info.manifest().classes_size(), core_->runtime().layout().num_classes);
}

TEST_F(ServerCoreTest, GetVersionViews) {
  CalibrateFromLogits(RandomLogits(300), /*activate=*/true);
  v1::GetVersionRequest get;
  v1::GetVersionResponse got;
  for (v1::VersionView basic : {v1::VERSION_VIEW_UNSPECIFIED, v1::VERSION_VIEW_BASIC}) {
    get.set_view(basic);
    got.Clear();
    ASSERT_TRUE(core_->GetVersion(get, &got).ok());
    EXPECT_FALSE(got.statistics_version().has_statistics());
    EXPECT_EQ(got.statistics_version().format(), "logn.statistics_version.v1");
    EXPECT_THAT(got.statistics_version().aliases(), ::testing::ElementsAre("active"));
  }
  // The full view is itself a valid export (the aliases are ignored on import).
  get.set_view(v1::VERSION_VIEW_FULL);
  got.Clear();
  ASSERT_TRUE(core_->GetVersion(get, &got).ok());
  ASSERT_TRUE(got.statistics_version().has_statistics());
  v1::ImportVersionRequest import_request;
  import_request.set_content(got.statistics_version().SerializeAsString());
  v1::ImportVersionResponse imported;
  ASSERT_TRUE(core_->ImportVersion(import_request, &imported).ok());
  EXPECT_EQ(imported.statistics_version().version(), 2);
  EXPECT_EQ(imported.statistics_version().payload_sha256(),
            got.statistics_version().payload_sha256());
  EXPECT_TRUE(imported.statistics_version().aliases().empty());

  get.set_view(static_cast<v1::VersionView>(7));
  const absl::Status unknown = core_->GetVersion(get, &got);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("view must be"));
}

TEST_F(ServerCoreTest, ListVersionsFilters) {
  v1::CalibrateHeader header;
  header.set_source(v1::VERSION_SOURCE_LOGITS);
  header.set_job_id("shards");
  header.set_partial(true);
  const int64_t shard1 = RunJob(*core_, header, {MakeBatch(RandomLogits(50), 50, width_)})
                             ->Commit().value().statistics_version().version();
  const int64_t shard2 = RunJob(*core_, header, {MakeBatch(RandomLogits(50), 50, width_)})
                             ->Commit().value().statistics_version().version();
  CalibrateFromLogits(RandomLogits(100), /*activate=*/true);  // no job id, complete
  v1::MergeRequest merge;
  merge.add_versions(shard1);
  merge.add_versions(shard2);
  merge.set_job_id("shards");
  v1::MergeResponse merged;
  ASSERT_TRUE(core_->Merge(merge, &merged).ok());

  auto versions = [&](const v1::ListVersionsRequest& request) {
    v1::ListVersionsResponse response;
    const absl::Status status = core_->ListVersions(request, &response);
    EXPECT_TRUE(status.ok()) << status;
    std::vector<int64_t> numbers;
    for (const v1::StatisticsVersion& v : response.statistics_versions()) {
      EXPECT_FALSE(v.has_statistics());  // the basic view
      numbers.push_back(v.version());
    }
    return numbers;
  };
  v1::ListVersionsRequest request;
  EXPECT_THAT(versions(request), ::testing::ElementsAre(1, 2, 3, 4));
  request.set_job_id("shards");
  EXPECT_THAT(versions(request), ::testing::ElementsAre(1, 2, 4));
  request.set_partial(true);
  EXPECT_THAT(versions(request), ::testing::ElementsAre(1, 2));
  request.set_partial(false);
  EXPECT_THAT(versions(request), ::testing::ElementsAre(4));
  request.set_source(v1::VERSION_SOURCE_MERGE);
  EXPECT_THAT(versions(request), ::testing::ElementsAre(4));
  request.set_source(v1::VERSION_SOURCE_LOGITS);
  EXPECT_THAT(versions(request), ::testing::IsEmpty());
  request.Clear();
  request.set_job_id("");  // only versions without a job id
  EXPECT_THAT(versions(request), ::testing::ElementsAre(3));
  request.Clear();
  request.set_source(v1::VERSION_SOURCE_LOGITS);
  request.set_page_size(1);
  v1::ListVersionsResponse page;
  ASSERT_TRUE(core_->ListVersions(request, &page).ok());
  ASSERT_EQ(page.statistics_versions_size(), 1);
  EXPECT_EQ(page.statistics_versions(0).version(), 1);
  request.set_page_token(page.next_page_token());  // the same filter with the token
  EXPECT_THAT(versions(request), ::testing::ElementsAre(2));

  for (v1::VersionSource bad :
       {v1::VERSION_SOURCE_UNSPECIFIED, static_cast<v1::VersionSource>(12)}) {
    v1::ListVersionsRequest refused;
    refused.set_source(bad);
    v1::ListVersionsResponse response;
    const absl::Status status = core_->ListVersions(refused, &response);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("source must be"));
  }
}

}  // namespace
}  // namespace logn
