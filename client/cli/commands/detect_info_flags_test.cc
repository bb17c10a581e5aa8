// The flags of `logn detect` and `logn info` that choose between output for people (tables, a
// summary, pictures) and for scripts (--json); the output itself is output_test.cc / draw_test.cc,
// the commands against a server client/testing/cli_e2e_test.py.
#include <any>
#include <string>
#include <vector>

#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

// The command's options for `argv`, and its usage error ("" when none).
template <typename Options>
Options Parse(const Command& command, const std::vector<std::string>& argv, std::string* error) {
  Args args(command.flags);
  const std::string syntax = args.Parse(argv);
  EXPECT_EQ(syntax, "") << ::testing::PrintToString(argv);
  std::any options = command.parse(args);
  *error = args.error();
  return std::any_cast<Options>(options);
}

TEST(DetectOutputFlagsTest, TablesByDefaultJsonOnRequest) {
  std::string error;
  DetectOptions o = Parse<DetectOptions>(DetectCommand(), {"a.png"}, &error);
  EXPECT_EQ(error, "");
  EXPECT_FALSE(o.json);
  EXPECT_EQ(o.top, 10);
  EXPECT_EQ(o.draw_dir, "");
  EXPECT_TRUE(o.more_settings.empty());
  o = Parse<DetectOptions>(DetectCommand(),
                           {"a.png", "--json", "--top", "0", "--draw", "out", "--draw-scale", "3"},
                           &error);
  EXPECT_EQ(error, "");
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.top, 0);
  EXPECT_EQ(o.draw_dir, "out");
  EXPECT_EQ(o.draw_scale, 3);
  o = Parse<DetectOptions>(DetectCommand(), {"a.png", "--draw", "out", "--draw-scale", "auto"},
                           &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(o.draw_scale, 0);
}

TEST(DetectOutputFlagsTest, SeveralMethodsAreSeveralSettings) {
  std::string error;
  DetectOptions o =
      Parse<DetectOptions>(DetectCommand(), {"a.png", "--method", "none,LogN,loga"}, &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(o.setting.calibration_method(), v1::CALIBRATION_METHOD_NONE);
  EXPECT_EQ(o.setting.name(), "none");
  ASSERT_EQ(o.more_settings.size(), 2u);
  EXPECT_EQ(o.more_settings[0].calibration_method(), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_EQ(o.more_settings[0].name(), "logn");
  EXPECT_EQ(o.more_settings[1].calibration_method(), v1::CALIBRATION_METHOD_LOGA);
  // One method: as before.
  o = Parse<DetectOptions>(DetectCommand(), {"a.png", "--method", "loga"}, &error);
  EXPECT_EQ(o.setting.calibration_method(), v1::CALIBRATION_METHOD_LOGA);
  EXPECT_TRUE(o.more_settings.empty());
}

TEST(DetectOutputFlagsTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"a.png", "--top", "-1"}, "--top must be an integer in [0, 1000000], got '-1'"},
      {{"a.png", "--draw-scale", "2"}, "--draw-scale only applies with --draw"},
      {{"a.png", "--draw", "d", "--draw-scale", "17"},
       "--draw-scale must be an integer in [1, 16], got '17'"},
      {{"a.png", "--draw", ""}, "--draw needs a directory"},
      {{"a.png", "--json", "--lvis-results", "r.json"}, "--json and --lvis-results are exclusive"},
      {{"a.png", "--method", "none,,logn"}, "--method must be default, none, logn or loga, got ''"},
      {{"a.png", "--method", "none,logn", "--lvis-results", "r.json"},
       "--lvis-results takes a single --method"},
  };
  for (const auto& [argv, expected] : cases) {
    std::string error;
    Parse<DetectOptions>(DetectCommand(), argv, &error);
    EXPECT_EQ(error, expected) << ::testing::PrintToString(argv);
  }
}

TEST(InfoOutputFlagsTest, SummaryByDefault) {
  std::string error;
  InfoOptions o = Parse<InfoOptions>(InfoCommand(), {}, &error);
  EXPECT_EQ(error, "");
  EXPECT_FALSE(o.json);
  EXPECT_FALSE(o.classes);
  o = Parse<InfoOptions>(InfoCommand(), {"--json"}, &error);
  EXPECT_TRUE(o.json);
  o = Parse<InfoOptions>(InfoCommand(), {"--classes"}, &error);
  EXPECT_TRUE(o.classes);
  Parse<InfoOptions>(InfoCommand(), {"--classes", "--json"}, &error);
  EXPECT_EQ(error, "--json and --classes are exclusive (--json has the classes)");
}

}  // namespace
}  // namespace logn::cli
