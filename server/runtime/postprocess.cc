#include "server/runtime/postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "calibration/softmax.h"
#include "common/status_macros.h"

namespace logn {
namespace {

struct KeptBox {
  float x1, y1, x2, y2, area;
};

// Sort key: ascending key order = descending score, then ascending index. The float's bits are
// mapped to an unsigned integer that orders like the float (negative: flip all bits; otherwise
// flip the sign bit), then inverted so larger scores come first. Sorting plain uint64 keys
// avoids the indirect score loads of an index comparator.
inline uint64_t SortKey(float score, uint32_t id) {
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof(bits));
  const uint32_t ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ordered) << 32) | id;
}

// Greedy class-wise NMS. `order` holds one SortKey per candidate (payload: the candidate's id);
// box_of(id) gives its 4 floats and label_of(id) its label in [0, num_labels). Candidates are
// visited best first; one is kept unless a kept box of its label overlaps it by IoU > threshold.
// That is exactly greedy per-class NMS followed by a merge by score, so we can stop at max_keep.
// Candidates are ordered lazily, in chunks selected with nth_element, so 1M candidates with
// max_keep = 300 cost O(n), not O(n log n). Boxes narrower or shorter than min_size are skipped
// (never kept, never suppress), the same as filtering them out first. Returns the kept ids.
template <typename BoxOf, typename LabelOf>
std::vector<uint32_t> NmsImpl(std::vector<uint64_t>& order, BoxOf box_of, LabelOf label_of,
                              int32_t num_labels, float iou_threshold, int64_t max_keep,
                              float min_size) {
  std::vector<uint32_t> keep;
  const int64_t n = static_cast<int64_t>(order.size());
  if (n == 0 || max_keep <= 0) return keep;
  std::vector<std::vector<KeptBox>> kept_by_label(static_cast<size_t>(num_labels));
  keep.reserve(static_cast<size_t>(std::min<int64_t>(n, max_keep)));

  int64_t pos = 0;
  int64_t chunk = max_keep >= n ? n : std::max<int64_t>(4 * max_keep, 1024);
  while (pos < n && static_cast<int64_t>(keep.size()) < max_keep) {
    const int64_t end = std::min(n, pos + chunk);
    if (end < n) std::nth_element(order.begin() + pos, order.begin() + end, order.end());
    std::sort(order.begin() + pos, order.begin() + end);
    for (int64_t k = pos; k < end; ++k) {
      const uint32_t id = static_cast<uint32_t>(order[k] & 0xffffffffu);
      const float* b = box_of(id);
      const float jx1 = b[0], jy1 = b[1], jx2 = b[2], jy2 = b[3];
      if (min_size > 0.0f && (jx2 - jx1 < min_size || jy2 - jy1 < min_size)) continue;
      const float jarea = (jx2 - jx1) * (jy2 - jy1);
      std::vector<KeptBox>& kept = kept_by_label[label_of(id)];
      bool suppressed = false;
      for (const KeptBox& i : kept) {
        // torchvision's nms_kernel arithmetic, in the same order (i kept, j candidate).
        const float xx1 = std::max(i.x1, jx1);
        const float yy1 = std::max(i.y1, jy1);
        const float xx2 = std::min(i.x2, jx2);
        const float yy2 = std::min(i.y2, jy2);
        const float w = std::max(0.0f, xx2 - xx1);
        const float h = std::max(0.0f, yy2 - yy1);
        const float inter = w * h;
        const float ovr = inter / (i.area + jarea - inter);
        if (ovr > iou_threshold) {
          suppressed = true;
          break;
        }
      }
      if (suppressed) continue;
      kept.push_back(KeptBox{jx1, jy1, jx2, jy2, jarea});
      keep.push_back(id);
      if (static_cast<int64_t>(keep.size()) >= max_keep) break;
    }
    pos = end;
    chunk *= 2;  // few passes even when most of the best candidates are suppressed
  }
  return keep;
}

// Whether every value in the row is finite, read from the bits (exponent all ones: ±Inf or
// NaN) so that the check survives -ffinite-math-only, under which std::isfinite folds to true
// (softmax.cc is built so). The integer max vectorises.
bool RowIsFinite(const float* row, int64_t width) {
  uint32_t max_magnitude = 0;
  for (int64_t j = 0; j < width; ++j) {
    uint32_t bits;
    std::memcpy(&bits, row + j, sizeof(bits));
    max_magnitude = std::max(max_magnitude, bits & 0x7fffffffu);
  }
  return max_magnitude < 0x7f800000u;
}

// Finds the rows of `calibrated` holding a NaN or ±Inf, counts them as raw or calibration-made
// (a non-finite raw value stays non-finite through every calibrator: ±Inf·scale, NaN, so the raw
// rows are looked at only for rows already bad), and overwrites them with zeros so that the
// finite-math softmax stays defined. Returns the bad rows.
std::vector<int64_t> ZeroNonFiniteRows(const float* raw, float* calibrated, int64_t rows,
                                       int64_t width, PostprocessStats* stats) {
  std::vector<int64_t> bad;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = calibrated + r * width;
    if (RowIsFinite(row, width)) continue;
    if (RowIsFinite(raw + r * width, width)) {
      ++stats->nonfinite_calibrated_rows;
    } else {
      ++stats->nonfinite_raw_rows;
    }
    std::fill(row, row + width, 0.0f);
    bad.push_back(r);
  }
  return bad;
}

absl::Status CheckCandidates(const LogitLayout& layout, const CandidatesView& candidates) {
  const int64_t n = candidates.num_candidates;
  const int64_t width = layout.width();
  const int64_t num_classes = layout.num_classes;
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("num_candidates ", n, " < 0"));
  if (static_cast<int64_t>(candidates.logits.size()) != n * width) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits have ", candidates.logits.size(), " floats; ", n, " candidates x ",
                     width, " columns (", layout.DebugString(), ") need ", n * width));
  }
  const int64_t box_floats = candidates.class_specific ? n * num_classes * 4 : n * 4;
  if (static_cast<int64_t>(candidates.boxes.size()) != box_floats) {
    return absl::InvalidArgumentError(absl::StrCat(
        "boxes have ", candidates.boxes.size(), " floats; ", n, " candidates need ", box_floats,
        candidates.class_specific ? " (class-specific [N, C, 4])" : " (class-agnostic [N, 4])"));
  }
  if (n * num_classes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " candidates x ", num_classes, " classes is too many pairs"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PostprocessOptions::Validate() const {
  if (!(score_threshold >= 0.0f && score_threshold <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("score_threshold ", score_threshold, " not in [0, 1]"));
  }
  if (!(nms_iou_threshold >= 0.0f && nms_iou_threshold <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("nms_iou_threshold ", nms_iou_threshold, " not in [0, 1]"));
  }
  if (top_k <= 0) return absl::InvalidArgumentError(absl::StrCat("top_k ", top_k, " not > 0"));
  if (!(min_box_size >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_box_size ", min_box_size, " not >= 0"));
  }
  return absl::OkStatus();
}

std::vector<int32_t> BatchedNms(absl::Span<const float> boxes, absl::Span<const float> scores,
                                absl::Span<const int32_t> labels, float iou_threshold,
                                int64_t max_keep) {
  std::vector<uint64_t> order;
  order.reserve(scores.size());
  int32_t max_label = -1;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) continue;  // unorderable: never kept
    order.push_back(SortKey(scores[i], static_cast<uint32_t>(i)));
    max_label = std::max(max_label, labels[i]);
  }
  const std::vector<uint32_t> keep = NmsImpl(
      order, [&](uint32_t i) { return boxes.data() + 4 * static_cast<size_t>(i); },
      [&](uint32_t i) { return labels[i]; }, max_label + 1, iou_threshold, max_keep,
      /*min_size=*/0.0f);
  return std::vector<int32_t>(keep.begin(), keep.end());
}

absl::StatusOr<std::vector<Detection>> Postprocess(const Calibrator& calibrator,
                                                   const CandidatesView& candidates,
                                                   const PostprocessOptions& options,
                                                   PostprocessStats* stats) {
  LOGN_RETURN_IF_ERROR(options.Validate());
  const LogitLayout& layout = calibrator.layout();
  LOGN_RETURN_IF_ERROR(CheckCandidates(layout, candidates));
  const int64_t n = candidates.num_candidates;
  const int64_t width = layout.width();
  const int64_t num_classes = layout.num_classes;
  std::vector<Detection> detections;
  if (n == 0) return detections;

  std::vector<float> probs(candidates.logits.begin(), candidates.logits.end());
  calibrator.ApplyUnchecked(probs.data(), n);
  PostprocessStats dropped;
  const std::vector<int64_t> bad_rows =
      ZeroNonFiniteRows(candidates.logits.data(), probs.data(), n, width, &dropped);
  if (stats != nullptr) *stats += dropped;
  SoftmaxRows(probs.data(), probs.data(), n, width);
  // A probability of 0 is never above the threshold (>= 0): a dropped row yields no pair.
  for (int64_t row : bad_rows) std::fill_n(probs.data() + row * width, width, 0.0f);

  // Only (candidate, class) pairs above the threshold become NMS candidates, as sort keys whose
  // payload is the pair id row * C + c (so score ties break by row, then class). Count first (a
  // vectorisable pass), then fill branch-free.
  const float threshold = options.score_threshold;
  const int64_t fg_offset = layout.background == BackgroundPosition::kFirst ? 1 : 0;
  int64_t above = 0;
  for (int64_t row = 0; row < n; ++row) {
    const float* p = probs.data() + row * width + fg_offset;
    for (int64_t c = 0; c < num_classes; ++c) above += p[c] > threshold ? 1 : 0;
  }
  std::vector<uint64_t> order(above + 1);
  int64_t k = 0;
  for (int64_t row = 0; row < n; ++row) {
    const float* p = probs.data() + row * width + fg_offset;
    const uint32_t base = static_cast<uint32_t>(row * num_classes);
    for (int64_t c = 0; c < num_classes; ++c) {
      order[k] = SortKey(p[c], base + static_cast<uint32_t>(c));
      k += p[c] > threshold ? 1 : 0;
    }
  }
  order.resize(above);
  const float* boxes = candidates.boxes.data();
  const bool class_specific = candidates.class_specific;
  const auto box_of = [&](uint32_t pair) {
    return class_specific ? boxes + static_cast<size_t>(pair) * 4
                          : boxes + static_cast<size_t>(pair / num_classes) * 4;
  };
  const auto label_of = [&](uint32_t pair) { return static_cast<int32_t>(pair % num_classes); };
  const std::vector<uint32_t> keep =
      NmsImpl(order, box_of, label_of, static_cast<int32_t>(num_classes), options.nms_iou_threshold,
              options.top_k, options.min_box_size);
  detections.reserve(keep.size());
  for (uint32_t pair : keep) {
    Detection d;
    const float* box = box_of(pair);
    std::copy(box, box + 4, d.box);
    d.label = label_of(pair);
    d.candidate = static_cast<int32_t>(pair / num_classes);
    d.score = probs[d.candidate * width + fg_offset + d.label];
    detections.push_back(d);
  }
  return detections;
}

}  // namespace logn
