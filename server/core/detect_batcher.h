#ifndef LOGN_SERVER_CORE_DETECT_BATCHER_H_
#define LOGN_SERVER_CORE_DETECT_BATCHER_H_

// Dynamic batching of Detect requests (as Triton's dynamic batcher): requests wait in a bounded
// queue until the oldest has waited max_queue_delay or the queued images reach max_batch_images,
// whichever comes first; then the batch runs on the executor as one ServerCore::DetectBatch,
// i.e. one forward pass. The queued images are shared among the free in-flight slots (a batch
// takes at most ceil(queued / free slots)), so idle executor threads get work too. A request
// whose deadline passed (or that was cancelled) while queued is answered without joining a
// batch.

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "logn/v1/detection_service.pb.h"
#include "server/core/executor.h"
#include "server/core/server_core.h"

namespace logn {

class DetectBatcher {
 public:
  struct Options {
    // Images in one batch at most (> 0). A request with more images than this runs alone.
    int32_t max_batch_images = 8;
    // How long the oldest queued request may wait for others (>= 0).
    absl::Duration max_queue_delay = absl::Microseconds(2000);
    // Requests waiting at most; beyond that Submit answers RESOURCE_EXHAUSTED.
    int64_t max_queued_requests = 256;
    // Batches running (or queued on the executor) at once, > 0; usually the executor's threads.
    // While that many run, new requests keep gathering, so batches grow under load.
    int32_t max_in_flight_batches = 2;
    // Called with each batch's image count just before it runs (metrics); may be empty.
    std::function<void(int64_t images)> on_batch;
  };

  // One queued request. `request` and `response` must stay valid until `done` is called.
  struct Call {
    const v1::DetectRequest* request = nullptr;
    v1::DetectResponse* response = nullptr;
    absl::Time deadline = absl::InfiniteFuture();
    // True when the caller gave up (cancelled): the request is dropped before its batch.
    std::function<bool()> abandoned;
    // Called exactly once with the request's status and how long it waited before its batch
    // started: on an executor thread after its batch, on the batching thread when it expired
    // or was abandoned in the queue, or inline when Submit refuses it.
    std::function<void(const absl::Status&, absl::Duration queued)> done;
  };

  // `core` and `executor` must outlive the batcher. Starts the batching thread.
  DetectBatcher(ServerCore* core, BoundedExecutor* executor, const Options& options);
  // Answers every queued call (UNAVAILABLE) and joins the thread.
  ~DetectBatcher();
  DetectBatcher(const DetectBatcher&) = delete;
  DetectBatcher& operator=(const DetectBatcher&) = delete;

  // Queues `call`, or answers it at once: RESOURCE_EXHAUSTED when the queue is full.
  void Submit(Call call);

  // Batches handed to the executor, and the images in them (for tests and metrics).
  struct Counters {
    int64_t batches = 0;
    int64_t images = 0;
    int64_t requests = 0;
  };
  Counters counters() const;

 private:
  struct Queued {
    Call call;
    absl::Time arrived;
  };
  void Loop();
  // Answers the expired / abandoned calls and hands the rest to the executor as one task.
  void Dispatch(std::vector<Queued> batch);

  ServerCore* const core_;
  BoundedExecutor* const executor_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_images_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Counters counters_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_DETECT_BATCHER_H_
