// logn_stats: command-line access to a statistics store.
//
//   logn_stats import   --store URL --model NAME --sha256 HEX --file F.json [--activate]
//   logn_stats export   --store URL --model NAME --sha256 HEX --version SEL --file OUT [--binary]
//   logn_stats get      --store URL --model NAME --sha256 HEX --version SEL   (statistics JSON)
//   logn_stats list     --store URL --model NAME --sha256 HEX
//   logn_stats aliases  --store URL --model NAME --sha256 HEX
//   logn_stats activate --store URL --model NAME --sha256 HEX --version N
//   logn_stats alias    --store URL --model NAME --sha256 HEX --alias A --version N
//   logn_stats rollback --store URL --model NAME --sha256 HEX
//   logn_stats delete   --store URL --model NAME --sha256 HEX --version N
//
// `import` reads a version export (JSON or binary) or a bare logn.v1.Statistics JSON
// (tools/import_mmdet_logn.py)
// and prints the new version number. SEL is a number or an alias. Exit status 1 on any error,
// with the status on stderr; 2 on bad usage.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

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
            << "\nusage: logn_stats import|export|get|list|aliases|activate|alias|rollback|delete "
               "--store URL --model NAME --sha256 HEX [--version SEL] [--alias A] [--file F] "
               "[--activate] [--binary]\n";
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

absl::Status Run(const std::string& command, const Args& args) {
  LOGN_ASSIGN_OR_RETURN(std::string url, Need(args, "store"));
  LOGN_ASSIGN_OR_RETURN(std::string name, Need(args, "model"));
  LOGN_ASSIGN_OR_RETURN(std::string sha, Need(args, "sha256"));
  const logn::ModelKey model{name, sha};
  LOGN_RETURN_IF_ERROR(model.Validate());
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<logn::StatsStore> store, logn::OpenStatsStore(url));

  if (command == "import") {
    LOGN_ASSIGN_OR_RETURN(std::string file, Need(args, "file"));
    LOGN_ASSIGN_OR_RETURN(std::string content, ReadFile(file));
    LOGN_ASSIGN_OR_RETURN(logn::NewVersion v, logn::ParseImport(content, model));
    LOGN_ASSIGN_OR_RETURN(logn::VersionRecord record, store->Put(v));
    if (args.count("activate") != 0) {
      LOGN_RETURN_IF_ERROR(store->Activate(model, record.info.version).status());
    }
    std::cout << record.info.version << "\n";
    return absl::OkStatus();
  }
  if (command == "export" || command == "get") {
    LOGN_ASSIGN_OR_RETURN(std::string sel_text, Need(args, "version"));
    LOGN_ASSIGN_OR_RETURN(logn::VersionSelector sel, logn::VersionSelector::Parse(sel_text));
    LOGN_ASSIGN_OR_RETURN(logn::VersionRecord record, store->Get(model, sel));
    if (command == "get") {
      std::cout << logn::StatisticsToJson(record.statistics) << "\n";
      return absl::OkStatus();
    }
    LOGN_ASSIGN_OR_RETURN(std::string file, Need(args, "file"));
    return WriteFile(file, args.count("binary") != 0 ? logn::VersionToBinary(record)
                                                      : logn::VersionToJson(record));
  }
  if (command == "list") {
    std::string token;
    do {
      LOGN_ASSIGN_OR_RETURN(logn::VersionPage page, store->List(model, token, 1000));
      for (const logn::VersionInfo& v : page.versions) {
        std::cout << v.version << "\t" << absl::FormatTime(v.created_at, absl::UTCTimeZone())
                  << "\t" << logn::VersionSourceName(v.source) << "\trows=" << v.rows_seen
                  << "\t" << (v.partial ? "partial\t" : "") << v.description << "\n";
      }
      token = page.next_page_token;
    } while (!token.empty());
    return absl::OkStatus();
  }
  if (command == "aliases") {
    LOGN_ASSIGN_OR_RETURN(std::vector<logn::AliasInfo> aliases, store->Aliases(model));
    for (const logn::AliasInfo& a : aliases) std::cout << a.alias << "\t" << a.version << "\n";
    return absl::OkStatus();
  }
  if (command == "activate" || command == "alias") {
    LOGN_ASSIGN_OR_RETURN(int64_t version, NeedNumber(args, "version"));
    std::string alias(logn::kActiveAlias);
    if (command == "alias") {
      LOGN_ASSIGN_OR_RETURN(alias, Need(args, "alias"));
    }
    LOGN_ASSIGN_OR_RETURN(int64_t previous, store->SetAlias(model, alias, version));
    std::cout << "previous\t" << previous << "\n";
    return absl::OkStatus();
  }
  if (command == "rollback") {
    LOGN_ASSIGN_OR_RETURN(int64_t version, store->Rollback(model));
    std::cout << version << "\n";
    return absl::OkStatus();
  }
  if (command == "delete") {
    LOGN_ASSIGN_OR_RETURN(int64_t version, NeedNumber(args, "version"));
    return store->Delete(model, version);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("no command");
  const std::string command = argv[1];
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
  const absl::Status status = Run(command, args);
  if (!status.ok()) {
    std::cerr << "logn_stats " << command << ": " << status << "\n";
    return 1;
  }
  return 0;
}
