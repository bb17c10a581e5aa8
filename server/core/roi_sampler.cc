#include "server/core/roi_sampler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

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

absl::Status ValidateRoiSamplingOptions(const RoiSamplingOptions& options) {
  if (options.num_rois <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RoI sampler: num_rois must be > 0, got ", options.num_rois));
  }
  if (!(options.positive_fraction >= 0 && options.positive_fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RoI sampler: positive_fraction must be in [0, 1], got ", options.positive_fraction));
  }
  if (!(options.positive_iou > 0 && options.positive_iou <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RoI sampler: positive_iou must be in (0, 1], got ", options.positive_iou));
  }
  return absl::OkStatus();
}

uint64_t SplitMix64At(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

namespace {

// The `count` indices of `pool` with the smallest keys, in key order (ties: lower index).
std::vector<size_t> SmallestKeys(std::vector<size_t> pool, size_t count, uint64_t seed) {
  std::vector<std::pair<uint64_t, size_t>> keyed;
  keyed.reserve(pool.size());
  for (size_t i : pool) keyed.emplace_back(SplitMix64At(seed, i), i);
  count = std::min(count, keyed.size());
  std::partial_sort(keyed.begin(), keyed.begin() + count, keyed.end());
  std::vector<size_t> chosen(count);
  for (size_t k = 0; k < count; ++k) chosen[k] = keyed[k].second;
  return chosen;
}

}  // namespace

SampledRois SampleRois(absl::Span<const float> proposals, absl::Span<const float> ground_truth,
                       const RoiSamplingOptions& options, uint64_t seed) {
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
  const size_t max_positives =
      static_cast<size_t>(options.num_rois * options.positive_fraction);
  const std::vector<size_t> chosen_positives =
      SmallestKeys(std::move(positives), max_positives, seed);
  const std::vector<size_t> chosen_negatives = SmallestKeys(
      std::move(negatives), static_cast<size_t>(options.num_rois) - chosen_positives.size(), seed);
  SampledRois sampled;
  sampled.positives = static_cast<int64_t>(chosen_positives.size());
  sampled.boxes.reserve(4 * (chosen_positives.size() + chosen_negatives.size()));
  for (const std::vector<size_t>* chosen : {&chosen_positives, &chosen_negatives}) {
    for (size_t i : *chosen) {
      sampled.boxes.insert(sampled.boxes.end(), &boxes[4 * i], &boxes[4 * i] + 4);
    }
  }
  return sampled;
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

SampledRois SampleImageRois(absl::Span<const float> proposals,
                            absl::Span<const float> ground_truth, const ImageSource& image,
                            const RoiSamplingOptions& options, uint64_t base_seed) {
  return SampleRois(proposals, ground_truth, options, RoiSamplingSeed(base_seed, image));
}

}  // namespace logn
