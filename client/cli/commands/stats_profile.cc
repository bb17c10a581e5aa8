// logn stats profile: sets or clears a version's calibration profile (the default calibration
// Detect uses with it); `logn tune --apply` sets one from data.

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "calibration/setting_proto.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/tune.h"

namespace logn::cli {

void ParseStatsProfile(const std::vector<std::string>& pos, const Args& args, StatsOptions* o) {
  o->selector = ParseSelectorText(args, pos[1]);
  if (o->clear == !o->setting_name.empty()) {
    args.Fail("stats profile takes exactly one of --setting NAME and --clear");
  }
}

int RunStatsProfile(Client& client, const StatsOptions& options, const Io& io) {
  v1::SetCalibrationProfileRequest request;
  SetModel(options.model, &request);
  *request.mutable_selector() = options.selector;
  if (!options.clear) {
    const TuneSetting* found = nullptr;
    const std::vector<TuneSetting> grid = TuningGrid(true, true);
    for (const TuneSetting& setting : grid) {
      if (setting.name == options.setting_name) found = &setting;
    }
    if (found == nullptr) {
      *io.err << "logn stats profile: unknown setting '" << options.setting_name
              << "': use a name `logn tune --report` lists (none, bn, loga(tau=1), "
                 "logn(a=1,g=0,beta=off), ...)\n";
      return kExitUsage;
    }
    v1::CalibrationProfile* profile = request.mutable_calibration_profile();
    *profile->mutable_default_setting() = SpecToProto(found->spec, found->name);
    profile->set_description(options.description.empty() ? "set by hand (logn stats profile)"
                                                         : options.description);
  }
  return PrintOrReport(io, "stats profile", client.SetCalibrationProfile(request),
                       [&](const v1::SetCalibrationProfileResponse& r) {
                         PrintJsonOrText(io, options.json, r.statistics_version(), [&] {
                           *io.out << "version " << r.statistics_version().version() << ": "
                                   << ProfileSection(r.statistics_version());
                         });
                       });
}

std::string ProfileSection(const v1::StatisticsVersion& v) {
  if (!v.has_calibration_profile()) return "default calibration: LogN (built in)\n";
  const v1::CalibrationProfile& p = v.calibration_profile();
  std::string out = absl::StrCat("default calibration: ", p.default_setting().name(), "\n");
  if (!p.description().empty()) absl::StrAppend(&out, "  ", p.description(), "\n");
  if (p.has_tuning()) {
    const v1::TuningRecord& t = p.tuning();
    absl::StrAppendFormat(&out,
                          "  tuned for %s: %d settings, %d tuning / %d held-out images, %d "
                          "splits\n",
                          t.objective(), t.settings_evaluated(), t.tuning_images(),
                          t.heldout_images(), t.split_seeds_size());
    for (const v1::HeldOutFigures& f : t.heldout()) {
      absl::StrAppendFormat(&out, "  held-out %-6s AP %5.1f ± %.1f  APr %5.1f ± %.1f\n",
                            f.setting_name(), 100 * f.ap_mean(), 100 * f.ap_spread(),
                            100 * f.apr_mean(), 100 * f.apr_spread());
    }
  }
  return out;
}

}  // namespace logn::cli
