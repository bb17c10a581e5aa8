#include "client/eval/lvis_dataset.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

constexpr char kValid[] = R"json({
  "info": {"description": "ignored"},
  "images": [
    {"id": 3, "width": 640, "height": 480, "coco_url": "http://x/val2017/000003.jpg",
     "neg_category_ids": [2], "not_exhaustive_category_ids": []},
    {"id": 5, "file_name": "b.png", "neg_category_ids": [], "not_exhaustive_category_ids": [1]}
  ],
  "annotations": [
    {"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3.5, 4], "area": 14,
     "segmentation": [[1, 2, 3, 4, 5, 6]]},
    {"id": 2, "image_id": 5, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 100,
     "iscrowd": 1, "ignore": 1}
  ],
  "categories": [
    {"id": 1, "name": "cat", "frequency": "r", "image_count": 3, "instance_count": 4,
     "synset": "cat.n.01"},
    {"id": 2, "name": "dog", "frequency": "f", "image_count": 300, "instance_count": 900}
  ]
})json";

TEST(LvisDatasetTest, ParsesFieldsAndSkipsUnknownOnes) {
  absl::StatusOr<LvisDataset> d = ParseLvisDataset(kValid);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->images.size(), 2u);
  EXPECT_EQ(d->images[0].id, 3);
  EXPECT_EQ(d->images[0].width, 640);
  EXPECT_EQ(d->images[0].file_name, "000003.jpg");  // from coco_url
  EXPECT_EQ(d->images[1].file_name, "b.png");
  EXPECT_EQ(d->images[0].neg_category_ids, std::vector<int64_t>{2});
  EXPECT_EQ(d->images[1].not_exhaustive_category_ids, std::vector<int64_t>{1});
  ASSERT_EQ(d->annotations.size(), 2u);
  EXPECT_DOUBLE_EQ(d->annotations[0].bbox.w, 3.5);
  EXPECT_DOUBLE_EQ(d->annotations[0].area, 14);
  EXPECT_FALSE(d->annotations[0].iscrowd);
  EXPECT_TRUE(d->annotations[1].iscrowd);
  EXPECT_TRUE(d->annotations[1].ignore);
  ASSERT_EQ(d->categories.size(), 2u);
  EXPECT_EQ(d->categories[0].frequency, Frequency::kRare);
  EXPECT_EQ(d->categories[1].frequency, Frequency::kFrequent);
  EXPECT_EQ(d->categories[1].image_count, 300);
  EXPECT_EQ(d->categories[1].instance_count, 900);
}

TEST(LvisDatasetTest, RoundTripsThroughJson) {
  absl::StatusOr<LvisDataset> d = ParseLvisDataset(kValid);
  ASSERT_TRUE(d.ok());
  absl::StatusOr<LvisDataset> again = ParseLvisDataset(LvisDatasetToJson(*d));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(LvisDatasetToJson(*again), LvisDatasetToJson(*d));
}

struct BadCase {
  std::string json;
  std::string expected;  // substring of the message
};

class LvisDatasetBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(LvisDatasetBadInputTest, IsInvalidArgumentNamingTheField) {
  absl::StatusOr<LvisDataset> d = ParseLvisDataset(GetParam().json);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(std::string(d.status().message()), HasSubstr(GetParam().expected));
}

std::string With(const std::string& images, const std::string& annotations,
                 const std::string& categories) {
  return "{\"images\":[" + images + "],\"annotations\":[" + annotations + "],\"categories\":[" +
         categories + "]}";
}
const char kImage[] = R"({"id":1,"neg_category_ids":[],"not_exhaustive_category_ids":[]})";
const char kCat[] = R"({"id":1,"frequency":"c","image_count":20,"instance_count":30})";
const char kAnn[] = R"({"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"area":4})";

INSTANTIATE_TEST_SUITE_P(
    Cases, LvisDatasetBadInputTest,
    ::testing::Values(
        BadCase{"{\"images\": [", "malformed dataset JSON"},
        BadCase{"{\"images\": [1,,2]}", "malformed dataset JSON"},
        BadCase{"not json", "malformed dataset JSON"},
        BadCase{With(kImage, kAnn, "").substr(0, 40), "malformed"},
        BadCase{With("", "", kCat), "images: missing or empty"},
        BadCase{With(kImage, "", ""), "categories: missing or empty"},
        BadCase{With(R"({"neg_category_ids":[],"not_exhaustive_category_ids":[]})", "", kCat),
                "images[0].id: missing"},
        BadCase{With(R"({"id":1,"not_exhaustive_category_ids":[]})", "", kCat),
                "images[0].neg_category_ids: missing"},
        BadCase{With(R"({"id":1,"neg_category_ids":[]})", "", kCat),
                "images[0].not_exhaustive_category_ids: missing"},
        BadCase{With(R"({"id":1,"neg_category_ids":[1.5],"not_exhaustive_category_ids":[]})", "", kCat),
                "images[0].neg_category_ids[0]: expected an integer"},
        BadCase{With(R"({"id":1,"neg_category_ids":["a"],"not_exhaustive_category_ids":[]})", "", kCat),
                "images[0].neg_category_ids[0]"},
        BadCase{With(R"({"id":1,"neg_category_ids":[9],"not_exhaustive_category_ids":[]})", "", kCat),
                "images[0].neg_category_ids[0]: 9 is not a category"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2,2]})", kCat),
                "annotations[0].area: missing"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2],"area":4})", kCat),
                "annotations[0].bbox: expected [x, y, w, h] (4 numbers), got 3"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":1,"area":4})", kCat),
                "annotations[0].bbox: expected [x, y, w, h] (4 numbers), got none"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":1,"bbox":[0,0,-2,2],"area":4})", kCat),
                "annotations[0].bbox: negative width"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":1,"bbox":[0,0,"x",2],"area":4})", kCat),
                "malformed dataset JSON"},
        BadCase{With(kImage, R"({"id":1,"image_id":2,"category_id":1,"bbox":[0,0,2,2],"area":4})", kCat),
                "annotations[0].image_id: 2 is not an image"},
        BadCase{With(kImage, R"({"id":1,"image_id":1,"category_id":7,"bbox":[0,0,2,2],"area":4})", kCat),
                "annotations[0].category_id: 7 is not a category"},
        BadCase{With(kImage, R"({"id":0,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"area":4})", kCat),
                "annotations[0].id: must be >= 1"},
        BadCase{With(kImage, std::string(kAnn) + "," + kAnn, kCat),
                "annotations[1].id: duplicate annotation id 1"},
        BadCase{With(std::string(kImage) + "," + kImage, "", kCat), "images[1].id: duplicate image id 1"},
        BadCase{With(kImage, "", R"({"id":1,"image_count":20,"instance_count":30})"),
                "categories[0].frequency: missing"},
        BadCase{With(kImage, "", R"({"id":1,"frequency":"x","image_count":20,"instance_count":30})"),
                "categories[0].frequency: frequency must be"},
        BadCase{With(kImage, "", R"({"id":1,"frequency":"r","instance_count":30})"),
                "categories[0].image_count: missing"},
        BadCase{With(kImage, "", R"({"id":1,"frequency":"r","image_count":30})"),
                "categories[0].instance_count: missing"},
        BadCase{With(kImage, "", std::string(kCat) + "," + kCat),
                "categories[1].id: duplicate category id 1"}));

TEST(LvisResultsTest, ParsesDetections) {
  absl::StatusOr<std::vector<LvisDetection>> r = ParseLvisResults(
      R"([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5, "extra": [1]},
          {"image_id": 3, "category_id": 4, "bbox": [0, 0, 0, 0], "score": -1e3}])");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].image_id, 1);
  EXPECT_EQ((*r)[0].category_id, 2);
  EXPECT_DOUBLE_EQ((*r)[0].bbox.h, 4);
  EXPECT_DOUBLE_EQ((*r)[1].score, -1e3);
  absl::StatusOr<std::vector<LvisDetection>> again = ParseLvisResults(LvisResultsToJson(*r));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(LvisResultsToJson(*again), LvisResultsToJson(*r));
  absl::StatusOr<std::vector<LvisDetection>> empty = ParseLvisResults(" [ ] ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(LvisResultsTest, RejectsBadInputWithThePosition) {
  struct Case {
    const char* json;
    const char* expected;
  };
  const Case cases[] = {
      {R"({"image_id": 1})", "expected a JSON array"},
      {"", "expected a JSON array"},
      {R"([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4]}])", "results[0].score: missing"},
      {R"([{"category_id": 2, "bbox": [1, 2, 3, 4], "score": 1}])", "results[0].image_id: missing"},
      {R"([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 1}])", "results[0].category_id: missing"},
      {R"([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 1},
           {"image_id": 1, "category_id": 2, "bbox": [1, 2, 3], "score": 1}])",
       "results[1].bbox: expected [x, y, w, h]"},
      {R"([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, -4], "score": 1}])",
       "results[0].bbox: negative width or height"},
      {R"([{"image_id": 1 "category_id": 2, "bbox": [1, 2, 3, 4], "score": 1}])", "malformed results JSON"},
      {R"([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 1})", "malformed results JSON"},
      {R"([{"image_id": "x", "category_id": 2, "bbox": [1, 2, 3, 4], "score": 1}])", "malformed results JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<LvisDetection>> r = ParseLvisResults(c.json);
    ASSERT_FALSE(r.ok()) << c.json << " parsed into " << (r.ok() ? r->size() : 0) << " entries";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.expected)) << c.json;
  }
}

TEST(LvisFilesTest, MissingFileIsNotFoundWithThePath) {
  absl::StatusOr<LvisDataset> d = ReadLvisDataset("/nonexistent/dir/val.json");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("/nonexistent/dir/val.json"));
  EXPECT_EQ(ReadLvisResults("/nonexistent/r.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(FrequencyTest, FollowsTheLvisImageCountBins) {
  EXPECT_EQ(FrequencyForImageCount(1), Frequency::kRare);
  EXPECT_EQ(FrequencyForImageCount(10), Frequency::kRare);
  EXPECT_EQ(FrequencyForImageCount(11), Frequency::kCommon);
  EXPECT_EQ(FrequencyForImageCount(100), Frequency::kCommon);
  EXPECT_EQ(FrequencyForImageCount(101), Frequency::kFrequent);
  EXPECT_EQ(FrequencyName(Frequency::kCommon), "c");
  EXPECT_EQ(ParseFrequency("q").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
