// logn stats show VERSION|ALIAS: one version's provenance, and its statistics on request.

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"

namespace logn::cli {

std::string VersionText(const v1::StatisticsVersion& v, bool include_statistics) {
  std::string out = absl::StrCat(VersionHeader(), VersionLine(v), "\n", "model ", v.model().name(),
                                 " sha256 ", v.model().sha256(), "\n", "payload_sha256 ",
                                 v.payload_sha256(), v.partial() ? " (partial)" : "", "\n");
  if (!v.parent_versions().empty()) {
    absl::StrAppend(&out, "parents ", absl::StrJoin(v.parent_versions(), ","), "\n");
  }
  if (v.source() == v1::VERSION_SOURCE_SERVED_TRAFFIC) {
    // Drift references and snapshots look like any version but describe other logits.
    absl::StrAppend(&out,
                    "served traffic: logits of served Detect requests (a drift reference or "
                    "snapshot), not training's RoIs; activate / alias need "
                    "--allow-served-traffic\n");
  }
  absl::StrAppend(&out, SamplingSection(v), ProfileSection(v));
  if (!include_statistics) return out;
  const v1::Statistics& s = v.statistics();
  absl::StrAppend(&out, "column        mean    variance\n");
  for (int j = 0; j < s.mean_size(); ++j) {
    absl::StrAppend(&out, absl::StrFormat("%6d  %10.5g  %10.5g\n", j, s.mean(j),
                                          j < s.variance_size() ? s.variance(j) : NAN));
  }
  return out;
}

namespace {

// What a source means, where the name alone could mislead.
absl::string_view SourceNote(v1::RoiSource source) {
  switch (source) {
    case v1::ROI_SOURCE_CANDIDATES:
      return " (from the model's output candidates, not the RPN's proposals: an approximation "
             "of training's RoIs)";
    case v1::ROI_SOURCE_MIXED:
      return " (merged from versions sampled differently)";
    case v1::ROI_SOURCE_IMPORTED:
      return " (imported statistics)";
    default:
      return "";
  }
}

}  // namespace

std::string SamplingSection(const v1::StatisticsVersion& v) {
  if (!v.has_sampling()) return "sampling not recorded (stored before versions recorded it)\n";
  const v1::RoiSampling& s = v.sampling();
  std::string out =
      absl::StrCat("sampling ", EnumName(s.roi_source()), SourceNote(s.roi_source()), "\n");
  if (s.roi_source() == v1::ROI_SOURCE_IMPORTED && s.rois() == 0 && s.rfs_threshold() == 0) {
    return out;  // imported without a record: nothing more is known
  }
  if (s.images() > 0 && s.rois() > 0) {
    absl::StrAppend(
        &out, absl::StrFormat("  rois per image     %.1f (%d rois from %d images",
                              static_cast<double>(s.rois()) / s.images(), s.rois(), s.images()));
    if (s.num_rois() > 0) absl::StrAppend(&out, "; sampler asks ", s.num_rois());
    absl::StrAppend(&out, ")\n");
  } else if (s.rois() > 0) {
    absl::StrAppend(&out, "  rois               ", s.rois(), "\n");
  }
  // Positives are counted only where RoIs were sampled against ground truth.
  if (s.rois() > 0 && (s.positive_rois() > 0 || s.positive_fraction() > 0)) {
    absl::StrAppend(
        &out, absl::StrFormat("  positive fraction  %.1f %% achieved (%d of %d rois)",
                              100.0 * s.positive_rois() / s.rois(), s.positive_rois(), s.rois()));
    if (s.positive_fraction() > 0) {
      absl::StrAppend(&out,
                      absl::StrFormat(", at most %.1f %% requested", 100 * s.positive_fraction()));
    }
    if (s.positive_iou() > 0)
      absl::StrAppend(&out, absl::StrFormat(" (IoU >= %g)", s.positive_iou()));
    absl::StrAppend(&out, "\n");
  }
  if (s.rfs_threshold() > 0) {
    absl::StrAppend(&out, absl::StrFormat("  rfs threshold      %g\n", s.rfs_threshold()));
  } else {
    // A merge records 0 also when its parents used different thresholds.
    absl::StrAppend(&out, "  rfs threshold      none",
                    v.source() == v1::VERSION_SOURCE_MERGE
                        ? " (unweighted, or different across the merged versions)\n"
                        : " (unweighted)\n");
  }
  return out;
}

int RunStatsShow(Client& client, const StatsOptions& options, const Io& io) {
  v1::GetVersionRequest request;
  SetModel(options.model, &request);
  *request.mutable_selector() = options.selector;
  request.set_view(options.include_statistics ? v1::VERSION_VIEW_FULL : v1::VERSION_VIEW_BASIC);
  absl::StatusOr<v1::GetVersionResponse> got = client.GetVersion(request);
  if (!got.ok()) return ReportError(io, "stats show", got.status());
  PrintJsonOrText(io, options.json, *got, [&] {
    *io.out << VersionText(got->statistics_version(), options.include_statistics);
  });
  return kExitOk;
}

}  // namespace logn::cli
