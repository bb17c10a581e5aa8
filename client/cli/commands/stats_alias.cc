// logn stats alias NAME VERSION: points alias NAME at VERSION.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

void ParseStatsAlias(const std::vector<std::string>& pos, const Args& args, StatsOptions* o) {
  o->alias = pos[1];
  o->version_number = ParseVersionNumber(pos[2], args);
}

int RunStatsAlias(Client& client, const StatsOptions& options, const Io& io) {
  v1::SetAliasRequest request;
  SetModel(options.model, &request);
  request.set_alias(options.alias);
  request.set_allow_served_traffic(options.allow_served_traffic);
  request.set_version(options.version_number);
  return PrintOrReport(
      io, "stats alias", client.SetAlias(request), [&](const v1::SetAliasResponse& r) {
        *io.out << AliasMoved(options.alias, options.version_number, r.previous_version());
      });
}

}  // namespace logn::cli
