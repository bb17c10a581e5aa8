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

TEST(RoiSamplerTest, AnImageIsSeededByItsEncodedBytesOrItsRawPixels) {
  EXPECT_EQ(RoiSamplingSeed(7, ImageSource::Encoded("png")), RoiSamplingSeed(7, "png"));
  const std::vector<uint8_t> pixels = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(RoiSamplingSeed(7, ImageSource::Raw(pixels, 1, 2, 3)),
            RoiSamplingSeed(7, absl::string_view("\x01\x02\x03\x04\x05\x06", 6)));
}

TEST(RoiSamplerTest, ProposalsOfClassAgnosticAndClassSpecificCandidates) {
  const LogitLayout layout{2, BackgroundPosition::kFirst};  // columns: bg, class 0, class 1
  const std::vector<float> logits = {9, 1, 2,    // candidate 0: class 1 beats class 0
                                     9, 3, -1};  // candidate 1: class 0
  const std::vector<float> agnostic = {0, 0, 1, 1, 2, 2, 3, 3};
  CandidatesView view{2, false, agnostic, logits};
  EXPECT_EQ(CandidateProposals(view, layout), agnostic);

  const std::vector<float> specific = {0, 0, 1, 1, 10, 10, 11, 11,   // candidate 0: class 0, 1
                                       2, 2, 3, 3, 20, 20, 21, 21};  // candidate 1: class 0, 1
  view = CandidatesView{2, true, specific, logits};
  EXPECT_EQ(CandidateProposals(view, layout),
            (std::vector<float>{10, 10, 11, 11, 2, 2, 3, 3}));
}

TEST(RoiSamplerTest, AnImagesSampleDependsOnlyOnTheImage) {
  const LogitLayout layout{2, BackgroundPosition::kFirst};
  std::vector<float> boxes, logits;
  for (int i = 0; i < 40; ++i) {
    boxes.insert(boxes.end(), {0.0f + i, 0, 10.0f + i, 10});
    logits.insert(logits.end(), {0, 1, 2});
  }
  const CandidatesView view{40, false, boxes, logits};
  const std::vector<float> gt = {0, 0, 10, 10};
  RoiSamplingOptions options;
  options.num_rois = 8;
  const ImageSource image = ImageSource::Encoded("image bytes");
  const std::vector<float> a = SampleImageRois(view, layout, gt, image, options, 3);
  EXPECT_EQ(a.size(), 8u * 4);
  EXPECT_EQ(SampleImageRois(view, layout, gt, image, options, 3), a);
  EXPECT_NE(SampleImageRois(view, layout, gt, ImageSource::Encoded("other"), options, 3), a);
}

}  // namespace
}  // namespace logn
