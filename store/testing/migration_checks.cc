#include "store/testing/migration_checks.h"

#include <optional>

#include "gtest/gtest.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace store_testing {

void ExpectMigratedStoreKeepsOldRowsAndStoresSampling(StatsStore& store, const ModelKey& model,
                                                      const Statistics& old_stats) {
  absl::StatusOr<VersionRecord> old = store.Get(model, VersionSelector::Number(1));
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->info.job_id, "old-job");
  EXPECT_EQ(old->info.sampling, std::nullopt);
  EXPECT_EQ(old->statistics.mean, old_stats.mean);
  absl::StatusOr<JobCheckpoint> cp = store.GetCheckpoint(model, "old-job");
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->batches, 3);
  EXPECT_EQ(cp->sampling, std::nullopt);

  NewVersion sampled{model, RandomStatistics(3, 2)};
  sampled.sampling = ProposalSampling(8);
  ASSERT_TRUE(store.Put(sampled).ok());
  absl::StatusOr<VersionPage> page = store.List(model, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 2u);
  EXPECT_EQ(page->versions[0].sampling, std::nullopt);
  EXPECT_EQ(page->versions[1].sampling, sampled.sampling);
  ASSERT_TRUE(store.Delete(model, 2).ok());  // the record goes with it
  EXPECT_EQ(store.List(model, "", 0)->versions.size(), 1u);
}

}  // namespace store_testing
}  // namespace logn
