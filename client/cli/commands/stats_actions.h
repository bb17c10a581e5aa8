#ifndef LOGN_CLIENT_CLI_COMMANDS_STATS_ACTIONS_H_
#define LOGN_CLIENT_CLI_COMMANDS_STATS_ACTIONS_H_

// The actions of `logn stats` (list, show, ...), one file each (stats_ACTION.cc); stats.cc
// lists them with their help, checks their argument counts and dispatches to them.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "google/protobuf/message.h"
#include "logn/v1/store.pb.h"

namespace logn::cli {

// An action's parse: reads its positional arguments (pos[0] is its name; their count is already
// checked) into `options`, recording usage errors in `args`. The flags mean the same for every
// action and are already read.
using StatsParseFn = void (*)(const std::vector<std::string>& pos, const Args& args,
                              StatsOptions* options);
using StatsRunFn = int (*)(Client& client, const StatsOptions& options, const Io& io);

void ParseStatsAlias(const std::vector<std::string>& pos, const Args& args, StatsOptions* o);
void ParseStatsImport(const std::vector<std::string>& pos, const Args& args, StatsOptions* o);
void ParseStatsMerge(const std::vector<std::string>& pos, const Args& args, StatsOptions* o);
void ParseStatsJob(const std::vector<std::string>& pos, const Args& args, StatsOptions* o);
void ParseStatsProfile(const std::vector<std::string>& pos, const Args& args, StatsOptions* o);

int RunStatsList(Client& client, const StatsOptions& options, const Io& io);
int RunStatsShow(Client& client, const StatsOptions& options, const Io& io);
int RunStatsActivate(Client& client, const StatsOptions& options, const Io& io);
int RunStatsRollback(Client& client, const StatsOptions& options, const Io& io);
int RunStatsAlias(Client& client, const StatsOptions& options, const Io& io);
int RunStatsDelete(Client& client, const StatsOptions& options, const Io& io);
int RunStatsExport(Client& client, const StatsOptions& options, const Io& io);
int RunStatsImport(Client& client, const StatsOptions& options, const Io& io);
int RunStatsMerge(Client& client, const StatsOptions& options, const Io& io);
int RunStatsJob(Client& client, const StatsOptions& options, const Io& io);
int RunStatsProfile(Client& client, const StatsOptions& options, const Io& io);
// The `logn stats show` lines of a version's calibration profile: the default setting, when
// and how it was chosen and its held-out figures; "default calibration: LogN (built in)" without
// one (stats_profile.cc).
std::string ProfileSection(const v1::StatisticsVersion& v);

// A version as `logn stats show` prints it: the version table's row, the model, payload and
// parents, the sampling and profile sections, and with `include_statistics` the mean and
// variance of every column (stats_show.cc).
std::string VersionText(const v1::StatisticsVersion& v, bool include_statistics);

// How a version's rows were sampled (StatisticsVersion.sampling), as list and show print it.
// The `logn stats show` section, lines ending in "\n": "sampling SOURCE", then RoIs per image
// (rois / images), the achieved positive fraction (positive_rois / rois) next to the requested
// one, and the rfs threshold; one "sampling not recorded" line for a version without a record
// (stats_show.cc).
std::string SamplingSection(const v1::StatisticsVersion& v);
// The compact `logn stats list` column: "proposals 487/img 8%", "logits", "imported"; "-"
// without a record (stats_list.cc).
std::string SamplingColumn(const v1::StatisticsVersion& v);
// The `logn stats list` table: the version table (client/cli/output.h) with the sampling
// column before the description.
std::string ListHeader();
std::string ListLine(const v1::StatisticsVersion& v);

// Helpers of the actions (stats.cc).
// A positional VERSION: a positive integer.
int64_t ParseVersionNumber(const std::string& text, const Args& args);
// The parse of the actions whose one argument is a VERSION (options->version_number).
void ParseVersionArgument(const std::vector<std::string>& pos, const Args& args,
                          StatsOptions* options);
// The parse of the actions whose one argument is a VERSION|ALIAS (options->version).
void ParseSelectorArgument(const std::vector<std::string>& pos, const Args& args,
                           StatsOptions* options);
// "ALIAS -> VERSION (was PREVIOUS)\n": what moving an alias prints.
std::string AliasMoved(const std::string& alias, int64_t version, int64_t previous);
// `message` as JSON when `json`, else what `text` prints.
void PrintJsonOrText(const Io& io, bool json, const google::protobuf::Message& message,
                     const std::function<void()>& text);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_COMMANDS_STATS_ACTIONS_H_
