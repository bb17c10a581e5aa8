#include "server/core/detect_batcher.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace logn {

DetectBatcher::DetectBatcher(ServerCore* core, BoundedExecutor* executor, const Options& options)
    : core_(core), executor_(executor), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

DetectBatcher::~DetectBatcher() {
  std::deque<Queued> left;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
  {
    absl::MutexLock l(&mu_);
    left.swap(queue_);
    // Batches on the executor still use this batcher: wait for them.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  for (Queued& q : left) {
    q.call.done(absl::UnavailableError("the server is shutting down"), absl::Now() - q.arrived);
  }
}

void DetectBatcher::Submit(Call call) {
  const int64_t images = call.request->images_size();
  {
    absl::MutexLock l(&mu_);
    if (!stopping_ && static_cast<int64_t>(queue_.size()) < options_.max_queued_requests) {
      queue_.push_back(Queued{std::move(call), absl::Now()});
      queued_images_ += images;
      return;
    }
  }
  call.done(absl::ResourceExhaustedError(
                "the server is at capacity (its batching queue is full); retry with backoff"),
            absl::ZeroDuration());
}

DetectBatcher::Counters DetectBatcher::counters() const {
  absl::MutexLock l(&mu_);
  return counters_;
}

void DetectBatcher::Loop() {
  while (true) {
    std::vector<Queued> batch;
    {
      absl::MutexLock l(&mu_);
      auto ready_to_form = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || (!queue_.empty() && in_flight_ < options_.max_in_flight_batches);
      };
      mu_.Await(absl::Condition(&ready_to_form));
      if (stopping_) return;
      // Gather until the batch is full or the oldest request has waited long enough.
      auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || queued_images_ >= options_.max_batch_images;
      };
      mu_.AwaitWithDeadline(absl::Condition(&full),
                            queue_.front().arrived + options_.max_queue_delay);
      if (stopping_) return;
      // Share what is queued among the free in-flight slots: one batch holding every queued
      // image would run on one executor thread while the others idle (measured on 2 cores:
      // half the unbatched throughput at 4-8 callers), since a forward pass's per-image work
      // does not spread over threads.
      const int64_t free_slots = options_.max_in_flight_batches - in_flight_;
      const int64_t limit = std::min<int64_t>(
          options_.max_batch_images, (queued_images_ + free_slots - 1) / free_slots);
      int64_t images = 0;
      while (!queue_.empty()) {
        const int64_t n = queue_.front().call.request->images_size();
        if (!batch.empty() && images + n > limit) break;
        images += n;
        queued_images_ -= n;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      ++in_flight_;
    }
    Dispatch(std::move(batch));
  }
}

void DetectBatcher::Dispatch(std::vector<Queued> batch) {
  const absl::Time now = absl::Now();
  std::vector<Queued> live;
  for (Queued& q : batch) {
    if (q.call.deadline < now) {
      q.call.done(absl::DeadlineExceededError("the deadline passed while the request was queued"),
                  now - q.arrived);
    } else if (q.call.abandoned && q.call.abandoned()) {
      q.call.done(absl::CancelledError("the call was cancelled"), now - q.arrived);
    } else {
      live.push_back(std::move(q));
    }
  }
  auto finished = [this] {
    absl::MutexLock l(&mu_);
    --in_flight_;
  };
  if (live.empty()) {
    finished();
    return;
  }
  int64_t images = 0;
  for (const Queued& q : live) images += q.call.request->images_size();
  {
    absl::MutexLock l(&mu_);
    ++counters_.batches;
    counters_.images += images;
    counters_.requests += static_cast<int64_t>(live.size());
  }
  auto shared = std::make_shared<std::vector<Queued>>(std::move(live));
  const bool scheduled = executor_->TrySchedule([this, shared, images, finished] {
    const absl::Time started = absl::Now();
    if (options_.on_batch) options_.on_batch(images);
    std::vector<const v1::DetectRequest*> requests;
    std::vector<v1::DetectResponse*> responses;
    for (const Queued& q : *shared) {
      requests.push_back(q.call.request);
      responses.push_back(q.call.response);
    }
    const std::vector<absl::Status> statuses = core_->DetectBatch(requests, responses);
    finished();
    for (size_t i = 0; i < shared->size(); ++i) {
      (*shared)[i].call.done(statuses[i], started - (*shared)[i].arrived);
    }
  });
  if (!scheduled) {
    finished();
    for (Queued& q : *shared) {
      q.call.done(absl::ResourceExhaustedError(
                      "the server is at capacity (its work queue is full); retry with backoff"),
                  absl::Now() - q.arrived);
    }
  }
}

}  // namespace logn
