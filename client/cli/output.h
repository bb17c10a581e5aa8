#ifndef LOGN_CLIENT_CLI_OUTPUT_H_
#define LOGN_CLIENT_CLI_OUTPUT_H_

// Formatting shared by the `logn` commands: JSON pieces, the version table, files.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/eval/lvis_dataset.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"
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
Detection ToLvisDetection(int64_t image_id, const v1::Detection& d);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_OUTPUT_H_
