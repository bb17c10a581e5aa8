#ifndef LOGN_CLIENT_EVAL_REPEAT_FACTORS_H_
#define LOGN_CLIENT_EVAL_REPEAT_FACTORS_H_

// Repeat-factor sampling (RFS; Gupta et al., LVIS, 2019), which the paper's LVIS models train
// with: an image holding a rare category is seen more often, so statistics that describe what the
// classifier saw in training weigh each image by its repeat factor.

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "client/eval/lvis_dataset.h"

namespace logn {

// Each image's repeat factor r(I) = max over the categories c annotated in I of
// max(1, sqrt(t / f_c)), f_c = the fraction of the dataset's images that contain c (computed from
// the annotations). Images without annotations get 1. INVALID_ARGUMENT unless 0 < t <= 1 and the
// dataset has images. The LVIS default is t = 0.001.
absl::StatusOr<absl::flat_hash_map<int64_t, double>> RepeatFactors(const LvisDataset& dataset,
                                                                   double threshold);

}  // namespace logn

#endif  // LOGN_CLIENT_EVAL_REPEAT_FACTORS_H_
