#ifndef LOGN_CALIBRATION_SETTING_PROTO_H_
#define LOGN_CALIBRATION_SETTING_PROTO_H_

// The one converter between a calibration setting of the API (logn.v1.CalibrationSetting) and
// the core's CalibrationSpec: the server reads requests and profiles with it, the client
// writes the settings `logn tune` chooses with it.

#include <string>

#include "absl/status/statusor.h"
#include "calibration/calibrator.h"
#include "logn/v1/common.pb.h"

namespace logn {

// A concrete calibration setting as a spec, defaults filled in (method unspecified = LogN;
// use_mean / use_std as α, γ of 1 or 0; both forms of one parameter is INVALID_ARGUMENT, and so
// is CALIBRATION_METHOD_MODEL_DEFAULT, which names a setting without being one).
absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting);
// The spec as a setting, every default spelled out (what responses echo).
v1::CalibrationSetting SpecToProto(const CalibrationSpec& spec, const std::string& name);

}  // namespace logn

#endif  // LOGN_CALIBRATION_SETTING_PROTO_H_
