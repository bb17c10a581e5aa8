#ifndef LOGN_SERVER_CORE_EXECUTOR_H_
#define LOGN_SERVER_CORE_EXECUTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace logn {

// A fixed pool of worker threads with a bounded FIFO queue. gRPC reactors hand forward passes
// and other blocking work here so that no reactor thread ever blocks; a full queue is the
// server's back-pressure signal (RESOURCE_EXHAUSTED to the caller), never an unbounded backlog.
class BoundedExecutor {
 public:
  struct Options {
    int num_threads = 2;         // > 0
    int64_t max_queued = 64;     // tasks waiting (not running) at most; > 0
  };

  explicit BoundedExecutor(const Options& options);
  // Runs every queued task, then joins the workers.
  ~BoundedExecutor();
  BoundedExecutor(const BoundedExecutor&) = delete;
  BoundedExecutor& operator=(const BoundedExecutor&) = delete;

  // Queues `task`; false (and `task` is not run) when the queue is full or the executor is
  // shutting down.
  bool TrySchedule(std::function<void()> task);

  // Stops accepting tasks and waits until every queued and running task has finished.
  void Shutdown();

  int64_t queued() const;
  int64_t running() const;

 private:
  void WorkerLoop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_EXECUTOR_H_
