// logn info: GetModelInfo as one JSON object.

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/output.h"

namespace logn::cli {

namespace {

InfoOptions ParseInfoOptions(const Args&) { return {}; }

int RunInfo(Client& client, const InfoOptions&, const Io& io) {
  return PrintOrReport(
      io, "info", client.GetModelInfo(),
      [&](const v1::GetModelInfoResponse& info) { *io.out << ProtoJson(info) << "\n"; });
}

}  // namespace

Command InfoCommand() {
  return {"info",
          "the served model: manifest, classes, sha256, active version (JSON)",
          absl::StrCat(R"(usage: logn info --server ADDR

GetModelInfo: the manifest (classes with their r/c/f groups), the model's
sha256, the active statistics version and the device, as one JSON object.

)",
                       ConnectionGroup().help),
          FlagSpec{},
          ParseInto(&ParseInfoOptions),
          RunWithClient(&RunInfo)};
}

}  // namespace logn::cli
