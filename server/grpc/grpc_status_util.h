#ifndef LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_
#define LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace logn {

// The one place an absl::Status becomes a grpc::Status (the codes share their numbering).
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_GRPC_STATUS_UTIL_H_
