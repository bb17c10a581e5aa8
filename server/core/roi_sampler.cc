#include "server/core/roi_sampler.h"

#include <algorithm>
#include <numeric>

namespace logn {

float BoxIou(const float* a, const float* b) {
  const float iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const float ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0.0f;
  const float inter = iw * ih;
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  const float uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

std::vector<float> SampleRois(absl::Span<const float> proposals,
                              absl::Span<const float> ground_truth,
                              const RoiSamplingOptions& options, std::mt19937_64& rng) {
  std::vector<float> boxes(proposals.begin(), proposals.end());
  boxes.insert(boxes.end(), ground_truth.begin(), ground_truth.end());
  const size_t n = boxes.size() / 4;
  const size_t g = ground_truth.size() / 4;
  std::vector<size_t> positives, negatives;
  for (size_t i = 0; i < n; ++i) {
    float best = 0.0f;
    for (size_t k = 0; k < g; ++k) best = std::max(best, BoxIou(&boxes[4 * i], &ground_truth[4 * k]));
    (best >= options.positive_iou ? positives : negatives).push_back(i);
  }
  std::shuffle(positives.begin(), positives.end(), rng);
  std::shuffle(negatives.begin(), negatives.end(), rng);
  const size_t max_positives =
      static_cast<size_t>(options.num_rois * options.positive_fraction);
  const size_t num_positives = std::min(positives.size(), max_positives);
  const size_t num_negatives =
      std::min(negatives.size(), static_cast<size_t>(options.num_rois) - num_positives);
  std::vector<float> rois;
  rois.reserve(4 * (num_positives + num_negatives));
  auto take = [&](const std::vector<size_t>& from, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      rois.insert(rois.end(), &boxes[4 * from[i]], &boxes[4 * from[i]] + 4);
    }
  };
  take(positives, num_positives);
  take(negatives, num_negatives);
  return rois;
}

uint64_t RoiSamplingSeed(uint64_t base_seed, absl::string_view image_bytes) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int shift = 0; shift < 64; shift += 8) h = (h ^ ((base_seed >> shift) & 0xff)) * kPrime;
  for (unsigned char c : image_bytes) h = (h ^ c) * kPrime;
  return h;
}

uint64_t RoiSamplingSeed(uint64_t base_seed, const ImageSource& image) {
  if (!image.is_raw()) return RoiSamplingSeed(base_seed, image.bytes());
  const absl::Span<const uint8_t> pixels = image.raw_pixels();
  return RoiSamplingSeed(
      base_seed, absl::string_view(reinterpret_cast<const char*>(pixels.data()), pixels.size()));
}

std::vector<float> CandidateProposals(const CandidatesView& candidates,
                                      const LogitLayout& layout) {
  if (!candidates.class_specific) {
    return std::vector<float>(candidates.boxes.begin(), candidates.boxes.end());
  }
  const int32_t classes = layout.num_classes;
  const int32_t width = layout.width();
  std::vector<float> proposals;
  proposals.reserve(static_cast<size_t>(candidates.num_candidates) * 4);
  for (int64_t n = 0; n < candidates.num_candidates; ++n) {
    const float* logits = candidates.logits.data() + n * width;
    int32_t best = 0;
    for (int32_t c = 1; c < classes; ++c) {
      if (logits[layout.foreground_column(c)] > logits[layout.foreground_column(best)]) best = c;
    }
    const float* box = candidates.boxes.data() + (n * classes + best) * 4;
    proposals.insert(proposals.end(), box, box + 4);
  }
  return proposals;
}

std::vector<float> SampleImageRois(const CandidatesView& candidates, const LogitLayout& layout,
                                   absl::Span<const float> ground_truth, const ImageSource& image,
                                   const RoiSamplingOptions& options, uint64_t base_seed) {
  std::mt19937_64 rng(RoiSamplingSeed(base_seed, image));
  return SampleRois(CandidateProposals(candidates, layout), ground_truth, options, rng);
}

}  // namespace logn
