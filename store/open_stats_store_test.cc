#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/stats_store.h"
#include "store/testing/test_stats.h"

// OpenStatsStore (store/open_stats_store.cc): URL parsing and the backend a URL selects.

namespace logn {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(OpenStatsStoreTest, BadUrlsAreInvalidArgument) {
  for (const char* url :
       {"", "stats.db", "sqlite://relative.db", "sqlite:///", "sqlite:///tmp/dir/",
        "mysql://u:p@h:1/db", "postgres://", "postgres://u:p@h:99999/db", "postgres://u:p@h:5432",
        "postgres://u:p@:5432/db"}) {
    absl::Status s = OpenStatsStore(url).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << url << ": " << s;
  }
}

TEST(OpenStatsStoreTest, MissingDirectoryIsNotFound) {
  absl::Status s = OpenStatsStore("sqlite:///nonexistent-dir-for-logn/x/stats.db").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST(OpenStatsStoreTest, SqliteUrlOpensTheSqliteBackend) {
  absl::StatusOr<std::unique_ptr<StatsStore>> store =
      OpenStatsStore(store_testing::FreshSqliteUrl("open-test"));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->backend(), "sqlite");
}

#if LOGN_WITH_POSTGRES
TEST(OpenStatsStoreTest, UnreachablePostgresIsUnavailable) {
  // Port 1 on localhost: nothing listens there.
  absl::Status s =
      OpenStatsStore("postgres://logn:logn@127.0.0.1:1/logn_test?connect_timeout=2").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), Not(HasSubstr(":logn@")));  // the password is not echoed
}
#else
TEST(OpenStatsStoreTest, PostgresUrlInABuildWithoutPostgresIsUnimplemented) {
  absl::Status s = OpenStatsStore("postgres://logn:logn@127.0.0.1:5432/logn_test").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(s.message(), HasSubstr("LOGN_WITH_POSTGRES"));
  // A malformed URL is still reported as such.
  EXPECT_EQ(OpenStatsStore("postgres://u:p@h:99999/db").status().code(),
            absl::StatusCode::kInvalidArgument);
}
#endif

}  // namespace
}  // namespace logn
