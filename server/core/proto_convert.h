#ifndef LOGN_SERVER_CORE_PROTO_CONVERT_H_
#define LOGN_SERVER_CORE_PROTO_CONVERT_H_

// Conversions between the logn.v1 API messages and the C++ types of the calibration core, the
// store and the runtime. Every decoder validates and answers bad input with INVALID_ARGUMENT
// naming the field.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "calibration/calibrator.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"
#include "store/stats_store.h"

namespace logn {

// A request's calibration setting as a spec, defaults filled in (method unspecified = LogN).
absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting);
// The spec as the setting it came from, every default spelled out (what responses echo).
v1::CalibrationSetting SpecToProto(const CalibrationSpec& spec, const std::string& name);

// Unset selector = alias "active".
absl::StatusOr<VersionSelector> SelectorFromProto(const v1::StatisticsSelector& selector);

// PostprocessOptions with the request's overrides; INVALID_ARGUMENT outside their ranges.
absl::StatusOr<PostprocessOptions> PostprocessFromProto(const v1::PostprocessOptions& proto);

// A view of the request image (the proto must outlive it). INVALID_ARGUMENT for an empty image or
// raw pixels whose size does not match height x width x channels.
absl::StatusOr<ImageSource> ImageFromProto(const v1::Image& image, int index);

// The float32 rows of a LogitBatch, checked: width > 0, rows > 0, data holds rows·width floats.
// Copies into aligned storage (bytes fields carry no alignment guarantee).
absl::StatusOr<std::vector<float>> LogitsFromProto(const v1::LogitBatch& batch);
void LogitsToProto(const std::vector<float>& values, int64_t rows, int32_t width,
                   v1::LogitBatch* batch);

// Microsecond-precise times as google.protobuf.Timestamp.
void TimeToProto(absl::Time time, google::protobuf::Timestamp* proto);

void VersionInfoToProto(const VersionInfo& info, const std::vector<std::string>& aliases,
                        v1::VersionInfo* proto);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_PROTO_CONVERT_H_
