#ifndef LOGN_SERVER_CORE_ROI_SAMPLER_H_
#define LOGN_SERVER_CORE_ROI_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "calibration/layout.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"

namespace logn {

// How the RoI head of a two-stage detector samples its training RoIs (mmdetection's
// RandomSampler / detectron2's ROI_HEADS defaults): proposals plus the ground-truth boxes as
// proposals, up to num_rois per image of which at most positive_fraction have IoU >= iou with
// some ground truth; the rest are drawn from those below it. The paper's statistics are taken
// over all sampled RoIs (Appendix B.3), so calibrating from images does the same.
struct RoiSamplingOptions {
  int32_t num_rois = 512;
  double positive_fraction = 0.25;
  float positive_iou = 0.5f;
};

// A request's changes to the server's RoiSamplingOptions: what it leaves unset keeps the default.
struct RoiSamplingOverrides {
  std::optional<int32_t> num_rois;
  std::optional<double> positive_fraction;
  std::optional<float> positive_iou;

  RoiSamplingOptions AppliedTo(RoiSamplingOptions defaults) const {
    if (num_rois) defaults.num_rois = *num_rois;
    if (positive_fraction) defaults.positive_fraction = *positive_fraction;
    if (positive_iou) defaults.positive_iou = *positive_iou;
    return defaults;
  }
};

// Intersection over union of two xyxy boxes (0 for empty boxes).
float BoxIou(const float* a, const float* b);

// INVALID_ARGUMENT unless num_rois > 0, positive_fraction is in [0, 1] and positive_iou in (0, 1].
absl::Status ValidateRoiSamplingOptions(const RoiSamplingOptions& options);

// One image's sampled RoIs.
struct SampledRois {
  std::vector<float> boxes;  // R·4 floats, xyxy: the positives first, then the negatives
  int64_t positives = 0;     // how many of the R are positives

  int64_t count() const { return static_cast<int64_t>(boxes.size() / 4); }
};

// The i-th output (i >= 0) of a SplitMix64 generator seeded with `seed`: the random key of box i.
uint64_t SplitMix64At(uint64_t seed, uint64_t i);

// Samples RoIs from `proposals` (N·4 floats, xyxy) and `ground_truth` (G·4 floats, appended to
// the proposals as boxes N..N+G-1). Box i is positive when its best IoU with a ground-truth box
// is >= positive_iou. Of each kind, the boxes with the smallest keys SplitMix64At(seed, i) (ties:
// lower i) are taken, in key order: min(#positives, floor(num_rois · positive_fraction))
// positives, then negatives up to num_rois. Keyed selection is a uniform random subset, like
// training's randperm, and a portable one: any language reproduces it from the seed
// (tests/calibration/ re-implements it in Python).
SampledRois SampleRois(absl::Span<const float> proposals, absl::Span<const float> ground_truth,
                       const RoiSamplingOptions& options, uint64_t seed);

// The seed of one image's sample: a stable 64-bit hash (FNV-1a, the same on every build and
// process) of `base_seed` and the image's bytes, so an image gets the same RoIs whichever
// batch, shard, stream or replica it arrives in.
uint64_t RoiSamplingSeed(uint64_t base_seed, absl::string_view image_bytes);
// The same over the image as a request carries it: its encoded bytes or its raw pixels.
uint64_t RoiSamplingSeed(uint64_t base_seed, const ImageSource& image);

// The proposals behind an image's candidates, N·4 floats (xyxy): a class-agnostic head's boxes as
// they are. A class-specific head refines one box per class and the class-agnostic proposal the
// RoI head saw is not an output, so each candidate gives its box for its best-scoring class.
std::vector<float> CandidateProposals(const CandidatesView& candidates,
                                      const LogitLayout& layout);

// One image's training-style RoIs from `proposals` (the RPN's, or CandidateProposals) and its
// ground truth (G·4 floats), sampled by SampleRois with the seed
// RoiSamplingSeed(base_seed, image).
SampledRois SampleImageRois(absl::Span<const float> proposals,
                            absl::Span<const float> ground_truth, const ImageSource& image,
                            const RoiSamplingOptions& options, uint64_t base_seed);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_ROI_SAMPLER_H_
