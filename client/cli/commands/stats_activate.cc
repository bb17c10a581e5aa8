// logn stats activate VERSION: points "active" at VERSION.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

int RunStatsActivate(Client& client, const StatsOptions& options, const Io& io) {
  v1::ActivateRequest request;
  SetModel(options.model, &request);
  request.set_version(options.version_number);
  request.set_allow_served_traffic(options.allow_served_traffic);
  return PrintOrReport(io, "stats activate", client.Activate(request),
                       [&](const v1::ActivateResponse& r) {
                         *io.out << AliasMoved("active", request.version(), r.previous_version());
                       });
}

}  // namespace logn::cli
