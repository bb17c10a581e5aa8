// How `logn stats show` and `logn stats list` print a version's sampling record.

#include <string>

#include "client/cli/commands/stats_actions.h"
#include "client/cli/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;

// 500 images at 512 RoIs per image from proposals, some images with fewer candidates.
v1::StatisticsVersion Sampled() {
  v1::StatisticsVersion v;
  v.set_version(3);
  v.set_source(v1::VERSION_SOURCE_IMAGES);
  v.set_rows_seen(243520);
  v.set_images_seen(500);
  v.set_description("lvis train");
  v1::RoiSampling* s = v.mutable_sampling();
  s->set_roi_source(v1::ROI_SOURCE_PROPOSALS);
  s->set_num_rois(512);
  s->set_positive_fraction(0.25);
  s->set_positive_iou(0.5f);
  s->set_images(500);
  s->set_rois(243520);
  s->set_positive_rois(19482);
  s->set_rfs_threshold(0.001);
  return v;
}

TEST(StatsSamplingTest, ShowPrintsRoisPerImageAndAchievedNextToRequestedPositives) {
  EXPECT_EQ(SamplingSection(Sampled()),
            "sampling proposals\n"
            "  rois per image     487.0 (243520 rois from 500 images; sampler asks 512)\n"
            "  positive fraction  8.0 % achieved (19482 of 243520 rois), at most 25.0 % "
            "requested (IoU >= 0.5)\n"
            "  rfs threshold      0.001\n");

  v1::StatisticsVersion candidates = Sampled();
  candidates.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_CANDIDATES);
  candidates.mutable_sampling()->set_positive_rois(121750);
  candidates.mutable_sampling()->set_rfs_threshold(0);
  const std::string text = SamplingSection(candidates);
  EXPECT_THAT(text, HasSubstr("sampling candidates (from the model's output candidates, not the "
                              "RPN's proposals: an approximation of training's RoIs)\n"));
  EXPECT_THAT(text, HasSubstr("  positive fraction  50.0 % achieved (121750 of 243520 rois)"));
  EXPECT_THAT(text, HasSubstr("  rfs threshold      none (unweighted)\n"));
}

TEST(StatsSamplingTest, ShowPrintsOnlyWhatTheSourceHas) {
  v1::StatisticsVersion logits;
  logits.set_source(v1::VERSION_SOURCE_LOGITS);
  logits.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_LOGITS);
  logits.mutable_sampling()->set_rois(1000);
  EXPECT_EQ(SamplingSection(logits),
            "sampling logits\n"
            "  rois               1000\n"
            "  rfs threshold      none (unweighted)\n");

  v1::StatisticsVersion detections;
  detections.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_DETECTIONS);
  detections.mutable_sampling()->set_images(4);
  detections.mutable_sampling()->set_rois(400);
  EXPECT_EQ(SamplingSection(detections),
            "sampling detections\n"
            "  rois per image     100.0 (400 rois from 4 images)\n"
            "  rfs threshold      none (unweighted)\n");

  v1::StatisticsVersion imported;
  imported.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_IMPORTED);
  EXPECT_EQ(SamplingSection(imported), "sampling imported (imported statistics)\n");

  // A merge of different sources and thresholds: the parameters the parents disagree on are 0.
  v1::StatisticsVersion merged = Sampled();
  merged.set_source(v1::VERSION_SOURCE_MERGE);
  v1::RoiSampling* s = merged.mutable_sampling();
  s->set_roi_source(v1::ROI_SOURCE_MIXED);
  s->set_num_rois(0);
  s->set_positive_fraction(0);
  s->set_rfs_threshold(0);
  EXPECT_EQ(SamplingSection(merged),
            "sampling mixed (merged from versions sampled differently)\n"
            "  rois per image     487.0 (243520 rois from 500 images)\n"
            "  positive fraction  8.0 % achieved (19482 of 243520 rois) (IoU >= 0.5)\n"
            "  rfs threshold      none (unweighted, or different across the merged versions)\n");

  EXPECT_EQ(SamplingSection(v1::StatisticsVersion()),
            "sampling not recorded (stored before versions recorded it)\n");
}

TEST(StatsSamplingTest, ListHasACompactColumnBeforeTheDescription) {
  EXPECT_EQ(SamplingColumn(Sampled()), "proposals 487/img 8%");
  v1::StatisticsVersion v = Sampled();
  v.mutable_sampling()->set_images(100);
  v.mutable_sampling()->set_rois(350);
  v.mutable_sampling()->set_positive_rois(1);
  EXPECT_EQ(SamplingColumn(v), "proposals 3.5/img 0.3%");
  v.mutable_sampling()->set_positive_rois(0);
  EXPECT_EQ(SamplingColumn(v), "proposals 3.5/img 0%");  // sampled, and no positive found
  v.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_LOGITS);
  v.mutable_sampling()->set_images(0);
  v.mutable_sampling()->set_positive_fraction(0);
  EXPECT_EQ(SamplingColumn(v), "logits");
  EXPECT_EQ(SamplingColumn(v1::StatisticsVersion()), "-");

  // The version table as before, with the column spliced in before the description.
  EXPECT_EQ(ListHeader(),
            "version  created                     rows   images  method        source   aliases"
            "           sampling                  description\n");
  const v1::StatisticsVersion sampled = Sampled();
  v1::StatisticsVersion without_description = sampled;
  without_description.clear_description();
  EXPECT_EQ(ListLine(sampled),
            VersionLine(without_description) + "proposals 487/img 8%      lvis train");
  EXPECT_EQ(ListLine(sampled),
            "      3  -                         243520      500  exact         images   -       "
            "          proposals 487/img 8%      lvis train");
  EXPECT_EQ(ListLine(v1::StatisticsVersion()).substr(VersionLine(v1::StatisticsVersion()).size()),
            "-                         ");
}

}  // namespace
}  // namespace logn::cli
