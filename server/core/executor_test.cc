#include "server/core/executor.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

TEST(BoundedExecutorTest, RunsEveryAcceptedTaskAndRefusesWhenFull) {
  absl::Notification release;
  std::atomic<int> done{0};
  BoundedExecutor executor({/*num_threads=*/1, /*max_queued=*/2});
  // One task occupies the only worker until released; two more fill the queue.
  ASSERT_TRUE(executor.TrySchedule([&] {
    release.WaitForNotification();
    ++done;
  }));
  while (executor.running() == 0) {
  }
  EXPECT_TRUE(executor.TrySchedule([&] { ++done; }));
  EXPECT_TRUE(executor.TrySchedule([&] { ++done; }));
  EXPECT_FALSE(executor.TrySchedule([&] { ++done; }));  // full: back-pressure
  EXPECT_EQ(executor.queued(), 2);
  release.Notify();
  executor.Shutdown();
  EXPECT_EQ(done.load(), 3);
  EXPECT_FALSE(executor.TrySchedule([&] { ++done; }));  // shut down
}

}  // namespace
}  // namespace logn
