#include "server/grpc/metrics_http.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/grpc/testing/http_request.h"

namespace logn_testing {
char* BigStaticTls();
}

namespace logn {
namespace {

using ::testing::HasSubstr;

using ::logn::testing::HttpRequest;

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(logn_testing::BigStaticTls(), nullptr);
    registry_ = std::make_shared<prometheus::Registry>();
    counter_ = &prometheus::BuildCounter()
                    .Name("logn_test_requests_total")
                    .Help("Requests seen by the test")
                    .Register(*registry_)
                    .Add({{"code", "OK"}});
  }

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* counter_ = nullptr;
};

TEST_F(MetricsHttpServerTest, ServesTheCurrentValuesAtEachScrape) {
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  counter_->Increment(3);
  std::string response = HttpRequest((*server)->port(), "GET", "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(response, HasSubstr("# TYPE logn_test_requests_total counter"));
  EXPECT_THAT(response, HasSubstr("logn_test_requests_total{code=\"OK\"} 3"));
  counter_->Increment(2);
  EXPECT_THAT(HttpRequest((*server)->port(), "GET", "/metrics"),
              HasSubstr("logn_test_requests_total{code=\"OK\"} 5"));
}

TEST_F(MetricsHttpServerTest, RefusesOtherPathsAndMethods) {
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(HttpRequest((*server)->port(), "GET", "/"), HasSubstr("404"));
  EXPECT_THAT(HttpRequest((*server)->port(), "POST", "/metrics"), HasSubstr("405"));
}

TEST_F(MetricsHttpServerTest, ABadOrBusyAddressIsAnErrorNamingIt) {
  EXPECT_EQ(MetricsHttpServer::Start("no-port", registry_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1:99999", registry_).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto first = MetricsHttpServer::Start("127.0.0.1:0", registry_);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string busy = "127.0.0.1:" + std::to_string((*first)->port());
  const auto second = MetricsHttpServer::Start(busy, registry_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(busy));
}

TEST_F(MetricsHttpServerTest, ServesIpv6Loopback) {
  auto server = MetricsHttpServer::Start("[::1]:0", registry_);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_GT((*server)->port(), 0);
}

// The root cause this server exists for, reproduced: with > 100 KiB of static TLS in the
// process, civetweb's fixed 100 KiB thread stacks are refused and prometheus::Exposer cannot
// start, while MetricsHttpServer (default stacks) serves. If Debian's civetweb ever changes its
// stack size, the first half of this test says so.
TEST_F(MetricsHttpServerTest, ServesWhereCivetwebThreadsCannotStart) {
  bool exposer_started = true;
  try {
    prometheus::Exposer exposer("127.0.0.1:0");
  } catch (const std::exception&) {
    exposer_started = false;
  }
  EXPECT_FALSE(exposer_started) << "civetweb started with 120 KiB of static TLS: its stack grew";
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(HttpRequest((*server)->port(), "GET", "/metrics"), HasSubstr("200 OK"));
}

}  // namespace
}  // namespace logn
