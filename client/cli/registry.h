#ifndef LOGN_CLIENT_CLI_REGISTRY_H_
#define LOGN_CLIENT_CLI_REGISTRY_H_

// The `logn` commands in help order, and the dispatch of one command line to them.

#include <string>
#include <vector>

#include "client/cli/command.h"

namespace logn::cli {

// Every command, in the order `logn help` lists them.
const std::vector<Command>& Commands();

// The command named `name` in `commands`; null when there is none.
const Command* FindCommand(const std::vector<Command>& commands, const std::string& name);

// `logn help`: the usage line, one line per command (name and summary), the exit codes.
std::string MainUsage(const std::vector<Command>& commands);

// Runs one command line (`argv` without the program name) against `commands`: `help`, `--help`
// or `-h` print MainUsage; COMMAND --help prints its usage; usage errors print one line and
// return kExitUsage before anything connects; otherwise the command runs, on a client built
// from the connection flags when it connects. Returns the exit code.
int RunCommandLine(const std::vector<Command>& commands, const std::vector<std::string>& argv,
                   const Io& io);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_REGISTRY_H_
