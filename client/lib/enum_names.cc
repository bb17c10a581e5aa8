#include "client/lib/enum_names.h"

#include "absl/strings/match.h"

namespace logn {
namespace {

template <typename Enum>
struct NamedValue {
  Enum value;
  absl::string_view name;
};

constexpr NamedValue<v1::CalibrationMethod> kCalibrationMethods[] = {
    {v1::CALIBRATION_METHOD_NONE, "none"},
    {v1::CALIBRATION_METHOD_LOGN, "logn"},
    {v1::CALIBRATION_METHOD_LOGA, "loga"},
};
constexpr NamedValue<v1::VersionSource> kVersionSources[] = {
    {v1::VERSION_SOURCE_UNSPECIFIED, "unspecified"},
    {v1::VERSION_SOURCE_LOGITS, "logits"},
    {v1::VERSION_SOURCE_IMAGES, "images"},
    {v1::VERSION_SOURCE_MERGE, "merge"},
    {v1::VERSION_SOURCE_IMPORT, "import"},
    // One word, as the others (the version table's source column is 7 wide); the long form also
    // parses.
    {v1::VERSION_SOURCE_SERVED_TRAFFIC, "served"},
    {v1::VERSION_SOURCE_SERVED_TRAFFIC, "served-traffic"},
};
constexpr NamedValue<v1::RoiSource> kRoiSources[] = {
    {v1::ROI_SOURCE_UNSPECIFIED, "unspecified"},
    {v1::ROI_SOURCE_PROPOSALS, "proposals"},
    {v1::ROI_SOURCE_CANDIDATES, "candidates"},
    {v1::ROI_SOURCE_DETECTIONS, "detections"},
    {v1::ROI_SOURCE_LOGITS, "logits"},
    {v1::ROI_SOURCE_IMPORTED, "imported"},
    {v1::ROI_SOURCE_MIXED, "mixed"},
};
constexpr NamedValue<v1::AccumulationMethod> kAccumulationMethods[] = {
    {v1::ACCUMULATION_METHOD_EXACT, "exact"},
    {v1::ACCUMULATION_METHOD_EMA, "ema"},
};
constexpr NamedValue<v1::ExportFormat> kExportFormats[] = {
    {v1::EXPORT_FORMAT_JSON, "json"},
    {v1::EXPORT_FORMAT_BINARY, "binary"},
};
constexpr NamedValue<v1::ModelVersionState> kModelVersionStates[] = {
    {v1::MODEL_VERSION_STATE_UNSPECIFIED, "unspecified"},
    {v1::MODEL_VERSION_STATE_LOADING, "loading"},
    {v1::MODEL_VERSION_STATE_AVAILABLE, "available"},
    {v1::MODEL_VERSION_STATE_UNLOADING, "unloading"},
    {v1::MODEL_VERSION_STATE_FAILED, "failed"},
};
constexpr NamedValue<v1::MissingStatisticsAction> kMissingStatisticsActions[] = {
    {v1::MISSING_STATISTICS_ACTION_REFUSE, "refuse"},
    {v1::MISSING_STATISTICS_ACTION_FALLBACK, "fallback"},
};
constexpr NamedValue<v1::DriftState> kDriftStates[] = {
    {v1::DRIFT_STATE_UNSPECIFIED, "unspecified"},
    {v1::DRIFT_STATE_DISABLED, "disabled"},
    {v1::DRIFT_STATE_COLLECTING_REFERENCE, "collecting-reference"},
    {v1::DRIFT_STATE_MONITORING, "monitoring"},
};
constexpr NamedValue<v1::FrequencyGroup> kFrequencyGroups[] = {
    {v1::FREQUENCY_GROUP_UNSPECIFIED, "unspecified"},
    {v1::FREQUENCY_GROUP_RARE, "rare"},
    {v1::FREQUENCY_GROUP_COMMON, "common"},
    {v1::FREQUENCY_GROUP_FREQUENT, "frequent"},
};
constexpr NamedValue<ServingStatus> kServingStatuses[] = {
    {ServingStatus::kUnknown, "UNKNOWN"},
    {ServingStatus::kServing, "SERVING"},
    {ServingStatus::kNotServing, "NOT_SERVING"},
    {ServingStatus::kServiceUnknown, "SERVICE_UNKNOWN"},
};

template <typename Enum, size_t N>
absl::string_view NameIn(const NamedValue<Enum> (&table)[N], Enum value,
                         absl::string_view fallback) {
  for (const NamedValue<Enum>& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return fallback;
}

template <typename Enum, size_t N>
bool ValueIn(const NamedValue<Enum> (&table)[N], absl::string_view name, Enum* out) {
  for (const NamedValue<Enum>& entry : table) {
    if (absl::EqualsIgnoreCase(entry.name, name)) {
      *out = entry.value;
      return true;
    }
  }
  return false;
}

}  // namespace

absl::string_view EnumName(v1::CalibrationMethod method) {
  return NameIn(kCalibrationMethods, method, "logn");
}

absl::string_view EnumName(v1::VersionSource source) { return NameIn(kVersionSources, source, ""); }

absl::string_view EnumName(v1::RoiSource source) { return NameIn(kRoiSources, source, ""); }

absl::string_view EnumName(v1::AccumulationMethod method) {
  return NameIn(kAccumulationMethods, method, "exact");
}

absl::string_view EnumName(v1::ExportFormat format) {
  return NameIn(kExportFormats, format, "json");
}

absl::string_view EnumName(v1::ModelVersionState state) {
  return NameIn(kModelVersionStates, state, "");
}

absl::string_view EnumName(v1::MissingStatisticsAction action) {
  return NameIn(kMissingStatisticsActions, action, "refuse");
}

absl::string_view EnumName(v1::DriftState state) { return NameIn(kDriftStates, state, ""); }

absl::string_view EnumName(v1::FrequencyGroup group) { return NameIn(kFrequencyGroups, group, ""); }

absl::string_view EnumName(ServingStatus status) {
  return NameIn(kServingStatuses, status, "UNKNOWN");
}

bool ParseEnumName(absl::string_view name, v1::CalibrationMethod* out) {
  return ValueIn(kCalibrationMethods, name, out);
}

bool ParseEnumName(absl::string_view name, v1::VersionSource* out) {
  v1::VersionSource source;
  if (!ValueIn(kVersionSources, name, &source) || source == v1::VERSION_SOURCE_UNSPECIFIED) {
    return false;
  }
  *out = source;
  return true;
}

bool ParseEnumName(absl::string_view name, v1::ExportFormat* out) {
  return ValueIn(kExportFormats, name, out);
}

}  // namespace logn
