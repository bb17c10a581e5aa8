#ifndef LOGN_CLIENT_EVAL_LVIS_EVAL_H_
#define LOGN_CLIENT_EVAL_LVIS_EVAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "client/eval/lvis_dataset.h"

namespace logn {

// LVIS bounding-box evaluation, following lvis-api's LVISEval (iou_type "bbox") step by step;
// docs/evaluation.md states the protocol. In short:
//  - at most `max_detections_per_image` detections per image over all categories, the highest
//    scores (ties keep file order);
//  - annotations and detections with area 0 are dropped, as are detections of unknown categories;
//  - federated rule: a detection of category c on image i is evaluated only if c has ground
//    truth on i or is in i's neg_category_ids; unmatched detections of i's
//    not_exhaustive_category_ids are ignored;
//  - greedy matching per (image, category) at IoU thresholds 0.50:0.05:0.95, 101-point
//    interpolated precision, area ranges all / small (< 32^2) / medium / large (> 96^2);
//  - every metric is the mean over (IoU threshold, recall point, category) cells that have
//    ground truth; categories without ground truth (in the range) are excluded.
// A metric with nothing to average is -1, as in lvis-api.

struct LvisEvalOptions {
  // lvis-api's max_dets. Negative means "no limit".
  int max_detections_per_image = 300;
};

struct CategoryAp {
  int64_t category_id = 0;
  std::string name;
  Frequency frequency = Frequency::kRare;
  int64_t num_gt = 0;  // evaluated (area > 0, not "ignore") ground-truth boxes on the val images
  double ap = -1;      // -1: no ground truth, excluded from every mean
};

struct LvisEvalResult {
  double ap = -1;
  double ap50 = -1;
  double ap75 = -1;
  double ap_small = -1;
  double ap_medium = -1;
  double ap_large = -1;
  double ap_rare = -1;
  double ap_common = -1;
  double ap_frequent = -1;
  double ar = -1;  // AR@max_detections_per_image, area "all"
  double ar_small = -1;
  double ar_medium = -1;
  double ar_large = -1;
  int max_detections_per_image = 300;
  std::vector<CategoryAp> per_class;  // every category of the ground truth, by ascending id
  int64_t num_detections = 0;            // given
  int64_t num_detections_kept = 0;       // after the per-image cut
  int64_t num_detections_evaluated = 0;  // after the area-0, category and federated filters
};

// The evaluation in two phases, for scoring one set of detections on many subsets of its images
// (`logn tune`'s tuning and held-out parts): the matching of every (image, category, area range)
// cell does not depend on which images are averaged over, so Create runs it once, and Summarise
// accumulates over any subset. Summarise(ids) equals EvaluateLvis on the ground truth and the
// detections restricted to the images `ids` names (every category kept). Copies share the
// matched cells; thread-compatible (Summarise is const and may run concurrently).
class LvisEvaluation {
 public:
  // Errors as EvaluateLvis's. `ground_truth` must outlive the evaluation.
  static absl::StatusOr<LvisEvaluation> Create(const LvisDataset& ground_truth,
                                               const std::vector<LvisDetection>& detections,
                                               const LvisEvalOptions& options = {});
  // The metrics over the images whose ids are in `image_ids` (every image when null); ids that
  // are not images of the ground truth are ignored.
  LvisEvalResult Summarise(const absl::flat_hash_set<int64_t>* image_ids = nullptr) const;

 private:
  struct Index;
  struct Cells;
  LvisEvaluation() = default;
  const LvisDataset* ground_truth_ = nullptr;
  int max_detections_per_image_ = 300;
  std::shared_ptr<const Index> index_;
  std::shared_ptr<const Cells> cells_;
};

// Evaluates `detections` against `ground_truth`. INVALID_ARGUMENT if the ground truth fails
// ValidateLvisDataset, or a detection names an image the ground truth does not have (lvis-api
// asserts on this), or has a non-finite score / box or a negative width or height.
absl::StatusOr<LvisEvalResult> EvaluateLvis(const LvisDataset& ground_truth,
                                            const std::vector<LvisDetection>& detections,
                                            const LvisEvalOptions& options = {});

// Human-readable summary in lvis-api's print style, optionally followed by a per-class table.
std::string FormatLvisEvalResult(const LvisEvalResult& result, bool per_class);
// One JSON object: {"AP":..,"AP50":..,...,"AR@300":..,"counts":{..}[,"per_class":[..]]}; the
// numbers print with %.17g so they round-trip.
std::string LvisEvalResultToJson(const LvisEvalResult& result, bool per_class);

}  // namespace logn

#endif  // LOGN_CLIENT_EVAL_LVIS_EVAL_H_
