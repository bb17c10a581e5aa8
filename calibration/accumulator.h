#ifndef LOGN_CALIBRATION_ACCUMULATOR_H_
#define LOGN_CALIBRATION_ACCUMULATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "calibration/layout.h"
#include "calibration/statistics.h"

namespace logn {

// A read-only view of `rows` contiguous float32 rows of `width` logits (row-major).
struct LogitBatchView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t width = 0;

  static LogitBatchView Of(absl::Span<const float> values, int64_t width) {
    return {values.data(), width > 0 ? static_cast<int64_t>(values.size()) / width : 0, width};
  }
};

// Checks a batch against a layout: INVALID_ARGUMENT for zero rows, a width other than
// layout.width(), or a NaN/±Inf value (the message names the first offending row and column).
absl::Status ValidateLogitBatch(const LogitLayout& layout, const LogitBatchView& batch);

// Exact per-column mean and M2 (sum of squared deviations) in float64.
//
// Each batch is reduced in one pass, block by block, each block's sums taken about the mean of
// the rows before it (no division in the inner loop, so it vectorises), and blocks and batches
// are folded together with Chan et al.'s parallel formula: any split of the rows into batches,
// merged in any order, yields the one-pass statistics up to rounding.
// A refused batch leaves the accumulator unchanged. Not thread-safe: one writer at a time.
class ExactAccumulator {
 public:
  explicit ExactAccumulator(const LogitLayout& layout);

  const LogitLayout& layout() const { return layout_; }
  int64_t count() const { return count_; }
  int64_t batches() const { return batches_; }

  // Adds one batch. INVALID_ARGUMENT (and no change) on a bad batch; see ValidateLogitBatch.
  absl::Status Add(const LogitBatchView& batch);

  // Folds another accumulator's rows into this one. INVALID_ARGUMENT on a layout mismatch.
  absl::Status Merge(const ExactAccumulator& other);

  // Folds an EXACT snapshot (count, mean, unbiased variance) into this one, e.g. a partial
  // result of another job. INVALID_ARGUMENT on layout mismatch or an EMA snapshot.
  absl::Status MergeSnapshot(const Statistics& snapshot);

  // Current statistics. Variance is M2/(n-1); with fewer than two rows it is 0.
  // FAILED_PRECONDITION when no row was seen.
  absl::StatusOr<Statistics> Snapshot() const;

 private:
  void FoldMoments(int64_t n, const double* mean, const double* m2);

  LogitLayout layout_;
  int64_t count_ = 0;
  int64_t batches_ = 0;
  std::vector<double> mean_;
  std::vector<double> m2_;
  // Scratch for one batch's moments, kept to avoid an allocation per batch.
  std::vector<double> batch_mean_;
  std::vector<double> batch_m2_;
  std::vector<double> scratch_;
};

// BatchNorm-style running statistics, as torch.nn.BatchNorm1d(track_running_stats) in training
// mode: for every batch, running = (1-m)*running + m*batch_stat, with the batch's unbiased
// variance. Starts from mean 0 / variance 1, or from a previous snapshot.
// Batches need at least two rows (the unbiased variance of one row is undefined, and
// BatchNorm refuses it too).
class EmaAccumulator {
 public:
  // INVALID_ARGUMENT unless 0 < momentum <= 1 and the layout is valid.
  static absl::StatusOr<EmaAccumulator> Create(const LogitLayout& layout, double momentum);
  // Starts from `initial` (any method) instead of 0/1. INVALID_ARGUMENT if it does not validate.
  static absl::StatusOr<EmaAccumulator> CreateFrom(const Statistics& initial, double momentum);

  const LogitLayout& layout() const { return layout_; }
  double momentum() const { return momentum_; }
  int64_t count() const { return count_; }
  int64_t batches() const { return batches_; }

  absl::Status Add(const LogitBatchView& batch);

  // Current running statistics; count is the number of rows seen (plus the initial snapshot's).
  Statistics Snapshot() const;

  // The official code's momenta: 1e-4 while training, 5e-5 in the statistics pass.
  static constexpr double kTrainingMomentum = 1e-4;
  static constexpr double kStatisticsPassMomentum = 5e-5;

 private:
  EmaAccumulator(const LogitLayout& layout, double momentum);

  LogitLayout layout_;
  double momentum_;
  int64_t count_ = 0;
  int64_t batches_ = 0;
  std::vector<double> running_mean_;
  std::vector<double> running_var_;
  std::vector<double> batch_mean_;
  std::vector<double> batch_m2_;
  std::vector<double> scratch_;
};

}  // namespace logn

#endif  // LOGN_CALIBRATION_ACCUMULATOR_H_
