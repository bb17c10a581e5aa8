#ifndef LOGN_CALIBRATION_PROTO_ENUMS_H_
#define LOGN_CALIBRATION_PROTO_ENUMS_H_

// The one converter per enum between the calibration core's types and their logn.v1 values,
// for the whole tree (statistics files, the store, the server's requests and responses). The
// encoders are total; the decoders answer values they do not accept with INVALID_ARGUMENT.

#include "absl/status/statusor.h"
#include "calibration/calibrator.h"
#include "calibration/layout.h"
#include "calibration/statistics.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/statistics.pb.h"

namespace logn {

// UNSPECIFIED = LogN (the API's default wherever a CalibrationSetting appears); an unknown
// number is "unknown calibration method N".
absl::StatusOr<CalibrationMethod> CalibrationMethodFromProto(v1::CalibrationMethod method);
v1::CalibrationMethod CalibrationMethodToProto(CalibrationMethod method);

// UNSPECIFIED = min foreground mean (the API's default); an unknown number is
// "unknown beta policy N".
absl::StatusOr<BetaPolicy> BetaPolicyFromProto(v1::BetaPolicy policy);
v1::BetaPolicy BetaPolicyToProto(BetaPolicy policy);

// EXACT or EMA; UNSPECIFIED and unknown numbers are refused ("method must be ...": the field is
// called `method` wherever the enum appears).
absl::StatusOr<AccumulationMethod> AccumulationMethodFromProto(v1::AccumulationMethod method);
v1::AccumulationMethod AccumulationMethodToProto(AccumulationMethod method);

// FIRST, LAST or NONE; UNSPECIFIED and unknown numbers are refused ("background must be ...").
absl::StatusOr<BackgroundPosition> BackgroundPositionFromProto(v1::BackgroundPosition position);
v1::BackgroundPosition BackgroundPositionToProto(BackgroundPosition position);

}  // namespace logn

#endif  // LOGN_CALIBRATION_PROTO_ENUMS_H_
