#ifndef LOGN_CALIBRATION_STATISTICS_CODEC_H_
#define LOGN_CALIBRATION_STATISTICS_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "calibration/statistics.h"
#include "logn/v1/statistics.pb.h"

namespace logn {

// Conversions between the calibration core's Statistics and the logn.v1.Statistics message,
// its binary wire form and its JSON form (the proto3 JSON mapping; see docs/statistics-format.md).
// Every decoder validates: malformed input gives INVALID_ARGUMENT with the reason, never a crash.

void StatisticsToProto(const Statistics& stats, v1::Statistics* proto);
absl::StatusOr<Statistics> StatisticsFromProto(const v1::Statistics& proto);

std::string StatisticsToBinary(const Statistics& stats);
absl::StatusOr<Statistics> StatisticsFromBinary(absl::string_view bytes);

// Pretty-printed JSON with the .proto field names (snake_case); the reader accepts snake_case
// and lowerCamelCase, as the proto3 JSON mapping does.
std::string StatisticsToJson(const Statistics& stats);
absl::StatusOr<Statistics> StatisticsFromJson(absl::string_view json);

// Layout conversion helpers shared with other codecs.
v1::LogitLayout LayoutToProto(const LogitLayout& layout);
absl::StatusOr<LogitLayout> LayoutFromProto(const v1::LogitLayout& proto);

}  // namespace logn

#endif  // LOGN_CALIBRATION_STATISTICS_CODEC_H_
