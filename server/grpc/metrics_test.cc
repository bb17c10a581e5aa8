#include "server/grpc/metrics.h"

#include <algorithm>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace logn {
namespace {

using ::prometheus::ClientMetric;
using ::prometheus::MetricFamily;
using ::testing::HasSubstr;
using Labels = std::vector<ClientMetric::Label>;

// The exported sample of family `name` whose labels are exactly `labels` (order-insensitive),
// as a scrape would see it; null when there is none.
class Scrape {
 public:
  explicit Scrape(const ServerMetrics& metrics) : families_(metrics.registry()->Collect()) {}

  const MetricFamily* Family(const std::string& name) const {
    for (const MetricFamily& family : families_) {
      if (family.name == name) return &family;
    }
    return nullptr;
  }

  const ClientMetric* Sample(const std::string& name, Labels labels) const {
    const MetricFamily* family = Family(name);
    if (family == nullptr) return nullptr;
    std::sort(labels.begin(), labels.end());
    for (const ClientMetric& metric : family->metric) {
      Labels have = metric.label;
      std::sort(have.begin(), have.end());
      if (have == labels) return &metric;
    }
    return nullptr;
  }

  std::string Text() const { return prometheus::TextSerializer().Serialize(families_); }

 private:
  std::vector<MetricFamily> families_;
};

// Cumulative count of the bucket whose upper bound is `le`.
uint64_t BucketCount(const ClientMetric& metric, double le) {
  for (const ClientMetric::Bucket& bucket : metric.histogram.bucket) {
    if (bucket.upper_bound == le) return bucket.cumulative_count;
  }
  ADD_FAILURE() << "no bucket le=" << le;
  return 0;
}

TEST(ServerMetricsTest, RequestsCountByMethodAndCodeAndTimeByMethod) {
  ServerMetrics metrics;
  metrics.RecordRequest("Detect", absl::StatusCode::kOk, absl::Milliseconds(3));
  metrics.RecordRequest("Detect", absl::StatusCode::kOk, absl::Milliseconds(20));
  metrics.RecordRequest("Detect", absl::StatusCode::kInvalidArgument, absl::Milliseconds(500));
  metrics.RecordRequest("Apply", absl::StatusCode::kOk, absl::Seconds(40));
  const Scrape scrape(metrics);

  const ClientMetric* ok =
      scrape.Sample("logn_requests_total", {{"method", "Detect"}, {"code", "OK"}});
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->counter.value, 2);
  const ClientMetric* invalid = scrape.Sample(
      "logn_requests_total", {{"method", "Detect"}, {"code", "INVALID_ARGUMENT"}});
  ASSERT_NE(invalid, nullptr);
  EXPECT_EQ(invalid->counter.value, 1);
  EXPECT_EQ(scrape.Sample("logn_requests_total", {{"method", "Apply"}, {"code", "OK"}})
                ->counter.value,
            1);
  EXPECT_EQ(scrape.Family("logn_requests_total")->metric.size(), 3u);

  const ClientMetric* detect =
      scrape.Sample("logn_request_duration_seconds", {{"method", "Detect"}});
  ASSERT_NE(detect, nullptr);
  EXPECT_EQ(detect->histogram.sample_count, 3u);
  EXPECT_DOUBLE_EQ(detect->histogram.sample_sum, 0.523);
  EXPECT_EQ(BucketCount(*detect, 0.0025), 0u);
  EXPECT_EQ(BucketCount(*detect, 0.005), 1u);
  EXPECT_EQ(BucketCount(*detect, 0.025), 2u);
  EXPECT_EQ(BucketCount(*detect, 0.5), 3u);
  // 40 s is past the last finite bucket (30 s): only +Inf counts it.
  const ClientMetric* apply = scrape.Sample("logn_request_duration_seconds", {{"method", "Apply"}});
  ASSERT_NE(apply, nullptr);
  EXPECT_EQ(BucketCount(*apply, 30), 0u);
  EXPECT_EQ(apply->histogram.bucket.back().cumulative_count, 1u);

  EXPECT_THAT(scrape.Text(), HasSubstr("logn_requests_total{code=\"OK\",method=\"Detect\"} 2"));
}

TEST(ServerMetricsTest, NonFiniteCandidatesAreCountedByStage) {
  ServerMetrics metrics;
  metrics.AddNonFiniteCandidates(3, 0);
  metrics.AddNonFiniteCandidates(1, 5);
  const Scrape scrape(metrics);
  const ClientMetric* raw = scrape.Sample("logn_nonfinite_candidates_total", {{"stage", "raw"}});
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(raw->counter.value, 4);
  const ClientMetric* calibrated =
      scrape.Sample("logn_nonfinite_candidates_total", {{"stage", "calibrated"}});
  ASSERT_NE(calibrated, nullptr);
  EXPECT_EQ(calibrated->counter.value, 5);
}

TEST(ServerMetricsTest, QueueInferenceAndBatchHistograms) {
  ServerMetrics metrics;
  metrics.RecordQueue(absl::Milliseconds(1));
  metrics.RecordInference(absl::Milliseconds(80));
  metrics.RecordInference(absl::Milliseconds(120));
  metrics.RecordBatch(3);
  metrics.RecordBatch(9);
  const Scrape scrape(metrics);

  const ClientMetric* queue = scrape.Sample("logn_queue_duration_seconds", {});
  ASSERT_NE(queue, nullptr);
  EXPECT_EQ(queue->histogram.sample_count, 1u);
  EXPECT_EQ(BucketCount(*queue, 0.001), 1u);

  const ClientMetric* inference = scrape.Sample("logn_inference_duration_seconds", {});
  ASSERT_NE(inference, nullptr);
  EXPECT_EQ(inference->histogram.sample_count, 2u);
  EXPECT_DOUBLE_EQ(inference->histogram.sample_sum, 0.2);
  EXPECT_EQ(BucketCount(*inference, 0.1), 1u);
  EXPECT_EQ(BucketCount(*inference, 0.25), 2u);

  const ClientMetric* batch = scrape.Sample("logn_batch_images", {});
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->histogram.sample_count, 2u);
  EXPECT_EQ(batch->histogram.sample_sum, 12);
  std::vector<double> bounds;
  for (const ClientMetric::Bucket& bucket : batch->histogram.bucket) {
    bounds.push_back(bucket.upper_bound);
  }
  EXPECT_THAT(bounds, ::testing::ElementsAre(1, 2, 4, 8, 16, 32, 64,
                                             std::numeric_limits<double>::infinity()));
  EXPECT_EQ(BucketCount(*batch, 2), 0u);
  EXPECT_EQ(BucketCount(*batch, 4), 1u);
  EXPECT_EQ(BucketCount(*batch, 8), 1u);
  EXPECT_EQ(BucketCount(*batch, 16), 2u);
}

TEST(ServerMetricsTest, CalibrationJobsByStateAndRows) {
  ServerMetrics metrics;
  {
    // Every state is exported from the start, at zero (so dashboards see the series).
    const Scrape fresh(metrics);
    for (const char* state : {"running", "committed", "failed"}) {
      const ClientMetric* jobs = fresh.Sample("logn_calibration_jobs", {{"state", state}});
      ASSERT_NE(jobs, nullptr) << state;
      EXPECT_EQ(jobs->gauge.value, 0) << state;
    }
  }
  metrics.CalibrationJobStarted();
  metrics.CalibrationJobStarted();
  metrics.CalibrationJobStarted();
  metrics.CalibrationJobEnded(/*committed=*/true);
  metrics.CalibrationJobEnded(/*committed=*/false);
  metrics.AddCalibrationRows(100);
  metrics.AddCalibrationRows(28);
  const Scrape scrape(metrics);
  EXPECT_EQ(scrape.Sample("logn_calibration_jobs", {{"state", "running"}})->gauge.value, 1);
  EXPECT_EQ(scrape.Sample("logn_calibration_jobs", {{"state", "committed"}})->gauge.value, 1);
  EXPECT_EQ(scrape.Sample("logn_calibration_jobs", {{"state", "failed"}})->gauge.value, 1);
  EXPECT_EQ(scrape.Sample("logn_calibration_rows_total", {})->counter.value, 128);
}

TEST(ServerMetricsTest, ModelVersionSeriesFollowTheHostedVersions) {
  ServerMetrics metrics;
  metrics.SetModels({{"demo", 1, "available", "abc123", 3, 1000},
                     {"demo", 2, "failed", "", 0, 0}});
  metrics.RecordModelDetect("demo", 1, 4, /*fallback=*/true);
  metrics.RecordModelDetect("other", 9, 4, false);  // not hosted: no series
  {
    const Scrape scrape(metrics);
    const ClientMetric* active = scrape.Sample("logn_stats_active_version",
                                               {{"model", "demo"}, {"model_version", "1"}});
    ASSERT_NE(active, nullptr);
    EXPECT_EQ(active->gauge.value, 3);
    EXPECT_NE(scrape.Sample("logn_model_info",
                            {{"model", "demo"}, {"model_version", "1"}, {"sha256", "abc123"}}),
              nullptr);
    EXPECT_EQ(scrape.Sample("logn_model_memory_bytes", {{"model", "demo"}, {"model_version", "1"}})
                  ->gauge.value,
              1000);
    EXPECT_EQ(scrape.Sample("logn_model_version_state",
                            {{"model", "demo"}, {"model_version", "2"}, {"state", "failed"}})
                  ->gauge.value,
              1);
    EXPECT_EQ(scrape.Sample("logn_model_detect_images_total",
                            {{"model", "demo"}, {"model_version", "1"}})
                  ->counter.value,
              4);
    EXPECT_EQ(scrape.Sample("logn_calibration_fallback_total",
                            {{"model", "demo"}, {"model_version", "1"}})
                  ->counter.value,
              1);
    EXPECT_EQ(scrape.Sample("logn_model_detect_images_total",
                            {{"model", "other"}, {"model_version", "9"}}),
              nullptr);
  }
  // Version 1 retired: its gauges go.
  metrics.SetModels({{"demo", 2, "available", "def456", 0, 2000}});
  const Scrape scrape(metrics);
  EXPECT_EQ(scrape.Sample("logn_stats_active_version", {{"model", "demo"}, {"model_version", "1"}}),
            nullptr);
  EXPECT_EQ(scrape.Sample("logn_model_memory_bytes", {{"model", "demo"}, {"model_version", "2"}})
                ->gauge.value,
            2000);
  const MetricFamily* build = scrape.Family("logn_build_info");
  ASSERT_NE(build, nullptr);
  ASSERT_EQ(build->metric.size(), 1u);
  EXPECT_EQ(build->metric[0].gauge.value, 1);
}

TEST(ServerMetricsTest, DriftGaugesAreBoundedAndReplaced) {
  ServerMetrics metrics;
  ServerMetrics::DriftSeries drift;
  drift.name = "demo";
  drift.version = 1;
  drift.reference_ready = true;
  drift.live_rows = 400;
  drift.scored = true;
  drift.groups[0] = {0.5, 0.4, 0.3};
  drift.groups[1] = {1.5, 1.2, 0.9};
  drift.top_classes = {{"zebra", 3.0}, {"ant", 2.0}};
  metrics.SetDrift({drift});
  {
    const Scrape scrape(metrics);
    EXPECT_EQ(scrape.Sample("logn_drift_score",
                            {{"model", "demo"}, {"model_version", "1"}, {"group", "rare"}})
                  ->gauge.value,
              1.5);
    EXPECT_EQ(scrape.Sample("logn_drift_mean_shift",
                            {{"model", "demo"}, {"model_version", "1"}, {"group", "overall"}})
                  ->gauge.value,
              0.4);
    EXPECT_EQ(scrape.Sample("logn_drift_top_class_score", {{"model", "demo"},
                                                           {"model_version", "1"},
                                                           {"rank", "1"},
                                                           {"class", "zebra"}})
                  ->gauge.value,
              3.0);
    EXPECT_EQ(scrape.Sample("logn_drift_reference_ready", {{"model", "demo"}, {"model_version", "1"}})
                  ->gauge.value,
              1);
  }
  // A new ranking replaces the old label set instead of adding to it.
  drift.top_classes = {{"ant", 2.5}};
  metrics.SetDrift({drift});
  const Scrape scrape(metrics);
  EXPECT_EQ(scrape.Family("logn_drift_top_class_score")->metric.size(), 1u);
  metrics.SetDrift({});
  const Scrape empty(metrics);
  const MetricFamily* scores = empty.Family("logn_drift_score");
  EXPECT_TRUE(scores == nullptr || scores->metric.empty());
}

TEST(ServerMetricsTest, ConcurrentRequestsOnNewMethodsAreAllCounted) {
  ServerMetrics metrics;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Each method's histogram is created on first use, from whichever thread gets there.
        metrics.RecordRequest(t % 2 == 0 ? "Even" : "Odd", absl::StatusCode::kOk,
                              absl::Milliseconds(1));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const Scrape scrape(metrics);
  for (const char* method : {"Even", "Odd"}) {
    EXPECT_EQ(scrape.Sample("logn_requests_total", {{"method", method}, {"code", "OK"}})
                  ->counter.value,
              kThreads / 2 * kPerThread);
    EXPECT_EQ(scrape.Sample("logn_request_duration_seconds", {{"method", method}})
                  ->histogram.sample_count,
              static_cast<uint64_t>(kThreads / 2 * kPerThread));
  }
}

}  // namespace
}  // namespace logn
