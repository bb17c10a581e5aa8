// logn stats merge VERSION VERSION...: one version from exact-mode shards (partial versions).

#include "absl/strings/str_join.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

void ParseStatsMerge(const std::vector<std::string>& pos, const Args& args, StatsOptions* o) {
  if (pos.size() < 3) args.Fail("stats merge takes two or more VERSIONs");
  for (size_t i = 1; i < pos.size(); ++i) {
    o->merge_versions.push_back(ParseVersionNumber(pos[i], args));
  }
  if (o->partial && o->activate) args.Fail("a --partial merge cannot be --activate'd");
}

int RunStatsMerge(Client& client, const StatsOptions& options, const Io& io) {
  v1::MergeRequest request;
  SetModel(options.model, &request);
  for (int64_t v : options.merge_versions) request.add_versions(v);
  request.set_description(options.description);
  request.set_job_id(options.job_id.value_or(""));
  request.set_activate(options.activate);
  request.set_partial(options.partial);
  return PrintOrReport(io, "stats merge", client.Merge(request), [&](const v1::MergeResponse& r) {
    const v1::StatisticsVersion& v = r.statistics_version();
    PrintJsonOrText(io, options.json, v, [&] {
      *io.out << "merged versions " << absl::StrJoin(v.parent_versions(), ", ") << " into version "
              << v.version() << ": " << v.rows_seen() << " rows, " << v.images_seen() << " images"
              << (options.partial ? " (partial)" : "") << (options.activate ? " (active)" : "")
              << "\n";
    });
  });
}

}  // namespace logn::cli
