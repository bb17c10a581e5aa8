#ifndef LOGN_SERVER_CORE_PROTO_CONVERT_H_
#define LOGN_SERVER_CORE_PROTO_CONVERT_H_

// Conversions between the logn.v1 API messages and the C++ types of the calibration core, the
// store, the runtime and the server core (requests.h). The enum converters live with their core
// types (calibration/proto_enums.h, store/version_proto.h), once for the whole tree, and so does
// the version resource (store/version_proto.h); this file builds the server's messages from
// them. Every decoder validates and answers bad input with INVALID_ARGUMENT naming the field.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "calibration/calibrator.h"
#include "calibration/setting_proto.h"
#include "calibration/statistics.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/drift_service.pb.h"
#include "logn/v1/model.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "server/core/drift_monitor.h"
#include "server/core/requests.h"
#include "server/core/versions.h"
#include "server/runtime/detector_runtime.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"
#include "store/stats_store.h"

namespace logn {

// ---- Messages.

// A request's setting: a spec as SpecFromProto makes it, or the model-default placeholder.
absl::StatusOr<NamedSpec> SettingFromProto(const v1::CalibrationSetting& setting);

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
// A Calibrate logit batch's row weights as sent: empty when it sends none (every row weighs 1).
// The accumulator checks them (one per row, finite, >= 0).
std::vector<double> RowWeightsFromProto(const v1::LogitBatch& batch);
void LogitsToProto(const std::vector<float>& values, int64_t rows, int32_t width,
                   v1::LogitBatch* batch);

google::protobuf::Duration DurationToProto(absl::Duration duration);  // nanosecond precision
absl::Duration DurationFromProto(const google::protobuf::Duration& duration);

// A version as the RPCs return it in the basic view (store/version_proto.h's resource), with
// the aliases that point at it. The full view adds `statistics` (StatisticsToProto).
void VersionToProto(const VersionInfo& info, const std::vector<std::string>& aliases,
                    v1::StatisticsVersion* proto);
void VersionToProto(const StoredVersion& stored, v1::StatisticsVersion* proto);
// Whether a GetVersion view includes the statistics: UNSPECIFIED and BASIC no, FULL yes;
// INVALID_ARGUMENT for an unknown view.
absl::StatusOr<bool> FullViewFromProto(v1::VersionView view);
// A job's checkpoint as GetCalibrationJob reports it.
void CheckpointToProto(const JobCheckpoint& checkpoint, v1::CalibrationJob* proto);

// The ListVersions filter fields that are set; INVALID_ARGUMENT for a `source` that is set to
// UNSPECIFIED or an unknown number.
absl::StatusOr<VersionFilter> VersionFilterFromProto(const v1::ListVersionsRequest& request);

// ---- Requests and results of the server core (views into `request`, which must outlive them).

// Settings, post-processing options and images decoded; limits and the model name are the
// core's to check.
absl::StatusOr<DetectQuery> DetectQueryFromProto(const v1::DetectRequest& request);
// The response: category ids from the manifest, boxes and scores as computed.
// Appends one image's raw candidates (DetectResponse.raw_candidates); `width` = C+1.
void RawCandidatesToProto(const RawOutputs& outputs, const std::string& image_id,
                          int32_t width, v1::DetectResponse* response);

void DetectOutcomeToProto(const DetectOutcome& outcome, const v1::ModelManifest& manifest,
                          v1::DetectResponse* response);

// The images, their ground truth and weights; INVALID_ARGUMENT for an image without data, ground
// truth whose boxes and category ids differ in number, or a negative / non-finite weight.
absl::StatusOr<std::vector<AnnotatedImageInput>> ImageBatchFromProto(const v1::ImageBatch& batch);

// INVALID_ARGUMENT for a source other than VERSION_SOURCE_LOGITS or VERSION_SOURCE_IMAGES, an EMA
// mode with neither or both of init and from_prior (unless resuming), or a negative / non-finite
// rfs_threshold. The sampler overrides are validated by the job, over the server's defaults.
absl::StatusOr<CalibrationJobHeader> JobHeaderFromProto(const v1::CalibrateHeader& header);

// A drift monitor's report as GetDrift returns it: windows, the overall and per-group scores,
// and the `top_k` most drifting classes (named from `manifest`).
void DriftReportToProto(const DriftStatusReport& report, const DriftMonitorOptions& options,
                        const v1::ModelManifest& manifest, int32_t top_k,
                        v1::GetDriftResponse* response);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_PROTO_CONVERT_H_
