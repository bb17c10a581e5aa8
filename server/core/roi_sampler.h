#ifndef LOGN_SERVER_CORE_ROI_SAMPLER_H_
#define LOGN_SERVER_CORE_ROI_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

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

// Intersection over union of two xyxy boxes (0 for empty boxes).
float BoxIou(const float* a, const float* b);

// Samples RoIs from `proposals` (N·4 floats, xyxy) and `ground_truth` (G·4 floats, also used as
// proposals). Returns R·4 floats, R <= num_rois: positives first, then negatives. Deterministic
// for a given generator state.
std::vector<float> SampleRois(absl::Span<const float> proposals,
                              absl::Span<const float> ground_truth,
                              const RoiSamplingOptions& options, std::mt19937_64& rng);

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

// One image's training-style RoIs: the proposals of its candidates and its ground truth (G·4
// floats), sampled by SampleRois with a generator seeded by RoiSamplingSeed(base_seed, image).
std::vector<float> SampleImageRois(const CandidatesView& candidates, const LogitLayout& layout,
                                   absl::Span<const float> ground_truth, const ImageSource& image,
                                   const RoiSamplingOptions& options, uint64_t base_seed);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_ROI_SAMPLER_H_
