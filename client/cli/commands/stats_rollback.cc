// logn stats rollback: points "active" back where it was before its last move.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

int RunStatsRollback(Client& client, const StatsOptions&, const Io& io) {
  return PrintOrReport(io, "stats rollback", client.Rollback({}),
                       [&](const v1::RollbackResponse& r) {
                         *io.out << "active -> " << r.active_version() << "\n";
                       });
}

}  // namespace logn::cli
