// logn stats rollback: points "active" back where it was before its last move.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

int RunStatsRollback(Client& client, const StatsOptions& options, const Io& io) {
  v1::RollbackRequest request;
  SetModel(options.model, &request);
  return PrintOrReport(io, "stats rollback", client.Rollback(request),
                       [&](const v1::RollbackResponse& r) {
                         *io.out << "active -> " << r.active_version() << "\n";
                       });
}

}  // namespace logn::cli
