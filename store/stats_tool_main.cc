// logn_stats: command-line access to a statistics store.
//
//   logn_stats import   --store URL --model NAME --sha256 HEX --file F.json [--activate]
//   logn_stats export   --store URL --model NAME --sha256 HEX --version SEL --file OUT [--binary]
//   logn_stats get      --store URL --model NAME --sha256 HEX --version SEL   (statistics JSON)
//   logn_stats list     --store URL --model NAME --sha256 HEX [--job J] [--source S]
//                       [--partial true|false]
//   logn_stats aliases  --store URL --model NAME --sha256 HEX
//   logn_stats activate --store URL --model NAME --sha256 HEX --version N
//   logn_stats alias    --store URL --model NAME --sha256 HEX --alias A --version N
//   logn_stats unalias  --store URL --model NAME --sha256 HEX --alias A
//   logn_stats rollback --store URL --model NAME --sha256 HEX
//   logn_stats delete   --store URL --model NAME --sha256 HEX --version N
//   logn_stats drop-checkpoint --store URL --model NAME --sha256 HEX --job J
//   logn_stats models   --store URL
//
// `import` reads a version export (JSON or binary) or a bare logn.v1.Statistics JSON
// (tools/import_mmdet_logn.py) and prints the new version number. SEL is a number or an alias.
// `list` filters in the store (by job id, source, partial or not); `drop-checkpoint` abandons a
// calibration job for good (it can no longer resume). Exit status 1 on any error, with the
// status on stderr; 2 on bad usage.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "calibration/statistics_codec.h"
#include "common/status_macros.h"
#include "store/stats_export.h"
#include "store/stats_store.h"

namespace {

using Args = std::map<std::string, std::string>;

int Usage(const std::string& why) {
  std::cerr << "logn_stats: " << why
            << "\nusage: logn_stats import|export|get|list|aliases|activate|alias|unalias|"
               "rollback|delete|drop-checkpoint|models --store URL [--model NAME --sha256 HEX] "
               "[--version SEL] [--alias A] [--file F] [--job J] [--source S] "
               "[--partial true|false] [--activate] [--binary]\n";
  return 2;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Need(const Args& args, const std::string& key) {
  auto it = args.find(key);
  if (it == args.end() || it->second.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", key, " is required"));
  }
  return it->second;
}

absl::StatusOr<int64_t> NeedNumber(const Args& args, const std::string& key) {
  LOGN_ASSIGN_OR_RETURN(std::string text, Need(args, key));
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--", key, " must be a positive number"));
  }
  return v;
}

// What every command works on.
struct Context {
  const Args& args;
  logn::StatsStore& store;
  logn::ModelKey model;  // empty for commands that take no model
};

absl::Status RunImport(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::string file, Need(c.args, "file"));
  LOGN_ASSIGN_OR_RETURN(std::string content, ReadFile(file));
  LOGN_ASSIGN_OR_RETURN(logn::NewVersion v, logn::ParseImport(content, c.model));
  LOGN_ASSIGN_OR_RETURN(logn::VersionRecord record, c.store.Put(v));
  if (c.args.count("activate") != 0) {
    LOGN_RETURN_IF_ERROR(c.store.Activate(c.model, record.info.version).status());
  }
  std::cout << record.info.version << "\n";
  return absl::OkStatus();
}

absl::StatusOr<logn::VersionRecord> GetSelected(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::string text, Need(c.args, "version"));
  LOGN_ASSIGN_OR_RETURN(logn::VersionSelector selector, logn::VersionSelector::Parse(text));
  return c.store.Get(c.model, selector);
}

absl::Status RunGet(Context& c) {
  LOGN_ASSIGN_OR_RETURN(logn::VersionRecord record, GetSelected(c));
  std::cout << logn::StatisticsToJson(record.statistics) << "\n";
  return absl::OkStatus();
}

absl::Status RunExport(Context& c) {
  LOGN_ASSIGN_OR_RETURN(logn::VersionRecord record, GetSelected(c));
  LOGN_ASSIGN_OR_RETURN(std::string file, Need(c.args, "file"));
  return WriteFile(file, c.args.count("binary") != 0 ? logn::VersionToBinary(record)
                                                       : logn::VersionToJson(record));
}

absl::StatusOr<logn::VersionFilter> ListFilter(const Args& args) {
  logn::VersionFilter filter;
  if (auto it = args.find("job"); it != args.end()) filter.job_id = it->second;
  if (auto it = args.find("source"); it != args.end()) {
    logn::VersionSource source;
    LOGN_RETURN_IF_ERROR(logn::ParseVersionSource(it->second, &source));
    filter.source = source;
  }
  if (auto it = args.find("partial"); it != args.end()) {
    if (it->second != "true" && it->second != "false") {
      return absl::InvalidArgumentError("--partial must be true or false");
    }
    filter.partial = it->second == "true";
  }
  return filter;
}

absl::Status RunList(Context& c) {
  LOGN_ASSIGN_OR_RETURN(logn::VersionFilter filter, ListFilter(c.args));
  std::string token;
  do {
    LOGN_ASSIGN_OR_RETURN(logn::VersionPage page, c.store.List(c.model, token, 1000, filter));
    for (const logn::VersionInfo& v : page.versions) {
      std::cout << v.version << "\t" << absl::FormatTime(v.created_at, absl::UTCTimeZone())
                << "\t" << logn::VersionSourceName(v.source) << "\trows=" << v.rows_seen << "\t"
                << (v.partial ? "partial\t" : "") << v.description << "\n";
    }
    token = page.next_page_token;
  } while (!token.empty());
  return absl::OkStatus();
}

absl::Status RunAliases(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::vector<logn::AliasInfo> aliases, c.store.Aliases(c.model));
  for (const logn::AliasInfo& a : aliases) std::cout << a.alias << "\t" << a.version << "\n";
  return absl::OkStatus();
}

absl::Status SetAlias(Context& c, const std::string& alias) {
  LOGN_ASSIGN_OR_RETURN(int64_t version, NeedNumber(c.args, "version"));
  LOGN_ASSIGN_OR_RETURN(int64_t previous, c.store.SetAlias(c.model, alias, version));
  std::cout << "previous\t" << previous << "\n";
  return absl::OkStatus();
}

absl::Status RunActivate(Context& c) { return SetAlias(c, std::string(logn::kActiveAlias)); }

absl::Status RunAlias(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::string alias, Need(c.args, "alias"));
  return SetAlias(c, alias);
}

absl::Status RunUnalias(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::string alias, Need(c.args, "alias"));
  return c.store.RemoveAlias(c.model, alias);
}

absl::Status RunRollback(Context& c) {
  LOGN_ASSIGN_OR_RETURN(int64_t version, c.store.Rollback(c.model));
  std::cout << version << "\n";
  return absl::OkStatus();
}

absl::Status RunDelete(Context& c) {
  LOGN_ASSIGN_OR_RETURN(int64_t version, NeedNumber(c.args, "version"));
  return c.store.Delete(c.model, version);
}

absl::Status RunDropCheckpoint(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::string job, Need(c.args, "job"));
  return c.store.DeleteCheckpoint(c.model, job);
}

absl::Status RunModels(Context& c) {
  LOGN_ASSIGN_OR_RETURN(std::vector<logn::ModelKey> models, c.store.Models());
  for (const logn::ModelKey& m : models) std::cout << m.name << "\t" << m.sha256 << "\n";
  return absl::OkStatus();
}

struct Command {
  bool needs_model;
  absl::Status (*run)(Context&);
};

const std::map<std::string, Command>& Commands() {
  static const auto* kCommands = new std::map<std::string, Command>{
      {"import", {true, RunImport}},         {"export", {true, RunExport}},
      {"get", {true, RunGet}},               {"list", {true, RunList}},
      {"aliases", {true, RunAliases}},       {"activate", {true, RunActivate}},
      {"alias", {true, RunAlias}},           {"unalias", {true, RunUnalias}},
      {"rollback", {true, RunRollback}},     {"delete", {true, RunDelete}},
      {"drop-checkpoint", {true, RunDropCheckpoint}}, {"models", {false, RunModels}},
  };
  return *kCommands;
}

absl::Status Run(const Command& command, const Args& args) {
  LOGN_ASSIGN_OR_RETURN(std::string url, Need(args, "store"));
  logn::ModelKey model;
  if (command.needs_model) {
    LOGN_ASSIGN_OR_RETURN(model.name, Need(args, "model"));
    LOGN_ASSIGN_OR_RETURN(model.sha256, Need(args, "sha256"));
    LOGN_RETURN_IF_ERROR(model.Validate());
  }
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<logn::StatsStore> store, logn::OpenStatsStore(url));
  Context context{args, *store, model};
  return command.run(context);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("no command");
  const std::string name = argv[1];
  auto command = Commands().find(name);
  if (command == Commands().end()) return Usage(absl::StrCat("unknown command '", name, "'"));
  Args args;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return Usage(absl::StrCat("unexpected argument '", arg, "'"));
    arg = arg.substr(2);
    if (arg == "activate" || arg == "binary") {
      args[arg] = "1";
    } else if (i + 1 < argc) {
      args[arg] = argv[++i];
    } else {
      return Usage(absl::StrCat("--", arg, " needs a value"));
    }
  }
  const absl::Status status = Run(command->second, args);
  if (!status.ok()) {
    std::cerr << "logn_stats " << name << ": " << status << "\n";
    return 1;
  }
  return 0;
}
