#include "client/eval/lvis_eval.h"

#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

// Builds small ground truths by hand; every expected number below is worked out in the comment
// next to it from the protocol (101 recall points 0, 0.01, ..., 1; 10 IoU thresholds).
class Gt {
 public:
  Gt& Category(int64_t id, Frequency f = Frequency::kFrequent) {
    d_.categories.push_back({id, "c" + std::to_string(id), f, 1, 1});
    return *this;
  }
  Gt& Image(int64_t id, std::vector<int64_t> neg = {}, std::vector<int64_t> not_exhaustive = {}) {
    LvisImage im;
    im.id = id;
    im.neg_category_ids = std::move(neg);
    im.not_exhaustive_category_ids = std::move(not_exhaustive);
    d_.images.push_back(std::move(im));
    return *this;
  }
  Gt& Box(int64_t image, int64_t category, BoxXywh b, bool ignore = false) {
    LvisAnnotation a;
    a.id = static_cast<int64_t>(d_.annotations.size()) + 1;
    a.image_id = image;
    a.category_id = category;
    a.bbox = b;
    a.area = b.w * b.h;
    a.ignore = ignore;
    d_.annotations.push_back(a);
    return *this;
  }
  const LvisDataset& get() const { return d_; }

 private:
  LvisDataset d_;
};

LvisDetection Det(int64_t image, int64_t category, BoxXywh b, double score) {
  return LvisDetection{image, category, b, score};
}

LvisEvalResult Eval(const Gt& gt, const std::vector<LvisDetection>& dt, LvisEvalOptions options = {}) {
  absl::StatusOr<LvisEvalResult> r = EvaluateLvis(gt.get(), dt, options);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : LvisEvalResult{};
}

double ClassAp(const LvisEvalResult& r, int64_t category) {
  for (const CategoryAp& c : r.per_class) {
    if (c.category_id == category) return c.ap;
  }
  ADD_FAILURE() << "no category " << category;
  return -2;
}

constexpr BoxXywh kSmall{10, 10, 20, 20};     // area 400 (small)
constexpr BoxXywh kMedium{50, 50, 50, 50};    // area 2500 (medium)
constexpr BoxXywh kLarge{0, 100, 120, 100};   // area 12000 (large)
constexpr BoxXywh kFar{300, 300, 40, 40};     // overlaps none of the above

TEST(LvisEvalTest, PerfectDetectionsScoreOne) {
  Gt gt;
  gt.Category(1, Frequency::kRare).Category(2, Frequency::kCommon).Category(3, Frequency::kFrequent);
  gt.Image(1).Image(2);
  gt.Box(1, 1, kSmall).Box(1, 2, kMedium).Box(1, 3, kLarge).Box(2, 3, kSmall).Box(2, 1, kLarge);
  std::vector<LvisDetection> dt;
  for (const LvisAnnotation& a : gt.get().annotations) {
    dt.push_back(Det(a.image_id, a.category_id, a.bbox, 0.5 + 0.01 * a.id));
  }
  const LvisEvalResult r = Eval(gt, dt);
  for (double v : {r.ap, r.ap50, r.ap75, r.ap_small, r.ap_medium, r.ap_large, r.ap_rare, r.ap_common,
                   r.ap_frequent, r.ar, r.ar_small, r.ar_medium, r.ar_large}) {
    EXPECT_DOUBLE_EQ(v, 1.0);
  }
  for (const CategoryAp& c : r.per_class) EXPECT_DOUBLE_EQ(c.ap, 1.0);
  EXPECT_EQ(r.num_detections_evaluated, 5);
}

TEST(LvisEvalTest, FalsePositiveRankedAboveTruePositiveHalvesPrecision) {
  Gt gt;
  gt.Category(1).Image(1).Box(1, 1, kMedium);
  // Ranked FP (0.9) then TP (0.8): recall [0, 1], precision [0, 1/2] -> interpolated [1/2, 1/2];
  // every recall point reads 1/2 at every IoU threshold.
  LvisEvalResult r = Eval(gt, {Det(1, 1, kFar, 0.9), Det(1, 1, kMedium, 0.8)});
  EXPECT_NEAR(r.ap, 0.5, 1e-12);
  EXPECT_NEAR(r.ap50, 0.5, 1e-12);
  EXPECT_NEAR(r.ar, 1.0, 1e-12);
  // The other way round the FP comes after full recall and costs nothing.
  r = Eval(gt, {Det(1, 1, kFar, 0.7), Det(1, 1, kMedium, 0.8)});
  EXPECT_NEAR(r.ap, 1.0, 1e-12);
}

TEST(LvisEvalTest, DuplicateDetectionIsAFalsePositive) {
  Gt gt;
  const BoxXywh a{0, 0, 40, 40}, b{100, 100, 40, 40};
  gt.Category(1).Image(1).Box(1, 1, a).Box(1, 1, b);
  // TP(a) 0.9, duplicate of a 0.8, TP(b) 0.7: recall [.5, .5, 1], precision [1, 1/2, 2/3]
  // -> interpolated [1, 2/3, 2/3]. Recall points 0..0.50 (51) read 1, 0.51..1 (50) read 2/3.
  const LvisEvalResult r = Eval(gt, {Det(1, 1, a, 0.9), Det(1, 1, a, 0.8), Det(1, 1, b, 0.7)});
  const double expected = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
  EXPECT_NEAR(r.ap, expected, 1e-12);
  EXPECT_NEAR(r.ap75, expected, 1e-12);
  EXPECT_NEAR(ClassAp(r, 1), expected, 1e-12);
}

TEST(LvisEvalTest, IouThresholdsCountSeparately) {
  Gt gt;
  gt.Category(1).Image(1).Box(1, 1, {0, 0, 10, 10});
  // IoU 0.73: a match at 0.50, 0.55, 0.60, 0.65, 0.70 only -> AP = 5/10, AP50 = 1, AP75 = 0.
  const LvisEvalResult r = Eval(gt, {Det(1, 1, {0, 0, 10, 7.3}, 0.9)});
  EXPECT_NEAR(r.ap, 0.5, 1e-12);
  EXPECT_NEAR(r.ap50, 1.0, 1e-12);
  EXPECT_NEAR(r.ap75, 0.0, 1e-12);
  EXPECT_NEAR(r.ar, 0.5, 1e-12);
}

TEST(LvisEvalTest, FederatedRulesDropUnverifiedCategories) {
  // Category 2 has ground truth on image 2 only. A confident category-2 box on image 1 hurts
  // category 2 only if image 1 lists 2 in neg_category_ids.
  auto build = [](std::vector<int64_t> neg) {
    Gt gt;
    gt.Category(1).Category(2).Image(1, neg).Image(2);
    gt.Box(1, 1, kMedium).Box(2, 2, kMedium);
    return gt;
  };
  const std::vector<LvisDetection> dt = {Det(1, 1, kMedium, 0.5), Det(2, 2, kMedium, 0.5),
                                     Det(1, 2, kFar, 0.9)};
  LvisEvalResult r = Eval(build({}), dt);
  EXPECT_NEAR(ClassAp(r, 2), 1.0, 1e-12);  // not verified absent on image 1: not evaluated
  EXPECT_EQ(r.num_detections_evaluated, 2);
  r = Eval(build({2}), dt);
  EXPECT_NEAR(ClassAp(r, 2), 0.5, 1e-12);  // verified absent: a false positive ranked first
  EXPECT_NEAR(ClassAp(r, 1), 1.0, 1e-12);
  EXPECT_NEAR(r.ap, 0.75, 1e-12);
  EXPECT_EQ(r.num_detections_evaluated, 3);
}

TEST(LvisEvalTest, NotExhaustiveCategoriesIgnoreUnmatchedDetections) {
  auto build = [](std::vector<int64_t> not_exhaustive) {
    Gt gt;
    gt.Category(1).Image(1, {}, not_exhaustive).Box(1, 1, kMedium);
    return gt;
  };
  // An unmatched category-1 box ranked above the true positive.
  const std::vector<LvisDetection> dt = {Det(1, 1, kFar, 0.9), Det(1, 1, kMedium, 0.5)};
  EXPECT_NEAR(Eval(build({}), dt).ap, 0.5, 1e-12);
  EXPECT_NEAR(Eval(build({1}), dt).ap, 1.0, 1e-12);  // ignored, yet the match still counts
  // Matches still count on not-exhaustive categories: without the TP, AP is 0, not excluded.
  EXPECT_NEAR(Eval(build({1}), {Det(1, 1, kFar, 0.9)}).ap, 0.0, 1e-12);
}

TEST(LvisEvalTest, IgnoredGroundTruthNeitherHelpsNorHurts) {
  Gt gt;
  const BoxXywh other{200, 0, 40, 40};
  gt.Category(1).Image(1).Box(1, 1, kMedium).Box(1, 1, other, /*ignore=*/true);
  // The box on the ignored region is neither TP nor FP; the regular box is found: AP 1.
  const LvisEvalResult r = Eval(gt, {Det(1, 1, other, 0.9), Det(1, 1, kMedium, 0.5)});
  EXPECT_NEAR(r.ap, 1.0, 1e-12);
  EXPECT_EQ(r.per_class[0].num_gt, 1);
}

TEST(LvisEvalTest, AtMost300DetectionsPerImageAcrossCategories) {
  // 300 confident boxes of category 2 (no ground truth anywhere) push the category-1 true
  // positive out of the per-image top 300; with 299 it survives.
  for (int fillers : {299, 300}) {
    Gt gt;
    gt.Category(1).Category(2).Image(1, {2}).Box(1, 1, kMedium);
    std::vector<LvisDetection> dt;
    for (int i = 0; i < fillers; ++i) dt.push_back(Det(1, 2, {i * 1.0, 0, 5, 5}, 0.9));
    dt.push_back(Det(1, 1, kMedium, 0.1));
    const LvisEvalResult r = Eval(gt, dt);
    EXPECT_EQ(r.num_detections_kept, 300);
    EXPECT_NEAR(r.ap, fillers == 299 ? 1.0 : 0.0, 1e-12) << fillers;
    EXPECT_NEAR(r.ar, fillers == 299 ? 1.0 : 0.0, 1e-12) << fillers;
    // Category 2 has no ground truth: excluded, never a zero in the mean.
    EXPECT_EQ(ClassAp(r, 2), -1);
  }
  // The cut is per image: the same boxes split over two images all survive.
  Gt gt;
  gt.Category(1).Category(2).Image(1, {2}).Image(2).Box(1, 1, kMedium);
  std::vector<LvisDetection> dt;
  for (int i = 0; i < 300; ++i) dt.push_back(Det(2, 2, {i * 1.0, 0, 5, 5}, 0.9));
  dt.push_back(Det(1, 1, kMedium, 0.1));
  EXPECT_NEAR(Eval(gt, dt).ap, 1.0, 1e-12);
  // A caller-chosen limit applies the same rule.
  LvisEvalOptions options;
  options.max_detections_per_image = 0;
  EXPECT_NEAR(Eval(gt, dt, options).ap, 0.0, 1e-12);
}

TEST(LvisEvalTest, CategoriesWithoutGroundTruthAreExcluded) {
  Gt gt;
  gt.Category(1, Frequency::kFrequent).Category(3, Frequency::kRare).Image(1, {3}).Box(1, 1, kMedium);
  // Category 3's false positives cannot lower AP: it has no ground truth at all.
  const LvisEvalResult r =
      Eval(gt, {Det(1, 3, kFar, 0.99), Det(1, 3, kMedium, 0.99), Det(1, 1, kMedium, 0.5)});
  EXPECT_NEAR(r.ap, 1.0, 1e-12);
  EXPECT_EQ(r.ap_rare, -1);  // the only rare category has nothing to measure
  EXPECT_NEAR(r.ap_frequent, 1.0, 1e-12);
  EXPECT_EQ(r.ap_common, -1);
  EXPECT_EQ(ClassAp(r, 3), -1);
  // With no ground truth at all every metric is -1.
  Gt empty;
  empty.Category(1).Image(1);
  const LvisEvalResult e = Eval(empty, {Det(1, 1, kFar, 0.5)});
  EXPECT_EQ(e.ap, -1);
  EXPECT_EQ(e.ar, -1);
}

TEST(LvisEvalTest, AreaRangesSplitGroundTruthAndIgnoreOutOfRangeDetections) {
  Gt gt;
  gt.Category(1).Image(1).Image(2).Box(1, 1, kSmall).Box(2, 1, kLarge);
  // Found: the small box; missed: the large one. A confident unmatched large box on image 1 is a
  // false positive for "all" and "large", but outside the small range it is ignored.
  const BoxXywh large_fp{300, 0, 150, 150};
  const LvisEvalResult r = Eval(gt, {Det(1, 1, large_fp, 0.9), Det(1, 1, kSmall, 0.8)});
  // all: FP then TP, recall [0, .5], precision [0, .5] -> points 0..0.50 read 0.5, the rest 0.
  EXPECT_NEAR(r.ap, 51.0 * 0.5 / 101.0, 1e-12);
  EXPECT_NEAR(r.ar, 0.5, 1e-12);
  EXPECT_NEAR(r.ap_small, 1.0, 1e-12);  // the large FP is out of range and ignored
  EXPECT_NEAR(r.ar_small, 1.0, 1e-12);
  EXPECT_EQ(r.ap_medium, -1);          // no medium ground truth
  EXPECT_EQ(r.ar_medium, -1);
  EXPECT_NEAR(r.ap_large, 0.0, 1e-12);  // the FP is large, the large box is missed
  EXPECT_NEAR(r.ar_large, 0.0, 1e-12);
}

TEST(LvisEvalTest, ZeroAreaBoxesAreDropped) {
  Gt gt;
  gt.Category(1).Image(1).Box(1, 1, kMedium).Box(1, 1, {0, 0, 0, 5});
  // The zero-area ground truth does not count as a miss; the zero-area detection is not an FP.
  const LvisEvalResult r = Eval(gt, {Det(1, 1, {0, 0, 5, 0}, 0.9), Det(1, 1, kMedium, 0.5)});
  EXPECT_NEAR(r.ap, 1.0, 1e-12);
  EXPECT_EQ(r.num_detections_evaluated, 1);
}

TEST(LvisEvalTest, FrequencyGroupsAverageTheirOwnCategories) {
  Gt gt;
  gt.Category(1, Frequency::kRare).Category(2, Frequency::kCommon).Category(3, Frequency::kFrequent);
  gt.Image(1).Box(1, 1, kMedium).Box(1, 2, kMedium).Box(1, 3, kMedium);
  // Rare missed, common half (FP first), frequent perfect.
  const LvisEvalResult r =
      Eval(gt, {Det(1, 2, kFar, 0.9), Det(1, 2, kMedium, 0.8), Det(1, 3, kMedium, 0.7)});
  EXPECT_NEAR(r.ap_rare, 0.0, 1e-12);
  EXPECT_NEAR(r.ap_common, 0.5, 1e-12);
  EXPECT_NEAR(r.ap_frequent, 1.0, 1e-12);
  EXPECT_NEAR(r.ap, 0.5, 1e-12);
}

// A random federated dataset: 40 images, 6 categories of all groups, jittered detections with
// duplicates, misses, negatives and not-exhaustive categories.
struct RandomCase {
  LvisDataset gt;
  std::vector<LvisDetection> dt;
};

RandomCase MakeRandomCase(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  RandomCase c;
  for (int64_t k = 1; k <= 6; ++k) {
    c.gt.categories.push_back({k, "c" + std::to_string(k),
                               static_cast<Frequency>((k - 1) % 3), 1, 1});
  }
  int64_t next_annotation = 1;
  for (int64_t i = 1; i <= 40; ++i) {
    LvisImage image;
    image.id = 100 + 3 * i;  // ids not contiguous
    for (int64_t k = 1; k <= 6; ++k) {
      const double u = unit(rng);
      if (u < 0.35) {
        const int boxes = 1 + static_cast<int>(unit(rng) * 3);
        for (int b = 0; b < boxes; ++b) {
          LvisAnnotation a;
          a.id = next_annotation++;
          a.image_id = image.id;
          a.category_id = k;
          a.bbox = {unit(rng) * 200, unit(rng) * 200, 8 + unit(rng) * 120, 8 + unit(rng) * 120};
          a.area = a.bbox.w * a.bbox.h;
          a.ignore = unit(rng) < 0.05;
          c.gt.annotations.push_back(a);
          // A detection near it (sometimes), scores random.
          if (unit(rng) < 0.8) {
            BoxXywh d = a.bbox;
            d.x += (unit(rng) - 0.5) * 0.3 * d.w;
            d.y += (unit(rng) - 0.5) * 0.3 * d.h;
            c.dt.push_back({image.id, k, d, unit(rng)});
          }
        }
        if (unit(rng) < 0.2) image.not_exhaustive_category_ids.push_back(k);
      } else if (u < 0.6) {
        image.neg_category_ids.push_back(k);
      }
      if (unit(rng) < 0.5) {  // a false positive anywhere
        c.dt.push_back({image.id, k,
                        {unit(rng) * 200, unit(rng) * 200, 5 + unit(rng) * 90, 5 + unit(rng) * 90},
                        unit(rng)});
      }
    }
    c.gt.images.push_back(std::move(image));
  }
  return c;
}

void ExpectSameMetrics(const LvisEvalResult& a, const LvisEvalResult& b) {
  EXPECT_DOUBLE_EQ(a.ap, b.ap);
  EXPECT_DOUBLE_EQ(a.ap50, b.ap50);
  EXPECT_DOUBLE_EQ(a.ap75, b.ap75);
  EXPECT_DOUBLE_EQ(a.ap_small, b.ap_small);
  EXPECT_DOUBLE_EQ(a.ap_medium, b.ap_medium);
  EXPECT_DOUBLE_EQ(a.ap_large, b.ap_large);
  EXPECT_DOUBLE_EQ(a.ap_rare, b.ap_rare);
  EXPECT_DOUBLE_EQ(a.ap_common, b.ap_common);
  EXPECT_DOUBLE_EQ(a.ap_frequent, b.ap_frequent);
  EXPECT_DOUBLE_EQ(a.ar, b.ar);
  EXPECT_EQ(a.num_detections, b.num_detections);
  EXPECT_EQ(a.num_detections_kept, b.num_detections_kept);
  EXPECT_EQ(a.num_detections_evaluated, b.num_detections_evaluated);
  ASSERT_EQ(a.per_class.size(), b.per_class.size());
  for (size_t k = 0; k < a.per_class.size(); ++k) {
    EXPECT_EQ(a.per_class[k].num_gt, b.per_class[k].num_gt);
    EXPECT_DOUBLE_EQ(a.per_class[k].ap, b.per_class[k].ap);
  }
}

TEST(LvisEvaluationTest, ASubsetScoresAsTheRestrictedDatasetDoes) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    const RandomCase c = MakeRandomCase(seed);
    LvisEvalOptions options;
    options.max_detections_per_image = 4;  // the per-image cut matters on some images
    const LvisEvaluation evaluation = LvisEvaluation::Create(c.gt, c.dt, options).value();
    ExpectSameMetrics(evaluation.Summarise(), EvaluateLvis(c.gt, c.dt, options).value());

    // Every third image, then its complement: each against an evaluation built from scratch on
    // the restricted ground truth and detections.
    absl::flat_hash_set<int64_t> part, rest;
    for (size_t i = 0; i < c.gt.images.size(); ++i) {
      (i % 3 == seed % 3 ? part : rest).insert(c.gt.images[i].id);
    }
    for (const absl::flat_hash_set<int64_t>* ids : {&part, &rest}) {
      RandomCase restricted;
      restricted.gt.categories = c.gt.categories;
      for (const LvisImage& image : c.gt.images) {
        if (ids->contains(image.id)) restricted.gt.images.push_back(image);
      }
      for (const LvisAnnotation& a : c.gt.annotations) {
        if (ids->contains(a.image_id)) restricted.gt.annotations.push_back(a);
      }
      for (const LvisDetection& d : c.dt) {
        if (ids->contains(d.image_id)) restricted.dt.push_back(d);
      }
      const LvisEvalResult expected =
          EvaluateLvis(restricted.gt, restricted.dt, options).value();
      ASSERT_GT(expected.ap, 0.0);  // a real case, not an empty one
      ExpectSameMetrics(evaluation.Summarise(ids), expected);
    }
  }
}

TEST(LvisEvalTest, RejectsDetectionsOfUnknownImagesAndBadGroundTruth) {
  Gt gt;
  gt.Category(1).Image(1).Box(1, 1, kMedium);
  absl::StatusOr<LvisEvalResult> r = EvaluateLvis(gt.get(), {Det(1, 1, kMedium, 1), Det(9, 1, kMedium, 1)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("detections[1].image_id: 9"));
  // Unknown categories are dropped silently, as lvis-api does.
  EXPECT_TRUE(EvaluateLvis(gt.get(), {Det(1, 42, kMedium, 1)}).ok());

  LvisDataset bad = gt.get();
  bad.annotations[0].category_id = 5;
  r = EvaluateLvis(bad, {});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("annotations[0].category_id"));
}

TEST(LvisEvalTest, JsonAndTextOutputCarryEveryMetric) {
  Gt gt;
  gt.Category(1).Image(1).Box(1, 1, kMedium);
  const LvisEvalResult r = Eval(gt, {Det(1, 1, kMedium, 0.9)});
  const std::string json = LvisEvalResultToJson(r, /*per_class=*/true);
  // Precision is tp / (tp + fp + eps) as in lvis-api, so a perfect score prints as 1 / (1 + 2^-52).
  for (const char* key : {"\"AP\":0.99999999999999989", "\"AP50\":", "\"AP75\":", "\"APs\":-1",
                          "\"APm\":0.999999", "\"APl\":-1", "\"APr\":-1", "\"APc\":-1",
                          "\"APf\":0.999999", "\"AR@300\":1", "\"per_class\":[", "\"category_id\":1"}) {
    EXPECT_THAT(json, HasSubstr(key));
  }
  const std::string text = FormatLvisEvalResult(r, /*per_class=*/true);
  EXPECT_THAT(text, HasSubstr("maxDets=300"));
  EXPECT_THAT(text, HasSubstr("= 1.000"));
  EXPECT_THAT(text, HasSubstr("c1"));
}

}  // namespace
}  // namespace logn
