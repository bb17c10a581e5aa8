#ifndef LOGN_CLIENT_CLI_COMMAND_H_
#define LOGN_CLIENT_CLI_COMMAND_H_

// What a `logn` subcommand is: its name, help, flags, and how its parsed flags become a run. The
// registry (registry.h) lists the commands; each lives in one file under commands/.

#include <any>
#include <functional>
#include <ostream>
#include <string>

#include "client/cli/args.h"
#include "client/lib/client.h"

namespace logn::cli {

// Exit codes of every command: 0 success, 1 a server error (printed as
// "logn CMD: CODE_NAME: message") or an unreadable/invalid input file, 2 a bad argument.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Where a command writes: results to `out`, diagnostics and progress to `err`.
struct Io {
  std::ostream* out;
  std::ostream* err;
  // stdout is a terminal: progress is a redrawn bar instead of periodic lines.
  bool terminal = false;
};

// Reads a command's options from `args`, recording usage errors there (the options are then
// meaningless). The std::any holds the command's options struct (commands.h).
using ParseFn = std::function<std::any(const Args& args)>;
// Runs options returned by the same command's ParseFn; returns the exit code. `client` is
// connected for commands whose flags include the connection group, null for the others.
using RunFn = std::function<int(Client* client, const std::any& options, const Io& io)>;

struct Command {
  std::string name;
  std::string summary;  // its line in `logn help`
  std::string usage;    // `logn NAME --help`
  FlagSpec flags;
  ParseFn parse;
  RunFn run;
};

// The ParseFn of a command whose options `parse` reads.
template <typename Options>
ParseFn ParseInto(Options (*parse)(const Args&)) {
  return [parse](const Args& args) -> std::any { return parse(args); };
}

// The RunFn of a command that talks to the server.
template <typename Options>
RunFn RunWithClient(int (*run)(Client&, const Options&, const Io&)) {
  return [run](Client* client, const std::any& options, const Io& io) {
    return run(*client, std::any_cast<const Options&>(options), io);
  };
}

// The RunFn of a command that works locally (no connection flags, no client).
template <typename Options>
RunFn RunLocally(int (*run)(const Options&, const Io&)) {
  return [run](Client*, const std::any& options, const Io& io) {
    return run(std::any_cast<const Options&>(options), io);
  };
}

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_COMMAND_H_
