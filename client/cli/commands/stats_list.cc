// logn stats list: the versions (all, or those matching the filter flags), ascending, as a table
// or a JSON array.

#include "absl/strings/str_join.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {
namespace {

// The first page's request: the filter flags become ListVersions' filter fields, which the
// server applies (so a job's versions need no paging through the whole store).
v1::ListVersionsRequest ListRequest(const StatsOptions& options) {
  v1::ListVersionsRequest request;
  request.set_page_size(1000);
  if (options.job_id.has_value()) request.set_job_id(*options.job_id);
  if (options.source.has_value()) request.set_source(*options.source);
  if (options.partial) request.set_partial(true);
  if (options.complete) request.set_partial(false);
  return request;
}

}  // namespace

int RunStatsList(Client& client, const StatsOptions& options, const Io& io) {
  std::vector<v1::StatisticsVersion> versions;
  v1::ListVersionsRequest request = ListRequest(options);
  do {
    absl::StatusOr<v1::ListVersionsResponse> page = client.ListVersions(request);
    if (!page.ok()) return ReportError(io, "stats list", page.status());
    versions.insert(versions.end(), page->statistics_versions().begin(),
                    page->statistics_versions().end());
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
