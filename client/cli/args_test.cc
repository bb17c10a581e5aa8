#include "client/cli/args.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

FlagSpec TestFlags() {
  FlagSpec flags{{"--name", "--count", "--ratio"}, {"--yes"}};
  flags.positional = true;
  return flags;
}

TEST(ArgsParseTest, ValuedBooleanAndPositionalArguments) {
  Args args(TestFlags());
  ASSERT_EQ(args.Parse({"a.png", "--name", "x", "--count=3", "--yes", "-", "b.png", "--name=y"}),
            "");
  EXPECT_THAT(args.positional(), ElementsAre("a.png", "-", "b.png"));
  EXPECT_EQ(args.Get("--name"), "y") << "the last value wins";
  EXPECT_EQ(args.Get("--count"), "3");
  EXPECT_TRUE(args.Has("--yes"));
  EXPECT_FALSE(args.Has("--ratio"));
  EXPECT_EQ(args.Get("--ratio", "fallback"), "fallback");
  EXPECT_FALSE(args.help());
}

TEST(ArgsParseTest, DoubleDashEndsTheFlagsAndHelpStopsParsing) {
  Args args(TestFlags());
  ASSERT_EQ(args.Parse({"--", "--name", "-h"}), "");
  EXPECT_THAT(args.positional(), ElementsAre("--name", "-h"));
  EXPECT_FALSE(args.help());
  Args help(TestFlags());
  ASSERT_EQ(help.Parse({"--help", "--bogus"}), "");
  EXPECT_TRUE(help.help());
  Args short_help(TestFlags());
  ASSERT_EQ(short_help.Parse({"-h"}), "");
  EXPECT_TRUE(short_help.help());
}

TEST(ArgsParseTest, SyntaxErrors) {
  EXPECT_EQ(Args(TestFlags()).Parse({"--bogus"}), "unknown flag --bogus");
  EXPECT_EQ(Args(TestFlags()).Parse({"--bogus=1"}), "unknown flag --bogus");
  EXPECT_EQ(Args(TestFlags()).Parse({"--name"}), "--name needs a value");
  EXPECT_EQ(Args(TestFlags()).Parse({"--yes=1"}), "--yes takes no value");
}

TEST(ArgsParseTest, ConnectionFlagsOnlyForCommandsThatConnect) {
  FlagSpec connecting = TestFlags();
  EXPECT_EQ(Args(connecting).Parse({"--server", "h:1", "--tls", "--retries=2"}), "");
  FlagSpec local = TestFlags();
  local.connects = false;
  EXPECT_EQ(Args(local).Parse({"--server", "h:1"}), "unknown flag --server");
  EXPECT_EQ(Args(local).Parse({"--tls"}), "unknown flag --tls");
}

TEST(ArgsTest, TypedReadsRecordTheFirstErrorAndReturnTheFallback) {
  Args args(TestFlags());
  ASSERT_EQ(args.Parse({"--count", "12", "--ratio", "abc"}), "");
  EXPECT_EQ(args.Int("--count", 1, 0, 100), 12);
  EXPECT_EQ(args.Int("--missing", 7, 0, 100), 7);
  EXPECT_TRUE(args.error().empty());
  EXPECT_EQ(args.Int("--count", 1, 0, 10), 1);
  EXPECT_EQ(args.error(), "--count must be an integer in [0, 10], got '12'");
  EXPECT_EQ(args.Double("--ratio", 0.5, 0, 1), 0.5);
  EXPECT_EQ(args.error(), "--count must be an integer in [0, 10], got '12'") << "first wins";
  args.FailFirst("missing ACTION");
  EXPECT_EQ(args.error(), "missing ACTION") << "FailFirst replaces earlier errors";
}

TEST(ArgsTest, DoubleRangeAndRequired) {
  Args args(TestFlags());
  ASSERT_EQ(args.Parse({"--ratio", "nan", "--name="}), "");
  EXPECT_EQ(args.Double("--ratio", 2, 0, 1), 2);
  EXPECT_EQ(args.error(), "--ratio must be a number in [0, 1], got 'nan'");
  Args required(TestFlags());
  ASSERT_EQ(required.Parse({"--name="}), "");
  EXPECT_EQ(required.Required("--name"), "");
  EXPECT_EQ(required.error(), "--name is required") << "empty counts as missing";
}

Args Parsed(const std::vector<std::string>& argv, FlagSpec flags) {
  Args args(std::move(flags));
  EXPECT_EQ(args.Parse(argv), "");
  return args;
}

FlagSpec GroupFlags() {
  return FlagSpec{}.Add({&SelectorGroup(), &MethodGroup(), &PostprocessGroup()});
}

TEST(FlagGroupsTest, SelectorVersionAliasOrDefault) {
  EXPECT_EQ(ReadSelector(Parsed({"--version", "3"}, GroupFlags())).version(), 3);
  EXPECT_EQ(ReadSelector(Parsed({"--alias", "canary"}, GroupFlags())).alias(), "canary");
  EXPECT_EQ(ReadSelector(Parsed({}, GroupFlags())).selector_case(),
            v1::StatisticsSelector::SELECTOR_NOT_SET);
  Args both = Parsed({"--version", "3", "--alias", "x"}, GroupFlags());
  ReadSelector(both);
  EXPECT_EQ(both.error(), "--version and --alias are exclusive");
  Args zero = Parsed({"--version", "0"}, GroupFlags());
  ReadSelector(zero);
  EXPECT_THAT(zero.error(), HasSubstr("--version must be an integer in [1, "));
}

TEST(FlagGroupsTest, SelectorText) {
  Args args = Parsed({}, GroupFlags());
  EXPECT_EQ(ParseSelectorText(args, "12").version(), 12);
  EXPECT_EQ(ParseSelectorText(args, "canary").alias(), "canary");
  EXPECT_TRUE(args.error().empty());
  ParseSelectorText(args, "-1");
  EXPECT_EQ(args.error(), "version must be > 0, got -1");
  Args empty = Parsed({}, GroupFlags());
  ParseSelectorText(empty, "");
  EXPECT_EQ(empty.error(), "empty version or alias");
}

TEST(FlagGroupsTest, MethodIsCaseInsensitiveAndNamesTheSetting) {
  // No --method: the model's default (its profile, else LogN), left unnamed for the server.
  v1::CalibrationSetting def = ReadMethod(Parsed({}, GroupFlags()));
  EXPECT_EQ(def.calibration_method(), v1::CALIBRATION_METHOD_MODEL_DEFAULT);
  EXPECT_EQ(def.name(), "");
  v1::CalibrationSetting logn = ReadMethod(Parsed({"--method", "logn"}, GroupFlags()));
  EXPECT_EQ(logn.calibration_method(), v1::CALIBRATION_METHOD_LOGN);
  EXPECT_EQ(logn.name(), "logn");
  v1::CalibrationSetting loga = ReadMethod(Parsed({"--method", "LogA"}, GroupFlags()));
  EXPECT_EQ(loga.calibration_method(), v1::CALIBRATION_METHOD_LOGA);
  EXPECT_EQ(loga.name(), "loga");
  Args bad = Parsed({"--method", "BOGUS"}, GroupFlags());
  ReadMethod(bad);
  EXPECT_EQ(bad.error(), "--method must be default, none, logn or loga, got 'bogus'");
  Args spelled = Parsed({"--method", "model_default"}, GroupFlags());
  ReadMethod(spelled);  // only "default" names it
  EXPECT_FALSE(spelled.error().empty());
}

TEST(FlagGroupsTest, PostprocessSetsOnlyWhatIsGiven) {
  v1::PostprocessOptions none = ReadPostprocess(Parsed({}, GroupFlags()));
  EXPECT_FALSE(none.has_score_threshold());
  v1::PostprocessOptions p = ReadPostprocess(Parsed(
      {"--score-threshold", "0.25", "--nms-iou", "0.6", "--max-detections", "7"}, GroupFlags()));
  EXPECT_FLOAT_EQ(p.score_threshold(), 0.25f);
  EXPECT_FLOAT_EQ(p.nms_iou(), 0.6f);
  EXPECT_EQ(p.max_detections(), 7);
  Args bad = Parsed({"--max-detections", "0"}, GroupFlags());
  ReadPostprocess(bad);
  EXPECT_THAT(bad.error(), HasSubstr("--max-detections must be an integer in [1, 100000]"));
}

TEST(ArgsParseTest, OptionalValueFlagsTakeOnlyANumberFromTheNextArgument) {
  FlagSpec flags = TestFlags();
  flags.optional_value_flags = {"--watch"};
  Args alone(flags);
  ASSERT_EQ(alone.Parse({"--watch"}), "");
  EXPECT_TRUE(alone.Has("--watch"));
  EXPECT_EQ(alone.Get("--watch"), "");
  Args number(flags);
  ASSERT_EQ(number.Parse({"--watch", "2.5", "a.png"}), "");
  EXPECT_EQ(number.Get("--watch"), "2.5");
  EXPECT_THAT(number.positional(), ElementsAre("a.png"));
  Args word(flags);
  ASSERT_EQ(word.Parse({"--watch", "snapshot", "--yes"}), "");
  EXPECT_EQ(word.Get("--watch"), "");
  EXPECT_THAT(word.positional(), ElementsAre("snapshot"));
  EXPECT_TRUE(word.Has("--yes"));
  Args equals(flags);
  ASSERT_EQ(equals.Parse({"--watch=x"}), "");
  EXPECT_EQ(equals.Get("--watch"), "x") << "--name=VALUE is always the value";
}

TEST(FlagGroupsTest, ModelNameAndVersionAndTheRequestSetters) {
  const FlagSpec flags = FlagSpec{}.Add({&ModelGroup()});
  ModelRef model = ReadModel(Parsed({"--model", "lvis", "--model-version", "12"}, flags));
  EXPECT_EQ(model.name, "lvis");
  EXPECT_EQ(model.version, 12);
  model = ReadModel(Parsed({}, flags));
  EXPECT_EQ(model.name, "");
  EXPECT_EQ(model.version, 0) << "the newest available version";
  EXPECT_EQ(ReadModel(Parsed({"--model-version", "0"}, flags)).version, 0);
  for (const char* bad : {"-2", "1.5", "x", ""}) {
    Args args = Parsed({"--model-version", bad}, flags);
    EXPECT_EQ(ReadModel(args).version, 0);
    EXPECT_EQ(args.error(),
              absl::StrCat("--model-version must be a positive integer, got '", bad, "'"));
  }
  v1::DetectRequest request;
  SetSelector(v1::StatisticsSelector(), &request);
  EXPECT_FALSE(request.has_selector()) << "unset stays absent";
  v1::StatisticsSelector canary;
  canary.set_alias("canary");
  SetSelector(canary, &request);
  EXPECT_EQ(request.selector().alias(), "canary");
  SetModel(ModelRef{"lvis", 3}, &request);
  EXPECT_EQ(request.model_name(), "lvis");
  EXPECT_EQ(request.model_version(), 3);
  // A later call pins the version the first one was answered by, unless one was named.
  EXPECT_EQ(PinModelVersion(ModelRef{"lvis", 0}, 5).version, 5);
  EXPECT_EQ(PinModelVersion(ModelRef{"lvis", 2}, 5).version, 2);
  EXPECT_EQ(PinModelVersion(ModelRef{"lvis", 0}, 0).version, 0);
}

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LOGN_SERVER");
    unsetenv("LOGN_TOKEN");
  }
  void TearDown() override { SetUp(); }
};

TEST_F(ConnectionTest, FlagsWithDefaultsAndEnvironment) {
  Args args = Parsed({"--server", "h:1", "--deadline", "2.5", "--retries", "1"}, FlagSpec{});
  ClientOptions options = ReadConnection(args);
  EXPECT_TRUE(args.error().empty()) << args.error();
  EXPECT_EQ(options.target, "h:1");
  EXPECT_EQ(options.deadline, absl::Milliseconds(2500));
  EXPECT_EQ(options.retry.max_attempts, 1);
  EXPECT_FALSE(options.tls.enabled);
  setenv("LOGN_SERVER", "env:2", 1);
  setenv("LOGN_TOKEN", "t0k", 1);
  Args env = Parsed({}, FlagSpec{});
  options = ReadConnection(env);
  EXPECT_TRUE(env.error().empty()) << env.error();
  EXPECT_EQ(options.target, "env:2");
  EXPECT_EQ(options.bearer_token, "t0k");
  EXPECT_EQ(options.deadline, absl::Seconds(60));
  EXPECT_EQ(options.retry.max_attempts, 4);
}

TEST_F(ConnectionTest, TlsFilesImplyTlsAndAreValidated) {
  Args ca = Parsed({"--server", "h:1", "--tls-ca", "ca.pem"}, FlagSpec{});
  EXPECT_TRUE(ReadConnection(ca).tls.enabled);
  Args half = Parsed({"--server", "h:1", "--tls-cert", "c.pem"}, FlagSpec{});
  ReadConnection(half);
  EXPECT_THAT(half.error(), HasSubstr("cert_chain_file and private_key_file go together"));
  Args missing = Parsed({}, FlagSpec{});
  ReadConnection(missing);
  EXPECT_EQ(missing.error(), "--server is required");
}

}  // namespace
}  // namespace logn::cli
