#ifndef LOGN_CLIENT_CLI_OUTPUT_H_
#define LOGN_CLIENT_CLI_OUTPUT_H_

// Formatting shared by the `logn` commands: JSON pieces, the version table, files, and the
// human-readable output of `logn info` and `logn detect` (their JSON stays behind --json).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/eval/lvis_dataset.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/drift_service.pb.h"
#include "logn/v1/model.pb.h"
#include "logn/v1/model_service.pb.h"
#include "logn/v1/store.pb.h"

namespace logn::cli {

// `s` as a JSON string literal, quotes included.
std::string JsonString(absl::string_view s);
// proto3 JSON with the .proto field names and every field, defaults included.
std::string ProtoJson(const google::protobuf::Message& message);
// Replaces `path` with `content`; PERMISSION_DENIED / INTERNAL "cannot write 'PATH'".
absl::Status WriteFile(const std::string& path, absl::string_view content);

// "1.23s".
std::string FormatSeconds(absl::Duration d);
// "2024-05-01T12:00:00Z"; "-" for an unset timestamp.
std::string TimestampText(const google::protobuf::Timestamp& ts);

// The version table of `logn stats list` / `show`: the header line (with its newline) and one
// row per version (without).
std::string VersionHeader();
std::string VersionLine(const v1::StatisticsVersion& v);

// A setting's name: its own, else its method's ("none", "logn", "loga").
std::string SettingName(const v1::CalibrationSetting& setting);
// A selector as typed on the command line: "3", "canary", or "active" when unset.
std::string SelectorText(const v1::StatisticsSelector& selector);

// A service detection (x1y1x2y2) as an LVIS result (xywh) of image `image_id`.
LvisDetection ToLvisDetection(int64_t image_id, const v1::Detection& d);

// ----- `logn info` and `logn detect` for people -----

// "r", "c", "f"; "-" when unknown.
std::string GroupLetter(v1::FrequencyGroup group);

// The manifest's classes by category id, for tables and pictures. Without a manifest (or for an
// id it does not list) a class is named "#ID" with group "-".
class ClassNames {
 public:
  ClassNames() = default;
  explicit ClassNames(const v1::ModelManifest& manifest);
  std::string Name(int32_t category_id) const;
  std::string Group(int32_t category_id) const;

 private:
  absl::flat_hash_map<int32_t, std::pair<std::string, v1::FrequencyGroup>> classes_;
};

// A calibration setting in words: "none (raw logits)", "LogA τ=1", "LogN α=1 γ=1 β=min μ" (α the
// weight of μ, γ the exponent of σ; "no β" without it), plus ε, the official formula or a
// normalised background when set.
std::string DescribeSetting(const v1::CalibrationSetting& setting);

// What a Detect request naming no setting gets (GetModelInfoResponse.default_calibration): for
// version 0 "built-in LogN α=1 γ=1 β=min μ (no calibration profile)", else the profile's setting
// and where it came from, e.g. "LogN α=1 γ=0 β=min μ (profile of version 3, tuned: objective
// ap)".
std::string DefaultCalibrationText(const v1::GetModelInfoResponse& info);

// `logn info`: model, description, sha256, device, classes per r/c/f group, logit and box
// layout, the model's extra methods, input policy, active statistics version, default
// calibration; one "label  value" line each (long values wrapped at 100 columns).
std::string InfoSummary(const v1::GetModelInfoResponse& info);
// `logn info --classes`: the class table (id, group, training images and instances, name).
std::string ClassTable(const v1::ModelManifest& manifest);

// A score as the detect table shows it: "0.829", or "1.2e-04" below 0.001.
std::string ScoreText(float score);

// One image's detections under one setting, as `logn detect` prints them: a header line
// ("IMAGE: N detections (setting S, statistics version V), top K"; the version only for settings
// that use statistics: not none or loga), the column header, the first
// `top` rows (0: all: rank, class, group, score, x1 y1 x2 y2), then how many were left out.
std::string DetectionTable(const v1::ImageDetections& image, const v1::CalibrationSetting& setting,
                           int64_t version, const ClassNames& classes, int top);
// Every table of a response: per image, one per setting, in request order, separated by blank
// lines.
std::string DetectionTables(const v1::DetectResponse& response, const ClassNames& classes,
                            int top);

// `logn detect --json`: one line (newline included) per image and setting, image by image:
//   {"image":ID,"setting":NAME,"version":V,"model_version":M,"calibration_fallback":false,
//    "detections":[{"category_id":C,"score":S,"box":[x1,y1,x2,y2]},...]}
std::string DetectionJsonLines(const v1::DetectResponse& response);

// ----- the model version that served, `logn models`, `logn drift` (output_models.cc) -----

// "45.3": bytes in MiB with one decimal ("<0.1" for less, but not nothing).
std::string MebibytesText(int64_t bytes);
// "45.3 MiB", "27.6 KiB", "1.2 GiB", "512 bytes".
std::string MemoryText(int64_t bytes);

// The line `logn detect` prints above a response's tables: "model NAME version N" (NAME when
// known), and when the model default calibration fell back, that it did and to which methods
// (those of the results whose `requested` setting, in request order, was MODEL_DEFAULT); "" when
// the server did not say which version served (model_version 0).
std::string ServingLine(const v1::DetectResponse& response, const std::string& model_name,
                        const std::vector<v1::CalibrationSetting>& requested);
// The warning (one line, for stderr) that model version `model_version` has no active
// statistics, so the model default calibration fell back.
std::string FallbackWarning(int64_t model_version);

// `logn models`: the header line and one row per model version, each line ending in "\n":
// model, version, state, "*" for the default version, the first 12 digits of the sha256, memory
// in MiB, the active statistics version, and the reason (with "pinned" for a LoadModel'ed one).
// "-" marks what is unknown or none.
std::string ModelsTable(const google::protobuf::RepeatedPtrField<v1::ModelVersionStatus>& rows);
// ListModels for people: "repository DIR, scanned T" when the server has a repository, then the
// table.
std::string ModelsListing(const v1::ListModelsResponse& response);

// `logn drift`: which model version and state; the reference (statistics version, rows,
// requests, period) and the live window; the configured window and sampling; then, when
// monitoring, the scores overall and per frequency group and the top classes' table (id, name,
// group, mean shift, log variance ratio, score).
std::string DriftReport(const v1::GetDriftResponse& drift);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_OUTPUT_H_
