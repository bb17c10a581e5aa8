// logn drift [snapshot | reference]: how far the logits of served traffic have moved from the
// drift reference (DriftService), once or every few seconds; snapshot and reference store the
// live window as a statistics version (admin calls).

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli/commands.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"

namespace logn::cli {
namespace {

// Cursor home, then erase the screen: each --watch report replaces the last on a terminal.
constexpr char kClearScreen[] = "\x1b[H\x1b[2J";

void ParseReportFlags(const Args& args, DriftOptions& o) {
  o.top_k = static_cast<int32_t>(args.Int("--top-k", 0, 1, 1 << 20));
  o.watch = args.Has("--watch");
  if (o.watch && !args.Get("--watch").empty()) {
    o.watch_interval = absl::Seconds(args.Double("--watch", 10, 0.1, 86400));
  }
  o.watch_count = args.Int("--watch-count", 0, 1, INT64_MAX);
  if (args.Has("--watch-count") && !o.watch) args.Fail("--watch-count only applies with --watch");
  if (args.Has("--description") || args.Has("--next-window")) {
    args.Fail("--description and --next-window only apply to drift snapshot / drift reference");
  }
}

DriftOptions ParseDriftOptions(const Args& args) {
  DriftOptions o;
  o.model = ReadModel(args);
  o.json = args.Has("--json");
  const std::vector<std::string>& pos = args.positional();
  if (pos.empty()) {
    ParseReportFlags(args, o);
    return o;
  }
  if (pos[0] == "snapshot") {
    o.action = DriftAction::kSnapshot;
  } else if (pos[0] == "reference") {
    o.action = DriftAction::kReference;
  } else {
    args.Fail("unknown drift action '" + pos[0] + "' (snapshot, reference)");
    return o;
  }
  if (pos.size() > 1) args.Fail("unexpected argument '" + pos[1] + "'");
  if (args.Has("--top-k") || args.Has("--watch") || args.Has("--watch-count")) {
    args.Fail("--top-k, --watch and --watch-count only apply to the drift report");
  }
  if (o.action == DriftAction::kSnapshot && args.Has("--next-window")) {
    args.Fail("--next-window only applies to drift reference");
  }
  o.description = args.Get("--description");
  o.next_window = args.Has("--next-window");
  return o;
}

// One report, or with --watch one every interval: on a terminal each replaces the last; else
// they follow each other, a blank line apart (JSON: one object per line). A failed call is
// reported and the watch goes on; the exit code is the last report's.
int RunDriftReport(Client& client, const DriftOptions& options, const Io& io) {
  v1::GetDriftRequest request;
  SetModel(options.model, &request);
  request.set_top_k(options.top_k);
  const int64_t reports = !options.watch ? 1 : options.watch_count;
  int exit = kExitOk;
  for (int64_t n = 0; reports == 0 || n < reports; ++n) {
    if (n > 0) absl::SleepFor(options.watch_interval);
    absl::StatusOr<v1::GetDriftResponse> drift = client.GetDrift(request);
    if (options.watch && !options.json) {
      *io.out << (io.terminal ? kClearScreen
                  : n > 0     ? "\n"
                              : "")
              << "at " << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone())
              << ", every " << absl::FormatDuration(options.watch_interval) << " (Ctrl-C stops)\n";
    }
    if (!drift.ok()) {
      exit = ReportError(io, "drift", drift.status());
    } else {
      exit = kExitOk;
      *io.out << (options.json ? ProtoJson(*drift) + "\n" : DriftReport(*drift));
    }
    io.out->flush();
  }
  return exit;
}

int RunDrift(Client& client, const DriftOptions& options, const Io& io) {
  if (options.action == DriftAction::kSnapshot) {
    v1::SnapshotLiveStatisticsRequest request;
    SetModel(options.model, &request);
    request.set_description(options.description);
    return PrintOrReport(io, "drift snapshot", client.SnapshotLiveStatistics(request),
                         [&](const v1::SnapshotLiveStatisticsResponse& r) {
                           *io.out << (options.json ? ProtoJson(r) + "\n"
                                                    : VersionText(r.statistics_version(), false));
                         });
  }
  if (options.action == DriftAction::kReference) {
    v1::CaptureDriftReferenceRequest request;
    SetModel(options.model, &request);
    request.set_from_next_window(options.next_window);
    request.set_description(options.description);
    return PrintOrReport(
        io, "drift reference", client.CaptureDriftReference(request),
        [&](const v1::CaptureDriftReferenceResponse& r) {
          if (options.json) {
            *io.out << ProtoJson(r) << "\n";
          } else if (r.has_statistics_version()) {
            *io.out << "drift reference: statistics version " << r.statistics_version().version()
                    << "\n"
                    << VersionText(r.statistics_version(), false);
          } else {
            *io.out << "gathering a new drift reference over the next full window (drift "
                    << EnumName(r.state()) << ")\n";
          }
        });
  }
  return RunDriftReport(client, options, io);
}

}  // namespace

Command DriftCommand() {
  return {"drift",
          "live logit drift against the reference; snapshot, reference (admin)",
          absl::StrCat(
              R"(usage: logn drift --server ADDR [--top-k K] [--json] [--watch [SECONDS]]
       logn drift snapshot --server ADDR [--description TEXT] [--json]
       logn drift reference --server ADDR [--next-window] [--description TEXT] [--json]

How far the logits the model produces on served Detect traffic (a sample of the
requests, over a window) have moved from the drift reference (an earlier window of
served traffic): the state, the reference (its statistics version, rows, requests
and period) and the live window; then per class c, mean shift |mu_live - mu_ref| /
sigma_ref and log variance ratio ln(var_live / var_ref), score = the larger of the
two (in absolute value), averaged overall and per frequency group (rare, common,
frequent; groups average the ratio's absolute value), and the top classes by score.
  --top-k K              classes in the table (default: the server's, 10)
  --json                 the GetDriftResponse as protobuf JSON (one line per report)
  --watch [SECONDS]      report again every SECONDS (default 10) until interrupted;
                         on a terminal each report replaces the last
  --watch-count N        stop after N reports

Admin calls (the server's admin token: --token or $LOGN_TOKEN), each storing the
live window as a statistics version of source "served" (printed as `logn stats
show` does; activating or aliasing one needs --allow-served-traffic):
  snapshot               for inspection, export and plots; the reference stays
  reference              make the live window the drift reference; with
                         --next-window, gather the next full window instead
  --description TEXT     stored with the version

)",
              ModelGroup().help, "\n", ConnectionGroup().help),
          FlagSpec{{"--top-k", "--watch-count", "--description"},
                   {"--json", "--next-window"},
                   /*connects=*/true,
                   /*positional=*/true,
                   /*optional_value_flags=*/{"--watch"}}
              .Add({&ModelGroup()}),
          ParseInto(&ParseDriftOptions),
          RunWithClient(&RunDrift)};
}

}  // namespace logn::cli
