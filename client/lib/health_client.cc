#include "client/lib/health_client.h"

#include <chrono>
#include <vector>

#include "client/lib/grpc_status.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace logn {
namespace {

std::string Varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

}  // namespace

absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& service, absl::Duration timeout) {
  // HealthCheckRequest { string service = 1; }
  const std::string request =
      service.empty() ? std::string() : "\x0a" + Varint(service.size()) + service;
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);

  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::microseconds(absl::ToInt64Microseconds(timeout)));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request_buffer, &cq);
  call->StartCall();
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return GrpcToAbslStatus(status);

  // HealthCheckResponse { ServingStatus status = 1; } — absent field means UNKNOWN (0).
  std::vector<grpc::Slice> slices;
  if (!response_buffer.Dump(&slices).ok()) return absl::InternalError("unreadable health reply");
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return ServingStatus::kUnknown;
  if (bytes.size() < 2 || bytes[0] != '\x08') {
    return absl::InternalError("malformed grpc.health.v1.HealthCheckResponse");
  }
  const int value = static_cast<unsigned char>(bytes[1]);
  if (value > 3) return absl::InternalError("unknown serving status in health reply");
  return static_cast<ServingStatus>(value);
}

}  // namespace logn
