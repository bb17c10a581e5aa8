#ifndef LOGN_CLIENT_CLI_PROGRESS_H_
#define LOGN_CLIENT_CLI_PROGRESS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace logn {

struct ProgressOptions {
  // Terminal: one line redrawn in place (a bar, rate, ETA). Otherwise: a plain line every
  // `interval` (logs and CI stay readable).
  bool terminal = false;
  absl::Duration interval = absl::Seconds(2);
  // Totals for the ETA and the bar; 0 when unknown.
  int64_t total_rows = 0;
  int64_t total_images = 0;
  // False when rows are not known while the job runs (an image job learns how many RoIs the
  // server sampled only at the commit): rows are then shown only once they are known.
  bool rows_known = true;
  std::string label = "calibrate";
  // What the second counter counts ("images"; `logn tune` counts "settings" evaluated).
  std::string unit = "images";
};

// Reports a streaming job's progress: rows/s, images/s and the ETA from whichever total is known.
class ProgressReporter {
 public:
  ProgressReporter(std::ostream* out, ProgressOptions options);
  // Cumulative counts sent so far.
  void Update(int64_t rows, int64_t images);
  // Prints the last state (and ends the terminal line).
  void Finish();
  // The line that would be printed now (exposed for tests of the format).
  std::string Line(bool bar) const;

 private:
  std::ostream* out_;
  ProgressOptions options_;
  absl::Time start_;
  absl::Time last_print_;
  int64_t rows_ = 0;
  int64_t images_ = 0;
  bool printed_terminal_ = false;
};

}  // namespace logn

#endif  // LOGN_CLIENT_CLI_PROGRESS_H_
