#ifndef LOGN_CLIENT_LIB_GRPC_STATUS_H_
#define LOGN_CLIENT_LIB_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace logn {

// The client's one conversion from grpc::Status to absl::Status: same code (the two enums share
// their numbering), same message. (The server maps only the other way, in grpc_status_util.)
absl::Status GrpcToAbslStatus(const grpc::Status& status);

}  // namespace logn

#endif  // LOGN_CLIENT_LIB_GRPC_STATUS_H_
