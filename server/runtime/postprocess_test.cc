#include "server/runtime/postprocess.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "calibration/statistics.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

LogitLayout Layout(int32_t classes, BackgroundPosition background) {
  LogitLayout layout;
  layout.num_classes = classes;
  layout.background = background;
  return layout;
}

std::vector<float> Floats(const google::protobuf::Value& list) {
  std::vector<float> out;
  for (const auto& v : list.list_value().values())
    out.push_back(static_cast<float>(v.number_value()));
  return out;
}

// torchvision.ops.batched_nms keep lists from tests/runtime/gen_nms_cases.py.
TEST(BatchedNmsTest, MatchesTorchvisionBatchedNms) {
  std::ifstream in(LOGN_NMS_CASES);
  ASSERT_TRUE(in) << "missing fixture " << LOGN_NMS_CASES;
  std::stringstream json;
  json << in.rdbuf();
  google::protobuf::Struct root;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.str(), &root).ok());
  const auto& cases = root.fields().at("cases").list_value().values();
  ASSERT_EQ(cases.size(), 4);
  for (const auto& c : cases) {
    const auto& f = c.struct_value().fields();
    const std::string name = f.at("name").string_value();
    const std::vector<float> boxes = Floats(f.at("boxes"));
    const std::vector<float> scores = Floats(f.at("scores"));
    std::vector<int32_t> labels;
    for (float v : Floats(f.at("labels"))) labels.push_back(static_cast<int32_t>(v));
    std::vector<int32_t> expected;
    for (float v : Floats(f.at("keep"))) expected.push_back(static_cast<int32_t>(v));
    const float iou = static_cast<float>(f.at("iou").number_value());
    ASSERT_LT(expected.size(), scores.size()) << name << ": the case must suppress something";

    const std::vector<int32_t> got =
        BatchedNms(boxes, scores, labels, iou, static_cast<int64_t>(scores.size()));
    ASSERT_EQ(got.size(), expected.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], expected[i])
          << name << " at " << i << ": scores " << scores[got[i]] << " vs " << scores[expected[i]];
    }
    // Early exit at max_keep gives the prefix of the full result.
    const std::vector<int32_t> prefix(expected.begin(), expected.begin() + 50);
    EXPECT_EQ(BatchedNms(boxes, scores, labels, iou, 50), prefix) << name;
  }
}

TEST(BatchedNmsTest, SuppressesOnlyWithinALabelAndAboveTheThreshold) {
  // Boxes 0 and 1 overlap with IoU 0.6; box 2 equals box 0 but has another label.
  const std::vector<float> boxes = {0, 0, 10, 10, 0, 0, 10, 6, 0, 0, 10, 10, 20, 20, 30, 30};
  const std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.95f};
  const std::vector<int32_t> labels = {0, 0, 1, 0};
  EXPECT_EQ(BatchedNms(boxes, scores, labels, 0.5f, 10), (std::vector<int32_t>{3, 0, 2}));
  EXPECT_EQ(BatchedNms(boxes, scores, labels, 0.6f, 10), (std::vector<int32_t>{3, 0, 1, 2}));
  EXPECT_EQ(BatchedNms(boxes, scores, labels, 0.5f, 2), (std::vector<int32_t>{3, 0}));
  EXPECT_TRUE(BatchedNms({}, {}, {}, 0.5f, 10).empty());
}

// A naive reference: all pairs above the threshold, sorted, greedy NMS per class, merged, top-k.
std::vector<Detection> NaivePostprocess(const std::vector<float>& calibrated,
                                        const LogitLayout& layout, const CandidatesView& view,
                                        const PostprocessOptions& o) {
  const int64_t width = layout.width();
  struct Cand {
    float score;
    int32_t row, label;
    const float* box;
  };
  std::vector<Cand> cands;
  for (int64_t r = 0; r < view.num_candidates; ++r) {
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < width; ++j) max = std::max<double>(max, calibrated[r * width + j]);
    for (int64_t j = 0; j < width; ++j) sum += std::exp(calibrated[r * width + j] - max);
    for (int32_t c = 0; c < layout.num_classes; ++c) {
      const float s = static_cast<float>(
          std::exp(calibrated[r * width + layout.foreground_column(c)] - max) / sum);
      if (s <= o.score_threshold) continue;
      const float* box = view.class_specific ? view.boxes.data() + (r * layout.num_classes + c) * 4
                                             : view.boxes.data() + r * 4;
      cands.push_back({s, static_cast<int32_t>(r), c, box});
    }
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Cand& a, const Cand& b) { return a.score > b.score; });
  std::vector<Detection> kept;
  for (const Cand& c : cands) {
    bool suppressed = false;
    for (const Detection& k : kept) {
      if (k.label != c.label) continue;
      const float iw = std::max(0.0f, std::min(k.box[2], c.box[2]) - std::max(k.box[0], c.box[0]));
      const float ih = std::max(0.0f, std::min(k.box[3], c.box[3]) - std::max(k.box[1], c.box[1]));
      const float inter = iw * ih;
      const float a1 = (k.box[2] - k.box[0]) * (k.box[3] - k.box[1]);
      const float a2 = (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]);
      if (inter / (a1 + a2 - inter) > o.nms_iou_threshold) suppressed = true;
    }
    if (suppressed) continue;
    kept.push_back(Detection{{c.box[0], c.box[1], c.box[2], c.box[3]}, c.score, c.label, c.row});
    if (static_cast<int32_t>(kept.size()) == o.top_k) break;
  }
  return kept;
}

struct RandomOutputs {
  std::vector<float> boxes, logits;
};

RandomOutputs MakeOutputs(int64_t n, const LogitLayout& layout, bool class_specific,
                          uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> pos(0, 300), size(5, 80);
  std::normal_distribution<float> logit(0, 2);
  RandomOutputs out;
  const int64_t per_row = class_specific ? layout.num_classes : 1;
  for (int64_t i = 0; i < n * per_row; ++i) {
    const float x = pos(rng), y = pos(rng);
    out.boxes.insert(out.boxes.end(), {x, y, x + size(rng), y + size(rng)});
  }
  for (int64_t i = 0; i < n * layout.width(); ++i) out.logits.push_back(logit(rng));
  return out;
}

Statistics MakeStats(const LogitLayout& layout, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> mean(-4, 1), var(0.2, 3);
  Statistics stats;
  stats.layout = layout;
  stats.count = 1000;
  for (int32_t j = 0; j < layout.width(); ++j) {
    stats.mean.push_back(mean(rng));
    stats.variance.push_back(var(rng));
  }
  return stats;
}

TEST(PostprocessTest, MatchesNaiveReferenceForBothBoxLayoutsAndBackgrounds) {
  for (bool class_specific : {false, true}) {
    for (BackgroundPosition bg : {BackgroundPosition::kFirst, BackgroundPosition::kLast}) {
      const LogitLayout layout = Layout(12, bg);
      const RandomOutputs out = MakeOutputs(150, layout, class_specific, 7);
      const CandidatesView view{150, class_specific, out.boxes, out.logits};
      const Calibrator calibrator =
          Calibrator::ForLogN(MakeStats(layout, 3), LogNOptions()).value();
      std::vector<float> calibrated = out.logits;
      ASSERT_TRUE(calibrator.Apply(absl::MakeSpan(calibrated)).ok());
      PostprocessOptions options;
      options.score_threshold = 0.01f;
      options.top_k = 60;
      const absl::StatusOr<std::vector<Detection>> got = Postprocess(calibrator, view, options);
      ASSERT_TRUE(got.ok()) << got.status();
      const std::vector<Detection> want = NaivePostprocess(calibrated, layout, view, options);
      ASSERT_EQ(got->size(), want.size());
      ASSERT_EQ(got->size(), 60u);
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ((*got)[i].label, want[i].label) << i;
        EXPECT_EQ((*got)[i].candidate, want[i].candidate) << i;
        EXPECT_NEAR((*got)[i].score, want[i].score, 1e-6) << i;
        for (int k = 0; k < 4; ++k) EXPECT_EQ((*got)[i].box[k], want[i].box[k]);
      }
    }
  }
}

TEST(PostprocessTest, CalibrationChangesTheScoresAsLogNPrescribes) {
  // One candidate, 2 classes, background first: logits [bg, a, b].
  const LogitLayout layout = Layout(2, BackgroundPosition::kFirst);
  const std::vector<float> boxes = {0, 0, 10, 10};
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f};
  const CandidatesView view{1, false, boxes, logits};
  Statistics stats;
  stats.layout = layout;
  stats.count = 10;
  stats.mean = {0.0, 3.0, -1.0};
  stats.variance = {1.0, 4.0, 0.25};
  LogNOptions logn;  // mean, std and beta = min foreground mean = -1
  const Calibrator calibrator = Calibrator::ForLogN(stats, logn).value();
  PostprocessOptions options;
  options.score_threshold = 0.0f;
  const std::vector<Detection> got = Postprocess(calibrator, view, options).value();
  // Foreground c: (x - mu + beta) / sqrt(var + eps); background untouched.
  const double a = (2.0 - 3.0 - 1.0) / std::sqrt(4.0 + 1e-5);
  const double b = (0.5 + 1.0 - 1.0) / std::sqrt(0.25 + 1e-5);
  const double z = std::exp(1.0) + std::exp(a) + std::exp(b);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].label, 1);  // LogN flips the ranking: b beats a
  EXPECT_NEAR(got[0].score, std::exp(b) / z, 1e-6);
  EXPECT_EQ(got[1].label, 0);
  EXPECT_NEAR(got[1].score, std::exp(a) / z, 1e-6);

  const std::vector<Detection> raw =
      Postprocess(Calibrator::Identity(layout), view, options).value();
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_EQ(raw[0].label, 0);
  EXPECT_NEAR(raw[0].score, std::exp(2.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(0.5)), 1e-6);
}

TEST(PostprocessTest, ThresholdMinBoxSizeAndTopK) {
  const LogitLayout layout = Layout(3, BackgroundPosition::kLast);
  // Candidate 0: a normal box; candidate 1: a 0.5-pixel-wide box.
  const std::vector<float> boxes = {0, 0, 10, 10, 50, 50, 50.5f, 60};
  const std::vector<float> logits = {3, 1, -5, 0, 3, 1, -5, 0};
  const CandidatesView view{2, false, boxes, logits};
  const Calibrator identity = Calibrator::Identity(layout);
  PostprocessOptions options;
  options.score_threshold = 0.05f;  // drops class 2 (p ~ 3e-4)
  std::vector<Detection> got = Postprocess(identity, view, options).value();
  ASSERT_EQ(got.size(), 4u);
  for (const Detection& d : got) EXPECT_NE(d.label, 2);
  options.min_box_size = 1.0f;
  got = Postprocess(identity, view, options).value();
  ASSERT_EQ(got.size(), 2u);
  for (const Detection& d : got) EXPECT_EQ(d.candidate, 0);
  options.top_k = 1;
  got = Postprocess(identity, view, options).value();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].label, 0);
}

// The outputs without candidate `row` (its logits and its box or boxes).
RandomOutputs WithoutRow(const RandomOutputs& out, const LogitLayout& layout, bool class_specific,
                         int64_t row) {
  RandomOutputs less = out;
  const int64_t box_floats = (class_specific ? layout.num_classes : 1) * 4;
  less.boxes.erase(less.boxes.begin() + row * box_floats,
                   less.boxes.begin() + (row + 1) * box_floats);
  less.logits.erase(less.logits.begin() + row * layout.width(),
                    less.logits.begin() + (row + 1) * layout.width());
  return less;
}

// Candidates with a NaN or ±Inf logit, raw or after calibration: each such row is dropped and
// counted, and every other candidate's detections are exactly those of the same call without it.
class NonFiniteRowsTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr int64_t kRows = 120;
  void SetUp() override {
    layout_ = Layout(10, BackgroundPosition::kLast);
    out_ = MakeOutputs(kRows, layout_, GetParam(), 5);
    options_.score_threshold = 0.01f;
    options_.top_k = 80;
  }

  // Breaks the given rows with `edit`, then checks the drop counts and that the detections equal
  // those without the rows (candidate indices renumbered).
  void ExpectDropped(const Calibrator& calibrator, const std::vector<int64_t>& rows,
                     const std::function<void(float* row)>& edit, int64_t raw_rows,
                     int64_t calibrated_rows) {
    const bool class_specific = GetParam();
    RandomOutputs broken = out_, reference = out_;
    for (int64_t row : rows) edit(broken.logits.data() + row * layout_.width());
    for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
      reference = WithoutRow(reference, layout_, class_specific, *it);
    }
    PostprocessStats stats;
    stats.nonfinite_raw_rows = 1000;  // counts are added, not assigned
    const std::vector<Detection> got =
        Postprocess(calibrator, CandidatesView{kRows, class_specific, broken.boxes, broken.logits},
                    options_, &stats)
            .value();
    EXPECT_EQ(stats.nonfinite_raw_rows, 1000 + raw_rows);
    EXPECT_EQ(stats.nonfinite_calibrated_rows, calibrated_rows);
    const int64_t kept = kRows - static_cast<int64_t>(rows.size());
    const std::vector<Detection> want =
        Postprocess(calibrator,
                    CandidatesView{kept, class_specific, reference.boxes, reference.logits},
                    options_)
            .value();
    ASSERT_EQ(got.size(), want.size());
    ASSERT_FALSE(want.empty());
    for (size_t i = 0; i < want.size(); ++i) {
      int32_t candidate = want[i].candidate;  // back to the numbering with the bad rows
      for (int64_t row : rows) candidate += candidate >= row ? 1 : 0;
      EXPECT_EQ(got[i].candidate, candidate) << i;
      EXPECT_EQ(got[i].label, want[i].label) << i;
      EXPECT_EQ(got[i].score, want[i].score) << i;
      for (int k = 0; k < 4; ++k) EXPECT_EQ(got[i].box[k], want[i].box[k]) << i;
    }
  }

  // The candidate of the best detection without any bad row: breaking it must matter.
  int64_t BestCandidate(const Calibrator& calibrator) const {
    return Postprocess(calibrator, CandidatesView{kRows, GetParam(), out_.boxes, out_.logits},
                       options_)
        .value()
        .front()
        .candidate;
  }

  LogitLayout layout_;
  RandomOutputs out_;
  PostprocessOptions options_;
};

TEST_P(NonFiniteRowsTest, InfiniteRawLogitDropsTheRow) {
  const Calibrator calibrator = Calibrator::ForLogN(MakeStats(layout_, 3), LogNOptions()).value();
  const int64_t best = BestCandidate(calibrator);
  // +Inf on a foreground class (softmax would give NaN, not a certain detection), -Inf elsewhere.
  ExpectDropped(calibrator, {best}, [](float* row) { row[2] = INFINITY; }, 1, 0);
  ExpectDropped(calibrator, {std::min<int64_t>(best, 3), 100},
                [](float* row) { row[10] = -INFINITY; }, 2, 0);
  // Uncalibrated too.
  ExpectDropped(Calibrator::Identity(layout_), {7}, [](float* row) { row[0] = INFINITY; }, 1, 0);
}

TEST_P(NonFiniteRowsTest, NaNRawLogitDropsTheRow) {
  const Calibrator calibrator = Calibrator::ForLogN(MakeStats(layout_, 3), LogNOptions()).value();
  const int64_t best = BestCandidate(calibrator);
  ExpectDropped(calibrator, {best}, [](float* row) { row[4] = NAN; }, 1, 0);
  ExpectDropped(Calibrator::Identity(layout_), {0, kRows - 1},
                [](float* row) { row[9] = NAN; }, 2, 0);
}

TEST_P(NonFiniteRowsTest, InfinityMadeByCalibrationDropsTheRow) {
  // The official formula clamps a zero variance at 1e-11: scale 1/sqrt(1e-11) ≈ 3.2e5, so a
  // finite raw logit of 1e34 becomes ≈ 3e39, beyond float32.
  Statistics stats = MakeStats(layout_, 3);
  stats.variance[6] = 0.0;
  LogNOptions official;
  official.official_formula = true;
  const Calibrator calibrator = Calibrator::ForLogN(stats, official).value();
  const int64_t best = BestCandidate(calibrator);
  ExpectDropped(calibrator, {best}, [](float* row) { row[6] = 1e34f; }, 0, 1);
  // One of each in one call: each counted once, where it arose.
  RandomOutputs both = out_;
  both.logits[best * layout_.width() + 6] = 1e34f;
  both.logits[(best == 0 ? 1 : 0) * layout_.width() + 1] = NAN;
  PostprocessStats counts;
  ASSERT_TRUE(Postprocess(calibrator, CandidatesView{kRows, GetParam(), both.boxes, both.logits},
                          options_, &counts)
                  .ok());
  EXPECT_EQ(counts.nonfinite_raw_rows, 1);
  EXPECT_EQ(counts.nonfinite_calibrated_rows, 1);
  EXPECT_EQ(counts.dropped_rows(), 2);
}

INSTANTIATE_TEST_SUITE_P(BoxLayouts, NonFiniteRowsTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ClassSpecific" : "ClassAgnostic";
                         });

TEST(PostprocessTest, BadInputsAreInvalidArgument) {
  const LogitLayout layout = Layout(3, BackgroundPosition::kLast);
  const Calibrator identity = Calibrator::Identity(layout);
  const std::vector<float> boxes = {0, 0, 1, 1};
  const std::vector<float> logits = {0, 0, 0};
  absl::Status status = Postprocess(identity, CandidatesView{1, false, boxes, logits}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("need 4"));
  const std::vector<float> logits4 = {0, 0, 0, 0};
  status = Postprocess(identity, CandidatesView{1, true, boxes, logits4}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("class-specific"));
  PostprocessOptions bad;
  bad.top_k = 0;
  EXPECT_EQ(Postprocess(identity, CandidatesView{1, false, boxes, logits4}, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = PostprocessOptions();
  bad.nms_iou_threshold = 1.5f;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Postprocess(identity, CandidatesView{0, false, {}, {}}, {}).value().empty());
}

}  // namespace
}  // namespace logn
