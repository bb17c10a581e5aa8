#include "calibration/layout.h"

#include "calibration/statistics.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

TEST(LogitLayoutTest, ColumnsForEachBackgroundPosition) {
  const LogitLayout first{3, BackgroundPosition::kFirst};
  EXPECT_EQ(first.width(), 4);
  EXPECT_EQ(first.background_column(), 0);
  EXPECT_EQ(first.foreground_column(0), 1);
  EXPECT_EQ(first.foreground_column(2), 3);

  const LogitLayout last{3, BackgroundPosition::kLast};
  EXPECT_EQ(last.width(), 4);
  EXPECT_EQ(last.background_column(), 3);
  EXPECT_EQ(last.foreground_column(0), 0);

  const LogitLayout none{3, BackgroundPosition::kNone};
  EXPECT_EQ(none.width(), 3);
  EXPECT_EQ(none.background_column(), -1);
  EXPECT_FALSE(none.has_background());
  EXPECT_EQ(none.foreground_column(2), 2);
}

TEST(LogitLayoutTest, ValidateAndParse) {
  EXPECT_TRUE((LogitLayout{1203, BackgroundPosition::kLast}.Validate().ok()));
  EXPECT_EQ((LogitLayout{0, BackgroundPosition::kLast}.Validate().code()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((LogitLayout{-4, BackgroundPosition::kLast}.Validate().code()),
            absl::StatusCode::kInvalidArgument);
  BackgroundPosition position;
  for (BackgroundPosition p :
       {BackgroundPosition::kFirst, BackgroundPosition::kLast, BackgroundPosition::kNone}) {
    ASSERT_TRUE(ParseBackgroundPosition(BackgroundPositionName(p), &position).ok());
    EXPECT_EQ(position, p);
  }
  EXPECT_EQ(ParseBackgroundPosition("middle", &position).code(),
            absl::StatusCode::kInvalidArgument);
  AccumulationMethod method;
  ASSERT_TRUE(ParseAccumulationMethod("ema", &method).ok());
  EXPECT_EQ(method, AccumulationMethod::kEma);
  EXPECT_EQ(ParseAccumulationMethod("welford", &method).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
