// logn stats export VERSION|ALIAS [--out FILE] [--format json|binary]: to stdout without --out.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {

int RunStatsExport(Client& client, const StatsOptions& options, const Io& io) {
  v1::ExportVersionRequest request;
  SetModel(options.model, &request);
  *request.mutable_selector() = options.selector;
  request.set_export_format(options.export_format);
  absl::StatusOr<v1::ExportVersionResponse> r = client.ExportVersion(request);
  if (!r.ok()) return ReportError(io, "stats export", r.status());
  if (options.out_path.empty()) {
    *io.out << r->content();
    return kExitOk;
  }
  if (absl::Status s = WriteFile(options.out_path, r->content()); !s.ok()) {
    return ReportError(io, "stats export", s);
  }
  *io.err << "exported version " << SelectorText(options.selector) << " (" << r->content().size()
          << " bytes) to " << options.out_path << "\n";
  return kExitOk;
}

}  // namespace logn::cli
