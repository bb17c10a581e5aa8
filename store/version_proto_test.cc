#include "store/version_proto.h"

#include <string>

#include "calibration/statistics_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/stats_export.h"

namespace logn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(VersionProtoTest, VersionSourceRoundTripsAndUnspecifiedIsRefused) {
  EXPECT_EQ(VersionSourceToProto(VersionSource::kLogits), v1::VERSION_SOURCE_LOGITS);
  EXPECT_EQ(VersionSourceToProto(VersionSource::kImages), v1::VERSION_SOURCE_IMAGES);
  EXPECT_EQ(VersionSourceToProto(VersionSource::kMerge), v1::VERSION_SOURCE_MERGE);
  EXPECT_EQ(VersionSourceToProto(VersionSource::kImport), v1::VERSION_SOURCE_IMPORT);
  EXPECT_EQ(VersionSourceToProto(VersionSource::kServedTraffic),
            v1::VERSION_SOURCE_SERVED_TRAFFIC);
  for (VersionSource s : {VersionSource::kLogits, VersionSource::kImages, VersionSource::kMerge,
                          VersionSource::kImport, VersionSource::kServedTraffic}) {
    EXPECT_EQ(VersionSourceFromProto(VersionSourceToProto(s)).value(), s);
  }
  for (v1::VersionSource bad :
       {v1::VERSION_SOURCE_UNSPECIFIED, static_cast<v1::VersionSource>(17)}) {
    const absl::Status status = VersionSourceFromProto(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("source must be VERSION_SOURCE_LOGITS, _IMAGES, _MERGE, _IMPORT or "
                          "_SERVED_TRAFFIC"));
  }
}

TEST(VersionProtoTest, RoiSourceAndSamplingRoundTrip) {
  for (RoiSource s : {RoiSource::kUnspecified, RoiSource::kProposals, RoiSource::kCandidates,
                      RoiSource::kDetections, RoiSource::kLogits, RoiSource::kImported,
                      RoiSource::kMixed}) {
    EXPECT_EQ(RoiSourceFromProto(RoiSourceToProto(s)).value(), s);
  }
  EXPECT_EQ(RoiSourceToProto(RoiSource::kProposals), v1::ROI_SOURCE_PROPOSALS);
  EXPECT_EQ(RoiSourceToProto(RoiSource::kMixed), v1::ROI_SOURCE_MIXED);
  const absl::Status status = RoiSourceFromProto(static_cast<v1::RoiSource>(9)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("got 9"));

  RoiSamplingRecord r;
  r.roi_source = RoiSource::kCandidates;
  r.num_rois = 256;
  r.positive_fraction = 0.25;
  r.positive_iou = 0.7f;
  r.images = 3;
  r.rois = 700;
  r.positive_rois = 300;
  r.rfs_threshold = 0.001;
  v1::RoiSampling proto;
  RoiSamplingToProto(r, &proto);
  EXPECT_EQ(proto.roi_source(), v1::ROI_SOURCE_CANDIDATES);
  EXPECT_EQ(proto.num_rois(), 256);
  EXPECT_EQ(proto.positive_iou(), 0.7f);
  EXPECT_EQ(proto.rois(), 700);
  EXPECT_EQ(proto.positive_rois(), 300);
  EXPECT_EQ(proto.rfs_threshold(), 0.001);
  absl::StatusOr<RoiSamplingRecord> back = RoiSamplingFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == r);
}

TEST(VersionProtoTest, VersionInfoIsTheBasicViewWithTheFormat) {
  VersionInfo info;
  info.model = ModelKey{"demo", std::string(64, 'c')};
  info.version = 7;
  info.created_at = absl::FromUnixMicros(1700000000123456);
  info.job_id = "job-1";
  info.description = "shards";
  info.source = VersionSource::kMerge;
  info.rows_seen = 1000;
  info.images_seen = 20;
  info.method = AccumulationMethod::kEma;
  info.momentum = 0.25;
  info.parent_versions = {3, 5};
  info.payload_sha256 = std::string(64, 'd');
  info.partial = true;
  v1::StatisticsVersion proto;
  proto.add_aliases("stale");  // replaced, not merged
  VersionInfoToProto(info, &proto);
  EXPECT_EQ(proto.format(), kVersionExportFormat);
  EXPECT_EQ(proto.model().name(), "demo");
  EXPECT_EQ(proto.model().sha256(), std::string(64, 'c'));
  EXPECT_EQ(proto.version(), 7);
  EXPECT_EQ(proto.created_at().seconds(), 1700000000);
  EXPECT_EQ(proto.created_at().nanos(), 123456000);
  EXPECT_EQ(proto.job_id(), "job-1");
  EXPECT_EQ(proto.description(), "shards");
  EXPECT_EQ(proto.source(), v1::VERSION_SOURCE_MERGE);
  EXPECT_EQ(proto.rows_seen(), 1000);
  EXPECT_EQ(proto.images_seen(), 20);
  EXPECT_EQ(proto.method(), v1::ACCUMULATION_METHOD_EMA);
  EXPECT_EQ(proto.momentum(), 0.25);
  EXPECT_THAT(proto.parent_versions(), ElementsAre(3, 5));
  EXPECT_EQ(proto.payload_sha256(), std::string(64, 'd'));
  EXPECT_TRUE(proto.partial());
  EXPECT_FALSE(proto.has_statistics());
  EXPECT_TRUE(proto.aliases().empty());
  EXPECT_FALSE(proto.has_sampling()) << "no record: absent, not an empty message";

  info.sampling = RoiSamplingRecord{};
  info.sampling->roi_source = RoiSource::kMixed;
  info.sampling->images = 20;
  VersionInfoToProto(info, &proto);
  ASSERT_TRUE(proto.has_sampling());
  EXPECT_EQ(proto.sampling().roi_source(), v1::ROI_SOURCE_MIXED);
  EXPECT_EQ(proto.sampling().images(), 20);
}

TEST(VersionProtoTest, CalibrationProfileBytesHaveNoSetAtAndAreChecked) {
  v1::CalibrationProfile profile;
  profile.mutable_default_setting()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  profile.mutable_default_setting()->mutable_logn()->set_mean_weight(0.5);
  profile.set_description("logn tune --objective apr");
  profile.mutable_tuning()->set_objective("apr");
  profile.mutable_tuning()->add_split_seeds(7);
  profile.mutable_set_at()->set_seconds(1700000000);
  const std::string bytes = CalibrationProfileToBytes(profile);
  v1::CalibrationProfile back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_FALSE(back.has_set_at()) << "the store keeps its own";
  EXPECT_EQ(back.description(), "logn tune --objective apr");
  EXPECT_EQ(back.tuning().split_seeds(0), 7u);
  EXPECT_EQ(CalibrationProfileToBytes(back), bytes) << "one form per message";

  EXPECT_TRUE(CheckCalibrationProfileBytes(bytes).ok());
  EXPECT_TRUE(CheckCalibrationProfileBytes("").ok()) << "every field default";
  const absl::Status bad = CheckCalibrationProfileBytes(std::string("\xff\xff", 2));
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("not a logn.v1.CalibrationProfile"));

  v1::CalibrationProfile message;
  const CalibrationProfileRecord record{bytes, absl::FromUnixMicros(1700000000123456)};
  ASSERT_TRUE(CalibrationProfileToProto(record, &message).ok());
  EXPECT_EQ(message.description(), "logn tune --objective apr");
  EXPECT_EQ(message.set_at().seconds(), 1700000000);
  EXPECT_EQ(message.set_at().nanos(), 123456000);
  const CalibrationProfileRecord garbage{std::string("\xff\xff", 2), record.set_at};
  EXPECT_EQ(CalibrationProfileToProto(garbage, &message).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(message.description(), "") << "only set_at";
  EXPECT_EQ(message.set_at().seconds(), 1700000000);
}

TEST(VersionProtoTest, VersionInfoCarriesTheCalibrationProfile) {
  VersionInfo info;
  info.model = ModelKey{"demo", std::string(64, 'c')};
  info.version = 3;
  v1::StatisticsVersion proto;
  VersionInfoToProto(info, &proto);
  EXPECT_FALSE(proto.has_calibration_profile()) << "none: absent, not an empty message";

  v1::CalibrationProfile profile;
  profile.mutable_default_setting()->set_name("tuned");
  profile.mutable_default_setting()->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  profile.set_description("by hand");
  info.calibration_profile = CalibrationProfileRecord{CalibrationProfileToBytes(profile),
                                                      absl::FromUnixSeconds(1800000000)};
  VersionInfoToProto(info, &proto);
  ASSERT_TRUE(proto.has_calibration_profile());
  EXPECT_EQ(proto.calibration_profile().default_setting().name(), "tuned");
  EXPECT_EQ(proto.calibration_profile().default_setting().calibration_method(),
            v1::CALIBRATION_METHOD_LOGN);
  EXPECT_EQ(proto.calibration_profile().description(), "by hand");
  EXPECT_EQ(proto.calibration_profile().set_at().seconds(), 1800000000);
  // An empty profile is a profile.
  info.calibration_profile->profile.clear();
  VersionInfoToProto(info, &proto);
  EXPECT_TRUE(proto.has_calibration_profile());
  EXPECT_EQ(proto.calibration_profile().set_at().seconds(), 1800000000);
}

}  // namespace
}  // namespace logn
