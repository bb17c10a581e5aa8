#ifndef LOGN_STORE_POSTGRES_BACKEND_H_
#define LOGN_STORE_POSTGRES_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/stats_store.h"
#include "store/store_backend.h"

namespace logn {

// The shared backend for several replicas (target logn::store_postgres, built when
// LOGN_WITH_POSTGRES is ON): PostgreSQL through libpqxx. Write transactions lock the model's
// row, so concurrent replicas never collide on version numbers; alias changes are published
// with NOTIFY in the same transaction and a LISTEN connection per backend bumps
// ExternalAliasGeneration() as soon as they commit. `url` is a libpq URI
// (postgres://user:password@host:port/database[?params]). The schema is created / migrated on
// open under an advisory lock.
absl::StatusOr<std::unique_ptr<StoreBackend>> OpenPostgresBackend(
    const std::string& url, const StatsStoreOptions& options);

// Schema migrations, exposed for the migration test: kPostgresMigrations[i] takes the schema
// (stats_meta's schema_version) from version i to i + 1.
inline constexpr int kPostgresSchemaVersion = 4;
extern const char* const kPostgresMigrations[kPostgresSchemaVersion];

}  // namespace logn

#endif  // LOGN_STORE_POSTGRES_BACKEND_H_
