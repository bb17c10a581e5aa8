// logn: the command-line client of LogN Serve. The commands are in commands/ and listed in
// registry.cc; docs/cli.md documents every command.
//
// Exit codes: 0 success, 1 server error or unreadable input, 2 bad arguments.

#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "client/cli/registry.h"

int main(int argc, char** argv) {
  const logn::cli::Io io{&std::cout, &std::cerr, isatty(STDOUT_FILENO) == 1};
  return logn::cli::RunCommandLine(logn::cli::Commands(),
                                   std::vector<std::string>(argv + 1, argv + argc), io);
}
