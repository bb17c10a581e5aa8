#include "client/eval/repeat_factors.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace logn {

absl::StatusOr<absl::flat_hash_map<int64_t, double>> RepeatFactors(const LvisDataset& dataset,
                                                                   double threshold) {
  if (!(threshold > 0 && threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repeat-factor threshold must be in (0, 1], got ", threshold));
  }
  if (dataset.images.empty()) {
    return absl::InvalidArgumentError("repeat factors need a dataset with images");
  }
  // The categories of each image, once each.
  absl::flat_hash_map<int64_t, absl::flat_hash_set<int64_t>> categories_of;
  for (const LvisAnnotation& a : dataset.annotations) categories_of[a.image_id].insert(a.category_id);
  absl::flat_hash_map<int64_t, int64_t> images_with;
  for (const auto& [image, categories] : categories_of) {
    for (int64_t c : categories) ++images_with[c];
  }
  const double num_images = static_cast<double>(dataset.images.size());
  absl::flat_hash_map<int64_t, double> factors;
  for (const LvisImage& image : dataset.images) {
    double r = 1.0;
    auto it = categories_of.find(image.id);
    if (it != categories_of.end()) {
      for (int64_t c : it->second) {
        const double frequency = static_cast<double>(images_with[c]) / num_images;
        r = std::max(r, std::sqrt(threshold / frequency));
      }
    }
    factors[image.id] = r;
  }
  return factors;
}

}  // namespace logn
