#include "server/core/proto_convert.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProtoConvertTest, SpecDefaultsAreFilledInAndEchoed) {
  v1::CalibrationSetting setting;
  setting.set_name("bn");
  setting.mutable_logn()->set_use_beta(false);
  setting.mutable_logn()->set_beta_policy(v1::BETA_POLICY_CONSTANT);
  setting.mutable_logn()->set_beta_constant(-4);
  const CalibrationSpec spec = SpecFromProto(setting).value();
  EXPECT_EQ(spec.method, CalibrationMethod::kLogN);
  EXPECT_FALSE(spec.logn.use_beta);
  EXPECT_EQ(spec.logn.mean_weight, 1.0);  // default: use_mean
  EXPECT_EQ(spec.logn.beta_policy, BetaPolicy::kConstant);
  const v1::CalibrationSetting echoed = SpecToProto(spec, "bn");
  EXPECT_EQ(echoed.name(), "bn");
  EXPECT_EQ(echoed.calibration_method(), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_TRUE(echoed.logn().has_use_mean());
  EXPECT_EQ(echoed.logn().beta_constant(), -4);
  EXPECT_EQ(SpecFromProto(echoed).value().logn, spec.logn);

  v1::CalibrationSetting loga;
  loga.set_calibration_method(v1::CALIBRATION_METHOD_LOGA);
  loga.mutable_loga()->set_tau(0.5);
  const v1::CalibrationSetting loga_echo = SpecToProto(SpecFromProto(loga).value(), "");
  EXPECT_EQ(loga_echo.loga().tau(), 0.5);
  EXPECT_FALSE(loga_echo.has_logn());
}

TEST(ProtoConvertTest, Selectors) {
  EXPECT_EQ(SelectorFromProto({}).value().alias, "active");
  v1::StatisticsSelector selector;
  selector.set_version(7);
  EXPECT_EQ(SelectorFromProto(selector).value().version, 7);
  selector.set_version(0);
  const absl::Status zero = SelectorFromProto(selector).status();
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.message()), HasSubstr("selector.version must be > 0, got 0"));
  selector.set_alias("Not An Alias");
  EXPECT_EQ(SelectorFromProto(selector).status().code(), absl::StatusCode::kInvalidArgument);
  // A bad selector is kept with its error: only a setting that needs statistics reports it.
  const StatisticsChoice choice = StatisticsChoiceFromProto(selector, true);
  EXPECT_FALSE(choice.selector.ok());
  EXPECT_TRUE(choice.explicitly_set);
  // A present but empty selector names nothing: "active", as an absent one.
  EXPECT_FALSE(StatisticsChoiceFromProto(v1::StatisticsSelector(), true).explicitly_set);
}

TEST(ProtoConvertTest, PostprocessOverridesAndRanges) {
  v1::PostprocessOptions proto;
  proto.set_score_threshold(0.05f);
  proto.set_max_detections(100);
  const PostprocessOptions options = PostprocessFromProto(proto).value();
  EXPECT_FLOAT_EQ(options.score_threshold, 0.05f);
  EXPECT_FLOAT_EQ(options.nms_iou_threshold, 0.5f);  // default
  EXPECT_EQ(options.top_k, 100);
  proto.set_nms_iou(1.5f);
  EXPECT_EQ(PostprocessFromProto(proto).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtoConvertTest, ImagesAndLogits) {
  v1::Image empty;
  EXPECT_THAT(std::string(ImageFromProto(empty, 3).status().message()),
              HasSubstr("image 3 has no data"));
  v1::Image raw;
  raw.mutable_raw()->set_height(2);
  raw.mutable_raw()->set_width(3);
  raw.mutable_raw()->set_channels(3);
  raw.mutable_raw()->set_data(std::string(17, 'x'));
  EXPECT_EQ(ImageFromProto(raw, 0).status().code(), absl::StatusCode::kInvalidArgument);
  raw.mutable_raw()->set_data(std::string(18, 'x'));
  const ImageSource source = ImageFromProto(raw, 0).value();
  EXPECT_TRUE(source.is_raw());
  EXPECT_EQ(source.raw_pixels().size(), 18u);

  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  v1::LogitBatch batch;
  LogitsToProto(values, 2, 3, &batch);
  EXPECT_EQ(LogitsFromProto(batch).value(), values);
  batch.set_rows(3);
  EXPECT_EQ(LogitsFromProto(batch).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtoConvertTest, VersionWithAliasesAndCheckpoint) {
  VersionInfo info;
  info.model = ModelKey{"m", std::string(64, 'a')};
  info.version = 4;
  info.created_at = absl::FromUnixMicros(1'600'000'000'123'456);
  info.source = VersionSource::kMerge;
  info.method = AccumulationMethod::kEma;
  info.parent_versions = {1, 2};
  v1::StatisticsVersion proto;
  VersionToProto(info, {"active", "canary"}, &proto);
  EXPECT_EQ(proto.format(), "logn.statistics_version.v1");
  EXPECT_EQ(proto.version(), 4);
  EXPECT_EQ(proto.source(), v1::VERSION_SOURCE_MERGE);
  EXPECT_EQ(proto.method(), v1::ACCUMULATION_METHOD_EMA);
  EXPECT_EQ(proto.created_at().seconds(), 1'600'000'000);
  EXPECT_EQ(proto.created_at().nanos(), 123'456'000);
  EXPECT_THAT(proto.parent_versions(), ElementsAre(1, 2));
  EXPECT_THAT(proto.aliases(), ElementsAre("active", "canary"));
  EXPECT_FALSE(proto.has_statistics());  // the basic view
  v1::StatisticsVersion stored;
  VersionToProto(StoredVersion{info, {"active"}}, &stored);
  EXPECT_THAT(stored.aliases(), ElementsAre("active"));

  JobCheckpoint checkpoint;
  checkpoint.job_id = "job";
  checkpoint.batches = 3;
  checkpoint.images_seen = 12;
  checkpoint.source = VersionSource::kImages;
  checkpoint.statistics.count = 300;
  v1::CalibrationJob job;
  CheckpointToProto(checkpoint, &job);
  EXPECT_EQ(job.job_id(), "job");
  EXPECT_EQ(job.batches_seen(), 3);
  EXPECT_EQ(job.rows_seen(), 300);
  EXPECT_EQ(job.images_seen(), 12);
  EXPECT_EQ(job.source(), v1::VERSION_SOURCE_IMAGES);
  EXPECT_EQ(job.method(), v1::ACCUMULATION_METHOD_EXACT);
}

TEST(ProtoConvertTest, VersionViews) {
  EXPECT_FALSE(FullViewFromProto(v1::VERSION_VIEW_UNSPECIFIED).value());
  EXPECT_FALSE(FullViewFromProto(v1::VERSION_VIEW_BASIC).value());
  EXPECT_TRUE(FullViewFromProto(v1::VERSION_VIEW_FULL).value());
  const absl::Status unknown = FullViewFromProto(static_cast<v1::VersionView>(3)).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("view must be"));
}

TEST(ProtoConvertTest, ListFilterHasExactlyTheFieldsThatAreSet) {
  v1::ListVersionsRequest request;
  VersionFilter filter = VersionFilterFromProto(request).value();
  EXPECT_FALSE(filter.job_id.has_value());
  EXPECT_FALSE(filter.source.has_value());
  EXPECT_FALSE(filter.partial.has_value());

  request.set_job_id("");  // set to empty: only versions without a job id
  request.set_source(v1::VERSION_SOURCE_MERGE);
  request.set_partial(false);
  filter = VersionFilterFromProto(request).value();
  EXPECT_EQ(filter.job_id, std::optional<std::string>(""));
  EXPECT_EQ(filter.source, std::optional<VersionSource>(VersionSource::kMerge));
  EXPECT_EQ(filter.partial, std::optional<bool>(false));

  for (v1::VersionSource bad :
       {v1::VERSION_SOURCE_UNSPECIFIED, static_cast<v1::VersionSource>(9)}) {
    request.set_source(bad);
    const absl::Status status = VersionFilterFromProto(request).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("source must be VERSION_SOURCE_LOGITS"));
  }
}

TEST(ProtoConvertTest, Durations) {
  const absl::Duration duration = absl::Milliseconds(1500) + absl::Nanoseconds(7);
  const google::protobuf::Duration d = DurationToProto(duration);
  EXPECT_EQ(d.seconds(), 1);
  EXPECT_EQ(d.nanos(), 500'000'007);
  EXPECT_EQ(DurationFromProto(d), duration);
}

TEST(ProtoConvertTest, DetectQueryHasTheDefaultSettingAndImageIds) {
  v1::DetectRequest request;
  request.set_request_id("r1");
  request.add_images()->set_encoded("jpeg bytes");
  request.mutable_images(0)->set_image_id("a");
  request.add_images()->set_encoded("png bytes");
  request.mutable_postprocess()->set_include_uncalibrated_score(true);
  const DetectQuery query = DetectQueryFromProto(request).value();
  EXPECT_EQ(query.request_id, "r1");
  ASSERT_EQ(query.settings.size(), 1u);
  EXPECT_TRUE(query.settings[0].model_default);  // resolved by the server, from the profile
  EXPECT_EQ(query.settings[0].name, "");
  EXPECT_FALSE(query.include_raw_candidates);
  EXPECT_THAT(query.image_ids, ElementsAre("a", ""));
  EXPECT_EQ(query.images[1].bytes(), "png bytes");
  EXPECT_TRUE(query.include_uncalibrated_score);
  EXPECT_FALSE(query.statistics.explicitly_set);
  EXPECT_EQ(query.statistics.selector.value().alias, "active");

  // MODEL_DEFAULT named explicitly is the same placeholder, keeping its name.
  v1::DetectRequest named = request;
  v1::CalibrationSetting* model_default = named.add_calibrations();
  model_default->set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  model_default->set_name("tuned");
  named.mutable_postprocess()->set_include_raw_candidates(true);
  const DetectQuery with_default = DetectQueryFromProto(named).value();
  EXPECT_TRUE(with_default.settings[0].model_default);
  EXPECT_EQ(with_default.settings[0].name, "tuned");
  EXPECT_TRUE(with_default.include_raw_candidates);

  // Method NONE with a malformed alias converts: the alias is never used.
  request.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  request.mutable_selector()->set_alias("Bad Alias");
  const DetectQuery none = DetectQueryFromProto(request).value();
  EXPECT_FALSE(none.statistics.selector.ok());
  EXPECT_TRUE(none.statistics.explicitly_set);

  request.add_images();  // no data
  EXPECT_THAT(std::string(DetectQueryFromProto(request).status().message()),
              HasSubstr("image 2 has no data"));
}

TEST(ProtoConvertTest, DetectOutcomeNamesCategoriesAndScores) {
  v1::ModelManifest manifest;
  manifest.add_classes()->set_id(10);
  manifest.add_classes()->set_id(20);
  DetectOutcome outcome;
  outcome.request_id = "r";
  outcome.statistics_version = 3;
  outcome.decode = absl::Milliseconds(2);
  outcome.inference = absl::Milliseconds(30);
  outcome.postprocess = absl::Milliseconds(1);
  DetectOutcome::Setting& setting = outcome.results.emplace_back();
  setting.setting.name = "raw";
  setting.setting.spec.method = CalibrationMethod::kNone;
  DetectOutcome::Image& with = setting.images.emplace_back();
  with.image_id = "a";
  with.detections.push_back(Detection{{1, 2, 3, 4}, 0.5f, 1, 0});
  with.uncalibrated_scores = {0.25f};
  DetectOutcome::Image& without = setting.images.emplace_back();
  without.detections.push_back(Detection{{5, 6, 7, 8}, 0.75f, 0, 2});

  v1::DetectResponse response;
  *response.mutable_timing()->mutable_queue_duration() =
      DurationToProto(absl::Milliseconds(500));  // the transport's, kept
  DetectOutcomeToProto(outcome, manifest, &response);
  EXPECT_EQ(response.request_id(), "r");
  EXPECT_EQ(response.version(), 3);
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(response.results(0).setting().name(), "raw");
  EXPECT_EQ(response.results(0).setting().calibration_method(), v1::CALIBRATION_METHOD_NONE);
  ASSERT_EQ(response.results(0).image_detections_size(), 2);
  const v1::Detection& d = response.results(0).image_detections(0).detections(0);
  EXPECT_EQ(response.results(0).image_detections(0).image_id(), "a");
  EXPECT_EQ(d.category_id(), 20);
  EXPECT_FLOAT_EQ(d.score(), 0.5f);
  EXPECT_FLOAT_EQ(d.box().x2(), 3);
  ASSERT_TRUE(d.has_uncalibrated_score());
  EXPECT_FLOAT_EQ(d.uncalibrated_score(), 0.25f);
  const v1::Detection& e = response.results(0).image_detections(1).detections(0);
  EXPECT_EQ(e.category_id(), 10);
  EXPECT_FALSE(e.has_uncalibrated_score());
  const v1::ServerTiming& timing = response.timing();
  EXPECT_EQ(DurationFromProto(timing.queue_duration()), absl::Milliseconds(500));
  EXPECT_EQ(DurationFromProto(timing.decode_duration()), absl::Milliseconds(2));
  EXPECT_EQ(DurationFromProto(timing.inference_duration()), absl::Milliseconds(30));
  EXPECT_EQ(DurationFromProto(timing.postprocess_duration()), absl::Milliseconds(1));
}

TEST(ProtoConvertTest, ImageBatchFlattensGroundTruth) {
  v1::ImageBatch batch;
  v1::AnnotatedImage* image = batch.add_annotated_images();
  image->mutable_image()->set_encoded("bytes");
  v1::BoundingBox* box = image->mutable_ground_truth()->add_boxes();
  box->set_x1(1);
  box->set_y1(2);
  box->set_x2(3);
  box->set_y2(4);
  image->mutable_ground_truth()->add_category_ids(7);
  batch.add_annotated_images()->mutable_image()->set_encoded("more bytes");
  const std::vector<AnnotatedImageInput> images = ImageBatchFromProto(batch).value();
  ASSERT_EQ(images.size(), 2u);
  EXPECT_THAT(images[0].ground_truth, ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(images[1].ground_truth.empty());

  batch.mutable_annotated_images(1)->mutable_ground_truth()->add_category_ids(7);
  EXPECT_THAT(std::string(ImageBatchFromProto(batch).status().message()),
              HasSubstr("image 1: ground truth has 0 boxes but 1 category ids"));
}

TEST(ProtoConvertTest, JobHeader) {
  v1::CalibrateHeader header;
  // A job reads logits or images: no source, a merge or an import is not a job.
  for (v1::VersionSource bad : {v1::VERSION_SOURCE_UNSPECIFIED, v1::VERSION_SOURCE_MERGE,
                                v1::VERSION_SOURCE_IMPORT, static_cast<v1::VersionSource>(9)}) {
    header.set_source(bad);
    const absl::Status status = JobHeaderFromProto(header).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("needs source VERSION_SOURCE_LOGITS or VERSION_SOURCE_IMAGES"));
  }
  header.set_model_name("m");
  header.set_activate(true);
  header.set_source(v1::VERSION_SOURCE_IMAGES);
  header.set_job_id("j");
  header.set_checkpoint_every_batches(-1);
  CalibrationJobHeader exact = JobHeaderFromProto(header).value();
  EXPECT_EQ(exact.source, VersionSource::kImages);
  EXPECT_EQ(exact.model, "m");
  EXPECT_TRUE(exact.activate);
  EXPECT_EQ(exact.method, AccumulationMethod::kExact);
  EXPECT_EQ(exact.checkpoint_every_batches, -1);
  EXPECT_FALSE(exact.ema_init.has_value());

  header.mutable_ema()->set_momentum(0.1);
  header.mutable_ema()->mutable_init()->set_alias("Bad Alias");
  const CalibrationJobHeader ema = JobHeaderFromProto(header).value();
  EXPECT_EQ(ema.method, AccumulationMethod::kEma);
  EXPECT_DOUBLE_EQ(ema.ema_momentum, 0.1);
  ASSERT_TRUE(ema.ema_init.has_value());
  EXPECT_FALSE(ema.ema_init->ok());  // reported only if the job starts from it
}

}  // namespace
}  // namespace logn
