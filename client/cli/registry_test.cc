// The dispatch of a command line: help, usage errors (one line, exit 2, nothing run), and
// running a command with or without a client; on the real registry and on a test one.
#include "client/cli/registry.h"

#include <cctype>
#include <cstdlib>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Outcome {
  int exit = -1;
  std::string out;
  std::string err;
};

Outcome RunLine(const std::vector<Command>& commands, const std::vector<std::string>& argv) {
  std::ostringstream out, err;
  Outcome outcome;
  outcome.exit = RunCommandLine(commands, argv, Io{&out, &err, false});
  outcome.out = out.str();
  outcome.err = err.str();
  return outcome;
}

// What the test commands saw.
struct Calls {
  int runs = 0;
  bool had_client = false;
  std::string value;
};
Calls* calls = nullptr;

struct EchoOptions {
  std::string value;
  std::vector<std::string> words;
};

EchoOptions ParseEcho(const Args& args) {
  EchoOptions o;
  o.value = args.Required("--value");
  o.words = args.positional();
  if (o.value == "bad") args.Fail("--value must not be bad");
  return o;
}

int RunEcho(Client& client, const EchoOptions& options, const Io& io) {
  ++calls->runs;
  calls->had_client = true;
  calls->value = options.value;
  *io.out << client.options().target << " " << options.value << "\n";
  return kExitOk;
}

int RunLocalEcho(const EchoOptions& options, const Io& io) {
  ++calls->runs;
  calls->value = options.value;
  *io.out << options.value << " x" << options.words.size() << "\n";
  return 3;
}

std::vector<Command> TestCommands() {
  FlagSpec remote{{"--value"}, {}};
  FlagSpec local{{"--value"}, {}, /*connects=*/false, /*positional=*/true};
  return {{"remote", "talks to a server", "usage: logn remote\n", remote, ParseInto(&ParseEcho),
           RunWithClient(&RunEcho)},
          {"local", "works offline", "usage: logn local\n", local, ParseInto(&ParseEcho),
           RunLocally(&RunLocalEcho)}};
}

// `flag` appears in `text` as a whole flag (not as the prefix of a longer one).
bool MentionsFlag(const std::string& text, const std::string& flag) {
  for (size_t at = text.find(flag); at != std::string::npos; at = text.find(flag, at + 1)) {
    const size_t end = at + flag.size();
    if (end == text.size() || !(std::isalnum(text[end]) || text[end] == '-')) return true;
  }
  return false;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LOGN_SERVER");
    calls = &calls_;
  }
  void TearDown() override { calls = nullptr; }
  Calls calls_;
};

TEST_F(RegistryTest, MainUsageListsEveryCommandInOrder) {
  const std::string usage = MainUsage(TestCommands());
  EXPECT_EQ(usage,
            "usage: logn COMMAND [flags]\n\nCommands:\n"
            "  remote      talks to a server\n"
            "  local       works offline\n\n"
            "`logn COMMAND --help` describes a command. Exit codes: 0 ok, 1 server error or "
            "unreadable\ninput, 2 bad arguments.\n");
  for (const char* help : {"help", "--help", "-h"}) {
    Outcome o = RunLine(TestCommands(), {help});
    EXPECT_EQ(o.exit, kExitOk);
    EXPECT_EQ(o.out, usage);
  }
}

TEST_F(RegistryTest, UsageErrorsAreOneLineAndRunNothing) {
  // Each command line, and the one line it must print.
  const std::vector<std::pair<std::vector<std::string>, std::string>> kCases = {
      {{}, "logn: missing COMMAND (see --help)\n"},
      {{"nope"}, "logn: unknown command 'nope' (see --help)\n"},
      {{"remote", "--bogus"}, "logn remote: unknown flag --bogus (see --help)\n"},
      {{"remote", "--value"}, "logn remote: --value needs a value (see --help)\n"},
      {{"remote", "--value", "v"}, "logn remote: --server is required (see --help)\n"},
      {{"remote", "--server", "h:1"}, "logn remote: --value is required (see --help)\n"},
      {{"remote", "--server", "h:1", "--value", "v", "extra"},
       "logn remote: unexpected argument 'extra' (see --help)\n"},
      {{"remote", "--server", "h:1", "--value", "bad"},
       "logn remote: --value must not be bad (see --help)\n"},
      {{"local", "--server", "h:1"}, "logn local: unknown flag --server (see --help)\n"},
  };
  for (const auto& [argv, line] : kCases) {
    Outcome o = RunLine(TestCommands(), argv);
    EXPECT_EQ(o.exit, kExitUsage) << line;
    EXPECT_EQ(o.err, line);
    EXPECT_EQ(o.out, "");
  }
  EXPECT_EQ(calls_.runs, 0);
}

TEST_F(RegistryTest, CommandHelpPrintsItsUsageOnly) {
  Outcome o = RunLine(TestCommands(), {"remote", "--value", "bad", "--help"});
  EXPECT_EQ(o.exit, kExitOk);
  EXPECT_EQ(o.out, "usage: logn remote\n");
  EXPECT_EQ(calls_.runs, 0);
}

TEST_F(RegistryTest, RunsWithAClientOrLocally) {
  Outcome remote = RunLine(TestCommands(), {"remote", "--server=127.0.0.1:1", "--value", "v"});
  EXPECT_EQ(remote.exit, kExitOk) << remote.err;
  EXPECT_EQ(remote.out, "127.0.0.1:1 v\n") << "the client is built from the flags";
  EXPECT_TRUE(calls_.had_client);
  setenv("LOGN_SERVER", "env.host:9", 1);
  remote = RunLine(TestCommands(), {"remote", "--value", "w"});
  EXPECT_EQ(remote.out, "env.host:9 w\n");
  Outcome local = RunLine(TestCommands(), {"local", "--value", "u", "a", "b"});
  EXPECT_EQ(local.exit, 3) << "the command's exit code";
  EXPECT_EQ(local.out, "u x2\n");
  EXPECT_EQ(calls_.runs, 3);
}

TEST_F(RegistryTest, ClientErrorsAreReportedWithTheCommandName) {
  Outcome o = RunLine(Commands(),
                      {"health", "--server", "127.0.0.1:1", "--retries", "1", "--deadline", "5"});
  EXPECT_EQ(o.exit, kExitError);
  EXPECT_THAT(o.err, StartsWith("logn health: UNAVAILABLE: "));
}

TEST_F(RegistryTest, TheRealRegistry) {
  const std::vector<Command>& commands = Commands();
  std::vector<std::string> names;
  for (const Command& c : commands) names.push_back(c.name);
  EXPECT_THAT(names,
              ::testing::ElementsAre("detect", "calibrate", "apply", "stats", "eval", "compare",
                                     "info", "health", "bench", "tune", "models", "drift"));
  for (const Command& c : commands) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(c.usage, StartsWith("usage: logn " + c.name));
    EXPECT_FALSE(c.summary.empty());
    EXPECT_EQ(FindCommand(commands, c.name), &c);
    EXPECT_EQ(c.flags.connects, c.name != "eval");
    // Connecting commands describe the connection flags, the others do not take them.
    EXPECT_EQ(absl::StrContains(c.usage, "--server ADDR          host:port"), c.flags.connects);
    // Every flag a command takes is in its help.
    for (const auto* set :
         {&c.flags.value_flags, &c.flags.bool_flags, &c.flags.optional_value_flags}) {
      for (const std::string& flag : *set) {
        EXPECT_TRUE(MentionsFlag(c.usage, flag)) << flag;
      }
    }
  }
  EXPECT_EQ(FindCommand(commands, "nope"), nullptr);
  EXPECT_THAT(MainUsage(commands),
              HasSubstr("  stats       list|show|activate|rollback|alias|delete|export|import|"
                        "merge|job|profile\n"));
}

}  // namespace
}  // namespace logn::cli
