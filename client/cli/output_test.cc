#include "client/cli/output.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(OutputTest, JsonStringEscapes) {
  EXPECT_EQ(JsonString("plain"), "\"plain\"");
  EXPECT_EQ(JsonString("a\"b\\c\nd\re\tf"), "\"a\\\"b\\\\c\\nd\\re\\tf\"");
  EXPECT_EQ(JsonString(std::string("\x01", 1)), "\"\\u0001\"");
  EXPECT_EQ(JsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"") << "UTF-8 passes through";
}

TEST(OutputTest, ProtoJsonKeepsFieldNamesAndDefaults) {
  v1::StatisticsSelector selector;
  selector.set_version(3);
  EXPECT_EQ(ProtoJson(selector), "{\"version\":\"3\"}");
  v1::CalibrationSetting setting;
  EXPECT_THAT(ProtoJson(setting), HasSubstr("\"name\":\"\""));
}

TEST(OutputTest, TimesAndDurations) {
  google::protobuf::Timestamp ts;
  EXPECT_EQ(TimestampText(ts), "-");
  ts.set_seconds(86400 * 365);
  EXPECT_EQ(TimestampText(ts), "1971-01-01T00:00:00Z");
  EXPECT_EQ(FormatSeconds(absl::Milliseconds(1234)), "1.23s");
}

TEST(OutputTest, VersionTableRows) {
  v1::StatisticsVersion v;
  v.set_version(12);
  v.set_rows_seen(3000);
  v.set_images_seen(40);
  v.set_method(v1::ACCUMULATION_METHOD_EMA);
  v.set_momentum(0.5);
  v.set_source(v1::VERSION_SOURCE_MERGE);
  v.add_aliases("active");
  v.add_aliases("canary");
  v.set_description("merged shards");
  const std::string line = VersionLine(v);
  EXPECT_EQ(line,
            "     12  -                           3000       40  ema(0.5)      merge    "
            "active,canary     merged shards");
  v.clear_aliases();
  v.set_method(v1::ACCUMULATION_METHOD_EXACT);
  v.set_source(v1::VERSION_SOURCE_IMAGES);
  EXPECT_THAT(VersionLine(v), HasSubstr("exact         images   -  "));
  EXPECT_EQ(VersionHeader(),
            "version  created                     rows   images  method        source   aliases"
            "           description\n");
}

TEST(OutputTest, SettingAndSelectorNames) {
  v1::CalibrationSetting setting;
  setting.set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(SettingName(setting), "none");
  setting.set_name("t2:mu");
  EXPECT_EQ(SettingName(setting), "t2:mu");
  v1::StatisticsSelector selector;
  EXPECT_EQ(SelectorText(selector), "active");
  selector.set_alias("canary");
  EXPECT_EQ(SelectorText(selector), "canary");
  selector.set_version(4);
  EXPECT_EQ(SelectorText(selector), "4");
}

TEST(OutputTest, DetectionBecomesAnLvisResult) {
  v1::Detection d;
  d.set_category_id(7);
  d.set_score(0.5f);
  d.mutable_box()->set_x1(10);
  d.mutable_box()->set_y1(20);
  d.mutable_box()->set_x2(15);
  d.mutable_box()->set_y2(28);
  const LvisDetection out = ToLvisDetection(42, d);
  EXPECT_EQ(out.image_id, 42);
  EXPECT_EQ(out.category_id, 7);
  EXPECT_DOUBLE_EQ(out.score, 0.5);
  EXPECT_DOUBLE_EQ(out.bbox.x, 10);
  EXPECT_DOUBLE_EQ(out.bbox.y, 20);
  EXPECT_DOUBLE_EQ(out.bbox.w, 5);
  EXPECT_DOUBLE_EQ(out.bbox.h, 8);
}

TEST(OutputTest, WriteFileReplacesOrFails) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "out.txt").string();
  ASSERT_TRUE(WriteFile(path, "first, longer").ok());
  ASSERT_TRUE(WriteFile(path, "second").ok());
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "second");
  const absl::Status s = WriteFile("/nonexistent-dir/x.txt", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "cannot write '/nonexistent-dir/x.txt'");
}


// ----- `logn info` and `logn detect` for people -----

v1::ModelManifest ThreeClasses() {
  v1::ModelManifest m;
  m.set_name("demo");
  auto add = [&](int id, const char* name, v1::FrequencyGroup group) {
    v1::ClassInfo* c = m.add_classes();
    c->set_id(id);
    c->set_name(name);
    c->set_frequency(group);
    c->set_image_count(id * 10);
    c->set_instance_count(id * 12);
  };
  add(1, "disc_warm-solid", v1::FREQUENCY_GROUP_FREQUENT);
  add(2, "disc_cool-solid", v1::FREQUENCY_GROUP_RARE);
  add(3, "ring", v1::FREQUENCY_GROUP_COMMON);
  return m;
}

v1::Detection Det(int32_t category, float score, float x1, float y1, float x2, float y2) {
  v1::Detection d;
  d.set_category_id(category);
  d.set_score(score);
  d.mutable_box()->set_x1(x1);
  d.mutable_box()->set_y1(y1);
  d.mutable_box()->set_x2(x2);
  d.mutable_box()->set_y2(y2);
  return d;
}

v1::CalibrationSetting Method(v1::CalibrationMethod method, const std::string& name) {
  v1::CalibrationSetting s;
  s.set_calibration_method(method);
  s.set_name(name);
  return s;
}

TEST(HumanOutputTest, ClassNamesAndGroups) {
  const ClassNames names(ThreeClasses());
  EXPECT_EQ(names.Name(2), "disc_cool-solid");
  EXPECT_EQ(names.Group(2), "r");
  EXPECT_EQ(names.Group(3), "c");
  EXPECT_EQ(names.Group(1), "f");
  EXPECT_EQ(names.Name(99), "#99");
  EXPECT_EQ(names.Group(99), "-");
  EXPECT_EQ(ClassNames().Name(1), "#1");
}

TEST(HumanOutputTest, DetectionTableShowsTheTopRowsWithNames) {
  v1::ImageDetections image;
  image.set_image_id("val/38.png");
  *image.add_detections() = Det(1, 0.8289f, 81.03f, 75.42f, 128, 128);
  *image.add_detections() = Det(2, 0.41f, 0, 3.5f, 40.25f, 60);
  *image.add_detections() = Det(7, 0.00012f, 1, 2, 3, 4);
  const ClassNames names(ThreeClasses());
  const v1::CalibrationSetting logn = Method(v1::CALIBRATION_METHOD_LOGN, "logn");
  EXPECT_EQ(DetectionTable(image, logn, 1, names, 2),
            "val/38.png: 3 detections (setting logn, statistics version 1), top 2\n"
            " rank  class            group    score        x1       y1       x2       y2\n"
            "    1  disc_warm-solid  f        0.829      81.0     75.4    128.0    128.0\n"
            "    2  disc_cool-solid  r        0.410       0.0      3.5     40.2     60.0\n"
            "  ...  (1 more, down to score 1.2e-04; --top 0 shows all)\n");
  // --top 0: every row; an id the manifest does not list is "#ID"; no version for `none`.
  const std::string all =
      DetectionTable(image, Method(v1::CALIBRATION_METHOD_NONE, "none"), 0, names, 0);
  EXPECT_THAT(all, StartsWith("val/38.png: 3 detections (setting none)\n"));
  EXPECT_THAT(all, HasSubstr("    3  #7               -      1.2e-04       1.0      2.0      3.0"));
  EXPECT_THAT(all, Not(HasSubstr("more")));
  image.clear_detections();
  EXPECT_EQ(DetectionTable(image, logn, 4, names, 10),
            "val/38.png: 0 detections (setting logn, statistics version 4)\n");
  EXPECT_EQ(ScoreText(0.5f), "0.500");
  EXPECT_EQ(ScoreText(0.001f), "0.001");
  EXPECT_EQ(ScoreText(0.0f), "0.000");
}

v1::DetectResponse TwoImagesTwoSettings() {
  v1::DetectResponse response;
  response.set_version(3);
  for (const char* name : {"none", "logn"}) {
    v1::CalibrationResult* result = response.add_results();
    *result->mutable_setting() = Method(std::string(name) == "none"
                                            ? v1::CALIBRATION_METHOD_NONE
                                            : v1::CALIBRATION_METHOD_LOGN,
                                        name);
    for (const char* image : {"a.png", "b.jpg"}) {
      v1::ImageDetections* d = result->add_image_detections();
      d->set_image_id(image);
      *d->add_detections() = Det(3, 0.5f, 1, 2, 3.125f, 4);
    }
  }
  return response;
}

TEST(HumanOutputTest, DetectionTablesGoImageByImageOneTablePerSetting) {
  const std::string text = DetectionTables(TwoImagesTwoSettings(), ClassNames(ThreeClasses()), 10);
  std::vector<std::string> headers;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StrContains(line, "detection")) headers.emplace_back(line);
  }
  EXPECT_THAT(headers, ElementsAre("a.png: 1 detection (setting none)",
                                   "a.png: 1 detection (setting logn, statistics version 3)",
                                   "b.jpg: 1 detection (setting none)",
                                   "b.jpg: 1 detection (setting logn, statistics version 3)"))
      << "the response's version only on the settings that use statistics";
  EXPECT_THAT(text, HasSubstr("ring"));
  EXPECT_THAT(text, HasSubstr("4.0\n\na.png: 1 detection (setting logn"))
      << "tables separated by one blank line";
}

TEST(HumanOutputTest, JsonLinesAreTheScriptFormat) {
  v1::DetectResponse response;
  response.set_version(1);
  v1::CalibrationResult* result = response.add_results();
  *result->mutable_setting() = Method(v1::CALIBRATION_METHOD_LOGN, "logn");
  v1::ImageDetections* image = result->add_image_detections();
  image->set_image_id("val/\"38\".png");
  *image->add_detections() = Det(1, 0.828864f, 81.03f, 75.42f, 128, 128);
  *image->add_detections() = Det(3, 0.41f, 0, 1, 2, 3);
  result->add_image_detections()->set_image_id("empty.png");
  response.set_model_version(4);
  EXPECT_EQ(DetectionJsonLines(response),
            "{\"image\":\"val/\\\"38\\\".png\",\"setting\":\"logn\",\"version\":1,"
            "\"model_version\":4,\"calibration_fallback\":false,\"detections\":["
            "{\"category_id\":1,\"score\":0.828864,\"box\":[81.03,75.42,128.00,128.00]},"
            "{\"category_id\":3,\"score\":0.41,\"box\":[0.00,1.00,2.00,3.00]}]}\n"
            "{\"image\":\"empty.png\",\"setting\":\"logn\",\"version\":1,\"model_version\":4,"
            "\"calibration_fallback\":false,\"detections\":[]}\n");
  response.set_calibration_fallback(true);
  EXPECT_THAT(DetectionJsonLines(response), HasSubstr(",\"calibration_fallback\":true,"));
  // Several settings: one line per image and setting, image by image.
  const std::string lines = DetectionJsonLines(TwoImagesTwoSettings());
  std::vector<std::string> keys;
  for (absl::string_view line : absl::StrSplit(lines, '\n', absl::SkipEmpty())) {
    keys.push_back(std::string(line.substr(0, line.find(",\"version\""))));
  }
  EXPECT_THAT(keys, ElementsAre("{\"image\":\"a.png\",\"setting\":\"none\"",
                                "{\"image\":\"a.png\",\"setting\":\"logn\"",
                                "{\"image\":\"b.jpg\",\"setting\":\"none\"",
                                "{\"image\":\"b.jpg\",\"setting\":\"logn\""));
}

TEST(HumanOutputTest, SettingsInWords) {
  v1::CalibrationSetting s;
  EXPECT_EQ(DescribeSetting(s), "LogN α=1 γ=1 β=min μ");
  s.set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(DescribeSetting(s), "none (raw logits)");
  s.set_calibration_method(v1::CALIBRATION_METHOD_LOGA);
  EXPECT_EQ(DescribeSetting(s), "LogA τ=1");
  s.mutable_loga()->set_tau(0.5);
  EXPECT_EQ(DescribeSetting(s), "LogA τ=0.5");
  s.set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  s.mutable_logn()->set_use_std(false);
  EXPECT_EQ(DescribeSetting(s), "LogN α=1 γ=0 β=min μ");
  s.mutable_logn()->clear_use_std();
  s.mutable_logn()->set_mean_weight(0.75);
  s.mutable_logn()->set_std_exponent(0.5);
  s.mutable_logn()->set_beta_policy(v1::BETA_POLICY_CONSTANT);
  s.mutable_logn()->set_beta_constant(-4);
  EXPECT_EQ(DescribeSetting(s), "LogN α=0.75 γ=0.5 β=-4");
  v1::LogNParams bn;
  bn.set_use_beta(false);
  bn.set_normalize_background(true);
  bn.set_epsilon(1e-3);
  *s.mutable_logn() = bn;
  EXPECT_EQ(DescribeSetting(s), "LogN α=1 γ=1 no β ε=0.001, background normalised");
  s.mutable_logn()->set_use_beta(true);
  s.mutable_logn()->set_official_formula(true);
  s.mutable_logn()->set_beta_policy(v1::BETA_POLICY_BACKGROUND_MEAN);
  EXPECT_THAT(DescribeSetting(s), StartsWith("LogN α=1 γ=1 β=background μ ε=0.001, official"));
}

TEST(HumanOutputTest, DefaultCalibrationBuiltInOrProfile) {
  v1::GetModelInfoResponse info;
  EXPECT_EQ(DefaultCalibrationText(info),
            "built-in LogN α=1 γ=1 β=min μ (no calibration profile)");
  info.set_default_calibration_version(3);
  v1::CalibrationSetting* s = info.mutable_default_calibration();
  s->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  s->mutable_logn()->set_mean_weight(1);
  s->mutable_logn()->set_std_exponent(0);
  EXPECT_EQ(DefaultCalibrationText(info), "LogN α=1 γ=0 β=min μ (profile of version 3)");
  v1::StatisticsVersion* active = info.mutable_active_statistics_version();
  active->set_version(3);
  v1::CalibrationProfile* profile = active->mutable_calibration_profile();
  *profile->mutable_default_setting() = *s;
  EXPECT_EQ(DefaultCalibrationText(info),
            "LogN α=1 γ=0 β=min μ (profile of version 3, set by hand)");
  profile->mutable_tuning()->set_objective("ap");
  EXPECT_EQ(DefaultCalibrationText(info),
            "LogN α=1 γ=0 β=min μ (profile of version 3, tuned: objective ap)");
  v1::HeldOutFigures* tuned = profile->mutable_tuning()->add_heldout();
  tuned->set_setting_name("tuned");
  tuned->set_ap_mean(0.3125);
  v1::HeldOutFigures* logn = profile->mutable_tuning()->add_heldout();
  logn->set_setting_name("logn");
  logn->set_ap_mean(0.191);
  EXPECT_EQ(DefaultCalibrationText(info),
            "LogN α=1 γ=0 β=min μ (profile of version 3, tuned: objective ap, held-out AP 31.2 "
            "vs 19.1 for built-in LogN)");
}

// `text` with its wrapped values joined back into one line each.
std::string Unwrapped(const std::string& text) {
  return absl::StrReplaceAll(text, {{"\n" + std::string(21, ' '), " "}});
}

TEST(HumanOutputTest, InfoSummaryNamesWhatAPersonAsks) {
  v1::GetModelInfoResponse info;
  *info.mutable_manifest() = ThreeClasses();
  v1::ModelManifest& m = *info.mutable_manifest();
  m.set_description(std::string(30, 'x') + " " + std::string(40, 'y') + " " + std::string(40, 'z'));
  m.set_background(v1::BACKGROUND_POSITION_LAST);
  m.set_box_layout(v1::BOX_LAYOUT_CLASS_SPECIFIC);
  m.set_has_classify_rois(true);
  m.mutable_input()->mutable_shorter_side()->set_shorter_side(800);
  m.mutable_input()->mutable_shorter_side()->set_max_longer_side(1333);
  m.mutable_input()->set_channel_order(v1::CHANNEL_ORDER_BGR);
  m.mutable_input()->set_value_range(v1::VALUE_RANGE_BYTE);
  for (float x : {103.53f, 116.28f, 123.675f}) m.mutable_input()->add_pixel_mean(x);
  for (int k = 0; k < 3; ++k) m.mutable_input()->add_pixel_std(1);
  info.set_model_sha256(std::string(64, 'a'));
  info.set_device("cpu");
  std::string wrapped = InfoSummary(info);
  std::string text = Unwrapped(wrapped);
  EXPECT_THAT(text, StartsWith("model                demo\ndescription"))
      << "no model version line when the server does not say";
  EXPECT_THAT(wrapped, HasSubstr("\ndescription          " + std::string(30, 'x') + " " +
                              std::string(40, 'y') + "\n                     " +
                              std::string(40, 'z') + "\n"))
      << "wrapped at 100 columns under the value";
  EXPECT_THAT(text, HasSubstr("\nsha256               " + std::string(64, 'a') + "\n"));
  EXPECT_THAT(text, HasSubstr("\nclasses              3 foreground classes, ids 1-3"));
  EXPECT_THAT(text, HasSubstr("\n  rare               1    disc_cool-solid\n"));
  EXPECT_THAT(text, HasSubstr("\n  common             1    ring\n"));
  EXPECT_THAT(text, HasSubstr("\n  frequent           1    disc_warm-solid\n"));
  EXPECT_THAT(text, HasSubstr("background logit last"));
  EXPECT_THAT(text, HasSubstr("class-specific boxes"));
  EXPECT_THAT(text, HasSubstr("classify_rois"));
  EXPECT_THAT(text, HasSubstr("shorter side resized to 800 px, longer at most 1333 px; BGR, "
                              "pixels 0-255, mean (103.53, 116.28, 123.675) std (1, 1, 1)"));
  EXPECT_THAT(text, HasSubstr("\nactive statistics    none active"));
  EXPECT_THAT(text, HasSubstr("\ndefault calibration  built-in LogN α=1 γ=1 β=min μ"));

  info.set_active_version(2);
  v1::StatisticsVersion* v = info.mutable_active_statistics_version();
  v->set_version(2);
  v->set_rows_seen(1287790);
  v->set_images_seen(2636);
  v->set_description("full train split");
  v->mutable_sampling()->set_roi_source(v1::ROI_SOURCE_PROPOSALS);
  v->mutable_sampling()->set_images(2636);
  v->mutable_sampling()->set_rois(1287790);
  v->mutable_sampling()->set_positive_rois(104890);
  v->mutable_sampling()->set_positive_fraction(0.25);
  text = Unwrapped(InfoSummary(info));
  EXPECT_THAT(text, HasSubstr("\nactive statistics    version 2, created -: 1287790 rows from 2636 "
                              "images, exact; RoIs from proposals, 489 per image, 8.1% positive "
                              "\"full train split\"\n"));

  // Many classes: each group's line lists what fits and counts the rest.
  for (int id = 10; id < 200; ++id) {
    v1::ClassInfo* c = m.add_classes();
    c->set_id(id);
    c->set_name(absl::StrCat("class_", id));
    c->set_frequency(v1::FREQUENCY_GROUP_RARE);
  }
  wrapped = InfoSummary(info);
  EXPECT_THAT(wrapped,
              HasSubstr("\n  rare               191  disc_cool-solid, class_10, class_11,"));
  EXPECT_THAT(wrapped, HasSubstr(" more\n"));
  for (absl::string_view line : absl::StrSplit(wrapped, '\n')) {
    EXPECT_LE(line.size(), 100u) << line;
  }
}

TEST(HumanOutputTest, ClassTableListsEveryClass) {
  EXPECT_EQ(ClassTable(ThreeClasses()),
            "    id  group    images  instances  name\n"
            "     1  f            10         12  disc_warm-solid\n"
            "     2  r            20         24  disc_cool-solid\n"
            "     3  c            30         36  ring\n");
}

}  // namespace
}  // namespace logn::cli
