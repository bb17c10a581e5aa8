#ifndef LOGN_SERVER_GRPC_TESTING_HTTP_REQUEST_H_
#define LOGN_SERVER_GRPC_TESTING_HTTP_REQUEST_H_

#include <string>

namespace logn::testing {

// The raw HTTP/1.0 response (status line, headers, body) to `method path` on 127.0.0.1:port, or
// "" when nothing listens there. For the tests of the /metrics endpoint.
std::string HttpRequest(int port, const std::string& method, const std::string& path);

}  // namespace logn::testing

#endif  // LOGN_SERVER_GRPC_TESTING_HTTP_REQUEST_H_
