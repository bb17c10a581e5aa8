#include "calibration/statistics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace logn {

absl::string_view AccumulationMethodName(AccumulationMethod method) {
  switch (method) {
    case AccumulationMethod::kExact: return "exact";
    case AccumulationMethod::kEma: return "ema";
  }
  return "unknown";
}

absl::Status ParseAccumulationMethod(absl::string_view text, AccumulationMethod* out) {
  if (text == "exact") {
    *out = AccumulationMethod::kExact;
  } else if (text == "ema") {
    *out = AccumulationMethod::kEma;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown accumulation method '", text, "': expected exact or ema"));
  }
  return absl::OkStatus();
}

absl::Status Statistics::Validate() const {
  LOGN_RETURN_IF_ERROR(layout.Validate());
  const size_t width = static_cast<size_t>(layout.width());
  if (mean.size() != width || variance.size() != width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "statistics for ", layout.DebugString(), " need ", width, " means and variances, got ",
        mean.size(), " and ", variance.size()));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative row count ", count));
  }
  if (!std::isfinite(total_weight) || total_weight < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("total_weight = ", total_weight, " is not a finite value >= 0"));
  }
  for (size_t i = 0; i < width; ++i) {
    if (!std::isfinite(mean[i])) {
      return absl::InvalidArgumentError(absl::StrCat("mean[", i, "] is not finite"));
    }
    if (!std::isfinite(variance[i]) || variance[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("variance[", i, "] = ", variance[i], " is not a finite value >= 0"));
    }
  }
  if (method == AccumulationMethod::kEma && !(momentum > 0 && momentum <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EMA momentum must be in (0, 1], got ", momentum));
  }
  return absl::OkStatus();
}

}  // namespace logn
