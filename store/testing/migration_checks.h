#ifndef LOGN_STORE_TESTING_MIGRATION_CHECKS_H_
#define LOGN_STORE_TESTING_MIGRATION_CHECKS_H_

#include "calibration/statistics.h"
#include "store/stats_store.h"

namespace logn {
namespace store_testing {

// What every backend's migration test checks once a store opened on the previous schema, holding
// version 1 of `model` (job "old-job", statistics `old_stats`) and that job's checkpoint after 3
// batches: both read back, without a sampling record; a new version's record round-trips through
// Put and List and goes when its version is deleted. gtest assertions (link GTest).
void ExpectMigratedStoreKeepsOldRowsAndStoresSampling(StatsStore& store, const ModelKey& model,
                                                      const Statistics& old_stats);

// What every backend's migration test checks once a store opened on the schema before
// calibration profiles, holding versions 1 (job "old-job", statistics `old_stats`, sampling
// record `old_sampling`) and 2 of `model`: both read back intact and without a profile; a
// profile is then set on version 1 (read back by Get, GetInfo and List), replaced, and given
// with a new version 3 through Put; version 2 gets one and is deleted (with it). Leaves one
// profile row (version 1's) and versions 1 and 3. gtest assertions.
void ExpectMigratedStoreKeepsOldVersionsAndStoresProfiles(
    StatsStore& store, const ModelKey& model, const Statistics& old_stats,
    const RoiSamplingRecord& old_sampling);

}  // namespace store_testing
}  // namespace logn

#endif  // LOGN_STORE_TESTING_MIGRATION_CHECKS_H_
