#include "client/cli/bench.h"

#include <vector>

#include "gtest/gtest.h"

namespace logn::cli {
namespace {

TEST(BenchTest, PercentileIsTheNearestRank) {
  std::vector<double> values = {5, 1, 4, 2, 3, 10, 9, 8, 7, 6};
  EXPECT_EQ(Percentile(values, 0.5), 5);
  EXPECT_EQ(Percentile(values, 0.9), 9);
  EXPECT_EQ(Percentile(values, 0.99), 10);
  EXPECT_EQ(Percentile(values, 0.0), 1);
  EXPECT_EQ(Percentile(values, 1.0), 10);
  std::vector<double> one = {3.5};
  EXPECT_EQ(Percentile(one, 0.99), 3.5);
  std::vector<double> none;
  EXPECT_EQ(Percentile(none, 0.5), 0);
}

TEST(BenchTest, ReportsCarryEveryLevelAndError) {
  BenchLevel level;
  level.concurrency = 4;
  level.requests = 10;
  level.images_per_second = 12.5;
  level.p99_ms = 7.25;
  level.errors["RESOURCE_EXHAUSTED"] = 3;
  const std::string csv = BenchCsv({level, level});
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  EXPECT_NE(csv.find("4,0,10,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("RESOURCE_EXHAUSTED=3"), std::string::npos);
  const std::string json = BenchJson({level});
  EXPECT_NE(json.find("\"p99\":7.2500"), std::string::npos) << json;
  EXPECT_NE(json.find("\"errors\":{\"RESOURCE_EXHAUSTED\":3}"), std::string::npos) << json;
}

}  // namespace
}  // namespace logn::cli
