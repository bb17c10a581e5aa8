#include "server/core/roi_sampler.h"

#include <algorithm>
#include <utility>
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
  const SampledRois sampled = SampleRois(proposals, gt, RoiSamplingOptions(), 1);
  ASSERT_EQ(sampled.count(), 512);
  int positives = 0;
  for (size_t i = 0; i < 512; ++i) positives += BoxIou(&sampled.boxes[4 * i], gt.data()) >= 0.5f;
  EXPECT_EQ(positives, 128);  // 25% of 512
  EXPECT_EQ(sampled.positives, 128);
  // The positives come first.
  for (size_t i = 0; i < 128; ++i) EXPECT_GE(BoxIou(&sampled.boxes[4 * i], gt.data()), 0.5f);
}

TEST(RoiSamplerTest, FewPositivesLeaveRoomForNegatives) {
  std::vector<float> proposals;
  for (int i = 0; i < 10; ++i) proposals.insert(proposals.end(), {0, 0, 10, 10});
  for (int i = 0; i < 1000; ++i) proposals.insert(proposals.end(), {50, 50, 60, 60});
  const std::vector<float> gt = {0, 0, 10, 10};
  const SampledRois sampled = SampleRois(proposals, gt, RoiSamplingOptions(), 5);
  EXPECT_EQ(sampled.count(), 512);
  EXPECT_EQ(sampled.positives, 11);  // the 10 proposals and the ground truth itself
}

TEST(RoiSamplerTest, SelectionIsTheSmallestSplitMix64Keys) {
  // 6 negatives, 3 to take: an independent loop over the documented rule.
  const std::vector<float> proposals = {50, 50, 60, 60, 51, 50, 60, 60, 52, 50, 60, 60,
                                        53, 50, 60, 60, 54, 50, 60, 60, 55, 50, 60, 60};
  RoiSamplingOptions options;
  options.num_rois = 3;
  const uint64_t seed = 42;
  const SampledRois sampled = SampleRois(proposals, {}, options, seed);
  std::vector<std::pair<uint64_t, int>> keys;
  for (int i = 0; i < 6; ++i) keys.push_back({SplitMix64At(seed, i), i});
  std::sort(keys.begin(), keys.end());
  ASSERT_EQ(sampled.count(), 3);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(sampled.boxes[4 * k], 50.0f + keys[k].second);
}

TEST(RoiSamplerTest, SplitMix64MatchesTheReferenceSequence) {
  // SplitMix64 seeded with 0: the published first outputs (Vigna's splitmix64.c).
  EXPECT_EQ(SplitMix64At(0, 0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(SplitMix64At(0, 1), 0x6e789e6aa1b965f4ULL);
}

TEST(RoiSamplerTest, OverridesReplaceOnlyWhatTheyName) {
  RoiSamplingOverrides overrides;
  overrides.positive_fraction = 0.5;
  const RoiSamplingOptions applied = overrides.AppliedTo(RoiSamplingOptions());
  EXPECT_EQ(applied.num_rois, 512);
  EXPECT_EQ(applied.positive_fraction, 0.5);
  EXPECT_EQ(applied.positive_iou, 0.5f);
}

TEST(RoiSamplerTest, OptionsAreValidated) {
  EXPECT_TRUE(ValidateRoiSamplingOptions(RoiSamplingOptions()).ok());
  RoiSamplingOptions bad;
  bad.num_rois = 0;
  EXPECT_EQ(ValidateRoiSamplingOptions(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = RoiSamplingOptions();
  bad.positive_fraction = -0.5;
  EXPECT_EQ(ValidateRoiSamplingOptions(bad).code(), absl::StatusCode::kInvalidArgument);
  bad.positive_fraction = 1.5;
  EXPECT_EQ(ValidateRoiSamplingOptions(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = RoiSamplingOptions();
  bad.positive_iou = 0;
  EXPECT_EQ(ValidateRoiSamplingOptions(bad).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RoiSamplerTest, GroundTruthIsAProposalAndSmallPoolsAreKeptWhole) {
  const std::vector<float> proposals = {50, 50, 60, 60, 70, 70, 80, 80};
  const std::vector<float> gt = {0, 0, 10, 10};
  const SampledRois sampled = SampleRois(proposals, gt, RoiSamplingOptions(), 2);
  ASSERT_EQ(sampled.count(), 3);
  EXPECT_EQ(sampled.positives, 1);
  EXPECT_EQ(std::vector<float>(sampled.boxes.begin(), sampled.boxes.begin() + 4), gt);
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
  std::vector<float> boxes;
  for (int i = 0; i < 40; ++i) boxes.insert(boxes.end(), {0.0f + i, 0, 10.0f + i, 10});
  const std::vector<float> gt = {0, 0, 10, 10};
  RoiSamplingOptions options;
  options.num_rois = 8;
  const ImageSource image = ImageSource::Encoded("image bytes");
  const SampledRois a = SampleImageRois(boxes, gt, image, options, 3);
  EXPECT_EQ(a.count(), 8);
  EXPECT_EQ(SampleImageRois(boxes, gt, image, options, 3).boxes, a.boxes);
  EXPECT_NE(SampleImageRois(boxes, gt, ImageSource::Encoded("other"), options, 3).boxes, a.boxes);
}

}  // namespace
}  // namespace logn
