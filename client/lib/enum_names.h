#ifndef LOGN_CLIENT_LIB_ENUM_NAMES_H_
#define LOGN_CLIENT_LIB_ENUM_NAMES_H_

// The client's one table of names for the logn.v1 enums it prints or parses (the CLI's flags and
// tables, scripts built on the client). Each EnumName overload has a ParseEnumName inverse where
// the name is also read from users.

#include "absl/strings/string_view.h"
#include "client/lib/health_client.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/drift_service.pb.h"
#include "logn/v1/model.pb.h"
#include "logn/v1/model_service.pb.h"
#include "logn/v1/statistics.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "logn/v1/store.pb.h"

namespace logn {

// "none", "logn", "loga". UNSPECIFIED (and any unknown value) is "logn": the server's default.
absl::string_view EnumName(v1::CalibrationMethod method);
// "logits", "images", "merge", "import", "served" (SERVED_TRAFFIC; "served-traffic" also
// parses), "unspecified"; "" for an unknown value.
absl::string_view EnumName(v1::VersionSource source);
// "proposals", "candidates", "detections", "logits", "imported", "mixed", "unspecified" (the
// store's names, store/stats_store.h RoiSourceName); "" for an unknown value. Printed only.
absl::string_view EnumName(v1::RoiSource source);
// "exact" or "ema". UNSPECIFIED (and any unknown value) is "exact": the server's default.
absl::string_view EnumName(v1::AccumulationMethod method);
// "json" or "binary". UNSPECIFIED (and any unknown value) is "json": the server's default.
absl::string_view EnumName(v1::ExportFormat format);
// "loading", "available", "unloading", "failed", "unspecified"; "" for an unknown value.
absl::string_view EnumName(v1::ModelVersionState state);
// "refuse" or "fallback". UNSPECIFIED (and any unknown value) is "refuse": the server's default.
absl::string_view EnumName(v1::MissingStatisticsAction action);
// "disabled", "collecting-reference", "monitoring", "unspecified"; "" for an unknown value.
absl::string_view EnumName(v1::DriftState state);
// "rare", "common", "frequent", "unspecified"; "" for an unknown value.
absl::string_view EnumName(v1::FrequencyGroup group);
// grpc.health.v1's names: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN", "UNKNOWN".
absl::string_view EnumName(ServingStatus status);

// The inverse of EnumName, ignoring case ("LogN" parses). False, leaving *out alone, for any
// other text, including "" and "unspecified".
bool ParseEnumName(absl::string_view name, v1::CalibrationMethod* out);
bool ParseEnumName(absl::string_view name, v1::VersionSource* out);
bool ParseEnumName(absl::string_view name, v1::ExportFormat* out);

}  // namespace logn

#endif  // LOGN_CLIENT_LIB_ENUM_NAMES_H_
