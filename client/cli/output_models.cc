// The output of the model repository and drift commands, and the serving model version that
// `logn detect` prints (declared in output.h).

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"
#include "google/protobuf/duration.pb.h"

namespace logn::cli {
namespace {

// Width of the first column of `logn drift`'s report lines.
constexpr int kDriftLabelWidth = 14;

std::string NumberOrDash(int64_t value) { return value > 0 ? absl::StrCat(value) : "-"; }

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

bool IsSet(const google::protobuf::Timestamp& ts) { return ts.seconds() != 0 || ts.nanos() != 0; }

// "1h", "24m8s", "0s": whole seconds.
std::string DurationText(absl::Duration d) {
  const absl::Duration seconds = absl::Trunc(d, absl::Seconds(1));
  return seconds == absl::ZeroDuration() ? "0s" : absl::FormatDuration(seconds);
}

// "80000 rows, 310 requests, 2026-12-02T15:00:00Z to 2026-12-02T15:24:08Z (24m8s)"; "since T"
// while the window is open.
std::string WindowText(const v1::DriftWindow& w) {
  std::string out = absl::StrFormat("%d rows, %d requests", w.rows_seen(), w.requests_seen());
  if (!IsSet(w.start_at())) return out;
  if (!IsSet(w.end_at())) return absl::StrCat(out, ", since ", TimestampText(w.start_at()));
  return absl::StrCat(out, ", ", TimestampText(w.start_at()), " to ", TimestampText(w.end_at()),
                      " (", DurationText(ToTime(w.end_at()) - ToTime(w.start_at())), ")");
}

std::string Line(absl::string_view label, absl::string_view value) {
  return absl::StrFormat("%-*s %s\n", kDriftLabelWidth, label, value);
}

// The configured window and sampling: "1h; 10% of requests sampled".
std::string WindowConfigText(const v1::GetDriftResponse& drift) {
  std::vector<std::string> parts;
  const absl::Duration length = absl::Seconds(drift.window_duration().seconds()) +
                                absl::Nanoseconds(drift.window_duration().nanos());
  if (length > absl::ZeroDuration()) parts.push_back(DurationText(length));
  if (drift.window_rows() > 0) parts.push_back(absl::StrCat(drift.window_rows(), " rows"));
  std::string out = absl::StrJoin(parts, " or ");
  if (drift.sample_rate() > 0) {
    absl::StrAppend(&out, out.empty() ? "" : "; ",
                    absl::StrFormat("%g%% of requests sampled", 100 * drift.sample_rate()));
  }
  return out;
}

std::string ScoreCells(const v1::DriftScore& s, bool signed_ratio) {
  return absl::StrFormat(signed_ratio ? "%10.3f  %+13.3f  %6.3f" : "%10.3f  %13.3f  %6.3f",
                         s.mean_shift(), s.log_variance_ratio(), s.score());
}

// The overall row and one per frequency group.
std::string GroupTable(const v1::GetDriftResponse& drift) {
  std::string out = absl::StrFormat("%-10s  %7s  %10s  %13s  %6s\n", "group", "classes",
                                    "mean shift", "log var ratio", "score");
  absl::StrAppendFormat(&out, "%-10s  %7d  %s\n", "overall", drift.classes_scored(),
                        ScoreCells(drift.overall(), false));
  for (const v1::GroupDrift& g : drift.groups()) {
    absl::StrAppendFormat(&out, "%-10s  %7d  %s\n", EnumName(g.frequency()), g.classes(),
                          ScoreCells(g.drift(), false));
  }
  return out;
}

std::string DriftClassTable(const v1::GetDriftResponse& drift) {
  size_t name_width = 4;  // "name"
  for (const v1::ClassDrift& c : drift.classes())
    name_width = std::max(name_width, c.name().size());
  std::string out = absl::StrFormat("top %d class%s by score\n%6s  %-*s  %-5s  %10s  %13s  %6s\n",
                                    drift.classes_size(), drift.classes_size() == 1 ? "" : "es",
                                    "id", static_cast<int>(name_width), "name", "group",
                                    "mean shift", "log var ratio", "score");
  for (const v1::ClassDrift& c : drift.classes()) {
    absl::StrAppendFormat(&out, "%6d  %-*s  %-5s  %s\n", c.category_id(),
                          static_cast<int>(name_width), c.name(), GroupLetter(c.frequency()),
                          ScoreCells(c.drift(), true));
  }
  return out;
}

}  // namespace

std::string MebibytesText(int64_t bytes) {
  const double mib = static_cast<double>(bytes) / (1 << 20);
  // A small model must not read as using nothing.
  return bytes > 0 && mib < 0.05 ? "<0.1" : absl::StrFormat("%.1f", mib);
}

std::string MemoryText(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= (1 << 30)) return absl::StrFormat("%.1f GiB", b / (1 << 30));
  if (b >= (1 << 20)) return absl::StrFormat("%.1f MiB", b / (1 << 20));
  if (b >= (1 << 10)) return absl::StrFormat("%.1f KiB", b / (1 << 10));
  return absl::StrFormat("%d bytes", bytes);
}

std::string ServingLine(const v1::DetectResponse& response, const std::string& model_name,
                        const std::vector<v1::CalibrationSetting>& requested) {
  if (response.model_version() <= 0) return "";
  std::string out = model_name.empty() ? "model" : absl::StrCat("model ", model_name);
  absl::StrAppend(&out, " version ", response.model_version());
  if (!response.calibration_fallback()) return out + "\n";
  // The server names the method it used in the result's setting.
  std::vector<std::string> methods;
  for (size_t k = 0; k < requested.size() && k < static_cast<size_t>(response.results_size());
       ++k) {
    if (requested[k].calibration_method() != v1::CALIBRATION_METHOD_MODEL_DEFAULT) continue;
    const std::string method(EnumName(response.results(k).setting().calibration_method()));
    if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
      methods.push_back(method);
    }
  }
  return absl::StrCat(out, ": no active statistics, the default calibration fell back to ",
                      methods.empty() ? "another method" : absl::StrJoin(methods, ", "), "\n");
}

std::string FallbackWarning(int64_t model_version) {
  return absl::StrCat(
      "warning: model version ", model_version,
      " has no active statistics, so the model's default calibration fell back to its fallback "
      "method (not LogN); calibrate and activate statistics for it (logn calibrate ... "
      "--activate)\n");
}

std::string ModelsTable(const google::protobuf::RepeatedPtrField<v1::ModelVersionStatus>& rows) {
  size_t name_width = 5;  // "model"
  for (const v1::ModelVersionStatus& v : rows) {
    name_width = std::max(name_width, v.model_name().size());
  }
  const int width = static_cast<int>(name_width);
  std::string out =
      absl::StrFormat("%-*s  %7s  %-9s  %-7s  %-12s  %10s  %10s  %s\n", width, "model", "version",
                      "state", "default", "sha256", "memory MiB", "statistics", "reason");
  for (const v1::ModelVersionStatus& v : rows) {
    std::vector<std::string> reason;
    if (v.pinned()) reason.push_back("pinned (loaded by LoadModel)");
    if (!v.reason().empty()) reason.push_back(v.reason());
    absl::StrAppendFormat(
        &out, "%-*s  %7d  %-9s  %-7s  %-12s  %10s  %10s  %s\n", width, v.model_name(),
        v.model_version(), EnumName(v.state()), v.is_default() ? "*" : "",
        v.model_sha256().empty() ? "-" : v.model_sha256().substr(0, 12),
        v.memory_bytes() > 0 ? MebibytesText(v.memory_bytes()) : "-",
        NumberOrDash(v.active_version()), reason.empty() ? "-" : absl::StrJoin(reason, "; "));
  }
  return out;
}

std::string ModelsListing(const v1::ListModelsResponse& response) {
  std::string out;
  if (!response.repository().empty()) {
    absl::StrAppend(&out, "repository ", response.repository(), ", scanned ",
                    TimestampText(response.scanned_at()), "\n");
  }
  return out + ModelsTable(response.model_versions());
}

std::string DriftReport(const v1::GetDriftResponse& drift) {
  std::string out =
      drift.model_name().empty() ? "model" : absl::StrCat("model ", drift.model_name());
  absl::StrAppend(&out, " version ", drift.model_version(), ": drift ", EnumName(drift.state()));
  switch (drift.state()) {
    case v1::DRIFT_STATE_DISABLED:
      return out + " (the server runs with --drift_sample_rate=0)\n";
    case v1::DRIFT_STATE_COLLECTING_REFERENCE:
      absl::StrAppend(&out, " (this window becomes the reference)\n");
      break;
    default:
      absl::StrAppend(&out, "\n");
  }
  if (drift.state() == v1::DRIFT_STATE_MONITORING) {
    const std::string where = drift.reference_version() > 0
                                  ? absl::StrCat("statistics version ", drift.reference_version())
                                  : "not stored";
    absl::StrAppend(
        &out, Line("reference", absl::StrCat(where, ": ", WindowText(drift.reference_window()))));
  }
  absl::StrAppend(&out, Line("live window", WindowText(drift.live_window())));
  if (const std::string config = WindowConfigText(drift); !config.empty()) {
    absl::StrAppend(&out, Line("window", config));
  }
  if (drift.state() != v1::DRIFT_STATE_MONITORING) return out;
  absl::StrAppend(
      &out,
      Line("classes scored",
           absl::StrCat(drift.classes_scored(), " (classes with too few live rows are left out)")),
      "\n", GroupTable(drift));
  if (drift.classes_size() > 0) absl::StrAppend(&out, "\n", DriftClassTable(drift));
  return out;
}

}  // namespace logn::cli
