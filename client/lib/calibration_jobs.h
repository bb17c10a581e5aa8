#ifndef LOGN_CLIENT_LIB_CALIBRATION_JOBS_H_
#define LOGN_CLIENT_LIB_CALIBRATION_JOBS_H_

// The client side of a calibration job's life beyond one Calibrate stream: splitting the input
// into shards (one per replica, merged later), resuming a job from its server-side checkpoint,
// and finding the version a job committed. The `logn calibrate` CLI is built on these, and
// client/python/example.py follows the same steps.
//
// A job sends its input (a dataset's images or a logits file's rows, "items") in a fixed order,
// in batches of a fixed size, so a batch count names a position in the input: the server's
// checkpoint records how many batches it holds, and a resumed stream sends only the rest.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/lib/client.h"
#include "logn/v1/calibration_service.pb.h"

namespace logn {

// Rows per LogitBatch for logits `width` columns wide: messages of about 4 MiB, well under the
// server's 64 MiB limit and large enough to amortise the RPC. At least 1.
int64_t DefaultRowsPerBatch(int32_t width);

// Half-open range [begin, end) of a job's items, in input order.
struct ItemRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Shard `index` (0-based) of `count`: the index-th of `count` contiguous slices of `total` items,
// their sizes differing by at most one. INVALID_ARGUMENT when not 0 <= index < count, or when the
// slice is empty ("shard I/N of TOTAL UNIT is empty: use fewer shards"; `unit` names the items,
// e.g. "rows").
absl::StatusOr<ItemRange> ShardRange(int64_t total, int index, int count, absl::string_view unit);

// Where a resumed job starts.
struct ResumePoint {
  // Batches the server already holds (0: start from the beginning).
  int64_t first_batch = 0;
  // The job's checkpoint, when it has one.
  std::optional<v1::CalibrationJob> checkpoint;
};

// Resumes job `header->job_id()` (required) of the header's model and model version: when the
// server holds a checkpoint of it, sets `header->resume` and `header->resume_from_batch` and
// returns the checkpoint; without one, the job starts from the beginning (header untouched).
// FAILED_PRECONDITION when the job already committed a version ("job 'ID' already committed as
// version N; nothing to resume"): a job that finished must not be committed twice. INVALID_ARGUMENT
// without a job id; the server's error otherwise.
absl::StatusOr<ResumePoint> PrepareResume(Client& client, v1::CalibrateHeader* header);

// The part of `shard` still to send after `resume`, with `per_batch` items a batch (> 0).
// FAILED_PRECONDITION when the checkpoint lies at or past the shard's end, which means another
// input or batch size than the job's (the message names `job_id`).
absl::StatusOr<ItemRange> RemainingItems(const ItemRange& shard, int64_t per_batch,
                                         const ResumePoint& resume, absl::string_view job_id);

// The version job `job_id` committed as (partial or not; the lowest, should several versions
// carry the id); 0 when it committed none (or the model has no version yet). The server's error
// otherwise. One ListVersions call with the `job_id` filter, on model `model_name` ("": the served
// model) version `model_version` (0: the newest available).
absl::StatusOr<int64_t> FindVersionByJobId(Client& client, absl::string_view job_id,
                                           absl::string_view model_name = "",
                                           int64_t model_version = 0);

}  // namespace logn

#endif  // LOGN_CLIENT_LIB_CALIBRATION_JOBS_H_
