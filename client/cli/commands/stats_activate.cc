// logn stats activate VERSION: points "active" at VERSION.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

int RunStatsActivate(Client& client, const StatsOptions& options, const Io& io) {
  v1::ActivateRequest request;
  request.set_version(options.version_number);
  return PrintOrReport(io, "stats activate", client.Activate(request),
                       [&](const v1::ActivateResponse& r) {
                         *io.out << AliasMoved("active", request.version(), r.previous_version());
                       });
}

}  // namespace logn::cli
