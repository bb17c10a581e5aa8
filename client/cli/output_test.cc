#include "client/cli/output.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;

TEST(OutputTest, JsonStringEscapes) {
  EXPECT_EQ(JsonString("plain"), "\"plain\"");
  EXPECT_EQ(JsonString("a\"b\\c\nd\re\tf"), "\"a\\\"b\\\\c\\nd\\re\\tf\"");
  EXPECT_EQ(JsonString(std::string("\x01", 1)), "\"\\u0001\"");
  EXPECT_EQ(JsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"") << "UTF-8 passes through";
}

TEST(OutputTest, ProtoJsonKeepsFieldNamesAndDefaults) {
  v1::StatisticsSelector selector;
  selector.set_version(3);
  EXPECT_EQ(ProtoJson(selector), "{\"version\":\"3\"}");
  v1::CalibrationSetting setting;
  EXPECT_THAT(ProtoJson(setting), HasSubstr("\"name\":\"\""));
}

TEST(OutputTest, TimesAndDurations) {
  google::protobuf::Timestamp ts;
  EXPECT_EQ(TimestampText(ts), "-");
  ts.set_seconds(86400 * 365);
  EXPECT_EQ(TimestampText(ts), "1971-01-01T00:00:00Z");
  EXPECT_EQ(FormatSeconds(absl::Milliseconds(1234)), "1.23s");
}

TEST(OutputTest, VersionTableRows) {
  v1::StatisticsVersion v;
  v.set_version(12);
  v.set_rows_seen(3000);
  v.set_images_seen(40);
  v.set_method(v1::ACCUMULATION_METHOD_EMA);
  v.set_momentum(0.5);
  v.set_source(v1::VERSION_SOURCE_MERGE);
  v.add_aliases("active");
  v.add_aliases("canary");
  v.set_description("merged shards");
  const std::string line = VersionLine(v);
  EXPECT_EQ(line,
            "     12  -                           3000       40  ema(0.5)      merge    "
            "active,canary     merged shards");
  v.clear_aliases();
  v.set_method(v1::ACCUMULATION_METHOD_EXACT);
  v.set_source(v1::VERSION_SOURCE_IMAGES);
  EXPECT_THAT(VersionLine(v), HasSubstr("exact         images   -  "));
  EXPECT_EQ(VersionHeader(),
            "version  created                     rows   images  method        source   aliases"
            "           description\n");
}

TEST(OutputTest, SettingAndSelectorNames) {
  v1::CalibrationSetting setting;
  setting.set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(SettingName(setting), "none");
  setting.set_name("t2:mu");
  EXPECT_EQ(SettingName(setting), "t2:mu");
  v1::StatisticsSelector selector;
  EXPECT_EQ(SelectorText(selector), "active");
  selector.set_alias("canary");
  EXPECT_EQ(SelectorText(selector), "canary");
  selector.set_version(4);
  EXPECT_EQ(SelectorText(selector), "4");
}

TEST(OutputTest, DetectionBecomesAnLvisResult) {
  v1::Detection d;
  d.set_category_id(7);
  d.set_score(0.5f);
  d.mutable_box()->set_x1(10);
  d.mutable_box()->set_y1(20);
  d.mutable_box()->set_x2(15);
  d.mutable_box()->set_y2(28);
  const Detection out = ToLvisDetection(42, d);
  EXPECT_EQ(out.image_id, 42);
  EXPECT_EQ(out.category_id, 7);
  EXPECT_DOUBLE_EQ(out.score, 0.5);
  EXPECT_DOUBLE_EQ(out.bbox.x, 10);
  EXPECT_DOUBLE_EQ(out.bbox.y, 20);
  EXPECT_DOUBLE_EQ(out.bbox.w, 5);
  EXPECT_DOUBLE_EQ(out.bbox.h, 8);
}

TEST(OutputTest, WriteFileReplacesOrFails) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "out.txt").string();
  ASSERT_TRUE(WriteFile(path, "first, longer").ok());
  ASSERT_TRUE(WriteFile(path, "second").ok());
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "second");
  const absl::Status s = WriteFile("/nonexistent-dir/x.txt", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "cannot write '/nonexistent-dir/x.txt'");
}

}  // namespace
}  // namespace logn::cli
