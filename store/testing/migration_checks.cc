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

void ExpectMigratedStoreKeepsOldVersionsAndStoresProfiles(
    StatsStore& store, const ModelKey& model, const Statistics& old_stats,
    const RoiSamplingRecord& old_sampling) {
  absl::StatusOr<VersionRecord> old = store.Get(model, VersionSelector::Number(1));
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->info.job_id, "old-job");
  EXPECT_EQ(old->info.sampling, old_sampling);
  EXPECT_EQ(old->info.calibration_profile, std::nullopt);
  EXPECT_EQ(old->statistics.mean, old_stats.mean);
  absl::StatusOr<VersionPage> page = store.List(model, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 2u);
  EXPECT_EQ(page->versions[0].sampling, old_sampling);
  EXPECT_EQ(page->versions[1].sampling, std::nullopt);
  EXPECT_EQ(page->versions[1].calibration_profile, std::nullopt);

  // Settable, replaceable; read back by every read.
  ASSERT_TRUE(
      store.SetCalibrationProfile(model, VersionSelector::Number(1), TestProfile("first")).ok());
  absl::StatusOr<VersionInfo> set =
      store.SetCalibrationProfile(model, VersionSelector::Number(1), TestProfile("after"));
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE(set->calibration_profile.has_value());
  EXPECT_EQ(set->calibration_profile->profile, TestProfile("after"));
  EXPECT_EQ(set->sampling, old_sampling);
  EXPECT_EQ(store.Get(model, VersionSelector::Number(1))->info.calibration_profile,
            set->calibration_profile);
  EXPECT_EQ(store.GetInfo(model, VersionSelector::Number(1))->calibration_profile,
            set->calibration_profile);
  page = store.List(model, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->versions[0].calibration_profile, set->calibration_profile);

  // Through Put; and gone with its version.
  NewVersion with_profile{model, RandomStatistics(3, 3)};
  with_profile.calibration_profile = TestProfile("new");
  absl::StatusOr<VersionRecord> put = store.Put(with_profile);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.version, 3);
  EXPECT_EQ(store.GetInfo(model, VersionSelector::Number(3))->calibration_profile->profile,
            TestProfile("new"));
  ASSERT_TRUE(
      store.SetCalibrationProfile(model, VersionSelector::Number(2), TestProfile("two")).ok());
  ASSERT_TRUE(store.Delete(model, 2).ok());
  ASSERT_TRUE(store.SetCalibrationProfile(model, VersionSelector::Number(3), std::nullopt).ok());
  EXPECT_EQ(store.List(model, "", 0)->versions.size(), 2u);
}

}  // namespace store_testing
}  // namespace logn
