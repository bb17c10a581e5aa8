#include "server/core/drift_monitor.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

// Two foreground classes (rare, frequent) and a background column first.
v1::ModelManifest TwoClassManifest() {
  v1::ModelManifest manifest;
  manifest.set_name("m");
  v1::ClassInfo* rare = manifest.add_classes();
  rare->set_id(1);
  rare->set_name("rare_thing");
  rare->set_frequency(v1::FREQUENCY_GROUP_RARE);
  v1::ClassInfo* frequent = manifest.add_classes();
  frequent->set_id(2);
  frequent->set_name("frequent_thing");
  frequent->set_frequency(v1::FREQUENCY_GROUP_FREQUENT);
  return manifest;
}

LogitLayout Layout() { return LogitLayout{2, BackgroundPosition::kFirst}; }

// `rows` rows of 3 logits: background, then the two classes around `mean` with spread 1.
std::vector<float> Rows(int rows, float mean) {
  std::vector<float> values;
  for (int r = 0; r < rows; ++r) {
    const float noise = static_cast<float>(r % 5) - 2.0f;
    values.insert(values.end(), {0.0f, mean + noise, mean - noise});
  }
  return values;
}

DriftMonitorOptions CountWindow(int64_t rows, double sample_rate = 1.0) {
  DriftMonitorOptions options;
  options.sample_rate = sample_rate;
  options.window.duration = absl::ZeroDuration();
  options.window.rows = rows;
  options.window.buckets = 2;
  return options;
}

void Observe(DriftMonitor& monitor, const std::vector<float>& values) {
  const float* data = values.data();
  const int64_t rows = static_cast<int64_t>(values.size() / 3);
  monitor.Observe(absl::MakeConstSpan(&data, 1), absl::MakeConstSpan(&rows, 1));
}

TEST(DriftMonitorTest, SamplesExactlyTheConfiguredFraction) {
  DriftMonitor monitor(TwoClassManifest(), Layout(), CountWindow(100, 0.05), nullptr);
  int sampled = 0;
  for (int i = 0; i < 2000; ++i) sampled += monitor.Sample() ? 1 : 0;
  EXPECT_EQ(sampled, 100);
  DriftMonitor off(TwoClassManifest(), Layout(), CountWindow(100, 0.0), nullptr);
  EXPECT_FALSE(off.Sample());
}

TEST(DriftMonitorTest, FirstWindowBecomesTheStoredReferenceThenShiftsScore) {
  int stores = 0;
  int64_t stored_rows = 0;
  DriftMonitor monitor(TwoClassManifest(), Layout(), CountWindow(100),
                       [&](const Statistics& statistics, const std::string& description) {
                         ++stores;
                         stored_rows = statistics.count;
                         EXPECT_THAT(description, HasSubstr("first window"));
                         return absl::StatusOr<int64_t>(42);
                       });
  EXPECT_EQ(monitor.Report().state, v1::DRIFT_STATE_COLLECTING_REFERENCE);
  Observe(monitor, Rows(60, 1.0f));
  EXPECT_EQ(stores, 0) << "60 of 100 rows: still collecting";
  Observe(monitor, Rows(60, 1.0f));
  EXPECT_EQ(stores, 1);
  EXPECT_EQ(stored_rows, 120);
  DriftStatusReport report = monitor.Report();
  EXPECT_EQ(report.state, v1::DRIFT_STATE_MONITORING);
  EXPECT_EQ(report.reference_version, 42);
  ASSERT_TRUE(report.report.has_value());
  EXPECT_NEAR(report.report->overall.drift.score, 0.0, 1e-12);

  // The live window moves on to shifted rows: both classes' means move by 3 reference σ's.
  Observe(monitor, Rows(60, 1.0f + 3.0f * std::sqrt(2.0f)));
  Observe(monitor, Rows(60, 1.0f + 3.0f * std::sqrt(2.0f)));
  report = monitor.Report();
  ASSERT_TRUE(report.report.has_value());
  EXPECT_NEAR(report.report->overall.drift.mean_shift, 3.0, 0.2);
  EXPECT_EQ(stores, 1) << "the reference is taken once";
}

TEST(DriftMonitorTest, CaptureOnDemandAndFromTheNextWindow) {
  int64_t next_version = 7;
  DriftMonitor monitor(TwoClassManifest(), Layout(), CountWindow(1000),
                       [&](const Statistics&, const std::string&) {
                         return absl::StatusOr<int64_t>(next_version++);
                       });
  EXPECT_EQ(monitor.CaptureReference(false, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(monitor.LiveStatistics().status().code(), absl::StatusCode::kFailedPrecondition);
  Observe(monitor, Rows(50, 0.0f));
  absl::StatusOr<int64_t> captured = monitor.CaptureReference(false, "now");
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_EQ(*captured, 7);
  EXPECT_EQ(monitor.Report().state, v1::DRIFT_STATE_MONITORING);
  EXPECT_EQ(*monitor.CaptureReference(true, ""), 0);
  EXPECT_EQ(monitor.Report().state, v1::DRIFT_STATE_COLLECTING_REFERENCE);
  ASSERT_TRUE(monitor.LiveStatistics().ok());
  EXPECT_EQ(monitor.LiveStatistics()->count, 50);
}

TEST(DriftMonitorTest, AFailedStoreKeepsTheReferenceInMemoryAndSaysWhy) {
  DriftMonitor monitor(TwoClassManifest(), Layout(), CountWindow(1000),
                       [](const Statistics&, const std::string&) {
                         return absl::StatusOr<int64_t>(absl::UnavailableError("db down"));
                       });
  Observe(monitor, Rows(50, 0.0f));
  const absl::Status status = monitor.CaptureReference(false, "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("db down"));
  const DriftStatusReport report = monitor.Report();
  EXPECT_EQ(report.state, v1::DRIFT_STATE_MONITORING);
  EXPECT_EQ(report.reference_version, 0);
  EXPECT_TRUE(report.report.has_value());
}

TEST(DriftMonitorTest, OptionsAreValidated) {
  EXPECT_TRUE(CountWindow(100).Validate().ok());
  EXPECT_EQ(CountWindow(100, 1.5).Validate().code(), absl::StatusCode::kInvalidArgument);
  DriftMonitorOptions bad_k = CountWindow(100);
  bad_k.gauge_top_k = 50;
  EXPECT_EQ(bad_k.Validate().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> groups = DriftClassGroups(TwoClassManifest());
  EXPECT_EQ(groups, (std::vector<int32_t>{0, 2}));
}

}  // namespace
}  // namespace logn
