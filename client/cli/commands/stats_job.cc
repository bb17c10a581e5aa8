// logn stats job JOB_ID: a resumable calibration job's last checkpoint.

#include "client/cli/commands/stats_actions.h"
#include "client/cli/errors.h"

namespace logn::cli {

void ParseStatsJob(const std::vector<std::string>& pos, const Args&, StatsOptions* o) {
  o->job_id = pos[1];
}

int RunStatsJob(Client& client, const StatsOptions& options, const Io& io) {
  v1::GetCalibrationJobRequest request;
  SetModel(options.model, &request);
  request.set_job_id(*options.job_id);
  absl::StatusOr<v1::GetCalibrationJobResponse> got = client.GetCalibrationJob(request);
  if (!got.ok()) return ReportError(io, "stats job", got.status());
  // The job itself, as `stats list` prints the versions themselves.
  const v1::CalibrationJob& job = got->job();
  PrintJsonOrText(io, options.json, job, [&] {
    *io.out << "job '" << job.job_id() << "' checkpointed after batch " << job.batches_seen()
            << ": " << job.rows_seen() << " rows, " << job.images_seen() << " images\n";
  });
  return kExitOk;
}

}  // namespace logn::cli
