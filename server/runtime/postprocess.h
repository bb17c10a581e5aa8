#ifndef LOGN_SERVER_RUNTIME_POSTPROCESS_H_
#define LOGN_SERVER_RUNTIME_POSTPROCESS_H_

// Detection post-processing, where LogN acts: calibration of the raw [N, C+1] logits, softmax over
// C+1, foreground scores, score threshold, class-wise NMS, top-k. Pure C++ (no torch), stateless
// and thread-safe.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "calibration/calibrator.h"

namespace logn {

struct PostprocessOptions {
  // A (candidate, class) pair enters NMS only if its softmax score is strictly above this
  // (the LVIS configs' 1e-4; torchvision's default is 0.05).
  float score_threshold = 1e-4f;
  // A box is suppressed by a higher-scoring kept box of the same class when IoU > this.
  float nms_iou_threshold = 0.5f;
  // Detections kept per image (the LVIS evaluation limit), best first. > 0.
  int32_t top_k = 300;
  // Boxes narrower or shorter than this (in the pixels of the boxes given: original-image pixels
  // on the serving path) are dropped before NMS; torchvision uses 1e-2. 0 keeps every box.
  float min_box_size = 0.0f;

  // INVALID_ARGUMENT on a threshold outside [0, 1], top_k <= 0 or a negative min_box_size.
  absl::Status Validate() const;
};

struct Detection {
  float box[4];       // x1, y1, x2, y2
  float score;        // calibrated softmax probability
  int32_t label;      // foreground class index c in [0, C) (manifest classes order)
  int32_t candidate;  // row of the candidate it came from
};

// One image's raw detector outputs, as views.
struct CandidatesView {
  int64_t num_candidates = 0;      // N
  bool class_specific = false;     // boxes [N, C, 4] instead of [N, 4]
  absl::Span<const float> boxes;   // N*4 or N*C*4 floats, xyxy
  absl::Span<const float> logits;  // N * layout.width() floats, pre-softmax
};

// Candidates Postprocess dropped because a logit was not finite, for the caller's metrics and
// logs. Such a row would turn into NaN in softmax and its detections would vanish silently.
struct PostprocessStats {
  // Rows whose raw logits (the model's output) hold a NaN or ±Inf.
  int64_t nonfinite_raw_rows = 0;
  // Rows with finite raw logits that calibration made non-finite (an overflow to ±Inf, e.g.
  // under the official formula's 1e-11 variance floor).
  int64_t nonfinite_calibrated_rows = 0;

  int64_t dropped_rows() const { return nonfinite_raw_rows + nonfinite_calibrated_rows; }
  PostprocessStats& operator+=(const PostprocessStats& other) {
    nonfinite_raw_rows += other.nonfinite_raw_rows;
    nonfinite_calibrated_rows += other.nonfinite_calibrated_rows;
    return *this;
  }
};

// Calibrates a copy of the logits with `calibrator` (its layout says where the background is),
// applies softmax, and returns the top-k detections after class-wise NMS, best first (ties: lower
// candidate, then lower class first). INVALID_ARGUMENT on mismatched sizes or bad options.
// Boxes are returned as given (the caller rescales them).
// A candidate whose raw or calibrated logits hold a NaN or ±Inf yields no detection and affects
// no other candidate (it never suppresses one in NMS); the other candidates' detections are those
// of the same call without it. If `stats` is not null, this call's drop counts are ADDED to it,
// so one PostprocessStats can total a request (images × calibration settings: a row with a bad
// raw logit is counted once per calibrator it is post-processed with).
absl::StatusOr<std::vector<Detection>> Postprocess(const Calibrator& calibrator,
                                                   const CandidatesView& candidates,
                                                   const PostprocessOptions& options,
                                                   PostprocessStats* stats = nullptr);

// Greedy NMS run independently per label (torchvision.ops.batched_nms semantics: IoU with areas
// (x2-x1)*(y2-y1), suppression when IoU > iou_threshold), returning the indices kept in
// decreasing score order (ties: lower index first), at most `max_keep` of them. Stops as soon as
// `max_keep` boxes are kept, which is what makes top-k post-processing cheap: only candidates
// that can still reach the top-k are ever compared. `boxes` has 4 floats per entry; `labels`
// are >= 0. Sizes are the caller's contract (checked in debug builds only).
std::vector<int32_t> BatchedNms(absl::Span<const float> boxes, absl::Span<const float> scores,
                                absl::Span<const int32_t> labels, float iou_threshold,
                                int64_t max_keep);

}  // namespace logn

#endif  // LOGN_SERVER_RUNTIME_POSTPROCESS_H_
