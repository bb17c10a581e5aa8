#include "client/lib/calibration_jobs.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace logn {

int64_t DefaultRowsPerBatch(int32_t width) {
  return std::max<int64_t>(1, (int64_t{4} << 20) / (int64_t{4} * std::max(1, width)));
}

absl::StatusOr<ItemRange> ShardRange(int64_t total, int index, int count, absl::string_view unit) {
  if (count < 1 || index < 0 || index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", index, "/", count, " needs 0 <= index < count"));
  }
  const ItemRange range{total * index / count, total * (index + 1) / count};
  if (range.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", index, "/", count, " of ", total, " ",
                                                   unit, " is empty: use fewer shards"));
  }
  return range;
}

absl::StatusOr<ResumePoint> PrepareResume(Client& client, v1::CalibrateHeader* header) {
  if (header->job_id().empty()) {
    return absl::InvalidArgumentError("resuming a calibration job needs its job id");
  }
  // The job belongs to the header's model version: look there, not in the default one.
  v1::GetCalibrationJobRequest request;
  request.set_model_name(header->model_name());
  request.set_model_version(header->model_version());
  request.set_job_id(header->job_id());
  absl::StatusOr<v1::GetCalibrationJobResponse> got = client.GetCalibrationJob(request);
  ResumePoint resume;
  if (got.ok()) {
    resume.first_batch = got->job().batches_seen();
    resume.checkpoint = std::move(*got->mutable_job());
    header->set_resume(true);
    header->set_resume_from_batch(resume.first_batch);
    return resume;
  }
  if (!absl::IsNotFound(got.status())) return got.status();
  // No checkpoint: either the job never checkpointed, or it committed (which drops it).
  absl::StatusOr<int64_t> committed =
      FindVersionByJobId(client, header->job_id(), header->model_name(), header->model_version());
  if (!committed.ok()) return committed.status();
  if (*committed > 0) {
    return absl::FailedPreconditionError(absl::StrCat("job '", header->job_id(),
                                                      "' already committed as version ", *committed,
                                                      "; nothing to resume"));
  }
  return resume;
}

absl::StatusOr<ItemRange> RemainingItems(const ItemRange& shard, int64_t per_batch,
                                         const ResumePoint& resume, absl::string_view job_id) {
  const ItemRange rest{shard.begin + resume.first_batch * per_batch, shard.end};
  if (rest.begin >= rest.end) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' checkpointed after batch ", resume.first_batch,
                     ", past the end of this input: is it the same input and batch size?"));
  }
  return rest;
}

absl::StatusOr<int64_t> FindVersionByJobId(Client& client, absl::string_view job_id,
                                           absl::string_view model_name, int64_t model_version) {
  // The server filters; versions come in ascending order, so the first one is the job's
  // earliest. Partial versions count: a shard's job commits one.
  v1::ListVersionsRequest request;
  request.set_model_name(std::string(model_name));
  request.set_model_version(model_version);
  request.set_job_id(std::string(job_id));
  request.set_page_size(1);
  absl::StatusOr<v1::ListVersionsResponse> page = client.ListVersions(request);
  if (absl::IsNotFound(page.status())) return 0;  // the model has no version yet
  if (!page.ok()) return page.status();
  if (page->statistics_versions().empty()) return 0;
  return page->statistics_versions(0).version();
}

}  // namespace logn
