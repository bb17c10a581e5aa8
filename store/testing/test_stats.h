#ifndef LOGN_STORE_TESTING_TEST_STATS_H_
#define LOGN_STORE_TESTING_TEST_STATS_H_

// Helpers shared by the store tests, the crash-test writer and the benchmark.

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "calibration/statistics.h"
#include "store/stats_store.h"

namespace logn {
namespace store_testing {

// Valid random statistics over `num_classes` foreground classes, background last.
Statistics RandomStatistics(int32_t num_classes, uint64_t seed);

// A model key with a name unique to this process and call, and a sha256 derived from it.
ModelKey UniqueModel(const std::string& prefix);

// A fresh SQLite URL in a new temporary directory.
std::string FreshSqliteUrl(const std::string& prefix);

// The PostgreSQL URL of the test server (env LOGN_PG_URL), or empty when unset.
std::string PostgresUrl();

// True when running in CI (env CI=true): PostgreSQL tests must fail, not skip, there.
bool InCi();

// A record as CalibrationJob writes it for RoIs sampled from proposals: `images` images of
// `num_rois` RoIs each, a fraction `positives` of them positive.
RoiSamplingRecord ProposalSampling(int64_t images, int32_t num_rois = 512,
                                   double positives = 0.08, double rfs_threshold = 0.0);

// A calibration profile in its stored form (CalibrationProfileToBytes), as the server would
// set it: LOGN with mean weight `alpha`, described by `description`.
std::string TestProfile(const std::string& description, double alpha = 0.5);

}  // namespace store_testing

// gtest prints records (and optionals of them) with their fields.
void PrintTo(const RoiSamplingRecord& record, std::ostream* os);
void PrintTo(const CalibrationProfileRecord& record, std::ostream* os);

}  // namespace logn

#endif  // LOGN_STORE_TESTING_TEST_STATS_H_
