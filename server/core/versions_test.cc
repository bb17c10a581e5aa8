#include "server/core/versions.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(VersionsTest, BuildStampsProvenanceAndRecord) {
  const ModelKey model = store_testing::UniqueModel("versions_build");
  VersionOrigin origin;
  origin.source = VersionSource::kMerge;
  origin.job_id = "job-1";
  origin.description = "three shards";
  origin.images_seen = 30;
  origin.batches_seen = 6;
  origin.parent_versions = {1, 2, 3};
  origin.partial = true;
  origin.clear_job_checkpoint = true;
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  const NewVersion v =
      BuildNewVersion(model, store_testing::RandomStatistics(4, 1), origin, now);
  EXPECT_EQ(v.model, model);
  EXPECT_EQ(v.job_id, "job-1");
  EXPECT_EQ(v.description, "three shards");
  EXPECT_EQ(v.source, VersionSource::kMerge);
  EXPECT_THAT(v.parent_versions, ElementsAre(1, 2, 3));
  EXPECT_TRUE(v.partial);
  EXPECT_TRUE(v.clear_job_checkpoint);
  const StatisticsProvenance& p = v.statistics.provenance;
  EXPECT_EQ(p.model_name, model.name);
  EXPECT_EQ(p.model_sha256, model.sha256);
  EXPECT_EQ(p.created_at, now);
  EXPECT_EQ(p.description, "three shards");
  EXPECT_EQ(p.images_seen, 30);
  EXPECT_EQ(p.batches_seen, 6);
}

TEST(VersionsTest, StoreActivatesOnRequestAndSaysWhenItCannot) {
  std::unique_ptr<StatsStore> store =
      OpenStatsStore(store_testing::FreshSqliteUrl("versions_store"), {}).value();
  const ModelKey model = store_testing::UniqueModel("versions_store");
  const absl::Time now = absl::Now();
  const NewVersion plain =
      BuildNewVersion(model, store_testing::RandomStatistics(4, 2), VersionOrigin(), now);

  const StoredVersion first = StoreNewVersion(*store, plain, /*activate=*/false).value();
  EXPECT_EQ(first.info.version, 1);
  EXPECT_THAT(first.aliases, IsEmpty());
  const StoredVersion second = StoreNewVersion(*store, plain, /*activate=*/true).value();
  EXPECT_EQ(second.info.version, 2);
  EXPECT_THAT(second.aliases, ElementsAre("active"));
  EXPECT_EQ(store->Resolve(model, VersionSelector::Active()).value(), 2);

  // A partial version is stored but can never be aliased: the error says it was committed.
  VersionOrigin partial;
  partial.partial = true;
  const NewVersion shard =
      BuildNewVersion(model, store_testing::RandomStatistics(4, 3), partial, now);
  const absl::Status status = StoreNewVersion(*store, shard, /*activate=*/true).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("version 3 was committed but could not be activated"));
  EXPECT_EQ(store->Resolve(model, VersionSelector::Active()).value(), 2);
}

}  // namespace
}  // namespace logn
