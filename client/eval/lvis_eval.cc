#include "client/eval/lvis_eval.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace logn {
namespace {

constexpr int kNumIou = 10;
constexpr int kNumRecall = 101;
constexpr int kNumArea = 4;
constexpr int kIou50 = 0;
constexpr int kIou75 = 5;

// Thresholds computed the way numpy.linspace does (i * step + start, last = stop), so a box
// pair whose IoU lands exactly on a threshold is decided exactly as in lvis-api.
std::array<double, kNumIou> IouThresholds() {
  std::array<double, kNumIou> t;
  const double step = (0.95 - 0.5) / (kNumIou - 1);
  for (int i = 0; i < kNumIou; ++i) t[i] = static_cast<double>(i) * step + 0.5;
  t[kNumIou - 1] = 0.95;
  return t;
}

std::array<double, kNumRecall> RecallThresholds() {
  std::array<double, kNumRecall> r;
  const double step = 1.0 / (kNumRecall - 1);
  for (int i = 0; i < kNumRecall; ++i) r[i] = static_cast<double>(i) * step + 0.0;
  r[kNumRecall - 1] = 1.0;
  return r;
}

struct AreaRange {
  double lo;
  double hi;
};
// all, small, medium, large; bounds are inclusive on both sides, as in lvis-api.
constexpr AreaRange kAreaRanges[kNumArea] = {
    {0.0, 1e10}, {0.0, 32.0 * 32.0}, {32.0 * 32.0, 96.0 * 96.0}, {96.0 * 96.0, 1e10}};

// pycocotools' bbIou for a non-crowd pair: intersection over union of xywh boxes.
double BoxIou(const BoxXywh& d, const BoxXywh& g) {
  const double w = std::min(d.w + d.x, g.w + g.x) - std::max(d.x, g.x);
  if (w <= 0) return 0.0;
  const double h = std::min(d.h + d.y, g.h + g.y) - std::max(d.y, g.y);
  if (h <= 0) return 0.0;
  const double inter = w * h;
  return inter / (d.w * d.h + g.w * g.h - inter);
}

bool InRange(double area, const AreaRange& r) { return !(area < r.lo || area > r.hi); }

// The ground truth and detections of one (image, category) pair.
struct Cell {
  int image_index = 0;  // position of the image among the ascending image ids
  std::vector<int> gt;  // indices into annotations, file order
  std::vector<int> dt;  // indices into the kept detections, after-cut order
};

// evaluate_img's output for one (image, category, area range).
struct CellResult {
  std::vector<double> scores;        // detections, highest score first
  std::vector<uint8_t> matched;      // [t * n + j]
  std::vector<uint8_t> ignored;      // [t * n + j]
  int64_t num_regular_gt = 0;        // ground truth not ignored in this range
};

CellResult EvaluateCell(const Cell& cell, const LvisDataset& gt_data,
                        const std::vector<LvisDetection>& dets,
                        const absl::flat_hash_set<int64_t>& not_exhaustive,
                        const std::array<double, kNumIou>& iou_thresholds, const AreaRange& range) {
  // Ground truth: regular boxes first, ignored ones last, file order otherwise.
  std::vector<int> gts;
  std::vector<uint8_t> gt_ignored;
  for (int pass = 0; pass < 2; ++pass) {
    for (int g : cell.gt) {
      const LvisAnnotation& a = gt_data.annotations[g];
      const bool ignore = a.ignore || !InRange(a.area, range);
      if (ignore == (pass == 1)) {
        gts.push_back(g);
        gt_ignored.push_back(ignore ? 1 : 0);
      }
    }
  }
  std::vector<int> dts = cell.dt;
  std::stable_sort(dts.begin(), dts.end(),
                   [&](int a, int b) { return dets[a].score > dets[b].score; });

  const size_t n = dts.size();
  const size_t m = gts.size();
  CellResult out;
  out.scores.reserve(n);
  for (int d : dts) out.scores.push_back(dets[d].score);
  out.matched.assign(kNumIou * n, 0);
  out.ignored.assign(kNumIou * n, 0);
  for (uint8_t ig : gt_ignored) out.num_regular_gt += ig ? 0 : 1;

  if (n > 0 && m > 0) {
    std::vector<double> iou(n * m);
    for (size_t j = 0; j < n; ++j) {
      for (size_t g = 0; g < m; ++g) {
        iou[j * m + g] = BoxIou(dets[dts[j]].bbox, gt_data.annotations[gts[g]].bbox);
      }
    }
    std::vector<uint8_t> gt_taken(m);
    for (int t = 0; t < kNumIou; ++t) {
      std::fill(gt_taken.begin(), gt_taken.end(), 0);
      for (size_t j = 0; j < n; ++j) {
        // Greedy: the highest-IoU free box at or above the threshold; never give up a regular
        // match for an ignored box.
        double best = std::min(iou_thresholds[t], 1 - 1e-10);
        int match = -1;
        for (size_t g = 0; g < m; ++g) {
          if (gt_taken[g]) continue;
          if (match > -1 && !gt_ignored[match] && gt_ignored[g]) break;
          if (iou[j * m + g] < best) continue;
          best = iou[j * m + g];
          match = static_cast<int>(g);
        }
        if (match == -1) continue;
        gt_taken[match] = 1;
        out.matched[t * n + j] = 1;
        out.ignored[t * n + j] = gt_ignored[match];
      }
    }
  }
  // Unmatched detections outside the range, or of a not-exhaustively annotated category, are
  // not false positives.
  for (size_t j = 0; j < n; ++j) {
    const LvisDetection& d = dets[dts[j]];
    const double area = d.bbox.w * d.bbox.h;
    if (InRange(area, range) && !not_exhaustive.contains(d.category_id)) continue;
    for (int t = 0; t < kNumIou; ++t) {
      if (!out.matched[t * n + j]) out.ignored[t * n + j] = 1;
    }
  }
  return out;
}

// Precision at each recall point and final recall for one (category, area range); false when
// the range holds no regular ground truth (the cell then stays -1, i.e. excluded).
bool Accumulate(const std::vector<const CellResult*>& cells,
                const std::array<double, kNumRecall>& recall_thresholds,
                std::vector<double>* precision /* [t * R + r] */, std::vector<double>* recall) {
  int64_t num_gt = 0;
  struct Ref {
    double score;
    int cell;
    int index;
  };
  std::vector<Ref> refs;
  for (size_t c = 0; c < cells.size(); ++c) {
    num_gt += cells[c]->num_regular_gt;
    for (size_t j = 0; j < cells[c]->scores.size(); ++j) {
      refs.push_back({cells[c]->scores[j], static_cast<int>(c), static_cast<int>(j)});
    }
  }
  if (num_gt == 0) return false;
  std::stable_sort(refs.begin(), refs.end(),
                   [](const Ref& a, const Ref& b) { return a.score > b.score; });
  const size_t n = refs.size();
  precision->assign(kNumIou * kNumRecall, 0.0);
  recall->assign(kNumIou, 0.0);
  std::vector<double> rc(n), pr(n);
  for (int t = 0; t < kNumIou; ++t) {
    double tp = 0, fp = 0;
    for (size_t i = 0; i < n; ++i) {
      const CellResult& cell = *cells[refs[i].cell];
      const size_t at = t * cell.scores.size() + refs[i].index;
      if (!cell.ignored[at]) {
        if (cell.matched[at]) {
          tp += 1;
        } else {
          fp += 1;
        }
      }
      rc[i] = tp / static_cast<double>(num_gt);
      pr[i] = tp / (fp + tp + std::numeric_limits<double>::epsilon());
    }
    (*recall)[t] = n > 0 ? rc[n - 1] : 0.0;
    // Interpolation: precision at a recall level is the best precision at any higher recall.
    for (size_t i = n; i-- > 1;) pr[i - 1] = std::max(pr[i - 1], pr[i]);
    for (int r = 0; r < kNumRecall; ++r) {
      const size_t i = std::lower_bound(rc.begin(), rc.end(), recall_thresholds[r]) - rc.begin();
      (*precision)[t * kNumRecall + r] = i < n ? pr[i] : 0.0;
    }
  }
  return true;
}

// Running mean over the valid cells, skipping the -1 "no ground truth" markers.
struct Mean {
  double sum = 0;
  int64_t count = 0;
  void Add(double x) {
    if (x > -1) {
      sum += x;
      ++count;
    }
  }
  double Get() const { return count > 0 ? sum / static_cast<double>(count) : -1.0; }
};

// Images and categories in ascending id order, as lvis-api's params.
struct EvalIndex {
  std::vector<std::pair<int64_t, int>> image_order;     // (id, index in images), ascending
  absl::flat_hash_map<int64_t, int> image_rank;         // image id -> ascending position
  std::vector<std::pair<int64_t, int>> category_order;  // (id, index in categories), ascending
  absl::flat_hash_map<int64_t, int> category_rank;      // category id -> ascending position
  int num_categories() const { return static_cast<int>(category_order.size()); }
};

EvalIndex IndexGroundTruth(const LvisDataset& ground_truth) {
  EvalIndex index;
  for (size_t i = 0; i < ground_truth.images.size(); ++i) {
    index.image_order.push_back({ground_truth.images[i].id, static_cast<int>(i)});
  }
  std::sort(index.image_order.begin(), index.image_order.end());
  for (size_t r = 0; r < index.image_order.size(); ++r) {
    index.image_rank[index.image_order[r].first] = r;
  }
  for (size_t i = 0; i < ground_truth.categories.size(); ++i) {
    index.category_order.push_back({ground_truth.categories[i].id, static_cast<int>(i)});
  }
  std::sort(index.category_order.begin(), index.category_order.end());
  for (size_t k = 0; k < index.category_order.size(); ++k) {
    index.category_rank[index.category_order[k].first] = k;
  }
  return index;
}

absl::Status ValidateDetections(const std::vector<LvisDetection>& detections, const EvalIndex& index) {
  for (size_t i = 0; i < detections.size(); ++i) {
    const LvisDetection& d = detections[i];
    const std::string where = absl::StrCat("detections[", i, "]");
    if (!index.image_rank.contains(d.image_id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".image_id: ", d.image_id, " is not an image of the ground truth"));
    }
    if (!std::isfinite(d.score)) return absl::InvalidArgumentError(where + ".score: must be finite");
    const BoxXywh& b = d.bbox;
    if (!std::isfinite(b.x) || !std::isfinite(b.y) || !std::isfinite(b.w) || !std::isfinite(b.h) ||
        b.w < 0 || b.h < 0) {
      return absl::InvalidArgumentError(where + ".bbox: needs finite coordinates and w, h >= 0");
    }
  }
  return absl::OkStatus();
}

// Step 1: the per-image cut, over all categories. Images keep their order of first appearance.
std::vector<LvisDetection> CutPerImage(const std::vector<LvisDetection>& detections, int limit) {
  std::vector<int64_t> appearance;
  absl::flat_hash_map<int64_t, std::vector<int>> by_image;
  for (size_t i = 0; i < detections.size(); ++i) {
    auto [it, inserted] = by_image.try_emplace(detections[i].image_id);
    if (inserted) appearance.push_back(detections[i].image_id);
    it->second.push_back(static_cast<int>(i));
  }
  std::vector<LvisDetection> kept;
  kept.reserve(detections.size());
  for (int64_t image_id : appearance) {
    std::vector<int>& list = by_image[image_id];
    if (limit >= 0 && static_cast<int>(list.size()) > limit) {
      std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
        return detections[a].score > detections[b].score;
      });
      list.resize(limit);
    }
    for (int i : list) kept.push_back(detections[i]);
  }
  return kept;
}

// The (category, image) cells with their ground truth and detections.
struct CellTable {
  std::vector<absl::flat_hash_map<int, Cell>> cells;           // [k][image rank]
  std::vector<int64_t> num_gt;                                 // [k], not ignored
  std::vector<absl::flat_hash_set<int64_t>> not_exhaustive;    // [image rank]
};

// Steps 2 and 3: ground truth with area > 0 into cells, then the detections that pass the
// federated rule (a known category, area > 0, the category positive or negative in the image).
CellTable BuildCells(const LvisDataset& ground_truth, const EvalIndex& index,
                     const std::vector<LvisDetection>& kept, LvisEvalResult* result) {
  const size_t num_images = index.image_order.size();
  CellTable table;
  table.cells.resize(index.num_categories());
  table.num_gt.assign(index.num_categories(), 0);
  table.not_exhaustive.resize(num_images);
  std::vector<absl::flat_hash_set<int64_t>> positive(num_images);
  for (size_t g = 0; g < ground_truth.annotations.size(); ++g) {
    const LvisAnnotation& a = ground_truth.annotations[g];
    if (!(a.area > 0 && a.area < std::numeric_limits<double>::infinity())) continue;
    const int k = index.category_rank.at(a.category_id);
    const int rank = index.image_rank.at(a.image_id);
    Cell& cell = table.cells[k][rank];
    cell.image_index = rank;
    cell.gt.push_back(static_cast<int>(g));
    positive[rank].insert(a.category_id);
    if (!a.ignore) ++table.num_gt[k];
  }
  std::vector<absl::flat_hash_set<int64_t>> negative(num_images);
  for (const LvisImage& image : ground_truth.images) {
    const int rank = index.image_rank.at(image.id);
    negative[rank].insert(image.neg_category_ids.begin(), image.neg_category_ids.end());
    table.not_exhaustive[rank].insert(image.not_exhaustive_category_ids.begin(),
                                      image.not_exhaustive_category_ids.end());
  }
  for (size_t i = 0; i < kept.size(); ++i) {
    const LvisDetection& d = kept[i];
    const auto k = index.category_rank.find(d.category_id);
    if (k == index.category_rank.end()) continue;
    const double area = d.bbox.w * d.bbox.h;
    if (!(area > 0 && area < std::numeric_limits<double>::infinity())) continue;
    const int rank = index.image_rank.at(d.image_id);
    if (!positive[rank].contains(d.category_id) && !negative[rank].contains(d.category_id)) continue;
    Cell& cell = table.cells[k->second][rank];
    cell.image_index = rank;
    cell.dt.push_back(static_cast<int>(i));
    ++result->num_detections_evaluated;
  }
  return table;
}

}  // namespace

struct LvisEvaluation::Index : EvalIndex {};

// Step 4, the subset-independent part: every (category, area range, image) cell matched.
struct LvisEvaluation::Cells {
  struct Evaluated {
    int image_rank = 0;
    CellResult result;
  };
  // [k][area]: the category's cells in ascending image order.
  std::vector<std::array<std::vector<Evaluated>, kNumArea>> by_category;
  // [k]: (image rank, ground truth not ignored) for the category's images with ground truth.
  std::vector<std::vector<std::pair<int, int64_t>>> num_gt;
  // Per image rank: detections given, kept by the per-image cut, and evaluated.
  std::vector<int64_t> given, kept, evaluated;
};

absl::StatusOr<LvisEvaluation> LvisEvaluation::Create(
    const LvisDataset& ground_truth, const std::vector<LvisDetection>& detections,
    const LvisEvalOptions& options) {
  LOGN_RETURN_IF_ERROR(ValidateLvisDataset(ground_truth));
  LvisEvaluation evaluation;
  evaluation.ground_truth_ = &ground_truth;
  evaluation.max_detections_per_image_ = options.max_detections_per_image;
  auto index = std::make_shared<Index>(Index{IndexGroundTruth(ground_truth)});
  LOGN_RETURN_IF_ERROR(ValidateDetections(detections, *index));
  const std::vector<LvisDetection> kept = CutPerImage(detections, options.max_detections_per_image);
  LvisEvalResult counts;
  const CellTable table = BuildCells(ground_truth, *index, kept, &counts);

  auto cells = std::make_shared<Cells>();
  const size_t num_images = index->image_order.size();
  cells->given.assign(num_images, 0);
  cells->kept.assign(num_images, 0);
  cells->evaluated.assign(num_images, 0);
  for (const LvisDetection& d : detections) ++cells->given[index->image_rank.at(d.image_id)];
  for (const LvisDetection& d : kept) ++cells->kept[index->image_rank.at(d.image_id)];
  const std::array<double, kNumIou> iou_thresholds = IouThresholds();
  const int num_categories = static_cast<int>(table.cells.size());
  cells->by_category.resize(num_categories);
  cells->num_gt.resize(num_categories);
  for (int k = 0; k < num_categories; ++k) {
    std::vector<const Cell*> ordered;
    ordered.reserve(table.cells[k].size());
    for (const auto& [rank, cell] : table.cells[k]) ordered.push_back(&cell);
    std::sort(ordered.begin(), ordered.end(),
              [](const Cell* a, const Cell* b) { return a->image_index < b->image_index; });
    for (const Cell* cell : ordered) {
      cells->evaluated[cell->image_index] += static_cast<int64_t>(cell->dt.size());
      int64_t regular = 0;
      for (int g : cell->gt) regular += ground_truth.annotations[g].ignore ? 0 : 1;
      if (!cell->gt.empty()) cells->num_gt[k].push_back({cell->image_index, regular});
      for (int a = 0; a < kNumArea; ++a) {
        cells->by_category[k][a].push_back(
            {cell->image_index,
             EvaluateCell(*cell, ground_truth, kept, table.not_exhaustive[cell->image_index],
                          iou_thresholds, kAreaRanges[a])});
      }
    }
  }
  evaluation.index_ = std::move(index);
  evaluation.cells_ = std::move(cells);
  return evaluation;
}

namespace {

// Step 5: summaries, means over the valid (t, r, k) cells of the subset's curves.
void SummariseCurves(const LvisDataset& ground_truth, const EvalIndex& index,
                     const std::vector<std::vector<std::pair<int, int64_t>>>& num_gt,
                     const std::vector<uint8_t>& in_subset,
                     const std::vector<std::array<std::vector<double>, kNumArea>>& precision,
                     const std::vector<std::array<std::vector<double>, kNumArea>>& recall,
                     LvisEvalResult* result) {
  const int num_categories = index.num_categories();
  auto category = [&](int k) -> const LvisCategory& {
    return ground_truth.categories[index.category_order[k].second];
  };
  auto mean_ap = [&](int area, int only_iou, int only_group) {
    Mean mean;
    for (int k = 0; k < num_categories; ++k) {
      if (only_group >= 0 && static_cast<int>(category(k).frequency) != only_group) continue;
      const std::vector<double>& p = precision[k][area];
      if (p.empty()) continue;
      for (int t = 0; t < kNumIou; ++t) {
        if (only_iou >= 0 && t != only_iou) continue;
        for (int r = 0; r < kNumRecall; ++r) mean.Add(p[t * kNumRecall + r]);
      }
    }
    return mean.Get();
  };
  auto mean_ar = [&](int area) {
    Mean mean;
    for (int k = 0; k < num_categories; ++k) {
      for (double x : recall[k][area]) mean.Add(x);
    }
    return mean.Get();
  };
  result->ap = mean_ap(0, -1, -1);
  result->ap50 = mean_ap(0, kIou50, -1);
  result->ap75 = mean_ap(0, kIou75, -1);
  result->ap_small = mean_ap(1, -1, -1);
  result->ap_medium = mean_ap(2, -1, -1);
  result->ap_large = mean_ap(3, -1, -1);
  result->ap_rare = mean_ap(0, -1, static_cast<int>(Frequency::kRare));
  result->ap_common = mean_ap(0, -1, static_cast<int>(Frequency::kCommon));
  result->ap_frequent = mean_ap(0, -1, static_cast<int>(Frequency::kFrequent));
  result->ar = mean_ar(0);
  result->ar_small = mean_ar(1);
  result->ar_medium = mean_ar(2);
  result->ar_large = mean_ar(3);
  result->per_class.reserve(num_categories);
  for (int k = 0; k < num_categories; ++k) {
    const LvisCategory& c = category(k);
    CategoryAp entry;
    entry.category_id = c.id;
    entry.name = c.name;
    entry.frequency = c.frequency;
    for (const auto& [rank, count] : num_gt[k]) entry.num_gt += in_subset[rank] ? count : 0;
    Mean mean;
    for (double x : precision[k][0]) mean.Add(x);
    entry.ap = mean.Get();
    result->per_class.push_back(std::move(entry));
  }
}

}  // namespace

LvisEvalResult LvisEvaluation::Summarise(const absl::flat_hash_set<int64_t>* image_ids) const {
  const EvalIndex& index = *index_;
  const Cells& cells = *cells_;
  const size_t num_images = index.image_order.size();
  std::vector<uint8_t> in_subset(num_images, 1);
  if (image_ids != nullptr) {
    for (size_t r = 0; r < num_images; ++r) {
      in_subset[r] = image_ids->contains(index.image_order[r].first) ? 1 : 0;
    }
  }
  LvisEvalResult result;
  result.max_detections_per_image = max_detections_per_image_;
  for (size_t r = 0; r < num_images; ++r) {
    if (!in_subset[r]) continue;
    result.num_detections += cells.given[r];
    result.num_detections_kept += cells.kept[r];
    result.num_detections_evaluated += cells.evaluated[r];
  }
  // Step 4, the accumulation over the subset: precision[k][a] holds T*R values, or is empty
  // when the pair is excluded (-1 in lvis-api).
  const std::array<double, kNumRecall> recall_thresholds = RecallThresholds();
  const int num_categories = index.num_categories();
  std::vector<std::array<std::vector<double>, kNumArea>> precision(num_categories);
  std::vector<std::array<std::vector<double>, kNumArea>> recall(num_categories);
  std::vector<const CellResult*> selected;
  for (int k = 0; k < num_categories; ++k) {
    for (int a = 0; a < kNumArea; ++a) {
      selected.clear();
      for (const Cells::Evaluated& cell : cells.by_category[k][a]) {
        if (in_subset[cell.image_rank]) selected.push_back(&cell.result);
      }
      if (selected.empty()) continue;
      Accumulate(selected, recall_thresholds, &precision[k][a], &recall[k][a]);
    }
  }

  SummariseCurves(*ground_truth_, index, cells.num_gt, in_subset, precision, recall, &result);
  return result;
}

absl::StatusOr<LvisEvalResult> EvaluateLvis(const LvisDataset& ground_truth,
                                            const std::vector<LvisDetection>& detections,
                                            const LvisEvalOptions& options) {
  LOGN_ASSIGN_OR_RETURN(const LvisEvaluation evaluation,
                        LvisEvaluation::Create(ground_truth, detections, options));
  return evaluation.Summarise();
}

std::string FormatLvisEvalResult(const LvisEvalResult& result, bool per_class) {
  const std::string dets = result.max_detections_per_image >= 0
                               ? absl::StrCat(result.max_detections_per_image)
                               : std::string("all");
  std::string out;
  auto line = [&](absl::string_view metric, absl::string_view iou, absl::string_view area,
                  absl::string_view freq, double value) {
    absl::StrAppend(&out, absl::StrFormat(" %-18s @[ IoU=%-9s | area=%6s | maxDets=%3s catIds=%3s] = %.3f\n",
                                          metric, iou, area, dets, freq, value));
  };
  line("Average Precision  (AP)", "0.50:0.95", "all", "all", result.ap);
  line("Average Precision  (AP)", "0.50", "all", "all", result.ap50);
  line("Average Precision  (AP)", "0.75", "all", "all", result.ap75);
  line("Average Precision  (AP)", "0.50:0.95", "s", "all", result.ap_small);
  line("Average Precision  (AP)", "0.50:0.95", "m", "all", result.ap_medium);
  line("Average Precision  (AP)", "0.50:0.95", "l", "all", result.ap_large);
  line("Average Precision  (AP)", "0.50:0.95", "all", "r", result.ap_rare);
  line("Average Precision  (AP)", "0.50:0.95", "all", "c", result.ap_common);
  line("Average Precision  (AP)", "0.50:0.95", "all", "f", result.ap_frequent);
  line("Average Recall     (AR)", "0.50:0.95", "all", "all", result.ar);
  line("Average Recall     (AR)", "0.50:0.95", "s", "all", result.ar_small);
  line("Average Recall     (AR)", "0.50:0.95", "m", "all", result.ar_medium);
  line("Average Recall     (AR)", "0.50:0.95", "l", "all", result.ar_large);
  absl::StrAppend(&out, absl::StrFormat("detections: %d given, %d after the per-image cut, %d evaluated\n",
                                        result.num_detections, result.num_detections_kept,
                                        result.num_detections_evaluated));
  if (per_class) {
    absl::StrAppend(&out, absl::StrFormat("%10s  %-4s  %6s  %8s  %s\n", "category", "freq", "num_gt", "AP", "name"));
    for (const CategoryAp& c : result.per_class) {
      absl::StrAppend(&out, absl::StrFormat("%10d  %-4s  %6d  %8s  %s\n", c.category_id,
                                            FrequencyName(c.frequency), c.num_gt,
                                            c.ap > -1 ? absl::StrFormat("%.4f", c.ap) : "-",
                                            c.name));
    }
  }
  return out;
}

std::string LvisEvalResultToJson(const LvisEvalResult& result, bool per_class) {
  auto num = [](double x) { return absl::StrFormat("%.17g", x); };
  std::string out = "{";
  absl::StrAppend(&out, "\"AP\":", num(result.ap), ",\"AP50\":", num(result.ap50),
                  ",\"AP75\":", num(result.ap75), ",\"APs\":", num(result.ap_small),
                  ",\"APm\":", num(result.ap_medium), ",\"APl\":", num(result.ap_large),
                  ",\"APr\":", num(result.ap_rare), ",\"APc\":", num(result.ap_common),
                  ",\"APf\":", num(result.ap_frequent));
  const std::string suffix = result.max_detections_per_image >= 0
                                 ? absl::StrCat("@", result.max_detections_per_image)
                                 : std::string("@all");
  absl::StrAppend(&out, ",\"AR", suffix, "\":", num(result.ar), ",\"ARs", suffix, "\":",
                  num(result.ar_small), ",\"ARm", suffix, "\":", num(result.ar_medium), ",\"ARl",
                  suffix, "\":", num(result.ar_large));
  absl::StrAppend(&out, ",\"counts\":{\"detections\":", result.num_detections,
                  ",\"kept\":", result.num_detections_kept,
                  ",\"evaluated\":", result.num_detections_evaluated, "}");
  if (per_class) {
    out += ",\"per_class\":[";
    for (size_t i = 0; i < result.per_class.size(); ++i) {
      const CategoryAp& c = result.per_class[i];
      if (i) out.push_back(',');
      std::string name;
      for (char ch : c.name) {
        if (ch == '"' || ch == '\\') name.push_back('\\');
        if (static_cast<unsigned char>(ch) >= 0x20) name.push_back(ch);
      }
      absl::StrAppend(&out, "{\"category_id\":", c.category_id, ",\"name\":\"", name,
                      "\",\"frequency\":\"", FrequencyName(c.frequency), "\",\"num_gt\":", c.num_gt,
                      ",\"ap\":", num(c.ap), "}");
    }
    out += "]";
  }
  out += "}";
  return out;
}

}  // namespace logn
