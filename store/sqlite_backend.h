#ifndef LOGN_STORE_SQLITE_BACKEND_H_
#define LOGN_STORE_SQLITE_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/stats_store.h"
#include "store/store_backend.h"

namespace logn {

// The embedded backend (target logn::store_sqlite): one SQLite file in WAL mode with
// synchronous=FULL (a write that returned OK survives a crash or power loss), a busy timeout
// for concurrent writers (other processes may share the file), and readers that a writer never
// blocks. The schema version lives in PRAGMA user_version and is migrated forward on open.
// Alias changes bump an epoch row that a background thread polls every watch_interval. `path`
// must be absolute; the file is created if missing (its directory must exist: NOT_FOUND
// otherwise).
absl::StatusOr<std::unique_ptr<StoreBackend>> OpenSqliteBackend(const std::string& path,
                                                                const StatsStoreOptions& options);

// Schema migrations, exposed for the migration test: kSqliteMigrations[i] takes the schema from
// version i to i + 1.
inline constexpr int kSqliteSchemaVersion = 5;
extern const char* const kSqliteMigrations[kSqliteSchemaVersion];

}  // namespace logn

#endif  // LOGN_STORE_SQLITE_BACKEND_H_
