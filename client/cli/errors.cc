#include "client/cli/errors.h"

#include <ostream>

namespace logn::cli {

int ReportError(const Io& io, absl::string_view command, const absl::Status& status) {
  *io.err << "logn " << command << ": " << absl::StatusCodeToString(status.code()) << ": "
          << status.message() << "\n";
  return kExitError;
}

int ReportUsage(const Io& io, absl::string_view command, absl::string_view reason) {
  *io.err << "logn" << (command.empty() ? "" : " ") << command << ": " << reason
          << " (see --help)\n";
  return kExitUsage;
}

}  // namespace logn::cli
