#include "server/core/versions.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace logn {

NewVersion BuildNewVersion(const ModelKey& model, Statistics statistics, VersionOrigin origin,
                           absl::Time now) {
  StatisticsProvenance& provenance = statistics.provenance;
  provenance.model_name = model.name;
  provenance.model_sha256 = model.sha256;
  provenance.created_at = now;
  provenance.description = origin.description;
  provenance.images_seen = origin.images_seen;
  provenance.batches_seen = origin.batches_seen;
  NewVersion version;
  version.model = model;
  version.statistics = std::move(statistics);
  version.job_id = std::move(origin.job_id);
  version.description = std::move(origin.description);
  version.source = origin.source;
  version.parent_versions = std::move(origin.parent_versions);
  version.partial = origin.partial;
  version.clear_job_checkpoint = origin.clear_job_checkpoint;
  version.sampling = origin.sampling;
  return version;
}

absl::StatusOr<StoredVersion> StoreNewVersion(StatsStore& store, const NewVersion& version,
                                              bool activate) {
  LOGN_ASSIGN_OR_RETURN(VersionRecord record, store.Put(version));
  StoredVersion stored;
  stored.info = std::move(record.info);
  if (activate) {
    const absl::Status activated = store.Activate(version.model, stored.info.version).status();
    if (!activated.ok()) {
      return absl::Status(activated.code(),
                          absl::StrCat("version ", stored.info.version,
                                       " was committed but could not be activated (activate it "
                                       "with Activate): ",
                                       activated.message()));
    }
    stored.aliases.push_back(std::string(kActiveAlias));
  }
  return stored;
}

}  // namespace logn
