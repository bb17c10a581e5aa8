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
  for (VersionSource s : {VersionSource::kLogits, VersionSource::kImages, VersionSource::kMerge,
                          VersionSource::kImport}) {
    EXPECT_EQ(VersionSourceFromProto(VersionSourceToProto(s)).value(), s);
  }
  for (v1::VersionSource bad :
       {v1::VERSION_SOURCE_UNSPECIFIED, static_cast<v1::VersionSource>(17)}) {
    const absl::Status status = VersionSourceFromProto(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("source must be VERSION_SOURCE_LOGITS, _IMAGES, _MERGE or _IMPORT"));
  }
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
}

}  // namespace
}  // namespace logn
