#include "calibration/proto_enums.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

TEST(ProtoEnumsTest, CalibrationMethodRoundTripsAndUnspecifiedIsLogN) {
  for (CalibrationMethod m :
       {CalibrationMethod::kNone, CalibrationMethod::kLogN, CalibrationMethod::kLogA}) {
    EXPECT_EQ(CalibrationMethodFromProto(CalibrationMethodToProto(m)).value(), m);
  }
  EXPECT_EQ(CalibrationMethodToProto(CalibrationMethod::kNone), v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(CalibrationMethodToProto(CalibrationMethod::kLogN), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_EQ(CalibrationMethodToProto(CalibrationMethod::kLogA), v1::CALIBRATION_METHOD_LOGA);
  EXPECT_EQ(CalibrationMethodFromProto(v1::CALIBRATION_METHOD_UNSPECIFIED).value(),
            CalibrationMethod::kLogN);
  const absl::Status unknown =
      CalibrationMethodFromProto(static_cast<v1::CalibrationMethod>(99)).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("unknown calibration method 99"));
}

TEST(ProtoEnumsTest, BetaPolicyRoundTripsAndUnspecifiedIsMinForegroundMean) {
  for (BetaPolicy p : {BetaPolicy::kMinForegroundMean, BetaPolicy::kAvgForegroundMean,
                       BetaPolicy::kMaxForegroundMean, BetaPolicy::kBackgroundMean,
                       BetaPolicy::kConstant}) {
    EXPECT_EQ(BetaPolicyFromProto(BetaPolicyToProto(p)).value(), p);
  }
  EXPECT_EQ(BetaPolicyToProto(BetaPolicy::kMinForegroundMean),
            v1::BETA_POLICY_MIN_FOREGROUND_MEAN);
  EXPECT_EQ(BetaPolicyToProto(BetaPolicy::kConstant), v1::BETA_POLICY_CONSTANT);
  EXPECT_EQ(BetaPolicyFromProto(v1::BETA_POLICY_UNSPECIFIED).value(),
            BetaPolicy::kMinForegroundMean);
  const absl::Status unknown = BetaPolicyFromProto(static_cast<v1::BetaPolicy>(42)).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("unknown beta policy 42"));
}

TEST(ProtoEnumsTest, AccumulationMethodRoundTripsAndUnspecifiedIsRefused) {
  EXPECT_EQ(AccumulationMethodToProto(AccumulationMethod::kExact), v1::ACCUMULATION_METHOD_EXACT);
  EXPECT_EQ(AccumulationMethodToProto(AccumulationMethod::kEma), v1::ACCUMULATION_METHOD_EMA);
  for (AccumulationMethod m : {AccumulationMethod::kExact, AccumulationMethod::kEma}) {
    EXPECT_EQ(AccumulationMethodFromProto(AccumulationMethodToProto(m)).value(), m);
  }
  for (v1::AccumulationMethod bad :
       {v1::ACCUMULATION_METHOD_UNSPECIFIED, static_cast<v1::AccumulationMethod>(7)}) {
    const absl::Status status = AccumulationMethodFromProto(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("method must be ACCUMULATION_METHOD_EXACT or _EMA, got "));
  }
}

TEST(ProtoEnumsTest, BackgroundPositionRoundTripsAndUnspecifiedIsRefused) {
  EXPECT_EQ(BackgroundPositionToProto(BackgroundPosition::kFirst), v1::BACKGROUND_POSITION_FIRST);
  EXPECT_EQ(BackgroundPositionToProto(BackgroundPosition::kLast), v1::BACKGROUND_POSITION_LAST);
  EXPECT_EQ(BackgroundPositionToProto(BackgroundPosition::kNone), v1::BACKGROUND_POSITION_NONE);
  for (BackgroundPosition p :
       {BackgroundPosition::kFirst, BackgroundPosition::kLast, BackgroundPosition::kNone}) {
    EXPECT_EQ(BackgroundPositionFromProto(BackgroundPositionToProto(p)).value(), p);
  }
  const absl::Status status =
      BackgroundPositionFromProto(v1::BACKGROUND_POSITION_UNSPECIFIED).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("background must be"));
  EXPECT_EQ(BackgroundPositionFromProto(static_cast<v1::BackgroundPosition>(9)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logn
