#include "server/core/roi_sampler.h"

#include <vector>

#include "gtest/gtest.h"

namespace logn {
namespace {

TEST(RoiSamplerTest, IouOfKnownBoxes) {
  const float a[4] = {0, 0, 10, 10};
  const float b[4] = {5, 0, 15, 10};
  const float c[4] = {20, 20, 30, 30};
  EXPECT_FLOAT_EQ(BoxIou(a, a), 1.0f);
  EXPECT_FLOAT_EQ(BoxIou(a, b), 50.0f / 150.0f);
  EXPECT_FLOAT_EQ(BoxIou(a, c), 0.0f);
}

TEST(RoiSamplerTest, CapsPositivesAndFillsWithNegatives) {
  // 300 proposals on the ground truth (positives) and 1000 far away (negatives).
  std::vector<float> proposals;
  for (int i = 0; i < 300; ++i) proposals.insert(proposals.end(), {0, 0, 10, 10.0f + i * 1e-3f});
  for (int i = 0; i < 1000; ++i) proposals.insert(proposals.end(), {50, 50, 60, 60});
  const std::vector<float> gt = {0, 0, 10, 10};
  std::mt19937_64 rng(1);
  const std::vector<float> rois = SampleRois(proposals, gt, RoiSamplingOptions(), rng);
  ASSERT_EQ(rois.size(), 512u * 4);
  int positives = 0;
  for (size_t i = 0; i < 512; ++i) positives += BoxIou(&rois[4 * i], gt.data()) >= 0.5f;
  EXPECT_EQ(positives, 128);  // 25% of 512
}

TEST(RoiSamplerTest, GroundTruthIsAProposalAndSmallPoolsAreKeptWhole) {
  const std::vector<float> proposals = {50, 50, 60, 60, 70, 70, 80, 80};
  const std::vector<float> gt = {0, 0, 10, 10};
  std::mt19937_64 rng(2);
  const std::vector<float> rois = SampleRois(proposals, gt, RoiSamplingOptions(), rng);
  ASSERT_EQ(rois.size(), 3u * 4);
  EXPECT_EQ(std::vector<float>(rois.begin(), rois.begin() + 4), gt);  // the positive first
}

TEST(RoiSamplerTest, SeedsAreStableAndDependOnSeedAndBytes) {
  // FNV-1a of the seed's 8 little-endian bytes, then of the image bytes: a fixed function, so
  // every build and replica samples an image alike. The value guards against a change of it.
  EXPECT_EQ(RoiSamplingSeed(0, ""), 0xa8c7f832281a39c5ULL);
  EXPECT_EQ(RoiSamplingSeed(7, "png"), RoiSamplingSeed(7, "png"));
  EXPECT_NE(RoiSamplingSeed(7, "png"), RoiSamplingSeed(8, "png"));
  EXPECT_NE(RoiSamplingSeed(7, "png"), RoiSamplingSeed(7, "pnh"));
}

}  // namespace
}  // namespace logn
