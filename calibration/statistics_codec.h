#ifndef LOGN_CALIBRATION_STATISTICS_CODEC_H_
#define LOGN_CALIBRATION_STATISTICS_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "calibration/statistics.h"
#include "google/protobuf/message.h"
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

// Helpers shared with other codecs. LayoutFromProto refuses an unknown background and a layout
// that does not validate.
v1::LogitLayout LayoutToProto(const LogitLayout& layout);
absl::StatusOr<LogitLayout> LayoutFromProto(const v1::LogitLayout& proto);
// The JSON form of every file the project writes (statistics, version exports): pretty-printed,
// .proto field names, every field printed; read back strictly (an unknown field is an error),
// INVALID_ARGUMENT naming `what` when the text does not parse.
std::string MessageToFileJson(const google::protobuf::Message& message);
absl::Status MessageFromFileJson(absl::string_view json, absl::string_view what,
                                 google::protobuf::Message* message);
// Nanosecond-precise, seconds floored (so nanos is in [0, 1e9) before 1970 too).
void TimeToProto(absl::Time time, google::protobuf::Timestamp* proto);

}  // namespace logn

#endif  // LOGN_CALIBRATION_STATISTICS_CODEC_H_
