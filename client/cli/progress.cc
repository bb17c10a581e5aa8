#include "client/cli/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logn {
namespace {

std::string FormatEta(double seconds) {
  if (!(seconds >= 0) || seconds > 360000) return "--:--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%02d:%02d", s / 60, s % 60);
}

}  // namespace

ProgressReporter::ProgressReporter(std::ostream* out, ProgressOptions options)
    : out_(out), options_(std::move(options)), start_(absl::Now()), last_print_(start_) {}

std::string ProgressReporter::Line(bool bar) const {
  const double elapsed = std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start_));
  double fraction = -1;
  if (options_.total_rows > 0) {
    fraction = static_cast<double>(rows_) / options_.total_rows;
  } else if (options_.total_images > 0) {
    fraction = static_cast<double>(images_) / options_.total_images;
  }
  std::string line = options_.label;
  if (bar && fraction >= 0) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(std::min(1.0, fraction) * kWidth);
    absl::StrAppend(&line, " [", std::string(filled, '#'), std::string(kWidth - filled, '.'), "]");
  }
  if (fraction >= 0) absl::StrAppend(&line, absl::StrFormat(" %5.1f%%", 100 * fraction));
  const bool show_rows = options_.rows_known || rows_ > 0;
  if (show_rows) {
    absl::StrAppend(&line, " rows ", rows_);
    if (options_.total_rows > 0) absl::StrAppend(&line, "/", options_.total_rows);
  }
  absl::StrAppend(&line, " ", options_.unit, " ", images_);
  if (options_.total_images > 0) absl::StrAppend(&line, "/", options_.total_images);
  absl::StrAppend(&line, " |");
  if (show_rows) absl::StrAppend(&line, absl::StrFormat(" %.0f rows/s", rows_ / elapsed));
  absl::StrAppend(&line, absl::StrFormat(" %.1f %s/s", images_ / elapsed, options_.unit));
  const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : -1;
  absl::StrAppend(&line, " | ETA ", FormatEta(eta), " elapsed ", FormatEta(elapsed));
  return line;
}

void ProgressReporter::Update(int64_t rows, int64_t images) {
  rows_ = rows;
  images_ = images;
  const absl::Time now = absl::Now();
  if (options_.terminal) {
    // Redraw at most 10 times a second.
    if (now - last_print_ < absl::Milliseconds(100) && printed_terminal_) return;
    *out_ << "\r\033[K" << Line(true) << std::flush;
    printed_terminal_ = true;
    last_print_ = now;
  } else if (now - last_print_ >= options_.interval) {
    *out_ << Line(false) << "\n" << std::flush;
    last_print_ = now;
  }
}

void ProgressReporter::Finish() {
  if (options_.terminal) {
    *out_ << "\r\033[K" << Line(true) << "\n" << std::flush;
  } else {
    *out_ << Line(false) << "\n" << std::flush;
  }
}

}  // namespace logn
