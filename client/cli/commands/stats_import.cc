// logn stats import FILE: a version from an exported file.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/eval/lvis_dataset.h"

namespace logn::cli {

void ParseStatsImport(const std::vector<std::string>& pos, const Args& args, StatsOptions* o) {
  o->path = pos[1];
  // ImportVersion has no format field: the server tells JSON from binary by the content.
  if (args.Has("--format")) {
    args.Fail("stats import takes no --format: the server detects it from the file's content");
  }
}

int RunStatsImport(Client& client, const StatsOptions& options, const Io& io) {
  absl::StatusOr<std::string> content = ReadFileToString(options.path);
  if (!content.ok()) return ReportError(io, "stats import", content.status());
  v1::ImportVersionRequest request;
  SetModel(options.model, &request);
  request.set_content(*std::move(content));
  request.set_description(options.description);
  request.set_activate(options.activate);
  return PrintOrReport(io, "stats import", client.ImportVersion(request),
                       [&](const v1::ImportVersionResponse& r) {
                         PrintJsonOrText(io, options.json, r.statistics_version(), [&] {
                           *io.out << "imported as version " << r.statistics_version().version()
                                   << (options.activate ? " (active)" : "") << "\n";
                         });
                       });
}

}  // namespace logn::cli
