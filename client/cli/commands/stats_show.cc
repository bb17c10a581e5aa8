// logn stats show VERSION|ALIAS: one version's provenance, and its statistics on request.

#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {
namespace {

void PrintText(const v1::StatisticsVersion& v, bool include_statistics, const Io& io) {
  *io.out << VersionHeader() << VersionLine(v) << "\n";
  *io.out << "model " << v.model().name() << " sha256 " << v.model().sha256() << "\n"
          << "payload_sha256 " << v.payload_sha256() << (v.partial() ? " (partial)" : "") << "\n";
  if (!v.parent_versions().empty()) {
    *io.out << "parents " << absl::StrJoin(v.parent_versions(), ",") << "\n";
  }
  if (!include_statistics) return;
  const v1::Statistics& s = v.statistics();
  *io.out << "column        mean    variance\n";
  for (int j = 0; j < s.mean_size(); ++j) {
    *io.out << absl::StrFormat("%6d  %10.5g  %10.5g\n", j, s.mean(j),
                               j < s.variance_size() ? s.variance(j) : NAN);
  }
}

}  // namespace

int RunStatsShow(Client& client, const StatsOptions& options, const Io& io) {
  v1::GetVersionRequest request;
  *request.mutable_selector() = options.selector;
  request.set_view(options.include_statistics ? v1::VERSION_VIEW_FULL : v1::VERSION_VIEW_BASIC);
  absl::StatusOr<v1::GetVersionResponse> got = client.GetVersion(request);
  if (!got.ok()) return ReportError(io, "stats show", got.status());
  PrintJsonOrText(io, options.json, *got,
                  [&] { PrintText(got->statistics_version(), options.include_statistics, io); });
  return kExitOk;
}

}  // namespace logn::cli
