#include "client/cli/registry.h"

#include <any>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"

namespace logn::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command>* const commands = new std::vector<Command>{
      DetectCommand(), CalibrateCommand(), ApplyCommand(),  StatsCommand(),
      EvalCommand(),   CompareCommand(),   InfoCommand(),   HealthCommand(),
      BenchCommand(),  TuneCommand(),      ModelsCommand(), DriftCommand()};
  return *commands;
}

const Command* FindCommand(const std::vector<Command>& commands, const std::string& name) {
  for (const Command& command : commands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

std::string MainUsage(const std::vector<Command>& commands) {
  std::string usage = "usage: logn COMMAND [flags]\n\nCommands:\n";
  for (const Command& command : commands) {
    absl::StrAppendFormat(&usage, "  %-12s%s\n", command.name, command.summary);
  }
  return absl::StrCat(
      usage,
      "\n`logn COMMAND --help` describes a command. Exit codes: 0 ok, 1 server error or "
      "unreadable\ninput, 2 bad arguments.\n");
}

int RunCommandLine(const std::vector<Command>& commands, const std::vector<std::string>& argv,
                   const Io& io) {
  if (argv.empty()) return ReportUsage(io, "", "missing COMMAND");
  const std::string& name = argv[0];
  if (name == "--help" || name == "-h" || name == "help") {
    *io.out << MainUsage(commands);
    return kExitOk;
  }
  const Command* command = FindCommand(commands, name);
  if (command == nullptr) return ReportUsage(io, "", "unknown command '" + name + "'");
  Args args(command->flags);
  if (std::string reason = args.Parse({argv.begin() + 1, argv.end()}); !reason.empty()) {
    return ReportUsage(io, name, reason);
  }
  if (args.help()) {
    *io.out << command->usage;
    return kExitOk;
  }
  // Everything is parsed before connecting, so a usage error never waits on the network.
  std::optional<ClientOptions> client_options;
  if (command->flags.connects) client_options = ReadConnection(args);
  if (!command->flags.positional && !args.positional().empty()) {
    args.Fail("unexpected argument '" + args.positional()[0] + "'");
  }
  const std::any options = command->parse(args);
  if (!args.error().empty()) return ReportUsage(io, name, args.error());
  if (!client_options.has_value()) return command->run(nullptr, options, io);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(*client_options);
  if (!client.ok()) return ReportError(io, name, client.status());
  return command->run(client->get(), options, io);
}

}  // namespace logn::cli
