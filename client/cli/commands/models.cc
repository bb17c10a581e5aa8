// logn models [list | load NAME VERSION | unload NAME VERSION | reload [NAME [VERSION]]]: the
// server's model repository (ModelService). load, unload and reload are admin calls: they need
// the server's admin token (--token / $LOGN_TOKEN), as the store's mutations do.

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"
#include "client/lib/enum_names.h"

namespace logn::cli {
namespace {

struct ModelsActionSpec {
  ModelsAction action;
  const char* name;
  size_t min_args;  // after the action's name
  size_t max_args;
  const char* args_help;  // "models NAME takes ARGS_HELP"
};

constexpr ModelsActionSpec kModelsActions[] = {
    {ModelsAction::kList, "list", 0, 0, "no arguments (--model NAME filters)"},
    {ModelsAction::kLoad, "load", 2, 2, "NAME VERSION"},
    {ModelsAction::kUnload, "unload", 2, 2, "NAME VERSION"},
    {ModelsAction::kReload, "reload", 0, 2, "[NAME [VERSION]]"},
};

const ModelsActionSpec* FindModelsAction(const std::string& name) {
  for (const ModelsActionSpec& spec : kModelsActions) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

ModelsOptions ParseModelsOptions(const Args& args) {
  ModelsOptions o;
  o.json = args.Has("--json");
  const std::vector<std::string>& pos = args.positional();
  // No action lists, as `logn models` alone.
  const ModelsActionSpec* spec = FindModelsAction(pos.empty() ? "list" : pos[0]);
  if (spec == nullptr) {
    args.Fail("unknown models action '" + pos[0] + "' (list, load, unload, reload)");
    return o;
  }
  o.action = spec->action;
  const size_t count = pos.empty() ? 0 : pos.size() - 1;
  if (count < spec->min_args || count > spec->max_args) {
    args.Fail(absl::StrCat("models ", spec->name, " takes ", spec->args_help));
    return o;
  }
  if (o.action == ModelsAction::kList) {
    o.model_name = args.Get("--model");
  } else if (args.Has("--model")) {
    args.Fail(absl::StrCat("models ", spec->name, " takes the model as NAME, not --model"));
  }
  if (count >= 1) o.model_name = pos[1];
  if (count >= 1 && o.model_name.empty()) args.Fail("empty model NAME");
  if (count == 2 && (!absl::SimpleAtoi(pos[2], &o.model_version) || o.model_version <= 0)) {
    args.Fail("VERSION must be a positive integer, got '" + pos[2] + "'");
  }
  return o;
}

google::protobuf::RepeatedPtrField<v1::ModelVersionStatus> OneRow(
    const v1::ModelVersionStatus& status) {
  google::protobuf::RepeatedPtrField<v1::ModelVersionStatus> rows;
  *rows.Add() = status;
  return rows;
}

// load and unload: the version's row (or the JSON response); a load that ended FAILED exits 1
// with the server's reason, as a failed call would.
template <typename Response>
int PrintStatus(const Io& io, const char* command, bool json,
                const absl::StatusOr<Response>& response) {
  if (!response.ok()) return ReportError(io, command, response.status());
  const v1::ModelVersionStatus& status = response->model_version_status();
  *io.out << (json ? ProtoJson(*response) + "\n" : ModelsTable(OneRow(status)));
  if (status.state() != v1::MODEL_VERSION_STATE_FAILED) return kExitOk;
  *io.err << "logn " << command << ": model " << status.model_name() << " version "
          << status.model_version() << " failed to load: " << status.reason() << "\n";
  return kExitError;
}

int RunModels(Client& client, const ModelsOptions& options, const Io& io) {
  switch (options.action) {
    case ModelsAction::kLoad: {
      v1::LoadModelRequest request;
      request.set_model_name(options.model_name);
      request.set_model_version(options.model_version);
      return PrintStatus(io, "models load", options.json, client.LoadModel(request));
    }
    case ModelsAction::kUnload: {
      v1::UnloadModelRequest request;
      request.set_model_name(options.model_name);
      request.set_model_version(options.model_version);
      return PrintStatus(io, "models unload", options.json, client.UnloadModel(request));
    }
    case ModelsAction::kReload: {
      v1::ReloadModelsRequest request;
      request.set_model_name(options.model_name);
      request.set_model_version(options.model_version);
      return PrintOrReport(
          io, "models reload", client.ReloadModels(request),
          [&](const v1::ReloadModelsResponse& r) {
            *io.out << (options.json ? ProtoJson(r) + "\n" : ModelsTable(r.model_versions()));
          });
    }
    default: {
      v1::ListModelsRequest request;
      request.set_model_name(options.model_name);
      return PrintOrReport(io, "models", client.ListModels(request),
                           [&](const v1::ListModelsResponse& r) {
                             *io.out << (options.json ? ProtoJson(r) + "\n" : ModelsListing(r));
                           });
    }
  }
}

}  // namespace

Command ModelsCommand() {
  return {"models",
          "the server's model versions; load, unload, reload (admin)",
          absl::StrCat(R"(usage: logn models [list] [--model NAME] [--json] --server ADDR
       logn models load NAME VERSION --server ADDR [--json]
       logn models unload NAME VERSION --server ADDR [--json]
       logn models reload [NAME [VERSION]] --server ADDR [--json]

list (the default): every model version the server knows, one row each: model,
version, state (loading, available, unloading, failed), "*" on the version that
requests naming none get, the sha256's first 12 digits, memory (MiB), the active
statistics version, and why it failed or what it waits for.
  --model NAME           only this model's versions

Admin calls (the server's admin token: --token or $LOGN_TOKEN):
  load NAME VERSION      load a version now, outside the version policy, and keep it
                         until unloaded; answers once it is warm (--deadline must
                         cover that) or failed (exit 1, with the reason)
  unload NAME VERSION    stop routing requests to it; it is freed once its
                         in-flight requests finish, and not loaded again until
                         reload or a restart
  reload [NAME [VERSION]]  rescan the repository now and clear the manual load /
                         unload of NAME (every model without NAME); with VERSION also
                         load that version's file afresh (replaced in place)

  --json                 the response as protobuf JSON (.proto field names)

)",
                       ConnectionGroup().help),
          FlagSpec{{"--model"}, {"--json"}, /*connects=*/true, /*positional=*/true},
          ParseInto(&ParseModelsOptions),
          RunWithClient(&RunModels)};
}

}  // namespace logn::cli
