#ifndef LOGN_SERVER_GRPC_METRICS_HTTP_H_
#define LOGN_SERVER_GRPC_METRICS_HTTP_H_

// The Prometheus scrape endpoint: GET /metrics in the text exposition format, served by
// libmicrohttpd.
//
// Why not prometheus::Exposer: Debian's civetweb (under prometheus-cpp's Exposer) is built with a
// fixed 100 KiB thread stack, and glibc refuses a thread whose stack is smaller than the static
// TLS of every library loaded at start-up. LibTorch (~50 KiB of static TLS) plus the threaded
// OpenBLAS builds (~64 KiB) exceed it, so the Exposer's threads fail to start with an optimised
// BLAS (docs/performance.md). libmicrohttpd's threads take the system's default stack size.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

struct MHD_Daemon;

namespace logn {

class MetricsHttpServer {
 public:
  // Listens on `address` ("host:port", "[v6]:port" or ":port" for every interface; port 0 picks
  // a free one) and serves what `collectable` collects at each scrape. `collectable` must outlive
  // the server. UNAVAILABLE (naming the address and the reason) when it cannot listen;
  // INVALID_ARGUMENT for an address that does not parse.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::weak_ptr<prometheus::Collectable> collectable);

  // Stops listening and joins the server's threads.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }

  // The exposition text of one scrape (what GET /metrics returns).
  std::string Scrape() const;

 private:
  explicit MetricsHttpServer(std::weak_ptr<prometheus::Collectable> collectable)
      : collectable_(std::move(collectable)) {}

  std::weak_ptr<prometheus::Collectable> collectable_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace logn

#endif  // LOGN_SERVER_GRPC_METRICS_HTTP_H_
