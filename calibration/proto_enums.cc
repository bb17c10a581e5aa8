#include "calibration/proto_enums.h"

#include "absl/strings/str_cat.h"

namespace logn {

absl::StatusOr<CalibrationMethod> CalibrationMethodFromProto(v1::CalibrationMethod method) {
  switch (method) {
    case v1::CALIBRATION_METHOD_UNSPECIFIED:
    case v1::CALIBRATION_METHOD_LOGN:
      return CalibrationMethod::kLogN;
    case v1::CALIBRATION_METHOD_NONE:
      return CalibrationMethod::kNone;
    case v1::CALIBRATION_METHOD_LOGA:
      return CalibrationMethod::kLogA;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown calibration method ", static_cast<int>(method)));
}

v1::CalibrationMethod CalibrationMethodToProto(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kNone:
      return v1::CALIBRATION_METHOD_NONE;
    case CalibrationMethod::kLogA:
      return v1::CALIBRATION_METHOD_LOGA;
    case CalibrationMethod::kLogN:
      break;
  }
  return v1::CALIBRATION_METHOD_LOGN;
}

absl::StatusOr<BetaPolicy> BetaPolicyFromProto(v1::BetaPolicy policy) {
  switch (policy) {
    case v1::BETA_POLICY_UNSPECIFIED:
    case v1::BETA_POLICY_MIN_FOREGROUND_MEAN:
      return BetaPolicy::kMinForegroundMean;
    case v1::BETA_POLICY_AVG_FOREGROUND_MEAN:
      return BetaPolicy::kAvgForegroundMean;
    case v1::BETA_POLICY_MAX_FOREGROUND_MEAN:
      return BetaPolicy::kMaxForegroundMean;
    case v1::BETA_POLICY_BACKGROUND_MEAN:
      return BetaPolicy::kBackgroundMean;
    case v1::BETA_POLICY_CONSTANT:
      return BetaPolicy::kConstant;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown beta policy ", static_cast<int>(policy)));
}

v1::BetaPolicy BetaPolicyToProto(BetaPolicy policy) {
  switch (policy) {
    case BetaPolicy::kAvgForegroundMean:
      return v1::BETA_POLICY_AVG_FOREGROUND_MEAN;
    case BetaPolicy::kMaxForegroundMean:
      return v1::BETA_POLICY_MAX_FOREGROUND_MEAN;
    case BetaPolicy::kBackgroundMean:
      return v1::BETA_POLICY_BACKGROUND_MEAN;
    case BetaPolicy::kConstant:
      return v1::BETA_POLICY_CONSTANT;
    case BetaPolicy::kMinForegroundMean:
      break;
  }
  return v1::BETA_POLICY_MIN_FOREGROUND_MEAN;
}

absl::StatusOr<AccumulationMethod> AccumulationMethodFromProto(v1::AccumulationMethod method) {
  switch (method) {
    case v1::ACCUMULATION_METHOD_EXACT:
      return AccumulationMethod::kExact;
    case v1::ACCUMULATION_METHOD_EMA:
      return AccumulationMethod::kEma;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "method must be ACCUMULATION_METHOD_EXACT or _EMA, got ", static_cast<int>(method)));
}

v1::AccumulationMethod AccumulationMethodToProto(AccumulationMethod method) {
  switch (method) {
    case AccumulationMethod::kEma:
      return v1::ACCUMULATION_METHOD_EMA;
    case AccumulationMethod::kExact:
      break;
  }
  return v1::ACCUMULATION_METHOD_EXACT;
}

absl::StatusOr<BackgroundPosition> BackgroundPositionFromProto(v1::BackgroundPosition position) {
  switch (position) {
    case v1::BACKGROUND_POSITION_FIRST:
      return BackgroundPosition::kFirst;
    case v1::BACKGROUND_POSITION_LAST:
      return BackgroundPosition::kLast;
    case v1::BACKGROUND_POSITION_NONE:
      return BackgroundPosition::kNone;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("background must be BACKGROUND_POSITION_FIRST, _LAST or _NONE, got ",
                   static_cast<int>(position)));
}

v1::BackgroundPosition BackgroundPositionToProto(BackgroundPosition position) {
  switch (position) {
    case BackgroundPosition::kFirst:
      return v1::BACKGROUND_POSITION_FIRST;
    case BackgroundPosition::kNone:
      return v1::BACKGROUND_POSITION_NONE;
    case BackgroundPosition::kLast:
      break;
  }
  return v1::BACKGROUND_POSITION_LAST;
}

}  // namespace logn
