#include "server/runtime/manifest.h"

#include <string>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

constexpr char kValid[] = R"({
  "name": "tiny",
  "classes": [
    {"id": 1, "name": "cat", "frequency": "FREQUENCY_GROUP_FREQUENT", "imageCount": 500, "instanceCount": 900},
    {"id": 7, "name": "okapi", "frequency": "FREQUENCY_GROUP_RARE", "image_count": 3, "instance_count": 4}
  ],
  "background": "BACKGROUND_POSITION_LAST",
  "boxLayout": "BOX_LAYOUT_CLASS_SPECIFIC",
  "input": {
    "shorterSide": {"shorterSide": 800, "maxLongerSide": 1333},
    "pixelMean": [103.53, 116.28, 123.675],
    "pixelStd": [1, 1, 1],
    "channelOrder": "CHANNEL_ORDER_BGR",
    "valueRange": "VALUE_RANGE_BYTE"
  },
  "hasClassifyRois": true,
  "hasProposals": true,
  "proposalSettings": {"preNmsTopN": 2000, "postNmsTopN": 1000, "nmsThreshold": 0.7}
})";

absl::Status ParseWith(const std::string& from, const std::string& to) {
  const std::string json = absl::StrReplaceAll(kValid, {{from, to}});
  EXPECT_NE(json, kValid) << "replacement did not apply: " << from;
  return ParseManifestJson(json).status();
}

TEST(ManifestTest, ParsesAValidManifest) {
  const absl::StatusOr<v1::ModelManifest> m = ParseManifestJson(kValid);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name(), "tiny");
  ASSERT_EQ(m->classes_size(), 2);
  EXPECT_EQ(m->classes(1).id(), 7);
  EXPECT_EQ(m->classes(1).frequency(), v1::FREQUENCY_GROUP_RARE);
  EXPECT_EQ(m->classes(1).instance_count(), 4);
  EXPECT_EQ(m->input().shorter_side().max_longer_side(), 1333);
  EXPECT_TRUE(m->has_classify_rois());
  EXPECT_TRUE(m->has_proposals());
  EXPECT_EQ(m->proposal_settings().pre_nms_top_n(), 2000);
  EXPECT_EQ(m->proposal_settings().post_nms_top_n(), 1000);
  EXPECT_FLOAT_EQ(m->proposal_settings().nms_threshold(), 0.7f);
  const LogitLayout layout = ManifestLayout(*m);
  EXPECT_EQ(layout.num_classes, 2);
  EXPECT_EQ(layout.background, BackgroundPosition::kLast);
  EXPECT_EQ(ManifestInstanceCounts(*m).value(), (std::vector<double>{900, 4}));
}

TEST(ManifestTest, ErrorsNameTheProblem) {
  struct Case {
    std::string from, to, message;
  };
  const Case cases[] = {
      {R"("name": "tiny")", R"("name": "")", "name is empty"},
      {R"("id": 7)", R"("id": 1)", "duplicate id"},
      {R"("name": "okapi")", R"("name": "cat")", "duplicate name"},
      {R"("instance_count": 4)", R"("instance_count": -4)", "negative"},
      {"BACKGROUND_POSITION_LAST", "BACKGROUND_POSITION_NONE", "background must be"},
      {"BOX_LAYOUT_CLASS_SPECIFIC", "BOX_LAYOUT_UNSPECIFIED", "boxLayout"},
      {R"("maxLongerSide": 1333)", R"("maxLongerSide": 700)", "shorterSide <= maxLongerSide"},
      {R"("shorterSide": {"shorterSide": 800, "maxLongerSide": 1333},)", "", "resize rule"},
      {R"("pixelStd": [1, 1, 1])", R"("pixelStd": [1, 0, 1])", "pixelStd[1]"},
      {R"("pixelStd": [1, 1, 1])", R"("pixelStd": [1, 1])", "3 entries"},
      {R"("channelOrder": "CHANNEL_ORDER_BGR",)", "", "channelOrder"},
      {R"("valueRange": "VALUE_RANGE_BYTE")", R"("valueRange": "VALUE_RANGE_UNSPECIFIED")",
       "valueRange"},
      {R"("hasClassifyRois")", R"("hasClassifyRoi")", "does not parse"},  // typo: unknown field
      {"FREQUENCY_GROUP_RARE", "RARE", "does not parse"},
      {R"("hasClassifyRois": true)", R"("hasClassifyRois": false)",
       "hasProposals needs hasClassifyRois"},
      {R"("hasProposals": true)", R"("hasProposals": false)",
       "proposalSettings given but hasProposals is false"},
      {R"("preNmsTopN": 2000)", R"("preNmsTopN": 0)", "preNmsTopN > 0 and postNmsTopN > 0"},
      {R"("postNmsTopN": 1000)", R"("postNmsTopN": -1)", "preNmsTopN > 0 and postNmsTopN > 0"},
      {R"("nmsThreshold": 0.7)", R"("nmsThreshold": 1.5)", "nmsThreshold must be in (0, 1]"},
      {R"("nmsThreshold": 0.7)", R"("nmsThreshold": 0)", "nmsThreshold must be in (0, 1]"},
  };
  for (const Case& c : cases) {
    const absl::Status status = ParseWith(c.from, c.to);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
  EXPECT_EQ(ParseManifestJson("{").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ParseManifestJson(R"({"name": "x"})").status().message()),
              HasSubstr("no classes"));
}

TEST(ManifestTest, ProposalsAreOptional) {
  constexpr char kSettingsField[] = R"(,
  "proposalSettings": {"preNmsTopN": 2000, "postNmsTopN": 1000, "nmsThreshold": 0.7})";
  constexpr char kHasProposalsField[] = R"(,
  "hasProposals": true)";
  // proposalSettings is informational: hasProposals alone is valid.
  const std::string no_settings = absl::StrReplaceAll(kValid, {{kSettingsField, ""}});
  ASSERT_NE(no_settings, kValid);
  absl::StatusOr<v1::ModelManifest> m = ParseManifestJson(no_settings);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->has_proposals());
  EXPECT_FALSE(m->has_proposal_settings());
  // Neither field: no proposals method (the manifests written before it existed).
  const std::string neither = absl::StrReplaceAll(no_settings, {{kHasProposalsField, ""}});
  ASSERT_NE(neither, no_settings);
  m = ParseManifestJson(neither);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->has_proposals());
  EXPECT_FALSE(m->has_proposal_settings());
}

TEST(ManifestTest, LogACountsNeedEveryClass) {
  v1::ModelManifest m = ParseManifestJson(kValid).value();
  m.mutable_classes(1)->set_instance_count(0);
  const absl::Status status = ManifestInstanceCounts(m).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("okapi"));
}

TEST(ManifestTest, FilesAndDefaultPath) {
  EXPECT_EQ(ReadManifestFile("/nonexistent/m.json").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DefaultManifestPath("models/frcnn.pt"), "models/frcnn.json");
  EXPECT_EQ(DefaultManifestPath("models.v2/frcnn"), "models.v2/frcnn.json");
}

}  // namespace
}  // namespace logn
