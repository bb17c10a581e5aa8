#ifndef LOGN_CLIENT_CLI_ARGS_H_
#define LOGN_CLIENT_CLI_ARGS_H_

// Command-line parsing shared by every `logn` command: the flag syntax, typed reads with range
// checks, and the flag groups several commands take (connection, statistics selector, method,
// post-processing) with their help text.
//
// Syntax: `--name VALUE` or `--name=VALUE` for valued flags, `--name` for boolean ones; a flag
// given twice keeps the last value; `--` ends the flags; anything else is positional. A flag
// whose value is optional (`--watch [SECONDS]`) takes `--name=VALUE`, or the next argument when
// that is a number, else no value.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/lib/client.h"
#include "logn/v1/common.pb.h"
#include "logn/v1/detection_service.pb.h"

namespace logn::cli {

// Flags shared by several commands, with the help lines that describe them.
struct FlagGroup {
  std::string help;
  std::set<std::string> value_flags;
  std::set<std::string> bool_flags;
};
// --server, --deadline, --retries, --token, --tls*: taken by every command that connects.
const FlagGroup& ConnectionGroup();
// --version N | --alias NAME.
const FlagGroup& SelectorGroup();
// --method none|logn|loga.
const FlagGroup& MethodGroup();
// --score-threshold, --nms-iou, --max-detections.
const FlagGroup& PostprocessGroup();
// --model NAME, --model-version N: which model version a command's requests name.
const FlagGroup& ModelGroup();

// The flags a command accepts.
struct FlagSpec {
  std::set<std::string> value_flags;  // --name VALUE
  std::set<std::string> bool_flags;   // --name
  bool connects = true;               // also takes ConnectionGroup()
  // Takes positional arguments; without, the dispatcher refuses any ("unexpected argument").
  bool positional = false;
  std::set<std::string> optional_value_flags;  // --name [NUMBER]

  // Adds the flags of `groups` (for a command's definition).
  FlagSpec& Add(std::initializer_list<const FlagGroup*> groups);
};

// One command line of a command: flags by name, positional arguments, and the first usage error
// met while reading them. The typed getters record an error (and return the fallback) instead of
// failing, so a command reads all its flags and then checks error() once.
class Args {
 public:
  explicit Args(FlagSpec spec) : spec_(std::move(spec)) {}

  // Parses the arguments after the command name. Returns the syntax error ("unknown flag
  // --x", "--x needs a value", "--x takes no value"), empty on success. Stops at --help / -h.
  std::string Parse(const std::vector<std::string>& argv);

  bool help() const { return help_; }
  bool Has(const std::string& name) const { return flags_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& positional() const { return positional_; }

  // Records a usage error; the first one wins.
  void Fail(std::string reason) const;
  // Records a usage error that makes the earlier ones moot (e.g. a missing sub-command).
  void FailFirst(std::string reason) const { error_ = std::move(reason); }
  const std::string& error() const { return error_; }

  // The flag's value; records "NAME is required" when absent or empty.
  std::string Required(const std::string& name) const;
  // The flag as an integer / a number in [min, max]; `fallback` when absent.
  int64_t Int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  double Double(const std::string& name, double fallback, double min, double max) const;

 private:
  bool Valued(const std::string& name) const;
  bool Boolean(const std::string& name) const;
  bool OptionalValue(const std::string& name) const;

  FlagSpec spec_;
  std::map<std::string, std::string> flags_;
  std::vector<std::string> positional_;
  bool help_ = false;
  mutable std::string error_;
};

// Readers of the flag groups and of common argument shapes; each records its usage errors in
// `args`.
// The connection flags, with $LOGN_SERVER / $LOGN_TOKEN as defaults, validated.
ClientOptions ReadConnection(const Args& args);
// --version / --alias (exclusive); unset: the server's default, "active".
v1::StatisticsSelector ReadSelector(const Args& args);
// Puts `selector` in `request` only when it names a version or an alias: an unset selector stays
// absent, which every server reads as "active" (a present but empty one is read as a demand for
// LogN statistics by some, which refuses the missing-statistics fallback).
template <typename Request>
void SetSelector(const v1::StatisticsSelector& selector, Request* request) {
  if (selector.selector_case() != v1::StatisticsSelector::SELECTOR_NOT_SET) {
    *request->mutable_selector() = selector;
  }
}
// A positional VERSION|ALIAS: a number > 0 is a version, anything else non-empty an alias.
v1::StatisticsSelector ParseSelectorText(const Args& args, const std::string& text);
// --method, default logn; the setting is named after the method.
v1::CalibrationSetting ReadMethod(const Args& args);
// --score-threshold / --nms-iou / --max-detections; unset fields: the server's defaults.
v1::PostprocessOptions ReadPostprocess(const Args& args);

// The model version a command's requests name. Empty / 0 leave the choice to the server: the
// served model (the only one outside repository mode), its newest available version.
struct ModelRef {
  std::string name;
  int64_t version = 0;
};
// --model / --model-version (a positive integer; 0 also means the newest available).
ModelRef ReadModel(const Args& args);
// Names `model` in `request`: every logn.v1 request that concerns one model version has the
// fields model_name and model_version.
template <typename Request>
void SetModel(const ModelRef& model, Request* request) {
  request->set_model_name(model.name);
  request->set_model_version(model.version);
}
// `model` with the version a server answered with (e.g. GetModelInfoResponse.model_version)
// when it named none, so that a command's later calls reach the same model version even if a
// newer one becomes available meanwhile; unchanged when it named one or `served` is 0 (a server
// that does not say).
ModelRef PinModelVersion(const ModelRef& model, int64_t served);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_ARGS_H_
