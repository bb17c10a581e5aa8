#include "client/cli/tune.h"

#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;

constexpr int kClasses = 4;  // ids 11..14; 11 frequent ... 14 rare

// A small long-tailed world: each image holds 1-3 objects; the raw logits favour the frequent
// classes (a biased detector), so calibration settings really differ.
struct World {
  LvisDataset gt;
  std::vector<CachedImage> images;
  Statistics statistics;
  LogitLayout layout{kClasses, BackgroundPosition::kFirst};
  std::vector<int64_t> category_ids = {11, 12, 13, 14};
  std::vector<double> class_counts = {4000, 900, 120, 9};
};

World MakeWorld(uint32_t seed, int num_images) {
  World w;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> noise(0.0, 1.0);
  const Frequency groups[kClasses] = {Frequency::kFrequent, Frequency::kCommon,
                                      Frequency::kCommon, Frequency::kRare};
  for (int c = 0; c < kClasses; ++c) {
    w.gt.categories.push_back({w.category_ids[c], "c" + std::to_string(c), groups[c], 1, 1});
  }
  int64_t next_annotation = 1;
  for (int i = 0; i < num_images; ++i) {
    LvisImage image;
    image.id = 1000 + 7 * i;
    CachedImage cached;
    cached.image_id = image.id;
    const int objects = 1 + static_cast<int>(unit(rng) * 3);
    for (int o = 0; o < objects; ++o) {
      const int c = static_cast<int>(unit(rng) * kClasses);
      LvisAnnotation a;
      a.id = next_annotation++;
      a.image_id = image.id;
      a.category_id = w.category_ids[c];
      a.bbox = {unit(rng) * 100, unit(rng) * 100, 20 + unit(rng) * 60, 20 + unit(rng) * 60};
      a.area = a.bbox.w * a.bbox.h;
      w.gt.annotations.push_back(a);
      // Two candidates per object: one tight, one loose; logits biased to the frequent class.
      for (double jitter : {0.05, 0.3}) {
        const float x1 = static_cast<float>(a.bbox.x + jitter * a.bbox.w * (unit(rng) - 0.5));
        const float y1 = static_cast<float>(a.bbox.y + jitter * a.bbox.h * (unit(rng) - 0.5));
        cached.boxes.insert(cached.boxes.end(),
                            {x1, y1, x1 + static_cast<float>(a.bbox.w),
                             y1 + static_cast<float>(a.bbox.h)});
        cached.logits.push_back(static_cast<float>(1.0 + noise(rng)));  // background
        for (int k = 0; k < kClasses; ++k) {
          const double bias = 2.0 - 1.2 * k;  // frequent classes score higher
          const double signal = k == c ? 2.5 : 0.0;
          cached.logits.push_back(static_cast<float>(bias + signal + 0.8 * noise(rng)));
        }
        ++cached.num_candidates;
      }
    }
    w.images.push_back(std::move(cached));
    w.gt.images.push_back(std::move(image));
  }
  w.statistics.layout = w.layout;
  w.statistics.count = 1000;
  w.statistics.mean = {1.0, 2.3, 1.1, -0.1, -1.3};
  w.statistics.variance = {1.0, 1.5, 0.9, 0.6, 0.3};
  return w;
}

TuneInput InputOf(const World& w) {
  TuneInput input;
  input.ground_truth = &w.gt;
  input.images = w.images;
  input.layout = w.layout;
  input.category_ids = w.category_ids;
  input.statistics = &w.statistics;
  input.class_counts = w.class_counts;
  return input;
}

// The independent loop: the setting's detections on `ids` only, evaluated from scratch on the
// ground truth restricted to those images.
LvisEvalResult EvaluateOn(const World& w, const TuneSetting& setting,
                          const absl::flat_hash_set<int64_t>& ids) {
  const Calibrator calibrator =
      MakeCalibrator(setting.spec, w.layout, &w.statistics, w.class_counts).value();
  LvisDataset restricted;
  restricted.categories = w.gt.categories;
  for (const LvisImage& image : w.gt.images) {
    if (ids.contains(image.id)) restricted.images.push_back(image);
  }
  for (const LvisAnnotation& a : w.gt.annotations) {
    if (ids.contains(a.image_id)) restricted.annotations.push_back(a);
  }
  std::vector<LvisDetection> detections;
  for (const CachedImage& image : w.images) {
    if (!ids.contains(image.image_id)) continue;
    const CandidatesView view{image.num_candidates, false, image.boxes, image.logits};
    const std::vector<Detection> kept =
        Postprocess(calibrator, view, PostprocessOptions()).value();
    for (const Detection& d : kept) {
      const float width = d.box[2] - d.box[0], height = d.box[3] - d.box[1];
      detections.push_back({image.image_id, w.category_ids[d.label],
                            BoxXywh{d.box[0], d.box[1], width, height}, d.score});
    }
  }
  return EvaluateLvis(restricted, detections).value();
}

TEST(TuneTest, TheChoiceIsTheGridsBestOnTheTuningPartAndHeldOutFiguresUseOnlyTheRest) {
  const World w = MakeWorld(7, 60);
  TuningOptions options;
  options.seeds = {0, 5};
  options.threads = 2;
  const TuneResult result = RunTuning(InputOf(w), options).value();
  const std::vector<TuneSetting> grid = TuningGrid(true, true);
  ASSERT_EQ(result.settings.size(), grid.size());
  ASSERT_EQ(result.chosen.size(), 2u);

  for (size_t s = 0; s < options.seeds.size(); ++s) {
    absl::flat_hash_set<int64_t> tuning, heldout;
    for (const CachedImage& image : w.images) {
      (IsHeldOut(image.image_id, options.seeds[s], 0.5) ? heldout : tuning).insert(image.image_id);
    }
    int best = -1;
    double best_value = -1;
    for (size_t j = 0; j < grid.size(); ++j) {
      const double value = EvaluateOn(w, grid[j], tuning).ap;
      EXPECT_NEAR(value, result.settings[j].tuning[s].ap, 1e-12) << grid[j].name;
      if (value > best_value) {
        best_value = value;
        best = static_cast<int>(j);
      }
    }
    EXPECT_EQ(result.chosen[s], best) << "seed " << options.seeds[s];
    const LvisEvalResult expected = EvaluateOn(w, grid[best], heldout);
    const LvisEvalResult& reported = result.settings[best].heldout[s];
    EXPECT_NEAR(reported.ap, expected.ap, 1e-12);
    EXPECT_NEAR(reported.ap_rare, expected.ap_rare, 1e-12);
    EXPECT_EQ(reported.num_detections, expected.num_detections);
    EXPECT_EQ(result.tuning_images[s] + result.heldout_images[s], 60);
  }
  // Not a degenerate world: the settings disagree, and the choice beats no calibration.
  EXPECT_NE(result.settings[result.chosen[0]].setting.name, "none");
  EXPECT_GT(result.settings[result.chosen[0]].tuning[0].ap,
            result.settings[result.none_index].tuning[0].ap);
}

TEST(TuneTest, HeldOutImagesTakeNoPartInTheChoice) {
  const World w = MakeWorld(11, 50);
  TuningOptions options;
  options.seeds = {3};
  const TuneResult before = RunTuning(InputOf(w), options).value();
  // Scramble every held-out image's logits: the choice and the tuning figures must not move,
  // and the held-out figures must.
  World scrambled = w;
  std::mt19937 rng(99);
  std::normal_distribution<double> noise(0.0, 5.0);
  for (CachedImage& image : scrambled.images) {
    if (!IsHeldOut(image.image_id, 3, 0.5)) continue;
    for (float& x : image.logits) x = static_cast<float>(noise(rng));
  }
  const TuneResult after = RunTuning(InputOf(scrambled), options).value();
  EXPECT_EQ(after.chosen, before.chosen);
  for (size_t j = 0; j < before.settings.size(); ++j) {
    EXPECT_EQ(after.settings[j].tuning[0].ap, before.settings[j].tuning[0].ap);
  }
  EXPECT_NE(after.settings[before.chosen[0]].heldout[0].ap,
            before.settings[before.chosen[0]].heldout[0].ap);
}

TEST(TuneTest, ReferencesAreReportedButNeverChosen) {
  const World w = MakeWorld(5, 40);
  TuneInput input = InputOf(w);
  Statistics other = w.statistics;
  other.mean = {0, 0, 0, 0, 0};
  input.references.push_back({"logn@v9", CalibrationSpec(), &other});
  TuningOptions options;
  options.seeds = {0};
  const TuneResult result = RunTuning(input, options).value();
  ASSERT_EQ(result.settings.size(), TuningGrid(true, true).size() + 1);
  EXPECT_TRUE(result.settings.back().reference_only);
  EXPECT_EQ(result.settings.back().setting.name, "logn@v9");
  EXPECT_FALSE(result.settings[result.chosen[0]].reference_only);
  const std::string json = TuneReportJson(result, options, "m", 3);
  EXPECT_THAT(json, HasSubstr("\"logn@v9\""));
  EXPECT_THAT(TuneReportText(result, options), HasSubstr("logn@v9"));
  EXPECT_THAT(TuneHeatMapSvg(result, options), HasSubstr("<svg"));
}

TEST(TuneTest, TheGridContainsThePapersSettings) {
  const std::vector<TuneSetting> grid = TuningGrid(true, true);
  absl::flat_hash_set<std::string> names;
  for (const TuneSetting& s : grid) EXPECT_TRUE(names.insert(s.name).second) << s.name;
  for (const char* name : {"none", "logn(a=1,g=1,beta=min_fg_mean)", "logn(a=1,g=0,beta=off)",
                           "logn(a=0,g=0,beta=min_fg_mean)", "bn", "loga(tau=1)",
                           "logn(a=0.5,g=0.25,beta=background_mean)"}) {
    EXPECT_TRUE(names.contains(name)) << name;
  }
  // 1 none + 5 betas x 25 - 1 (alpha = gamma = 0 without beta) + BN + 6 LogA.
  EXPECT_EQ(grid.size(), 1u + 5 * 25 - 1 + 1 + 6);
  EXPECT_EQ(TuningGrid(false, false).size(), 1u + 4 * 25 - 1);
}

TEST(TuneTest, SplitsAreDeterministicBalancedAndDifferPerSeed) {
  int held = 0, differ = 0;
  for (int64_t id = 1; id <= 20000; ++id) {
    const bool a = IsHeldOut(id, 0, 0.5);
    EXPECT_EQ(a, IsHeldOut(id, 0, 0.5));
    held += a;
    differ += a != IsHeldOut(id, 1, 0.5);
  }
  EXPECT_NEAR(held / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(differ / 20000.0, 0.5, 0.02);  // another seed is another split
  int quarter = 0;
  for (int64_t id = 1; id <= 20000; ++id) quarter += IsHeldOut(id, 4, 0.25);
  EXPECT_NEAR(quarter / 20000.0, 0.25, 0.02);
}

TEST(TuneTest, BadInputsAreRefused) {
  const World w = MakeWorld(1, 10);
  TuningOptions options;
  options.holdout_fraction = 1.0;
  EXPECT_THAT(RunTuning(InputOf(w), options).status().message(), HasSubstr("(0, 1)"));
  options.holdout_fraction = 0.5;
  options.seeds.clear();
  EXPECT_EQ(RunTuning(InputOf(w), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.seeds = {0};
  World stranger = w;
  stranger.images[0].image_id = 1;
  EXPECT_THAT(RunTuning(InputOf(stranger), options).status().message(),
              HasSubstr("not in the ground truth"));
  EXPECT_EQ(ParseTuneObjective("apx").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseTuneObjective("group-mean"), TuneObjective::kGroupMean);
}

}  // namespace
}  // namespace logn::cli
