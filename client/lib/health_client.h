#ifndef LOGN_CLIENT_LIB_HEALTH_CLIENT_H_
#define LOGN_CLIENT_LIB_HEALTH_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace logn {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// Calls grpc.health.v1.Health/Check for `service` ("" = the whole server). Debian ships no
// health.proto, so the two one-field messages are encoded by hand over a generic stub.
// The call's status on failure (UNAVAILABLE when nothing listens, NOT_FOUND for an unknown
// service, DEADLINE_EXCEEDED after `timeout`).
absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& service, absl::Duration timeout);

}  // namespace logn

#endif  // LOGN_CLIENT_LIB_HEALTH_CLIENT_H_
