#include "calibration/statistics_codec.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

Statistics Sample() {
  Statistics stats;
  stats.layout = {3, BackgroundPosition::kFirst};
  stats.count = 123456789012;
  stats.mean = {7.25, -1.0 / 3.0, 1e-300, -5.5};
  stats.variance = {16.0, 2.0 / 3.0, 0.0, 1e300};
  stats.method = AccumulationMethod::kEma;
  stats.momentum = 5e-5;
  stats.provenance.model_name = "demo-ce";
  stats.provenance.model_sha256 = std::string(64, 'a');
  stats.provenance.created_at = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789);
  stats.provenance.description = "train split, \"quoted\"\nnewline";
  stats.provenance.images_seen = 100;
  stats.provenance.batches_seen = 7;
  return stats;
}

void ExpectSame(const Statistics& a, const Statistics& b) {
  EXPECT_EQ(a.layout, b.layout);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.mean, b.mean);  // bit-exact: JSON prints doubles round-trippably
  EXPECT_EQ(a.variance, b.variance);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.momentum, b.momentum);
  EXPECT_EQ(a.total_weight, b.total_weight);
  EXPECT_EQ(a.provenance.model_name, b.provenance.model_name);
  EXPECT_EQ(a.provenance.model_sha256, b.provenance.model_sha256);
  EXPECT_EQ(a.provenance.created_at, b.provenance.created_at);
  EXPECT_EQ(a.provenance.description, b.provenance.description);
  EXPECT_EQ(a.provenance.images_seen, b.provenance.images_seen);
  EXPECT_EQ(a.provenance.batches_seen, b.provenance.batches_seen);
}

TEST(StatisticsCodecTest, BinaryRoundTrip) {
  const Statistics stats = Sample();
  ExpectSame(StatisticsFromBinary(StatisticsToBinary(stats)).value(), stats);
}

TEST(StatisticsCodecTest, JsonRoundTripAndDocumentedFieldNames) {
  const Statistics stats = Sample();
  const std::string json = StatisticsToJson(stats);
  EXPECT_THAT(json, HasSubstr("\"num_classes\": 3"));
  EXPECT_THAT(json, HasSubstr("\"background\": \"BACKGROUND_POSITION_FIRST\""));
  EXPECT_THAT(json, HasSubstr("\"method\": \"ACCUMULATION_METHOD_EMA\""));
  EXPECT_THAT(json, HasSubstr("\"created_at\": \"2023-11-14T22:13:20.123456789Z\""));
  ExpectSame(StatisticsFromJson(json).value(), stats);
}

TEST(StatisticsCodecTest, JsonAcceptsCamelCaseAndHandWrittenFiles) {
  const auto stats = StatisticsFromJson(R"({
    "layout": {"numClasses": 2, "background": "BACKGROUND_POSITION_LAST"},
    "count": 10, "mean": [1, 2, 3], "variance": [0.5, 0.25, 4],
    "method": "ACCUMULATION_METHOD_EXACT"})");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->layout.width(), 3);
  EXPECT_EQ(stats->mean[2], 3.0);
  // Written before weights existed: unweighted, the weight is the row count.
  EXPECT_EQ(stats->total_weight, 0.0);
  EXPECT_EQ(stats->effective_weight(), 10.0);
}

TEST(StatisticsCodecTest, TotalWeightRoundTrips) {
  Statistics stats = Sample();
  stats.method = AccumulationMethod::kExact;
  stats.momentum = 0;
  stats.total_weight = 1234.0625;
  ExpectSame(StatisticsFromBinary(StatisticsToBinary(stats)).value(), stats);
  const std::string json = StatisticsToJson(stats);
  EXPECT_THAT(json, HasSubstr("\"total_weight\": 1234.0625"));
  ExpectSame(StatisticsFromJson(json).value(), stats);
  EXPECT_EQ(stats.effective_weight(), 1234.0625);
}

TEST(StatisticsCodecTest, MalformedInputsAreInvalidArgument) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {"{", "does not parse"},
      {R"({"layout": {"num_classes": 2, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, 1, 1], "method": "ACCUMULATION_METHOD_EXACT"})",
       "need 3 means"},
      {R"({"layout": {"num_classes": 2}, "mean": [1, 2, 3], "variance": [1, 1, 1],
          "method": "ACCUMULATION_METHOD_EXACT"})",
       "layout.background"},
      {R"({"layout": {"num_classes": 0, "background": "BACKGROUND_POSITION_LAST"}})",
       "number of foreground classes"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, -1], "method": "ACCUMULATION_METHOD_EXACT"})",
       "variance[1]"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, "NaN"], "variance": [1, 1], "method": "ACCUMULATION_METHOD_EXACT"})",
       "mean[1]"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, 1]})",
       "method"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, 1], "method": "ACCUMULATION_METHOD_EMA"})",
       "momentum"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, 1], "method": "ACCUMULATION_METHOD_EXACT",
          "total_weight": -2})",
       "total_weight"},
      {R"({"layout": {"num_classes": 1, "background": "BACKGROUND_POSITION_LAST"},
          "mean": [1, 2], "variance": [1, 1], "method": "ACCUMULATION_METHOD_EXACT",
          "total_weight": "Infinity"})",
       "total_weight"},
      {R"({"unknown_field": 1})", "does not parse"},
  };
  for (const Case& c : cases) {
    const auto result = StatisticsFromJson(c.json);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(StatisticsCodecTest, GarbageBinaryIsInvalidArgument) {
  EXPECT_EQ(StatisticsFromBinary("\xff\xff\xff\xff garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatisticsFromBinary("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
