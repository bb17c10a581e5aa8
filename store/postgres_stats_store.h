#ifndef LOGN_STORE_POSTGRES_STATS_STORE_H_
#define LOGN_STORE_POSTGRES_STATS_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/stats_store.h"

namespace logn {

// The shared backend for several replicas: PostgreSQL through libpqxx. Version numbers are
// allocated under a row lock on the model, so concurrent replicas never collide; alias changes
// are published with NOTIFY in the same transaction and a LISTEN connection per store bumps
// AliasGeneration() as soon as they commit. `url` is a libpq URI
// (postgres://user:password@host:port/database[?params]). The schema is created / migrated on
// open under an advisory lock.
absl::StatusOr<std::unique_ptr<StatsStore>> OpenPostgresStatsStore(
    const std::string& url, const StatsStoreOptions& options);

inline constexpr int kPostgresSchemaVersion = 2;

}  // namespace logn

#endif  // LOGN_STORE_POSTGRES_STATS_STORE_H_
