// logn stats ACTION: the statistics store's versions and aliases. Each action's parse and run
// are one stats_ACTION.cc; this file holds the command's help, its flags, the action table and
// the dispatch.

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "client/cli/commands/stats_actions.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"

namespace logn::cli {
namespace {

struct StatsActionSpec {
  StatsAction action;
  const char* name;
  const char* help;  // its line(s) in `logn stats --help`
  // How many arguments follow the name (-1: any number, `parse` checks), and how the usage
  // error "stats NAME takes ARGS_HELP" names them.
  int arg_count;
  const char* args_help;
  StatsParseFn parse;  // null: nothing to read
  StatsRunFn run;
};

// In help order.
constexpr StatsActionSpec kStatsActions[] = {
    {StatsAction::kList, "list",
     "  list [--job-id ID] [--source logits|images|merge|import|served]\n"
     "       [--partial|--complete] [--json]   the versions, ascending; each filter given\n"
     "                                         keeps those that match it (--job-id \"\":\n"
     "                                         the versions without a job id)\n",
     0, "no arguments", nullptr, &RunStatsList},
    {StatsAction::kShow, "show", "  show VERSION|ALIAS [--statistics] [--json]\n", 1,
     "VERSION|ALIAS", &ParseSelectorArgument, &RunStatsShow},
    {StatsAction::kActivate, "activate",
     "  activate VERSION [--allow-served-traffic]\n"
     "                                         point \"active\" at VERSION (a served-traffic\n"
     "                                         version, i.e. a drift reference or snapshot,\n"
     "                                         only with --allow-served-traffic)\n",
     1, "VERSION", &ParseVersionArgument, &RunStatsActivate},
    {StatsAction::kRollback, "rollback",
     "  rollback                               point \"active\" back where it was\n", 0,
     "no arguments", nullptr, &RunStatsRollback},
    {StatsAction::kAlias, "alias",
     "  alias NAME VERSION [--allow-served-traffic]\n"
     "                                         point alias NAME at VERSION\n",
     2, "NAME VERSION", &ParseStatsAlias, &RunStatsAlias},
    {StatsAction::kDelete, "delete", "  delete VERSION\n", 1, "VERSION", &ParseVersionArgument,
     &RunStatsDelete},
    {StatsAction::kExport, "export",
     "  export VERSION|ALIAS [--out FILE] [--format json|binary]   (stdout without --out)\n", 1,
     "VERSION|ALIAS", &ParseSelectorArgument, &RunStatsExport},
    {StatsAction::kImport, "import",
     "  import FILE [--description TEXT] [--activate] [--json]   (JSON or binary: detected)\n", 1,
     "FILE", &ParseStatsImport, &RunStatsImport},
    {StatsAction::kMerge, "merge",
     "  merge VERSION VERSION... [--activate] [--partial] [--description TEXT]\n"
     "        [--job-id ID] [--json]           one version from exact-mode shards\n",
     -1, "", &ParseStatsMerge, &RunStatsMerge},
    {StatsAction::kJob, "job",
     "  job JOB_ID [--json]                    a resumable job's last checkpoint\n", 1, "JOB_ID",
     &ParseStatsJob, &RunStatsJob},
    {StatsAction::kProfile, "profile",
     "  profile VERSION|ALIAS (--setting NAME | --clear) [--description TEXT] [--json]\n"
     "                                         the version's default calibration (NAME: a\n"
     "                                         `logn tune` setting, e.g. "
     "\"logn(a=1,g=0,beta=off)\")\n",
     1, "VERSION|ALIAS", &ParseStatsProfile, &RunStatsProfile},
};

// The first action `match` accepts; null when none does.
template <typename Match>
const StatsActionSpec* FindAction(Match match) {
  for (const StatsActionSpec& spec : kStatsActions) {
    if (match(spec)) return &spec;
  }
  return nullptr;
}

// "list|show|...": the summary line of `logn help`.
std::string ActionNames() {
  std::vector<std::string> names;
  for (const StatsActionSpec& spec : kStatsActions) names.push_back(spec.name);
  return absl::StrJoin(names, "|");
}

std::string StatsUsage() {
  std::string usage =
      "usage: logn stats ACTION [args] --server ADDR [flags]\n\n"
      "Actions:\n";
  for (const StatsActionSpec& spec : kStatsActions) usage += spec.help;
  return absl::StrCat(usage, "\nEvery action:\n", ModelGroup().help, "\n", ConnectionGroup().help);
}

}  // namespace

int64_t ParseVersionNumber(const std::string& text, const Args& args) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v <= 0) {
    args.Fail("VERSION must be a positive integer, got '" + text + "'");
  }
  return v;
}

void ParseVersionArgument(const std::vector<std::string>& pos, const Args& args,
                          StatsOptions* options) {
  options->version_number = ParseVersionNumber(pos[1], args);
}

void ParseSelectorArgument(const std::vector<std::string>& pos, const Args& args,
                           StatsOptions* options) {
  options->selector = ParseSelectorText(args, pos[1]);
}

std::string AliasMoved(const std::string& alias, int64_t version, int64_t previous) {
  return absl::StrCat(alias, " -> ", version, " (was ", previous, ")\n");
}

void PrintJsonOrText(const Io& io, bool json, const google::protobuf::Message& message,
                     const std::function<void()>& text) {
  if (json) {
    *io.out << ProtoJson(message) << "\n";
  } else {
    text();
  }
}

namespace {

// Every action takes every flag, meaning the same; an action reads only its arguments.
void ReadStatsFlags(const Args& args, StatsOptions& o) {
  o.model = ReadModel(args);
  o.allow_served_traffic = args.Has("--allow-served-traffic");
  o.json = args.Has("--json");
  o.include_statistics = args.Has("--statistics");
  o.out_path = args.Get("--out");
  o.description = args.Get("--description");
  o.activate = args.Has("--activate");
  o.partial = args.Has("--partial");
  o.complete = args.Has("--complete");
  o.setting_name = args.Get("--setting");
  o.clear = args.Has("--clear");
  if (o.partial && o.complete) args.Fail("--partial and --complete are exclusive");
  if (args.Has("--job-id")) o.job_id = args.Get("--job-id");
  if (args.Has("--format") && !ParseEnumName(args.Get("--format"), &o.export_format)) {
    args.Fail("--format must be json or binary");
  }
  if (args.Has("--source")) {
    v1::VersionSource source;
    if (ParseEnumName(args.Get("--source"), &source)) {
      o.source = source;
    } else {
      args.Fail("--source must be logits, images, merge, import or served");
    }
  }
}

StatsOptions ParseStatsOptions(const Args& args) {
  StatsOptions o;
  const std::vector<std::string>& pos = args.positional();
  if (pos.empty()) {
    args.FailFirst("missing ACTION (list, show, activate, ...)");
    return o;
  }
  ReadStatsFlags(args, o);
  const StatsActionSpec* spec =
      FindAction([&](const StatsActionSpec& s) { return pos[0] == s.name; });
  if (spec == nullptr) {
    args.Fail("unknown stats action '" + pos[0] + "'");
    return o;
  }
  o.action = spec->action;
  if (spec->arg_count >= 0 && pos.size() != static_cast<size_t>(spec->arg_count) + 1) {
    args.Fail(absl::StrCat("stats ", spec->name, " takes ", spec->args_help));
  } else if (spec->parse != nullptr) {
    spec->parse(pos, args, &o);
  }
  return o;
}

int RunStats(Client& client, const StatsOptions& options, const Io& io) {
  const StatsActionSpec* spec =
      FindAction([&](const StatsActionSpec& s) { return s.action == options.action; });
  return spec == nullptr ? kExitError : spec->run(client, options, io);
}

}  // namespace

Command StatsCommand() {
  return {"stats",
          ActionNames(),
          StatsUsage(),
          FlagSpec{{"--out", "--format", "--description", "--job-id", "--source", "--setting"},
                   {"--json", "--statistics", "--activate", "--partial", "--complete", "--clear",
                    "--allow-served-traffic"},
                   /*connects=*/true,
                   /*positional=*/true}
              .Add({&ModelGroup()}),
          ParseInto(&ParseStatsOptions),
          RunWithClient(&RunStats)};
}

}  // namespace logn::cli
