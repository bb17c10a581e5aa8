// logn_model_info: prints the served model through the installed logn::client library.
//
//   logn_model_info HOST:PORT
//
// Exit codes: 0 ok, 1 the call failed, 2 bad arguments.
#include <iostream>
#include <memory>

#include "client/lib/client.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: logn_model_info HOST:PORT\n";
    return 2;
  }
  logn::ClientOptions options;
  options.target = argv[1];
  options.deadline = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<logn::Client>> client = logn::Client::Create(options);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  absl::StatusOr<logn::v1::GetModelInfoResponse> info = (*client)->GetModelInfo();
  if (!info.ok()) {
    std::cerr << info.status() << "\n";
    return 1;
  }
  std::cout << "model " << info->manifest().name() << "\n"
            << "classes " << info->manifest().classes_size() << "\n"
            << "sha256 " << info->model_sha256() << "\n"
            << "active_version " << info->active_version() << "\n";
  return 0;
}
