// logn health: grpc.health.v1 Check; exit 0 iff SERVING.

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/lib/enum_names.h"

namespace logn::cli {

namespace {

HealthOptions ParseHealthOptions(const Args& args) {
  HealthOptions o;
  o.service = args.Get("--service");
  return o;
}

int RunHealth(Client& client, const HealthOptions& options, const Io& io) {
  absl::StatusOr<ServingStatus> status = client.Health(options.service);
  if (!status.ok()) return ReportError(io, "health", status.status());
  *io.out << EnumName(*status) << "\n";
  return *status == ServingStatus::kServing ? kExitOk : kExitError;
}

}  // namespace

Command HealthCommand() {
  return {"health",
          "grpc.health.v1 check (exit 0 iff SERVING)",
          absl::StrCat(R"(usage: logn health --server ADDR [--service NAME]

grpc.health.v1 Check. Prints the serving status; exit 0 iff SERVING.
  --service NAME         a service (default: the whole server)

)",
                       ConnectionGroup().help),
          FlagSpec{{"--service"}, {}},
          ParseInto(&ParseHealthOptions),
          RunWithClient(&RunHealth)};
}

}  // namespace logn::cli
