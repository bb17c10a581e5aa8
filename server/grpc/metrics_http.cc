#include "server/grpc/metrics_http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace logn {
namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct HostPort {
  std::string host;  // empty: every interface
  uint16_t port = 0;
};

absl::StatusOr<HostPort> SplitAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address '", address, "' is not host:port (e.g. 0.0.0.0:8501 or [::1]:0)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

MHD_Result Respond(MHD_Connection* connection, unsigned int code, const std::string& body) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                          code == MHD_HTTP_OK ? kContentType : "text/plain");
  const MHD_Result queued = MHD_queue_response(connection, code, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result HandleRequest(void* cls, MHD_Connection* connection, const char* url,
                         const char* method, const char* /*version*/,
                         const char* /*upload_data*/, size_t* upload_data_size,
                         void** /*request_state*/) {
  const auto* server = static_cast<const MetricsHttpServer*>(cls);
  if (*upload_data_size != 0) {
    *upload_data_size = 0;  // a body is never expected: drop it
    return MHD_YES;
  }
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    return Respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
  }
  if (std::strcmp(url, "/metrics") != 0) {
    return Respond(connection, MHD_HTTP_NOT_FOUND, "metrics are at /metrics\n");
  }
  return Respond(connection, MHD_HTTP_OK, server->Scrape());
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::weak_ptr<prometheus::Collectable> collectable) {
  absl::StatusOr<HostPort> host_port = SplitAddress(address);
  if (!host_port.ok()) return host_port.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  const int error = getaddrinfo(host_port->host.empty() ? nullptr : host_port->host.c_str(),
                                std::to_string(host_port->port).c_str(), &hints, &resolved);
  if (error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': ", gai_strerror(error)));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(std::move(collectable)));
  const bool ipv6 = resolved->ai_family == AF_INET6;
  // One internal polling thread (default stack size: see the header) is plenty for a scrape
  // every few seconds; MHD_USE_ERROR_LOG sends libmicrohttpd's own errors to stderr.
  server->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0),
      host_port->port, /*apc=*/nullptr, nullptr, &HandleRequest, server.get(),
      MHD_OPTION_SOCK_ADDR, resolved->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned int>(30), MHD_OPTION_END);
  const int saved_errno = errno;
  freeaddrinfo(resolved);
  if (server->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ",
                                               std::strerror(saved_errno)));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info != nullptr ? info->port : 0;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string MetricsHttpServer::Scrape() const {
  const std::shared_ptr<prometheus::Collectable> collectable = collectable_.lock();
  if (collectable == nullptr) return "";
  return prometheus::TextSerializer().Serialize(collectable->Collect());
}

}  // namespace logn
