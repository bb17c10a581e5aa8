#ifndef LOGN_CALIBRATION_CALIBRATOR_H_
#define LOGN_CALIBRATION_CALIBRATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "calibration/layout.h"
#include "calibration/statistics.h"

namespace logn {

enum class CalibrationMethod { kNone, kLogN, kLogA };
absl::string_view CalibrationMethodName(CalibrationMethod method);
absl::Status ParseCalibrationMethod(absl::string_view text, CalibrationMethod* out);

// How β (the background calibration scalar) is chosen; the rows of the paper's Table 3.
enum class BetaPolicy {
  kMinForegroundMean,  // min over foreground μ: the paper's and official code's default
  kAvgForegroundMean,
  kMaxForegroundMean,
  kBackgroundMean,     // μ of the background column (needs a background)
  kConstant,           // LogNOptions::beta_constant
};
absl::string_view BetaPolicyName(BetaPolicy policy);
// Parses "min_fg_mean", "avg_fg_mean", "max_fg_mean", "background_mean", "constant".
absl::Status ParseBetaPolicy(absl::string_view text, BetaPolicy* out);

// Logit Normalization and its continuous family: for foreground c,
//   x̂_c = (x_c − α·μ_c + [β]) / (σ_c² + ε)^(γ/2),
// α = mean_weight and γ = std_exponent in [0, 1]. α = γ = 1 with β is the paper's LogN; its
// Table 2 switches are α, γ ∈ {0, 1} (α = 1, γ = 0 is μ-only; α = γ = 0 without β is no
// calibration). The background logit is left untouched unless normalize_background is set.
struct LogNOptions {
  double mean_weight = 1.0;   // α
  double std_exponent = 1.0;  // γ
  // β calibrates the foreground against the background (Eq. 2). A classifier without a
  // background column (BackgroundPosition::kNone) gets Eq. 1, which has no β: there β applies
  // only with an explicit constant (beta_policy = kConstant); the adaptive policies are ignored
  // (Calibrator::beta() is then 0), except kBackgroundMean, which is refused.
  bool use_beta = true;
  BetaPolicy beta_policy = BetaPolicy::kMinForegroundMean;
  double beta_constant = 0.0;  // with BetaPolicy::kConstant
  double epsilon = 1e-5;       // the paper's ε
  // The official code's inference formula: no ε, variance clamped below at 1e-11.
  bool official_formula = false;
  // Also normalise the background with its own μ and σ, with the same α and γ (never β): with
  // use_beta = false and α = γ = 1 this is plain BatchNorm inference over all C+1 logits, the
  // baseline for normalised-logit heads.
  bool normalize_background = false;

  static constexpr double kOfficialVarianceFloor = 1e-11;

  friend bool operator==(const LogNOptions& a, const LogNOptions& b) {
    return a.mean_weight == b.mean_weight && a.std_exponent == b.std_exponent &&
           a.use_beta == b.use_beta &&
           a.beta_policy == b.beta_policy && a.beta_constant == b.beta_constant &&
           a.epsilon == b.epsilon && a.official_formula == b.official_formula &&
           a.normalize_background == b.normalize_background;
  }
  friend bool operator!=(const LogNOptions& a, const LogNOptions& b) { return !(a == b); }
};

// Logit Adjustment (LogA): x̂_c = x_c − τ·log π_c for foreground c, π_c = n_c / Σ n; background
// untouched.
struct LogAOptions {
  double tau = 1.0;
};

// One calibration setting: a method and its options.
struct CalibrationSpec {
  CalibrationMethod method = CalibrationMethod::kLogN;
  LogNOptions logn;
  LogAOptions loga;

  // E.g. "none", "loga(tau=1)", "logn(mu,sigma,beta=min_fg_mean)",
  // "logn(mu*0.5,sigma^0.25)" (α = 0.5, γ = 0.25).
  std::string DebugString() const;
};

// A per-column affine map x̂ = (x − centre)·scale, precomputed once per statistics version. The
// centre is held as a float32 pair shift + shift_lo and applied as
// x̂ = (x − shift)·scale − shift_lo·scale: centring first keeps the result accurate when x̂ is
// small next to μ/σ (x ≈ 50, σ = 0.05), where x·scale + shift would cancel two large rounded
// terms. The error is a few float32 ulps of x̂: within 1e-6·(1 + |x̂|) of the float64 formula on
// the float32 input (tested for |μ − β|/σ up to 1e3 and more). Immutable and thread-safe once
// built.
class Calibrator {
 public:
  // The identity: method none.
  static Calibrator Identity(const LogitLayout& layout);
  // LogN from statistics. INVALID_ARGUMENT if the statistics do not validate, α or γ is outside
  // [0, 1], beta_policy = background_mean without a background column, or the map overflows
  // float32. Without a
  // background column β is 0 unless beta_policy is kConstant (see LogNOptions::use_beta).
  static absl::StatusOr<Calibrator> ForLogN(const Statistics& stats, const LogNOptions& options);
  // LogA from per-foreground-class training counts (C entries, all > 0; instance counts in
  // detection). INVALID_ARGUMENT on a wrong length, a non-positive / non-finite count, or a τ so
  // large that τ·log π overflows float32.
  static absl::StatusOr<Calibrator> ForLogA(const LogitLayout& layout,
                                            absl::Span<const double> class_counts,
                                            const LogAOptions& options);

  const LogitLayout& layout() const { return layout_; }
  CalibrationMethod method() const { return method_; }
  // β actually used (0 when none / LogA / use_beta off / no background without a constant β).
  double beta() const { return beta_; }
  // Per column (layout().width() entries): the multiplier, rounded to float32: (σ² + ε)^(−γ/2)
  // (official formula: max(σ², 1e-11)^(−γ/2)) for a LogN column, 1 otherwise.
  absl::Span<const float> scale() const { return scale_; }
  // Per column: the centre subtracted before scaling, rounded to float32: α·μ − β for a LogN
  // foreground column (α·μ alone for a normalised background), τ·log π_c for
  // LogA, 0 for an untouched column. NOT the additive term of x·scale + shift: that is
  // −(shift + shift_lo)·scale.
  absl::Span<const float> shift() const { return shift_; }
  // Per column: the float32 rounding error of shift() (centre − shift), so that shift + shift_lo
  // carries the centre to about 2^-48 relative; 0 for an untouched column.
  absl::Span<const float> shift_lo() const { return shift_lo_; }

  // Calibrates `rows` rows of layout().width() floats in place. `data.size()` must be
  // rows * width; INVALID_ARGUMENT otherwise (values are not checked: NaN in, NaN out; a finite
  // value can overflow to ±Inf, e.g. under the official formula's 1e-11 variance floor).
  absl::Status Apply(absl::Span<float> data) const;
  // The same, without the size check: the caller guarantees `rows * width` floats at `data`.
  void ApplyUnchecked(float* data, int64_t rows) const;

 private:
  Calibrator(const LogitLayout& layout, CalibrationMethod method);
  // Sets column j to x̂ = (x − centre)·scale, the centre split into the float32 pair
  // shift_[j] + shift_lo_[j].
  void SetColumn(int32_t j, double centre, float scale);

  LogitLayout layout_;
  CalibrationMethod method_;
  double beta_ = 0.0;
  std::vector<float> scale_;
  std::vector<float> shift_;
  std::vector<float> shift_lo_;
  std::vector<float> tail_;  // −shift_lo·scale: what the kernel adds after scaling
};

// Builds the calibrator a spec describes. `stats` is needed for LogN, `class_counts` for LogA.
absl::StatusOr<Calibrator> MakeCalibrator(const CalibrationSpec& spec, const LogitLayout& layout,
                                          const Statistics* stats,
                                          absl::Span<const double> class_counts);

}  // namespace logn

#endif  // LOGN_CALIBRATION_CALIBRATOR_H_
