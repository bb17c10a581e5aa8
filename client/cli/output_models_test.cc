// The output of `logn models` and `logn drift`, and the serving model version `logn detect` and
// `logn info` print: responses built by hand, the exact lines people read.
#include <string>

#include "client/cli/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kSecondsAt14h = 1796220000;  // 2026-12-02T14:00:00Z

v1::ListModelsResponse ThreeModelVersions() {
  v1::ListModelsResponse r;
  r.set_repository("/srv/models");
  r.mutable_scanned_at()->set_seconds(kSecondsAt14h + 952);
  v1::ModelVersionStatus* a = r.add_model_versions();
  a->set_model_name("lvis_r50");
  a->set_model_version(1);
  a->set_state(v1::MODEL_VERSION_STATE_AVAILABLE);
  a->set_model_sha256("7b9aa6927da81f60a5780692e128c20734cba57c4c3dc325cc45bff870dc3b69");
  a->set_memory_bytes(47395635);  // 45.2 MiB
  a->set_active_version(3);
  v1::ModelVersionStatus* b = r.add_model_versions();
  b->set_model_name("lvis_r50");
  b->set_model_version(12);
  b->set_state(v1::MODEL_VERSION_STATE_LOADING);
  b->set_is_default(true);
  b->set_pinned(true);
  b->set_reason("warming up");
  b->set_model_sha256("0c1f2e3d4c5b6a79880f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566");
  v1::ModelVersionStatus* c = r.add_model_versions();
  c->set_model_name("coco");
  c->set_model_version(1);
  c->set_state(v1::MODEL_VERSION_STATE_FAILED);
  c->set_reason("not a TorchScript file");
  return r;
}

TEST(ModelsOutputTest, OneRowPerModelVersion) {
  EXPECT_EQ(ModelsListing(ThreeModelVersions()),
            "repository /srv/models, scanned 2026-12-02T14:15:52Z\n"
            "model     version  state      default  sha256        memory MiB  statistics  reason\n"
            "lvis_r50        1  available           7b9aa6927da8        45.2           3  -\n"
            "lvis_r50       12  loading    *        0c1f2e3d4c5b           -           -  "
            "pinned (loaded by LoadModel); warming up\n"
            "coco            1  failed              -                      -           -  "
            "not a TorchScript file\n");
}

TEST(ModelsOutputTest, SingleModelModeHasNoRepositoryLine) {
  v1::ListModelsResponse r;
  v1::ModelVersionStatus* v = r.add_model_versions();
  v->set_model_name("demo");
  v->set_model_version(1);
  v->set_state(v1::MODEL_VERSION_STATE_AVAILABLE);
  v->set_is_default(true);
  EXPECT_EQ(ModelsListing(r),
            "model  version  state      default  sha256        memory MiB  statistics  reason\n"
            "demo         1  available  *        -                      -           -  -\n")
      << "the model column is at least as wide as its header";
  EXPECT_EQ(MebibytesText(3 << 20), "3.0");
  EXPECT_EQ(MebibytesText(28278), "<0.1") << "a tiny model does not read as using nothing";
  EXPECT_EQ(MemoryText(28278), "27.6 KiB");
  EXPECT_EQ(MemoryText(47395635), "45.2 MiB");
  EXPECT_EQ(MemoryText(int64_t{3} << 30), "3.0 GiB");
  EXPECT_EQ(MemoryText(512), "512 bytes");
}

void SetScore(v1::DriftScore* s, double mean_shift, double log_variance_ratio, double score) {
  s->set_mean_shift(mean_shift);
  s->set_log_variance_ratio(log_variance_ratio);
  s->set_score(score);
}

v1::GetDriftResponse Monitoring() {
  v1::GetDriftResponse d;
  d.set_model_name("lvis_r50");
  d.set_model_version(2);
  d.set_state(v1::DRIFT_STATE_MONITORING);
  d.set_reference_version(7);
  v1::DriftWindow* ref = d.mutable_reference_window();
  ref->set_rows_seen(120000);
  ref->set_requests_seen(400);
  ref->mutable_start_at()->set_seconds(kSecondsAt14h);
  ref->mutable_end_at()->set_seconds(kSecondsAt14h + 3600);
  v1::DriftWindow* live = d.mutable_live_window();
  live->set_rows_seen(80000);
  live->set_requests_seen(310);
  live->mutable_start_at()->set_seconds(kSecondsAt14h + 3600);
  live->mutable_end_at()->set_seconds(kSecondsAt14h + 3600 + 1448);
  d.mutable_window_duration()->set_seconds(3600);
  d.set_sample_rate(0.1);
  d.set_classes_scored(95);
  SetScore(d.mutable_overall(), 0.12, 0.05, 0.13);
  const struct {
    v1::FrequencyGroup group;
    int classes;
    double mean_shift, ratio, score;
  } kGroups[] = {{v1::FREQUENCY_GROUP_RARE, 20, 0.3, 0.2, 0.31},
                 {v1::FREQUENCY_GROUP_COMMON, 33, 0.15, 0.1, 0.155},
                 {v1::FREQUENCY_GROUP_FREQUENT, 42, 0.1, 0.0667, 0.1033}};
  for (const auto& g : kGroups) {
    v1::GroupDrift* out = d.add_groups();
    out->set_frequency(g.group);
    out->set_classes(g.classes);
    SetScore(out->mutable_drift(), g.mean_shift, g.ratio, g.score);
  }
  v1::ClassDrift* c = d.add_classes();
  c->set_category_id(17);
  c->set_name("disc_warm-dots");
  c->set_frequency(v1::FREQUENCY_GROUP_RARE);
  SetScore(c->mutable_drift(), 1.2, -0.4, 1.2);
  c = d.add_classes();
  c->set_category_id(3);
  c->set_name("ring");
  c->set_frequency(v1::FREQUENCY_GROUP_FREQUENT);
  SetScore(c->mutable_drift(), 0.25, 0.9, 0.9);
  return d;
}

TEST(DriftOutputTest, MonitoringReportHasWindowsGroupsAndTopClasses) {
  EXPECT_EQ(DriftReport(Monitoring()),
            "model lvis_r50 version 2: drift monitoring\n"
            "reference      statistics version 7: 120000 rows, 400 requests, "
            "2026-12-02T14:00:00Z to 2026-12-02T15:00:00Z (1h)\n"
            "live window    80000 rows, 310 requests, "
            "2026-12-02T15:00:00Z to 2026-12-02T15:24:08Z (24m8s)\n"
            "window         1h; 10% of requests sampled\n"
            "classes scored 95 (classes with too few live rows are left out)\n"
            "\n"
            "group       classes  mean shift  log var ratio   score\n"
            "overall          95       0.120          0.050   0.130\n"
            "rare             20       0.300          0.200   0.310\n"
            "common           33       0.150          0.100   0.155\n"
            "frequent         42       0.100          0.067   0.103\n"
            "\n"
            "top 2 classes by score\n"
            "    id  name            group  mean shift  log var ratio   score\n"
            "    17  disc_warm-dots  r           1.200         -0.400   1.200\n"
            "     3  ring            f           0.250         +0.900   0.900\n");
}

TEST(DriftOutputTest, OtherStatesShowNoScores) {
  v1::GetDriftResponse d = Monitoring();
  d.set_state(v1::DRIFT_STATE_COLLECTING_REFERENCE);
  d.set_reference_version(0);
  d.mutable_live_window()->clear_end_at();
  d.clear_window_duration();
  d.set_window_rows(50000);
  EXPECT_EQ(DriftReport(d),
            "model lvis_r50 version 2: drift collecting-reference (this window becomes the "
            "reference)\n"
            "live window    80000 rows, 310 requests, since 2026-12-02T15:00:00Z\n"
            "window         50000 rows; 10% of requests sampled\n");
  d.set_state(v1::DRIFT_STATE_DISABLED);
  d.clear_model_name();
  EXPECT_EQ(DriftReport(d),
            "model version 2: drift disabled (the server runs with --drift_sample_rate=0)\n");
  // Monitoring against a reference that was not stored; no classes asked for.
  d = Monitoring();
  d.set_reference_version(0);
  d.clear_classes();
  *d.mutable_live_window()->mutable_end_at() = d.live_window().start_at();
  const std::string text = DriftReport(d);
  EXPECT_THAT(text, HasSubstr("2026-12-02T15:00:00Z to 2026-12-02T15:00:00Z (0s)\n"));
  EXPECT_THAT(text, HasSubstr("\nreference      not stored: 120000 rows"));
  EXPECT_THAT(text, Not(HasSubstr("top ")));
}

TEST(ServingOutputTest, DetectNamesTheModelVersionAndTheFallback) {
  v1::CalibrationSetting model_default, none;
  model_default.set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  none.set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  const std::vector<v1::CalibrationSetting> requested = {none, model_default};
  v1::DetectResponse response;
  EXPECT_EQ(ServingLine(response, "demo", requested), "") << "a server that does not say";
  response.set_model_version(3);
  EXPECT_EQ(ServingLine(response, "demo", requested), "model demo version 3\n");
  EXPECT_EQ(ServingLine(response, "", requested), "model version 3\n");
  response.set_calibration_fallback(true);
  EXPECT_EQ(ServingLine(response, "demo", requested),
            "model demo version 3: no active statistics, the default calibration fell back to "
            "another method\n")
      << "no results to name it";
  // The result of the MODEL_DEFAULT request names the method the server used.
  *response.add_results()->mutable_setting() = none;
  v1::CalibrationSetting* used = response.add_results()->mutable_setting();
  used->set_calibration_method(v1::CALIBRATION_METHOD_LOGA);
  used->set_name("default (fallback: no active statistics)");
  EXPECT_EQ(ServingLine(response, "demo", requested),
            "model demo version 3: no active statistics, the default calibration fell back to "
            "loga\n");
  EXPECT_THAT(FallbackWarning(3), HasSubstr("model version 3 has no active statistics"));
}

TEST(ServingOutputTest, InfoShowsTheModelVersionMemoryAndFallback) {
  v1::GetModelInfoResponse info;
  info.mutable_manifest()->set_name("demo");
  info.set_model_version(2);
  info.set_memory_bytes(5 << 20);
  const std::string text = InfoSummary(info);
  EXPECT_THAT(text, HasSubstr("model                demo\n"
                              "model version        2\n"
                              "memory               5.0 MiB (estimate: parameters, buffers, "
                              "warm-up working memory)\n"));
  info.set_calibration_fallback(true);
  info.mutable_default_calibration()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(DefaultCalibrationText(info),
            "none (raw logits) (fallback: this model version has no active statistics)");
}

}  // namespace
}  // namespace logn::cli
