#ifndef LOGN_SERVER_CORE_VERSIONS_H_
#define LOGN_SERVER_CORE_VERSIONS_H_

// New statistics versions: the one builder of the record that a Calibrate commit and a Merge
// store, and storing (and optionally activating) a version.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "calibration/statistics.h"
#include "store/stats_store.h"

namespace logn {

// Where a new version's statistics come from.
struct VersionOrigin {
  VersionSource source = VersionSource::kLogits;
  std::string job_id;
  std::string description;
  int64_t images_seen = 0;
  int64_t batches_seen = 0;
  std::vector<int64_t> parent_versions;  // a merge's versions, ascending
  bool partial = false;
  // Delete the job's checkpoint in the same transaction (a committed job cannot be resumed).
  bool clear_job_checkpoint = false;
  // How the rows were sampled (a Calibrate job's); a merge's is derived by the store.
  std::optional<RoiSamplingRecord> sampling;
};

// The version of `model` holding `statistics`, their provenance stamped with the model, `now`,
// the description and the image and batch counts of `origin`.
NewVersion BuildNewVersion(const ModelKey& model, Statistics statistics, VersionOrigin origin,
                           absl::Time now);

// A version as stored, with the aliases that point at it.
struct StoredVersion {
  VersionInfo info;
  std::vector<std::string> aliases;
};

// Puts `version` into `store` and, if `activate`, points "active" at it. A failed activation
// keeps the stored version and says so (the error's code, "was committed but could not be
// activated"); every other error is the store's.
absl::StatusOr<StoredVersion> StoreNewVersion(StatsStore& store, const NewVersion& version,
                                              bool activate);

}  // namespace logn

#endif  // LOGN_SERVER_CORE_VERSIONS_H_
