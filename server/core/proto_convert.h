#ifndef LOGN_SERVER_CORE_PROTO_CONVERT_H_
#define LOGN_SERVER_CORE_PROTO_CONVERT_H_

// Conversions between the logn.v1 API messages and the C++ types of the calibration core, the
// store, the runtime and the server core (requests.h): the server's only home for these
// mappings, one converter per enum. Every decoder validates and answers bad input with
// INVALID_ARGUMENT naming the field.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "calibration/calibrator.h"
#include "calibration/statistics.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/model.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "server/core/requests.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"
#include "store/stats_store.h"

namespace logn {

// ---- Enums. Decoders map UNSPECIFIED to the API's documented default where it has one.

// UNSPECIFIED = LogN.
absl::StatusOr<CalibrationMethod> CalibrationMethodFromProto(v1::CalibrationMethod method);
v1::CalibrationMethod CalibrationMethodToProto(CalibrationMethod method);
// UNSPECIFIED = min foreground mean.
absl::StatusOr<BetaPolicy> BetaPolicyFromProto(v1::BetaPolicy policy);
v1::BetaPolicy BetaPolicyToProto(BetaPolicy policy);
v1::AccumulationMethod AccumulationMethodToProto(AccumulationMethod method);
v1::VersionSource VersionSourceToProto(VersionSource source);
// What a Calibrate stream reads: kLogits or kImages; anything else is INVALID_ARGUMENT.
absl::StatusOr<VersionSource> CalibrationSourceFromProto(v1::CalibrationSource source);
// kImages as IMAGES, every other source as LOGITS (jobs only ever have those two).
v1::CalibrationSource CalibrationSourceToProto(VersionSource source);

// ---- Messages.

// A request's calibration setting as a spec, defaults filled in (method unspecified = LogN).
absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting);
// The spec as the setting it came from, every default spelled out (what responses echo).
v1::CalibrationSetting SpecToProto(const CalibrationSpec& spec, const std::string& name);

// Unset selector = alias "active".
absl::StatusOr<VersionSelector> SelectorFromProto(const v1::StatisticsSelector& selector);
// The selector with its conversion error, used only if a setting needs statistics.
StatisticsChoice StatisticsChoiceFromProto(const v1::StatisticsSelector& selector, bool set);

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
// A job's checkpoint as GetCalibrationJob reports it.
void CheckpointToProto(const JobCheckpoint& checkpoint, v1::CalibrationJob* proto);

// ---- Requests and results of the server core (views into `request`, which must outlive them).

// Settings, post-processing options and images decoded; limits and the model name are the
// core's to check.
absl::StatusOr<DetectQuery> DetectQueryFromProto(const v1::DetectRequest& request);
// The response: category ids from the manifest, boxes and scores as computed.
void DetectOutcomeToProto(const DetectOutcome& outcome, const v1::ModelManifest& manifest,
                          v1::DetectResponse* response);

// The images and their ground truth; INVALID_ARGUMENT for an image without data or ground truth
// whose boxes and category ids differ in number.
absl::StatusOr<std::vector<AnnotatedImageInput>> ImageBatchFromProto(const v1::ImageBatch& batch);

// INVALID_ARGUMENT for a source other than LOGITS or IMAGES.
absl::StatusOr<CalibrationJobHeader> JobHeaderFromProto(const v1::CalibrateHeader& header);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_PROTO_CONVERT_H_
