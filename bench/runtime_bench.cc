// Detector runtime figures (not tests):
//   * post-processing (LogN calibration -> softmax -> threshold -> class-wise NMS -> top-300) at
//     LVIS scale, 1,000 candidates x 1,203 classes, for realistic and worst-case score profiles;
//   * in-process latency p50/p99 of decode -> resize -> forward -> post-process, with each stage's
//     share, on the tiny contract model and on a torchvision Faster R-CNN export.
// The models come from the Python scripts:
//   ninja -C build runtime_bench_models runtime_bench
//   build/bench/runtime_bench --benchmark_counters_tabular=true
// LOGN_BENCH_MODELS overrides the model directory; model benchmarks are skipped if it is absent.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "calibration/calibrator.h"
#include "calibration/softmax.h"
#include "server/runtime/detector_runtime.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"

namespace logn {
namespace {

constexpr int32_t kClasses = 1203;
constexpr int64_t kCandidates = 1000;

LogitLayout LvisLayout() { return {kClasses, BackgroundPosition::kLast}; }

Statistics RandomStatistics(const LogitLayout& layout, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> mean(-8.0, 2.0), var(0.5, 2.0);
  Statistics stats;
  stats.layout = layout;
  stats.count = 1000;
  for (int j = 0; j < layout.width(); ++j) {
    stats.mean.push_back(mean(rng));
    stats.variance.push_back(var(rng));
  }
  return stats;
}

enum Profile { kLvisLike = 0, kFlat = 1 };

// LVIS-like: a confident background (N(3, 2)) and foreground logits N(-4, 2), as a trained RoI head
// gives on most proposals. Flat: every logit ~ N(0, 0.1), so all 1.2M (candidate, class) pairs
// clear the 1e-4 threshold: the worst case for the threshold scan and NMS.
struct Outputs {
  std::vector<float> boxes, logits;
};
Outputs MakeOutputs(Profile profile, bool class_specific) {
  std::mt19937 rng(42);
  const LogitLayout layout = LvisLayout();
  std::normal_distribution<float> fg(profile == kFlat ? 0.0f : -4.0f,
                                     profile == kFlat ? 0.1f : 2.0f);
  std::normal_distribution<float> bg(profile == kFlat ? 0.0f : 3.0f,
                                     profile == kFlat ? 0.1f : 2.0f);
  std::uniform_real_distribution<float> pos(0, 1200), size(8, 300);
  Outputs out;
  for (int64_t r = 0; r < kCandidates; ++r) {
    for (int32_t j = 0; j < layout.width(); ++j) {
      out.logits.push_back(j == layout.background_column() ? bg(rng) : fg(rng));
    }
  }
  const int64_t boxes = class_specific ? kCandidates * kClasses : kCandidates;
  out.boxes.reserve(boxes * 4);
  for (int64_t i = 0; i < boxes; ++i) {
    const float x = pos(rng), y = pos(rng);
    out.boxes.insert(out.boxes.end(), {x, y, x + size(rng), y + size(rng)});
  }
  return out;
}

// args: profile, class_specific.
void BM_Postprocess1000x1203(benchmark::State& state) {
  const Profile profile = static_cast<Profile>(state.range(0));
  const bool class_specific = state.range(1) != 0;
  const Outputs out = MakeOutputs(profile, class_specific);
  const Calibrator logn =
      Calibrator::ForLogN(RandomStatistics(LvisLayout(), 1), LogNOptions()).value();
  const CandidatesView view{kCandidates, class_specific, out.boxes, out.logits};
  const PostprocessOptions options;  // threshold 1e-4, IoU 0.5, top-300
  size_t kept = 0;
  for (auto _ : state) {
    auto detections = Postprocess(logn, view, options);
    kept = detections->size();
    benchmark::DoNotOptimize(detections);
  }
  // How many pairs entered NMS (computed once, outside the timed loop).
  std::vector<float> probs = out.logits;
  logn.ApplyUnchecked(probs.data(), kCandidates);
  SoftmaxRows(probs.data(), probs.data(), kCandidates, LvisLayout().width());
  int64_t above = 0;
  for (int64_t r = 0; r < kCandidates; ++r) {
    for (int32_t c = 0; c < kClasses; ++c) {
      above += probs[r * LvisLayout().width() + LvisLayout().foreground_column(c)] > 1e-4f;
    }
  }
  state.counters["pairs_in_nms"] = static_cast<double>(above);
  state.counters["kept"] = static_cast<double>(kept);
  state.SetLabel(std::string(profile == kFlat ? "flat" : "lvis_like") +
                 (class_specific ? ",boxes[N,C,4]" : ",boxes[N,4]"));
}
BENCHMARK(BM_Postprocess1000x1203)
    ->Args({kLvisLike, 0})
    ->Args({kLvisLike, 1})
    ->Args({kFlat, 1})
    ->Unit(benchmark::kMillisecond);

// The NMS alone: 1,000 boxes x 1,203 labels, all pairs as candidates with distinct scores.
void BM_BatchedNms1000x1203(benchmark::State& state) {
  const int64_t max_keep = state.range(0);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> pos(0, 1200), size(8, 300), score(0, 1);
  const int64_t n = kCandidates * kClasses;
  std::vector<float> boxes, scores(n);
  std::vector<int32_t> labels(n);
  boxes.reserve(n * 4);
  for (int64_t i = 0; i < n; ++i) {
    const float x = pos(rng), y = pos(rng);
    boxes.insert(boxes.end(), {x, y, x + size(rng), y + size(rng)});
    scores[i] = score(rng);
    labels[i] = static_cast<int32_t>(i % kClasses);
  }
  for (auto _ : state) {
    auto keep = BatchedNms(boxes, scores, labels, 0.5f, max_keep);
    benchmark::DoNotOptimize(keep);
  }
  state.SetLabel(max_keep == n ? "all kept (no top-k)" : "top-300");
}
BENCHMARK(BM_BatchedNms1000x1203)->Arg(300)->Unit(benchmark::kMillisecond);

std::string ModelDir() {
  const char* env = std::getenv("LOGN_BENCH_MODELS");
  return env != nullptr ? env : LOGN_BENCH_MODELS_DEFAULT;
}

Image SyntheticPhoto(int32_t height, int32_t width) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> noise(0, 24);
  Image image;
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * width * 3);
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      uint8_t* p = &image.pixels[(static_cast<size_t>(y) * width + x) * 3];
      const bool block = ((x / 80) + (y / 60)) % 3 == 0;
      p[0] = static_cast<uint8_t>((block ? 200 : x * 180 / width) + noise(rng));
      p[1] = static_cast<uint8_t>((block ? 40 : y * 180 / height) + noise(rng));
      p[2] = static_cast<uint8_t>(((x + y) % 200) + noise(rng));
    }
  }
  return image;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1);
  return v[i];
}

// End-to-end Detect on one 640x480 JPEG with one LogN setting. args: model (0 contract, 1 tv),
// intra-op threads.
void BM_Detect(benchmark::State& state) {
  const bool torchvision = state.range(0) == 1;
  DetectorRuntime::Options options;
  options.model_path =
      ModelDir() + (torchvision ? "/torchvision/frcnn.pt" : "/contract/contract_agnostic.pt");
  options.intra_op_threads = static_cast<int32_t>(state.range(1));
  if (torchvision) options.ops_library_path = LOGN_TORCHVISION_OPS;
  auto runtime = DetectorRuntime::Load(options);
  if (!runtime.ok()) {
    state.SkipWithError(
        ("load failed (run the runtime_bench_models target): " + runtime.status().ToString())
            .c_str());
    return;
  }
  const std::string jpeg = EncodeJpeg(SyntheticPhoto(480, 640), 90).value();
  const ImageSource sources[] = {ImageSource::Encoded(jpeg)};
  const Calibrator logn =
      Calibrator::ForLogN(RandomStatistics((*runtime)->layout(), 5), LogNOptions()).value();
  const Calibrator* settings[] = {&logn};
  std::vector<double> total_ms;
  StageTimings sum;
  absl::Duration postprocess;
  // The server's detection path: one forward pass, then the post-processing of its outputs.
  const auto detect = [&](StageTimings* timings, absl::Duration* post) -> absl::Status {
    auto forward = (*runtime)->Forward(sources);
    if (!forward.ok()) return forward.status();
    const absl::Time post_start = absl::Now();
    auto detections = (*runtime)->PostprocessOutputs(forward->images, settings, {});
    if (!detections.ok()) return detections.status();
    *post += absl::Now() - post_start;
    timings->decode += forward->timings.decode;
    timings->preprocess += forward->timings.preprocess;
    timings->forward += forward->timings.forward;
    return absl::OkStatus();
  };
  for (int warmup = 0; warmup < 3; ++warmup) {
    StageTimings ignored;
    absl::Duration ignored_post;
    (void)detect(&ignored, &ignored_post);
  }
  for (auto _ : state) {
    const absl::Time start = absl::Now();
    const absl::Status status = detect(&sum, &postprocess);
    total_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
  }
  const double all =
      absl::ToDoubleMilliseconds(sum.decode + sum.preprocess + sum.forward + postprocess);
  state.counters["p50_ms"] = Percentile(total_ms, 0.50);
  state.counters["p99_ms"] = Percentile(total_ms, 0.99);
  state.counters["decode_%"] = 100 * absl::ToDoubleMilliseconds(sum.decode) / all;
  state.counters["resize_%"] = 100 * absl::ToDoubleMilliseconds(sum.preprocess) / all;
  state.counters["forward_%"] = 100 * absl::ToDoubleMilliseconds(sum.forward) / all;
  state.counters["post_%"] = 100 * absl::ToDoubleMilliseconds(postprocess) / all;
  state.SetLabel(torchvision ? "torchvision frcnn_mobilenet_v3_320 (8 cls)"
                             : "contract_agnostic (5 cls)");
}
// args: model, intra-op threads.
BENCHMARK(BM_Detect)->Args({0, 1})->Args({0, 2})->Iterations(300)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Detect)->Args({1, 1})->Args({1, 2})->Iterations(15)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace logn

BENCHMARK_MAIN();
