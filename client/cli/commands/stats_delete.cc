// logn stats delete VERSION.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

int RunStatsDelete(Client& client, const StatsOptions& options, const Io& io) {
  v1::DeleteVersionRequest request;
  SetModel(options.model, &request);
  request.set_version(options.version_number);
  const absl::Status status = client.DeleteVersion(request).status();
  if (!status.ok()) return ReportError(io, "stats delete", status);
  *io.out << "deleted version " << options.version_number << "\n";
  return kExitOk;
}

}  // namespace logn::cli
