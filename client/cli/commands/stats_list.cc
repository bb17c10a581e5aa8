// logn stats list: the versions (all, or those matching the filter flags), ascending, as a table
// or a JSON array.

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"

namespace logn::cli {
namespace {

// The sampling column's width: fits "candidates 1234/img 100%".
constexpr int kSamplingWidth = 24;

// "487", or "3.5" below 10 (so that a few RoIs per image do not print as 0 or 1).
std::string PerImage(double rois_per_image) {
  return rois_per_image >= 10 ? absl::StrFormat("%.0f", rois_per_image)
                              : absl::StrFormat("%.1f", rois_per_image);
}

// "8%", or "0.4%" below 1 %.
std::string Percent(double fraction) {
  const double pct = 100 * fraction;
  return pct >= 1 || pct == 0 ? absl::StrFormat("%.0f%%", pct) : absl::StrFormat("%.1f%%", pct);
}

// The first page's request: the filter flags become ListVersions' filter fields, which the
// server applies (so a job's versions need no paging through the whole store).
v1::ListVersionsRequest ListRequest(const StatsOptions& options) {
  v1::ListVersionsRequest request;
  SetModel(options.model, &request);
  request.set_page_size(1000);
  if (options.job_id.has_value()) request.set_job_id(*options.job_id);
  if (options.source.has_value()) request.set_source(*options.source);
  if (options.partial) request.set_partial(true);
  if (options.complete) request.set_partial(false);
  return request;
}

}  // namespace

std::string SamplingColumn(const v1::StatisticsVersion& v) {
  if (!v.has_sampling()) return "-";
  const v1::RoiSampling& s = v.sampling();
  std::string out(EnumName(s.roi_source()));
  if (s.images() > 0 && s.rois() > 0) {
    absl::StrAppend(&out, " ", PerImage(static_cast<double>(s.rois()) / s.images()), "/img");
  }
  // Positives are counted only where RoIs were sampled against ground truth.
  if (s.rois() > 0 && (s.positive_rois() > 0 || s.positive_fraction() > 0)) {
    absl::StrAppend(&out, " ", Percent(static_cast<double>(s.positive_rois()) / s.rois()));
  }
  return out;
}

// The version table's columns, then the sampling column, then the description: spliced in
// before the description (free text, always last) so the shared table stays as it is.
std::string ListHeader() {
  std::string header = VersionHeader();
  absl::string_view rest = header;
  if (!absl::ConsumeSuffix(&rest, "description\n")) return header;
  return absl::StrFormat("%s%-*s  description\n", rest, kSamplingWidth, "sampling");
}

std::string ListLine(const v1::StatisticsVersion& v) {
  v1::StatisticsVersion without_description = v;
  without_description.clear_description();
  return absl::StrFormat("%s%-*s  %s", VersionLine(without_description), kSamplingWidth,
                         SamplingColumn(v), v.description());
}

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
    *io.out << ListHeader();
    for (const auto& v : versions) *io.out << ListLine(v) << "\n";
  }
  return kExitOk;
}

}  // namespace logn::cli
