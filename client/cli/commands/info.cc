// logn info: GetModelInfo as a summary for people, the class table, or one JSON object.

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {

namespace {

InfoOptions ParseInfoOptions(const Args& args) {
  InfoOptions o;
  o.model = ReadModel(args);
  o.json = args.Has("--json");
  o.classes = args.Has("--classes");
  if (o.json && o.classes) args.Fail("--json and --classes are exclusive (--json has the classes)");
  return o;
}

int RunInfo(Client& client, const InfoOptions& options, const Io& io) {
  v1::GetModelInfoRequest request;
  SetModel(options.model, &request);
  return PrintOrReport(io, "info", client.GetModelInfo(request),
                       [&](const v1::GetModelInfoResponse& info) {
                         if (options.json) {
                           *io.out << ProtoJson(info) << "\n";
                         } else if (options.classes) {
                           *io.out << ClassTable(info.manifest());
                         } else {
                           *io.out << InfoSummary(info);
                         }
                       });
}

}  // namespace

Command InfoCommand() {
  return {"info",
          "the served model: classes per r/c/f group, input, sha256, statistics, calibration",
          absl::StrCat(R"(usage: logn info --server ADDR [--model NAME] [--model-version N]
                 [--classes | --json]

GetModelInfo, summarised: the model's name, version and description, sha256, device
and memory; its classes per frequency group (rare / common / frequent), logit and box
layout, the methods it exports, the input policy, the active statistics version and
the default calibration (what a Detect request naming no setting gets: the active
version's calibration profile, else the built-in LogN; without active statistics,
the model's fallback when its configuration has one).

  --classes              one row per class: id, group, training images and
                         instances, name
  --json                 the GetModelInfoResponse as one JSON object (protobuf
                         JSON, .proto field names, defaults included): for scripts
)",
                       ModelGroup().help, "\n", ConnectionGroup().help),
          FlagSpec{{}, {"--json", "--classes"}}.Add({&ModelGroup()}),
          ParseInto(&ParseInfoOptions),
          RunWithClient(&RunInfo)};
}

}  // namespace logn::cli
