#include "calibration/statistics_codec.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace logn {

v1::LogitLayout LayoutToProto(const LogitLayout& layout) {
  v1::LogitLayout proto;
  proto.set_num_classes(layout.num_classes);
  proto.set_background(BackgroundPositionToProto(layout.background));
  return proto;
}

absl::StatusOr<LogitLayout> LayoutFromProto(const v1::LogitLayout& proto) {
  LogitLayout layout;
  layout.num_classes = proto.num_classes();
  absl::StatusOr<BackgroundPosition> background = BackgroundPositionFromProto(proto.background());
  if (!background.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("layout.", background.status().message()));
  }
  layout.background = *background;
  LOGN_RETURN_IF_ERROR(layout.Validate());
  return layout;
}

void TimeToProto(absl::Time time, google::protobuf::Timestamp* proto) {
  const int64_t seconds = absl::ToUnixSeconds(time);  // floors
  proto->set_seconds(seconds);
  proto->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
}

void StatisticsToProto(const Statistics& stats, v1::Statistics* proto) {
  proto->Clear();
  *proto->mutable_layout() = LayoutToProto(stats.layout);
  proto->set_count(stats.count);
  proto->mutable_mean()->Add(stats.mean.begin(), stats.mean.end());
  proto->mutable_variance()->Add(stats.variance.begin(), stats.variance.end());
  proto->set_method(AccumulationMethodToProto(stats.method));
  proto->set_momentum(stats.momentum);
  proto->set_total_weight(stats.total_weight);
  v1::StatisticsProvenance* provenance = proto->mutable_provenance();
  provenance->set_model_name(stats.provenance.model_name);
  provenance->set_model_sha256(stats.provenance.model_sha256);
  TimeToProto(stats.provenance.created_at, provenance->mutable_created_at());
  provenance->set_description(stats.provenance.description);
  provenance->set_images_seen(stats.provenance.images_seen);
  provenance->set_batches_seen(stats.provenance.batches_seen);
}

absl::StatusOr<Statistics> StatisticsFromProto(const v1::Statistics& proto) {
  Statistics stats;
  LOGN_ASSIGN_OR_RETURN(stats.layout, LayoutFromProto(proto.layout()));
  stats.count = proto.count();
  stats.mean.assign(proto.mean().begin(), proto.mean().end());
  stats.variance.assign(proto.variance().begin(), proto.variance().end());
  LOGN_ASSIGN_OR_RETURN(stats.method, AccumulationMethodFromProto(proto.method()));
  stats.momentum = proto.momentum();
  stats.total_weight = proto.total_weight();
  const v1::StatisticsProvenance& provenance = proto.provenance();
  stats.provenance.model_name = provenance.model_name();
  stats.provenance.model_sha256 = provenance.model_sha256();
  const auto& created = provenance.created_at();
  if (created.nanos() < 0 || created.nanos() >= 1000000000) {
    return absl::InvalidArgumentError("provenance.created_at.nanos must be in [0, 1e9)");
  }
  stats.provenance.created_at =
      absl::FromUnixSeconds(created.seconds()) + absl::Nanoseconds(created.nanos());
  stats.provenance.description = provenance.description();
  stats.provenance.images_seen = provenance.images_seen();
  stats.provenance.batches_seen = provenance.batches_seen();
  LOGN_RETURN_IF_ERROR(stats.Validate());
  return stats;
}

std::string StatisticsToBinary(const Statistics& stats) {
  v1::Statistics proto;
  StatisticsToProto(stats, &proto);
  return proto.SerializeAsString();
}

absl::StatusOr<Statistics> StatisticsFromBinary(absl::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("statistics payload is larger than 2 GiB");
  }
  v1::Statistics proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        "statistics payload is not a valid logn.v1.Statistics message");
  }
  return StatisticsFromProto(proto);
}

std::string MessageToFileJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a valid message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::Status MessageFromFileJson(absl::string_view json, absl::string_view what,
                                 google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " JSON does not parse: ", status.ToString()));
  }
  return absl::OkStatus();
}

std::string StatisticsToJson(const Statistics& stats) {
  v1::Statistics proto;
  StatisticsToProto(stats, &proto);
  return MessageToFileJson(proto);
}

absl::StatusOr<Statistics> StatisticsFromJson(absl::string_view json) {
  v1::Statistics proto;
  LOGN_RETURN_IF_ERROR(MessageFromFileJson(json, "statistics", &proto));
  return StatisticsFromProto(proto);
}

}  // namespace logn
