#ifndef LOGN_CLIENT_CLI_ERRORS_H_
#define LOGN_CLIENT_CLI_ERRORS_H_

// How `logn` reports failures: the two one-line formats on stderr and their exit codes.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/command.h"

namespace logn::cli {

// "logn COMMAND: CODE_NAME: message" (a server error, an unreadable input); returns kExitError.
int ReportError(const Io& io, absl::string_view command, const absl::Status& status);

// "logn COMMAND: reason (see --help)" (bad arguments); returns kExitUsage. An empty `command`
// prints "logn: reason (see --help)".
int ReportUsage(const Io& io, absl::string_view command, absl::string_view reason);

// The usual ending of a command that makes one call: `print(*result)` and kExitOk when it
// succeeded, else ReportError.
template <typename Response, typename Print>
int PrintOrReport(const Io& io, absl::string_view command, const absl::StatusOr<Response>& result,
                  Print print) {
  if (!result.ok()) return ReportError(io, command, result.status());
  print(*result);
  return kExitOk;
}

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_ERRORS_H_
