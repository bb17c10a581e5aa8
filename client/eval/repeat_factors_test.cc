#include "client/eval/repeat_factors.h"

#include <cmath>

#include "gtest/gtest.h"

namespace logn {
namespace {

LvisAnnotation Annotation(int64_t id, int64_t image, int64_t category) {
  LvisAnnotation a;
  a.id = id;
  a.image_id = image;
  a.category_id = category;
  return a;
}

TEST(RepeatFactorsTest, RareCategoriesRepeatTheirImages) {
  // 100 images; category 1 in every image, category 2 in image 1 only (twice: counted once).
  LvisDataset dataset;
  for (int64_t i = 1; i <= 100; ++i) {
    LvisImage image;
    image.id = i;
    dataset.images.push_back(image);
    dataset.annotations.push_back(Annotation(i, i, 1));
  }
  dataset.annotations.push_back(Annotation(101, 1, 2));
  dataset.annotations.push_back(Annotation(102, 1, 2));
  LvisImage empty;
  empty.id = 200;
  dataset.images.push_back(empty);  // 101 images in all

  const auto factors = RepeatFactors(dataset, 0.1);
  ASSERT_TRUE(factors.ok()) << factors.status();
  // f_2 = 1/101: r = sqrt(0.1 · 101); f_1 = 100/101 > t: r = 1.
  EXPECT_DOUBLE_EQ(factors->at(1), std::sqrt(0.1 * 101));
  EXPECT_DOUBLE_EQ(factors->at(2), 1.0);
  EXPECT_DOUBLE_EQ(factors->at(200), 1.0);
  EXPECT_EQ(factors->size(), 101u);
}

TEST(RepeatFactorsTest, RefusesABadThresholdOrAnEmptyDataset) {
  LvisDataset dataset;
  EXPECT_EQ(RepeatFactors(dataset, 0.001).status().code(), absl::StatusCode::kInvalidArgument);
  dataset.images.push_back(LvisImage());
  EXPECT_EQ(RepeatFactors(dataset, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RepeatFactors(dataset, 1.5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(RepeatFactors(dataset, 0.001).ok());
}

}  // namespace
}  // namespace logn
