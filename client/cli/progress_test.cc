#include "client/cli/progress.h"

#include <algorithm>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

// What a reporter prints for one update to `rows` / `images` and the final line.
std::string OneUpdate(const ProgressOptions& options, int64_t rows, int64_t images) {
  std::ostringstream out;
  ProgressReporter progress(&out, options);
  progress.Update(rows, images);
  progress.Finish();
  return out.str();
}

TEST(ProgressTest, PlainLinesCarryRatesAndEta) {
  ProgressOptions options;
  options.terminal = false;
  options.interval = absl::ZeroDuration();  // a line per update
  options.total_rows = 1000;
  const std::string text = OneUpdate(options, 250, 0);
  EXPECT_THAT(text, HasSubstr("25.0% rows 250/1000"));
  EXPECT_THAT(text, HasSubstr("rows/s"));
  EXPECT_THAT(text, HasSubstr("images/s"));
  EXPECT_THAT(text, HasSubstr("ETA"));
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no terminal control in logs
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(ProgressTest, TerminalRedrawsOneLineWithABar) {
  ProgressOptions options;
  options.terminal = true;
  options.total_images = 4;
  const std::string text = OneUpdate(options, 0, 2);
  EXPECT_THAT(text, HasSubstr("\r"));
  EXPECT_THAT(text, HasSubstr("[############............]"));
  EXPECT_THAT(text, HasSubstr("images 2/4"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(ProgressTest, RowsUnknownUntilTheCommitAreNotShownAsZero) {
  std::ostringstream out;
  ProgressOptions options;
  options.interval = absl::ZeroDuration();
  options.total_images = 10;
  options.rows_known = false;  // an image job: the server reports its RoI count at the commit
  ProgressReporter progress(&out, options);
  progress.Update(0, 5);
  const std::string running = out.str();
  EXPECT_THAT(running, HasSubstr("images 5/10"));
  EXPECT_EQ(running.find("rows"), std::string::npos) << running;
  progress.Update(5120, 10);  // the committed response
  progress.Finish();
  EXPECT_THAT(out.str().substr(running.size()), HasSubstr("rows 5120 images 10/10"));
}

}  // namespace
}  // namespace logn
