#include "calibration/setting_proto.h"

#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "common/status_macros.h"

namespace logn {

absl::StatusOr<CalibrationSpec> SpecFromProto(const v1::CalibrationSetting& setting) {
  if (setting.calibration_method() == v1::CALIBRATION_METHOD_MODEL_DEFAULT) {
    return absl::InvalidArgumentError(
        "CALIBRATION_METHOD_MODEL_DEFAULT names the model's default setting; it cannot be one "
        "(name NONE, LOGN or LOGA)");
  }
  CalibrationSpec spec;
  LOGN_ASSIGN_OR_RETURN(spec.method, CalibrationMethodFromProto(setting.calibration_method()));
  const v1::LogNParams& p = setting.logn();
  LogNOptions& o = spec.logn;
  if (p.has_use_mean() && p.has_mean_weight()) {
    return absl::InvalidArgumentError(
        "set either logn.use_mean or logn.mean_weight (alpha), not both");
  }
  if (p.has_use_std() && p.has_std_exponent()) {
    return absl::InvalidArgumentError(
        "set either logn.use_std or logn.std_exponent (gamma), not both");
  }
  if (p.has_use_mean()) o.mean_weight = p.use_mean() ? 1.0 : 0.0;
  if (p.has_mean_weight()) o.mean_weight = p.mean_weight();
  if (p.has_use_std()) o.std_exponent = p.use_std() ? 1.0 : 0.0;
  if (p.has_std_exponent()) o.std_exponent = p.std_exponent();
  // Range checks (α, γ in [0, 1]) live with the formula: Calibrator::ForLogN.
  if (p.has_use_beta()) o.use_beta = p.use_beta();
  LOGN_ASSIGN_OR_RETURN(o.beta_policy, BetaPolicyFromProto(p.beta_policy()));
  o.beta_constant = p.beta_constant();
  if (p.has_epsilon()) o.epsilon = p.epsilon();
  o.official_formula = p.official_formula();
  o.normalize_background = p.normalize_background();
  if (setting.loga().has_tau()) spec.loga.tau = setting.loga().tau();
  return spec;
}

v1::CalibrationSetting SpecToProto(const CalibrationSpec& spec, const std::string& name) {
  v1::CalibrationSetting setting;
  setting.set_name(name);
  setting.set_calibration_method(CalibrationMethodToProto(spec.method));
  switch (spec.method) {
    case CalibrationMethod::kNone:
      return setting;
    case CalibrationMethod::kLogA:
      setting.mutable_loga()->set_tau(spec.loga.tau);
      return setting;
    case CalibrationMethod::kLogN:
      break;
  }
  v1::LogNParams* p = setting.mutable_logn();
  // The switches where they say it all (what older clients read), the weights otherwise.
  const double alpha = spec.logn.mean_weight;
  const double gamma = spec.logn.std_exponent;
  if (alpha == 0.0 || alpha == 1.0) {
    p->set_use_mean(alpha == 1.0);
  } else {
    p->set_mean_weight(alpha);
  }
  if (gamma == 0.0 || gamma == 1.0) {
    p->set_use_std(gamma == 1.0);
  } else {
    p->set_std_exponent(gamma);
  }
  p->set_use_beta(spec.logn.use_beta);
  p->set_beta_policy(BetaPolicyToProto(spec.logn.beta_policy));
  p->set_beta_constant(spec.logn.beta_constant);
  p->set_epsilon(spec.logn.epsilon);
  p->set_official_formula(spec.logn.official_formula);
  p->set_normalize_background(spec.logn.normalize_background);
  return setting;
}

}  // namespace logn
