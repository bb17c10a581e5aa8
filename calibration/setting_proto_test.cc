#include "calibration/setting_proto.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

v1::CalibrationSetting Logn() {
  v1::CalibrationSetting setting;
  setting.set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  return setting;
}

TEST(SettingProtoTest, SwitchesAreTheFamilysCorners) {
  v1::CalibrationSetting setting = Logn();
  setting.mutable_logn()->set_use_mean(true);
  setting.mutable_logn()->set_use_std(false);
  const CalibrationSpec spec = SpecFromProto(setting).value();
  EXPECT_EQ(spec.logn.mean_weight, 1.0);
  EXPECT_EQ(spec.logn.std_exponent, 0.0);
  // Unset switches are the full method.
  const CalibrationSpec full = SpecFromProto(Logn()).value();
  EXPECT_EQ(full.logn.mean_weight, 1.0);
  EXPECT_EQ(full.logn.std_exponent, 1.0);
}

TEST(SettingProtoTest, WeightsRoundTripAndCornersEchoAsSwitches) {
  v1::CalibrationSetting setting = Logn();
  setting.mutable_logn()->set_mean_weight(0.25);
  setting.mutable_logn()->set_std_exponent(0.75);
  const CalibrationSpec spec = SpecFromProto(setting).value();
  EXPECT_EQ(spec.logn.mean_weight, 0.25);
  EXPECT_EQ(spec.logn.std_exponent, 0.75);
  const v1::CalibrationSetting echoed = SpecToProto(spec, "x");
  EXPECT_EQ(echoed.logn().mean_weight(), 0.25);
  EXPECT_EQ(echoed.logn().std_exponent(), 0.75);
  EXPECT_FALSE(echoed.logn().has_use_mean());
  EXPECT_EQ(SpecFromProto(echoed).value().logn, spec.logn);  // the echo is a valid request

  setting.mutable_logn()->set_mean_weight(1.0);
  setting.mutable_logn()->set_std_exponent(0.0);
  const v1::CalibrationSetting corner = SpecToProto(SpecFromProto(setting).value(), "");
  EXPECT_TRUE(corner.logn().has_use_mean());
  EXPECT_TRUE(corner.logn().use_mean());
  EXPECT_FALSE(corner.logn().use_std());
  EXPECT_FALSE(corner.logn().has_mean_weight());
}

TEST(SettingProtoTest, BothFormsOfOneParameterAreRefused) {
  v1::CalibrationSetting setting = Logn();
  setting.mutable_logn()->set_use_mean(true);
  setting.mutable_logn()->set_mean_weight(0.5);
  EXPECT_THAT(SpecFromProto(setting).status().message(), HasSubstr("not both"));
  setting = Logn();
  setting.mutable_logn()->set_use_std(true);
  setting.mutable_logn()->set_std_exponent(0.5);
  EXPECT_EQ(SpecFromProto(setting).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SettingProtoTest, ModelDefaultIsNotASetting) {
  v1::CalibrationSetting setting;
  setting.set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  const auto spec = SpecFromProto(setting);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("MODEL_DEFAULT"));
}

}  // namespace
}  // namespace logn
