// logn stats list: every version, ascending, as a table or a JSON array.

#include "absl/strings/str_join.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {

int RunStatsList(Client& client, const StatsOptions& options, const Io& io) {
  std::vector<v1::VersionInfo> versions;
  v1::ListVersionsRequest request;
  request.set_page_size(1000);
  do {
    absl::StatusOr<v1::ListVersionsResponse> page = client.ListVersions(request);
    if (!page.ok()) return ReportError(io, "stats list", page.status());
    versions.insert(versions.end(), page->versions().begin(), page->versions().end());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  if (options.json) {
    std::vector<std::string> items;
    for (const auto& v : versions) items.push_back(ProtoJson(v));
    *io.out << "[" << absl::StrJoin(items, ",") << "]\n";
  } else {
    *io.out << VersionHeader();
    for (const auto& v : versions) *io.out << VersionLine(v) << "\n";
  }
  return kExitOk;
}

}  // namespace logn::cli
