#include "server/core/detect_batcher.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/core/testing/test_inputs.h"

namespace logn {
namespace {

// The outcome of one submitted call.
struct Outcome {
  v1::DetectRequest request;
  v1::DetectResponse response;
  absl::Status status;
  absl::Duration queued;
  absl::Notification done;
};

class DetectBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::filesystem::path db =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat("batcher_", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                     ".db");
    std::filesystem::remove(db);
    ServerCoreOptions options;
    options.runtime.model_path = core_testing::ContractModelPath();
    options.runtime.intra_op_threads = 1;
    options.store_url = "sqlite://" + db.string();
    core_ = ServerCore::Create(options).value();
  }

  // A request of `images` images (sizes vary) under method NONE (no statistics needed).
  static v1::DetectRequest Request(int images, uint8_t seed) {
    v1::DetectRequest r;
    for (int i = 0; i < images; ++i) {
      r.add_images()->set_encoded(
          core_testing::SyntheticPng(40 + 8 * i + seed, 56 + 4 * seed, seed + i));
      r.mutable_images(i)->set_image_id(absl::StrCat(seed, "-", i));
    }
    r.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
    r.mutable_postprocess()->set_include_uncalibrated_score(true);
    r.set_request_id(absl::StrCat("r", seed));
    return r;
  }

  static void Submit(DetectBatcher& batcher, Outcome* o,
                     absl::Time deadline = absl::InfiniteFuture()) {
    DetectBatcher::Call call;
    call.request = &o->request;
    call.response = &o->response;
    call.deadline = deadline;
    call.done = [o](const absl::Status& s, absl::Duration queued) {
      o->status = s;
      o->queued = queued;
      o->done.Notify();
    };
    batcher.Submit(std::move(call));
  }

  std::unique_ptr<ServerCore> core_;
};

TEST_F(DetectBatcherTest, BatchedDetectionsEqualUnbatchedOnes) {
  BoundedExecutor executor({2, 16});
  DetectBatcher::Options options;
  options.max_batch_images = 8;
  options.max_queue_delay = absl::Milliseconds(200);  // long enough for all three to join
  options.max_in_flight_batches = 1;  // one batch takes everything queued
  std::vector<int64_t> batch_sizes;
  options.on_batch = [&](int64_t images) { batch_sizes.push_back(images); };
  DetectBatcher batcher(core_.get(), &executor, options);
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int r = 0; r < 3; ++r) {
    outcomes.push_back(std::make_unique<Outcome>());
    outcomes.back()->request = Request(r + 1, static_cast<uint8_t>(r));
    Submit(batcher, outcomes.back().get());
  }
  for (auto& o : outcomes) o->done.WaitForNotification();
  EXPECT_EQ(batcher.counters().batches, 1);
  EXPECT_EQ(batch_sizes, std::vector<int64_t>{6});
  for (auto& o : outcomes) {
    ASSERT_TRUE(o->status.ok()) << o->status;
    v1::DetectResponse alone;
    ASSERT_TRUE(core_->Detect(o->request, &alone).ok());
    ASSERT_GT(alone.results(0).image_detections(0).detections_size(), 0);
    alone.clear_timing();
    o->response.clear_timing();
    EXPECT_EQ(o->response.SerializeAsString(), alone.SerializeAsString()) << o->request.request_id();
  }
}

// With two free executor threads, four queued images form two batches of two, not one of four
// that would leave a thread idle.
TEST_F(DetectBatcherTest, QueuedImagesAreSharedAmongFreeSlots) {
  BoundedExecutor executor({2, 16});
  DetectBatcher::Options options;
  options.max_batch_images = 8;
  options.max_queue_delay = absl::Milliseconds(200);
  options.max_in_flight_batches = 2;
  absl::Mutex mu;
  std::vector<int64_t> batch_sizes;
  options.on_batch = [&](int64_t images) {
    absl::MutexLock l(&mu);
    batch_sizes.push_back(images);
  };
  DetectBatcher batcher(core_.get(), &executor, options);
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int r = 0; r < 4; ++r) {
    outcomes.push_back(std::make_unique<Outcome>());
    outcomes.back()->request = Request(1, static_cast<uint8_t>(r));
    Submit(batcher, outcomes.back().get());
  }
  for (auto& o : outcomes) {
    o->done.WaitForNotification();
    EXPECT_TRUE(o->status.ok()) << o->status;
  }
  absl::MutexLock l(&mu);
  EXPECT_EQ(batch_sizes, (std::vector<int64_t>{2, 2}));
}

TEST_F(DetectBatcherTest, BatchesStopAtMaxImagesAndABadImageFailsOnlyItsRequest) {
  BoundedExecutor executor({1, 16});
  DetectBatcher::Options options;
  options.max_batch_images = 2;
  options.max_queue_delay = absl::Milliseconds(100);
  options.max_in_flight_batches = 1;
  DetectBatcher batcher(core_.get(), &executor, options);
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int r = 0; r < 4; ++r) {
    outcomes.push_back(std::make_unique<Outcome>());
    outcomes.back()->request = Request(1, static_cast<uint8_t>(r));
  }
  outcomes[1]->request.mutable_images(0)->set_encoded("not an image");
  for (auto& o : outcomes) Submit(batcher, o.get());
  for (auto& o : outcomes) o->done.WaitForNotification();
  EXPECT_EQ(batcher.counters().batches, 2);
  EXPECT_EQ(batcher.counters().images, 4);
  EXPECT_TRUE(outcomes[0]->status.ok()) << outcomes[0]->status;
  EXPECT_EQ(outcomes[1]->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(outcomes[2]->status.ok()) << outcomes[2]->status;
  EXPECT_TRUE(outcomes[3]->status.ok()) << outcomes[3]->status;
}

TEST_F(DetectBatcherTest, ExpiredRequestsNeverJoinABatchAndAFullQueueIsRefused) {
  BoundedExecutor executor({1, 16});
  DetectBatcher::Options options;
  options.max_batch_images = 1;
  options.max_queue_delay = absl::ZeroDuration();
  options.max_in_flight_batches = 1;
  options.max_queued_requests = 2;
  DetectBatcher batcher(core_.get(), &executor, options);
  // Occupy the only in-flight slot with a batch whose executor thread is blocked.
  absl::Notification release;
  ASSERT_TRUE(executor.TrySchedule([&] { release.WaitForNotification(); }));
  Outcome first, expiring, kept, refused;
  first.request = Request(1, 1);
  expiring.request = Request(1, 2);
  kept.request = Request(1, 3);
  refused.request = Request(1, 4);
  Submit(batcher, &first);
  absl::SleepFor(absl::Milliseconds(50));  // `first` is dispatched and waits on the executor
  Submit(batcher, &expiring, absl::Now() + absl::Milliseconds(20));
  Submit(batcher, &kept);
  Submit(batcher, &refused);  // the queue holds 2
  ASSERT_TRUE(refused.done.HasBeenNotified());
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kResourceExhausted);
  absl::SleepFor(absl::Milliseconds(60));
  release.Notify();
  for (Outcome* o : {&first, &expiring, &kept}) o->done.WaitForNotification();
  EXPECT_TRUE(first.status.ok()) << first.status;
  EXPECT_EQ(expiring.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(kept.status.ok()) << kept.status;
  EXPECT_GE(kept.queued, absl::Milliseconds(60));
  EXPECT_EQ(batcher.counters().requests, 2);
}

}  // namespace
}  // namespace logn
