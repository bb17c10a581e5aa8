// Calibration kernels against memcpy of the same bytes, in one run (figures, not tests).
//   ./build/bench/calibration_bench --benchmark_counters_tabular=true
// Each benchmark reports bytes_per_second over the float32 logits it reads.
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/random/random.h"
#include "benchmark/benchmark.h"
#include "calibration/accumulator.h"
#include "calibration/calibrator.h"
#include "calibration/softmax.h"

namespace logn {
namespace {

constexpr int32_t kClasses = 1203;  // LVIS v1: 1,203 classes + background = 1,204 logits

LogitLayout Layout() { return {kClasses, BackgroundPosition::kLast}; }

std::vector<float> RandomLogits(int64_t rows) {
  absl::BitGen gen;
  std::vector<float> values(rows * Layout().width());
  for (float& v : values) v = static_cast<float>(absl::Gaussian<double>(gen, -4.0, 2.0));
  return values;
}

Statistics RandomStatistics() {
  absl::BitGen gen;
  Statistics stats;
  stats.layout = Layout();
  stats.count = 1000;
  for (int j = 0; j < Layout().width(); ++j) {
    stats.mean.push_back(absl::Uniform<double>(gen, -8.0, 2.0));
    stats.variance.push_back(absl::Uniform<double>(gen, 0.5, 2.0));
  }
  return stats;
}

void SetBytes(benchmark::State& state, int64_t rows) {
  state.SetBytesProcessed(state.iterations() * rows * Layout().width() *
                          static_cast<int64_t>(sizeof(float)));
}

void BM_Memcpy(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const std::vector<float> src = RandomLogits(rows);
  std::vector<float> dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  SetBytes(state, rows);
}

void BM_LogNApply(benchmark::State& state) {
  const int64_t rows = state.range(0);
  std::vector<float> logits = RandomLogits(rows);
  const Calibrator calibrator = Calibrator::ForLogN(RandomStatistics(), LogNOptions()).value();
  for (auto _ : state) {
    // In place, like the server does on a forward pass's output buffer.
    calibrator.ApplyUnchecked(logits.data(), rows);
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
    // Keep values bounded across iterations without paying for a copy: undo is a no-op here
    // because scale≈1/σ keeps magnitudes finite for many passes; reset rarely.
    if (!std::isfinite(logits[0]) || std::abs(logits[0]) > 1e30f) {
      state.PauseTiming();
      logits = RandomLogits(rows);
      state.ResumeTiming();
    }
  }
  SetBytes(state, rows);
}

void BM_ExactAccumulate(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const std::vector<float> logits = RandomLogits(rows);
  ExactAccumulator accumulator(Layout());
  const LogitBatchView batch{logits.data(), rows, Layout().width()};
  for (auto _ : state) {
    benchmark::DoNotOptimize(accumulator.Add(batch));
  }
  SetBytes(state, rows);
}

// Repeat-factor weights (LVIS-like: most rows 1, some up to ~4, a few 0), the weighted kernel.
void BM_ExactAccumulateWeighted(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const std::vector<float> logits = RandomLogits(rows);
  absl::BitGen gen;
  std::vector<double> weights(rows);
  for (double& w : weights) {
    const double u = absl::Uniform<double>(gen, 0.0, 1.0);
    w = u < 0.05 ? 0.0 : u < 0.7 ? 1.0 : absl::Uniform<double>(gen, 1.0, 4.0);
  }
  ExactAccumulator accumulator(Layout());
  const LogitBatchView batch{logits.data(), rows, Layout().width()};
  for (auto _ : state) {
    benchmark::DoNotOptimize(accumulator.Add(batch, weights));
  }
  SetBytes(state, rows);
}

void BM_EmaAccumulate(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const std::vector<float> logits = RandomLogits(rows);
  EmaAccumulator accumulator =
      EmaAccumulator::Create(Layout(), EmaAccumulator::kStatisticsPassMomentum).value();
  const LogitBatchView batch{logits.data(), rows, Layout().width()};
  for (auto _ : state) {
    benchmark::DoNotOptimize(accumulator.Add(batch));
  }
  SetBytes(state, rows);
}

void BM_Softmax(benchmark::State& state) {
  const int64_t rows = state.range(0);
  std::vector<float> logits = RandomLogits(rows);
  std::vector<float> probs(logits.size());
  for (auto _ : state) {
    SoftmaxRows(logits.data(), probs.data(), rows, Layout().width());
    benchmark::DoNotOptimize(probs.data());
  }
  SetBytes(state, rows);
}

// [512, 1204]: one image's sampled RoIs (2.4 MB, cache-resident);
// [100000, 1204]: a large streamed batch (481 MB, memory-bound).
BENCHMARK(BM_Memcpy)->Arg(512)->Arg(100000)->UseRealTime();
BENCHMARK(BM_LogNApply)->Arg(512)->Arg(100000)->UseRealTime();
BENCHMARK(BM_ExactAccumulate)->Arg(512)->Arg(100000)->UseRealTime();
BENCHMARK(BM_ExactAccumulateWeighted)->Arg(512)->Arg(100000)->UseRealTime();
BENCHMARK(BM_EmaAccumulate)->Arg(512)->Arg(100000)->UseRealTime();
BENCHMARK(BM_Softmax)->Arg(512)->UseRealTime();

}  // namespace
}  // namespace logn

BENCHMARK_MAIN();
