#ifndef LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_
#define LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace logn {

// The one place the server turns an absl::Status into a grpc::Status (as TF Serving's
// grpc_status_util): same code (both enumerate google.rpc.Code), same message. A code outside
// that range becomes UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_
