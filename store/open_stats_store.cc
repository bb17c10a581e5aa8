// OpenStatsStore (declared in store/stats_store.h): the URL names the backend. Part of the
// target logn::store, which links the backends this build has (LOGN_WITH_POSTGRES).
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "store/sqlite_backend.h"
#include "store/stats_store.h"
#include "store/store_backend.h"
#if LOGN_WITH_POSTGRES
#include "store/postgres_backend.h"
#endif

namespace logn {
namespace {

// sqlite:///abs/path: an empty authority, then an absolute path naming a file.
absl::StatusOr<std::string> SqlitePath(absl::string_view url) {
  absl::string_view rest = url;
  absl::ConsumePrefix(&rest, "sqlite://");
  if (rest.empty() || rest[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad store URL '", url,
        "': a SQLite URL is sqlite:///absolute/path.db (three slashes, absolute path)"));
  }
  if (rest.size() < 2 || rest.back() == '/' || absl::StrContains(rest, '?')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad store URL '", url, "': expected sqlite:///absolute/path.db naming a file"));
  }
  return std::string(rest);
}

// postgres://user:password@host:port/database[?params]: a host and a database, and a port in
// range when one is given. libpq checks the rest when it connects.
absl::Status CheckPostgresUrl(absl::string_view url) {
  absl::string_view body = url.substr(url.find("://") + 3);
  const size_t slash = body.find('/');
  absl::string_view authority = body.substr(0, slash);
  absl::string_view db = slash == absl::string_view::npos ? "" : body.substr(slash + 1);
  db = db.substr(0, db.find('?'));
  const size_t at = authority.rfind('@');
  absl::string_view hostport = at == absl::string_view::npos ? authority : authority.substr(at + 1);
  if (hostport.empty() || hostport[0] == ':' || db.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad store URL '", url, "': expected postgres://user:password@host:port/database"));
  }
  const size_t colon = hostport.rfind(':');
  if (colon != absl::string_view::npos && hostport.find(']') == absl::string_view::npos) {
    int port = 0;
    if (!absl::SimpleAtoi(hostport.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad store URL '", url, "': port '",
                                                     hostport.substr(colon + 1),
                                                     "' is not a number in 1..65535"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StoreBackend>> OpenPostgres(absl::string_view url,
                                                           const StatsStoreOptions& options) {
  LOGN_RETURN_IF_ERROR(CheckPostgresUrl(url));
#if LOGN_WITH_POSTGRES
  return OpenPostgresBackend(std::string(url), options);
#else
  (void)options;
  return absl::UnimplementedError(
      "this build has no PostgreSQL support (configured with -DLOGN_WITH_POSTGRES=OFF): use a "
      "sqlite:/// store URL, or rebuild with PostgreSQL (libpqxx)");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<StatsStore>> OpenStatsStore(absl::string_view url,
                                                           const StatsStoreOptions& options) {
  std::unique_ptr<StoreBackend> backend;
  if (absl::StartsWith(url, "sqlite://")) {
    LOGN_ASSIGN_OR_RETURN(std::string path, SqlitePath(url));
    LOGN_ASSIGN_OR_RETURN(backend, OpenSqliteBackend(path, options));
  } else if (absl::StartsWith(url, "postgres://") || absl::StartsWith(url, "postgresql://")) {
    LOGN_ASSIGN_OR_RETURN(backend, OpenPostgres(url, options));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad store URL '", url,
        "': expected sqlite:///absolute/path.db or postgres://user:password@host:port/database"));
  }
  return std::make_unique<StatsStore>(std::move(backend));
}

}  // namespace logn
