#include "client/cli/args.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/lib/enum_names.h"

namespace logn::cli {

const FlagGroup& ConnectionGroup() {
  static const FlagGroup* const group = new FlagGroup{
      R"(Connection:
  --server ADDR          host:port of logn_server (required; env LOGN_SERVER)
  --deadline SECONDS     per-call deadline (default 60)
  --retries N            attempts of idempotent calls on UNAVAILABLE (default 4)
  --token TOKEN          bearer token (env LOGN_TOKEN)
  --tls                  use TLS (implied by the --tls-* files)
  --tls-ca FILE          PEM root CA
  --tls-cert FILE        PEM client certificate (mutual TLS, with --tls-key)
  --tls-key FILE         PEM client private key
  --tls-server-name NAME override the name checked against the server certificate
)",
      {"--server", "--deadline", "--retries", "--token", "--tls-ca", "--tls-cert", "--tls-key",
       "--tls-server-name"},
      {"--tls"}};
  return *group;
}

const FlagGroup& SelectorGroup() {
  static const FlagGroup* const group = new FlagGroup{
      R"(  --version N            statistics version (default: the alias "active")
  --alias NAME           statistics alias
)",
      {"--version", "--alias"},
      {}};
  return *group;
}

const FlagGroup& MethodGroup() {
  static const FlagGroup* const group = new FlagGroup{
      "  --method M             default | none | logn | loga (default: the model's default\n"
      "                         calibration, its statistics version's profile, else logn)\n",
      {"--method"}, {}};
  return *group;
}

const FlagGroup& PostprocessGroup() {
  static const FlagGroup* const group = new FlagGroup{
      R"(  --score-threshold X    foreground score threshold before NMS (server default 1e-4)
  --nms-iou X            class-wise NMS IoU (server default 0.5)
  --max-detections N     detections kept per image (server default 300)
)",
      {"--score-threshold", "--nms-iou", "--max-detections"},
      {}};
  return *group;
}

const FlagGroup& ModelGroup() {
  static const FlagGroup* const group = new FlagGroup{
      R"(  --model NAME           model (default: the server's default model)
  --model-version N      version of the model (default: its newest available one)
)",
      {"--model", "--model-version"},
      {}};
  return *group;
}

FlagSpec& FlagSpec::Add(std::initializer_list<const FlagGroup*> groups) {
  for (const FlagGroup* group : groups) {
    value_flags.insert(group->value_flags.begin(), group->value_flags.end());
    bool_flags.insert(group->bool_flags.begin(), group->bool_flags.end());
  }
  return *this;
}

bool Args::Valued(const std::string& name) const {
  return spec_.value_flags.count(name) > 0 ||
         (spec_.connects && ConnectionGroup().value_flags.count(name) > 0);
}

bool Args::OptionalValue(const std::string& name) const {
  return spec_.optional_value_flags.count(name) > 0;
}

bool Args::Boolean(const std::string& name) const {
  return spec_.bool_flags.count(name) > 0 ||
         (spec_.connects && ConnectionGroup().bool_flags.count(name) > 0);
}

std::string Args::Parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return "";
    }
    if (arg == "--") {
      positional_.insert(positional_.end(), argv.begin() + i + 1, argv.end());
      break;
    }
    if (!absl::StartsWith(arg, "--") || arg == "-") {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg, value;
    const size_t eq = arg.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (Boolean(name)) {
      if (has_value) return name + " takes no value";
      flags_[name] = "1";
      continue;
    }
    if (OptionalValue(name)) {
      // Only a number is taken as the value, so `--watch snapshot` cannot swallow an action.
      double number;
      if (!has_value && i + 1 < argv.size() && absl::SimpleAtod(argv[i + 1], &number)) {
        value = argv[++i];
      }
      flags_[name] = value;
      continue;
    }
    if (!Valued(name)) return "unknown flag " + name;
    if (!has_value) {
      if (i + 1 >= argv.size()) return name + " needs a value";
      value = argv[++i];
    }
    flags_[name] = value;
  }
  return "";
}

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = flags_.find(name);
  return it == flags_.end() ? fallback : it->second;
}

void Args::Fail(std::string reason) const {
  if (error_.empty()) error_ = std::move(reason);
}

std::string Args::Required(const std::string& name) const {
  if (Get(name).empty()) Fail(name + " is required");
  return Get(name);
}

int64_t Args::Int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
  if (!Has(name)) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v) || v < min || v > max) {
    Fail(
        absl::StrCat(name, " must be an integer in [", min, ", ", max, "], got '", Get(name), "'"));
    return fallback;
  }
  return v;
}

double Args::Double(const std::string& name, double fallback, double min, double max) const {
  if (!Has(name)) return fallback;
  double v;
  if (!absl::SimpleAtod(Get(name), &v) || !(v >= min && v <= max)) {
    Fail(absl::StrCat(name, " must be a number in [", min, ", ", max, "], got '", Get(name), "'"));
    return fallback;
  }
  return v;
}

namespace {

// The flag's value, else the environment variable's, else "".
std::string FlagOrEnv(const Args& args, const std::string& name, const char* env) {
  std::string value = args.Get(name);
  if (value.empty()) {
    const char* from_env = std::getenv(env);
    if (from_env != nullptr) value = from_env;
  }
  return value;
}

}  // namespace

ClientOptions ReadConnection(const Args& args) {
  ClientOptions options;
  options.target = FlagOrEnv(args, "--server", "LOGN_SERVER");
  if (options.target.empty()) args.Fail("--server is required");
  options.deadline = absl::Seconds(args.Double("--deadline", 60, 1e-3, 1e7));
  options.retry.max_attempts = static_cast<int>(args.Int("--retries", 4, 1, 100));
  options.bearer_token = FlagOrEnv(args, "--token", "LOGN_TOKEN");
  options.tls.root_ca_file = args.Get("--tls-ca");
  options.tls.cert_chain_file = args.Get("--tls-cert");
  options.tls.private_key_file = args.Get("--tls-key");
  options.tls.server_name_override = args.Get("--tls-server-name");
  options.tls.enabled = args.Has("--tls") || !options.tls.root_ca_file.empty() ||
                        !options.tls.cert_chain_file.empty();
  if (absl::Status s = ValidateClientOptions(options); !s.ok()) {
    args.Fail(std::string(s.message()));
  }
  return options;
}

v1::StatisticsSelector ParseSelectorText(const Args& args, const std::string& text) {
  v1::StatisticsSelector selector;
  int64_t version;
  if (absl::SimpleAtoi(text, &version)) {
    if (version <= 0) args.Fail(absl::StrCat("version must be > 0, got ", text));
    selector.set_version(version);
  } else {
    if (text.empty()) args.Fail("empty version or alias");
    selector.set_alias(text);
  }
  return selector;
}

v1::StatisticsSelector ReadSelector(const Args& args) {
  if (args.Has("--version") && args.Has("--alias")) {
    args.Fail("--version and --alias are exclusive");
  }
  v1::StatisticsSelector selector;
  if (args.Has("--version")) selector.set_version(args.Int("--version", 0, 1, INT64_MAX));
  if (args.Has("--alias")) {
    if (args.Get("--alias").empty()) args.Fail("--alias needs a name");
    selector.set_alias(args.Get("--alias"));
  }
  return selector;
}

v1::CalibrationSetting ReadMethod(const Args& args) {
  v1::CalibrationSetting setting;
  const std::string method = absl::AsciiStrToLower(args.Get("--method", "default"));
  if (method == "default") {
    // Unnamed: the server echoes the profile's own name (or "default").
    setting.set_calibration_method(v1::CALIBRATION_METHOD_MODEL_DEFAULT);
    return setting;
  }
  v1::CalibrationMethod value;
  if (ParseEnumName(method, &value) && value != v1::CALIBRATION_METHOD_MODEL_DEFAULT) {
    setting.set_calibration_method(value);
  } else {
    args.Fail("--method must be default, none, logn or loga, got '" + method + "'");
  }
  setting.set_name(method);
  return setting;
}

v1::PostprocessOptions ReadPostprocess(const Args& args) {
  v1::PostprocessOptions p;
  if (args.Has("--score-threshold")) {
    p.set_score_threshold(static_cast<float>(args.Double("--score-threshold", 0, 0, 1)));
  }
  if (args.Has("--nms-iou")) p.set_nms_iou(static_cast<float>(args.Double("--nms-iou", 0, 0, 1)));
  if (args.Has("--max-detections")) {
    p.set_max_detections(static_cast<int32_t>(args.Int("--max-detections", 0, 1, 100000)));
  }
  return p;
}

ModelRef ReadModel(const Args& args) {
  ModelRef model;
  model.name = args.Get("--model");
  if (args.Has("--model") && model.name.empty()) args.Fail("--model needs a name");
  if (args.Has("--model-version")) {
    const std::string text = args.Get("--model-version");
    if (!absl::SimpleAtoi(text, &model.version) || model.version < 0) {
      args.Fail("--model-version must be a positive integer, got '" + text + "'");
      model.version = 0;
    }
  }
  return model;
}

ModelRef PinModelVersion(const ModelRef& model, int64_t served) {
  ModelRef pinned = model;
  if (pinned.version == 0 && served > 0) pinned.version = served;
  return pinned;
}

}  // namespace logn::cli
