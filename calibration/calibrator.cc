#include "calibration/calibrator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace logn {
namespace {

// x̂ = (x − hi)·scale + tail over contiguous rows, tail = −lo·scale the part of the centre that
// float32 hi could not hold. x − hi is exact for x within a factor 2 of hi (Sterbenz) and
// otherwise rounds relative to itself, so the error stays a few float32 ulps of x̂ instead of
// ulps of centre·scale (x·scale + shift cancels two large rounded terms when x̂ is small).
// Cloned for AVX2+FMA and resolved at load time: the FMA clone rounds (x − hi)·scale + tail once,
// the portable one twice (both within the documented bound). A subtraction and a multiply-add
// per element: within a few % of the lone multiply-add it replaced (BM_LogNApply).
__attribute__((target_clones("arch=haswell", "default"))) void CentreScaleRows(
    float* __restrict data, int64_t rows, int64_t width, const float* __restrict hi,
    const float* __restrict scale, const float* __restrict tail) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * width;
    for (int64_t j = 0; j < width; ++j) row[j] = (row[j] - hi[j]) * scale[j] + tail[j];
  }
}

absl::StatusOr<double> ChooseBeta(const Statistics& stats, const LogNOptions& options) {
  const LogitLayout& layout = stats.layout;
  switch (options.beta_policy) {
    case BetaPolicy::kConstant:
      if (!std::isfinite(options.beta_constant)) {
        return absl::InvalidArgumentError("constant beta must be finite");
      }
      return options.beta_constant;
    case BetaPolicy::kBackgroundMean:
      if (!layout.has_background()) {
        return absl::InvalidArgumentError(
            "beta policy background_mean needs a background logit, but the layout has none");
      }
      return stats.mean[layout.background_column()];
    case BetaPolicy::kMinForegroundMean:
    case BetaPolicy::kAvgForegroundMean:
    case BetaPolicy::kMaxForegroundMean:
      break;
  }
  double min_mean = std::numeric_limits<double>::infinity();
  double max_mean = -std::numeric_limits<double>::infinity();
  double sum = 0;
  for (int32_t c = 0; c < layout.num_classes; ++c) {
    const double mu = stats.foreground_mean(c);
    min_mean = std::min(min_mean, mu);
    max_mean = std::max(max_mean, mu);
    sum += mu;
  }
  switch (options.beta_policy) {
    case BetaPolicy::kMinForegroundMean: return min_mean;
    case BetaPolicy::kMaxForegroundMean: return max_mean;
    default: return sum / layout.num_classes;
  }
}

}  // namespace

absl::string_view CalibrationMethodName(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kNone: return "none";
    case CalibrationMethod::kLogN: return "logn";
    case CalibrationMethod::kLogA: return "loga";
  }
  return "unknown";
}

absl::Status ParseCalibrationMethod(absl::string_view text, CalibrationMethod* out) {
  if (text == "none") {
    *out = CalibrationMethod::kNone;
  } else if (text == "logn") {
    *out = CalibrationMethod::kLogN;
  } else if (text == "loga") {
    *out = CalibrationMethod::kLogA;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown calibration method '", text, "': expected none, logn or loga"));
  }
  return absl::OkStatus();
}

absl::string_view BetaPolicyName(BetaPolicy policy) {
  switch (policy) {
    case BetaPolicy::kMinForegroundMean: return "min_fg_mean";
    case BetaPolicy::kAvgForegroundMean: return "avg_fg_mean";
    case BetaPolicy::kMaxForegroundMean: return "max_fg_mean";
    case BetaPolicy::kBackgroundMean: return "background_mean";
    case BetaPolicy::kConstant: return "constant";
  }
  return "unknown";
}

absl::Status ParseBetaPolicy(absl::string_view text, BetaPolicy* out) {
  for (BetaPolicy policy :
       {BetaPolicy::kMinForegroundMean, BetaPolicy::kAvgForegroundMean,
        BetaPolicy::kMaxForegroundMean, BetaPolicy::kBackgroundMean, BetaPolicy::kConstant}) {
    if (text == BetaPolicyName(policy)) {
      *out = policy;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown beta policy '", text,
      "': expected min_fg_mean, avg_fg_mean, max_fg_mean, background_mean or constant"));
}

std::string CalibrationSpec::DebugString() const {
  switch (method) {
    case CalibrationMethod::kNone: return "none";
    case CalibrationMethod::kLogA: return absl::StrCat("loga(tau=", loga.tau, ")");
    case CalibrationMethod::kLogN: break;
  }
  std::vector<std::string> parts;
  if (logn.mean_weight == 1.0) {
    parts.push_back("mu");
  } else if (logn.mean_weight != 0.0) {
    parts.push_back(absl::StrCat("mu*", logn.mean_weight));
  }
  if (logn.std_exponent == 1.0) {
    parts.push_back("sigma");
  } else if (logn.std_exponent != 0.0) {
    parts.push_back(absl::StrCat("sigma^", logn.std_exponent));
  }
  if (logn.use_beta) {
    parts.push_back(logn.beta_policy == BetaPolicy::kConstant
                        ? absl::StrCat("beta=", logn.beta_constant)
                        : absl::StrCat("beta=", BetaPolicyName(logn.beta_policy)));
  }
  if (logn.official_formula) parts.push_back("official");
  if (logn.normalize_background) parts.push_back("normalize_background");
  return absl::StrCat("logn(", absl::StrJoin(parts, ","), ")");
}

Calibrator::Calibrator(const LogitLayout& layout, CalibrationMethod method)
    : layout_(layout),
      method_(method),
      scale_(layout.width(), 1.0f),
      shift_(layout.width(), 0.0f),
      shift_lo_(layout.width(), 0.0f),
      tail_(layout.width(), 0.0f) {}

void Calibrator::SetColumn(int32_t j, double centre, float scale) {
  const float hi = static_cast<float>(centre);
  // centre − hi is exact in double (hi is centre's nearest float32).
  const double lo = std::isfinite(hi) ? centre - static_cast<double>(hi) : 0.0;
  shift_[j] = hi;
  shift_lo_[j] = static_cast<float>(lo);
  scale_[j] = scale;
  tail_[j] = static_cast<float>(-lo * scale);
}

Calibrator Calibrator::Identity(const LogitLayout& layout) {
  return Calibrator(layout, CalibrationMethod::kNone);
}

absl::StatusOr<Calibrator> Calibrator::ForLogN(const Statistics& stats,
                                               const LogNOptions& options) {
  LOGN_RETURN_IF_ERROR(stats.Validate());
  if (!options.official_formula && !(options.epsilon >= 0 && std::isfinite(options.epsilon))) {
    return absl::InvalidArgumentError(
        absl::StrCat("epsilon must be a finite value >= 0, got ", options.epsilon));
  }
  const auto unit = [](double v) { return v >= 0.0 && v <= 1.0; };  // false for NaN
  if (!unit(options.mean_weight) || !unit(options.std_exponent)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LogN's mean weight (alpha) and std exponent (gamma) must be in [0, 1], got ",
        options.mean_weight, " and ", options.std_exponent));
  }
  Calibrator calibrator(stats.layout, CalibrationMethod::kLogN);
  double beta = 0;
  if (options.use_beta) {
    LOGN_ASSIGN_OR_RETURN(beta, ChooseBeta(stats, options));  // refuses an impossible policy
    // The one place the rule lives: without a background, Eq. 1 has no β, and an adaptive β
    // (a foreground mean), divided by each class's σ, would reorder the classes.
    if (!stats.layout.has_background() && options.beta_policy != BetaPolicy::kConstant) beta = 0;
  }
  calibrator.beta_ = beta;

  // The centre α·μ − β and the scale are computed in float64, then rounded to float32 (the
  // centre as a hi + lo pair).
  auto normaliser = [&](double variance) {
    const double gamma = options.std_exponent;
    if (gamma == 0.0) return 1.0;
    const double denominator = options.official_formula
                                   ? std::max(variance, LogNOptions::kOfficialVarianceFloor)
                                   : variance + options.epsilon;
    // γ = 1 keeps the exact 1/sqrt the paper's formula (and the golden files) use.
    return gamma == 1.0 ? 1.0 / std::sqrt(denominator) : std::pow(denominator, -0.5 * gamma);
  };
  const LogitLayout& layout = stats.layout;
  for (int32_t j = 0; j < layout.width(); ++j) {
    const bool is_background = j == layout.background_column();
    if (is_background && !options.normalize_background) continue;  // untouched: (x − 0)·1
    const double mean = options.mean_weight * stats.mean[j];
    // β calibrates the foreground only: on the background it would undo itself.
    const double offset = is_background ? 0.0 : beta;
    calibrator.SetColumn(j, mean - offset, static_cast<float>(normaliser(stats.variance[j])));
  }
  const auto finite = [](float v) { return std::isfinite(v); };
  if (!std::all_of(calibrator.scale_.begin(), calibrator.scale_.end(), finite) ||
      !std::all_of(calibrator.shift_.begin(), calibrator.shift_.end(), finite)) {
    return absl::InvalidArgumentError(
        "these statistics overflow float32 under LogN (a variance of 0 with epsilon 0?): set "
        "epsilon > 0 or use the official formula's variance floor");
  }
  return calibrator;
}

absl::StatusOr<Calibrator> Calibrator::ForLogA(const LogitLayout& layout,
                                               absl::Span<const double> class_counts,
                                               const LogAOptions& options) {
  LOGN_RETURN_IF_ERROR(layout.Validate());
  if (class_counts.size() != static_cast<size_t>(layout.num_classes)) {
    return absl::InvalidArgumentError(absl::StrCat("LogA needs one training count per class (",
                                                   layout.num_classes, "), got ",
                                                   class_counts.size()));
  }
  if (!std::isfinite(options.tau)) {
    return absl::InvalidArgumentError("LogA tau must be finite");
  }
  double total = 0;
  for (size_t c = 0; c < class_counts.size(); ++c) {
    if (!(class_counts[c] > 0) || !std::isfinite(class_counts[c])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LogA needs a positive training count for every class; class ", c, " has ",
          class_counts[c], " (log of a zero prior is -inf)"));
    }
    total += class_counts[c];
  }
  Calibrator calibrator(layout, CalibrationMethod::kLogA);
  for (int32_t c = 0; c < layout.num_classes; ++c) {
    // x − τ·log π = (x − centre)·1 with centre τ·log π.
    const double log_prior = std::log(class_counts[c] / total);
    calibrator.SetColumn(layout.foreground_column(c), options.tau * log_prior, 1.0f);
  }
  if (!std::all_of(calibrator.shift_.begin(), calibrator.shift_.end(),
                   [](float v) { return std::isfinite(v); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("LogA tau ", options.tau, " times a log prior overflows float32"));
  }
  return calibrator;
}

absl::Status Calibrator::Apply(absl::Span<float> data) const {
  const size_t width = static_cast<size_t>(layout_.width());
  if (data.size() % width != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        data.size(), " logits do not form whole rows of ", width, " (", layout_.DebugString(),
        ")"));
  }
  ApplyUnchecked(data.data(), static_cast<int64_t>(data.size() / width));
  return absl::OkStatus();
}

void Calibrator::ApplyUnchecked(float* data, int64_t rows) const {
  if (method_ == CalibrationMethod::kNone) return;
  CentreScaleRows(data, rows, layout_.width(), shift_.data(), scale_.data(), tail_.data());
}

absl::StatusOr<Calibrator> MakeCalibrator(const CalibrationSpec& spec, const LogitLayout& layout,
                                          const Statistics* stats,
                                          absl::Span<const double> class_counts) {
  switch (spec.method) {
    case CalibrationMethod::kNone:
      LOGN_RETURN_IF_ERROR(layout.Validate());
      return Calibrator::Identity(layout);
    case CalibrationMethod::kLogA:
      return Calibrator::ForLogA(layout, class_counts, spec.loga);
    case CalibrationMethod::kLogN:
      if (stats == nullptr) {
        return absl::FailedPreconditionError(
            "LogN needs statistics: calibrate the model first (no statistics version found)");
      }
      if (stats->layout != layout) {
        return absl::FailedPreconditionError(
            absl::StrCat("statistics are for ", stats->layout.DebugString(),
                         " but the model's logits are ", layout.DebugString()));
      }
      return Calibrator::ForLogN(*stats, spec.logn);
  }
  return absl::InvalidArgumentError("unknown calibration method");
}

}  // namespace logn
