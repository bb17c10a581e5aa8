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

// Exact per-column mean and M2 (sum of squared deviations) in float64, optionally
// frequency-weighted: a row of weight w counts as w identical rows (repeat-factor sampling).
//
// Each batch is reduced in one pass, block by block, each block's sums taken about the mean of
// the rows before it (no division in the inner loop, so it vectorises), and blocks and batches
// are folded together with Chan et al.'s parallel formula, weighted by the blocks' total weights:
// any split of the rows into batches, merged in any order, yields the one-pass statistics up to
// rounding. Rows of weight 1 give bit for bit what unweighted rows give.
// A refused batch leaves the accumulator unchanged. Not thread-safe: one writer at a time.
class ExactAccumulator {
 public:
  explicit ExactAccumulator(const LogitLayout& layout);

  const LogitLayout& layout() const { return layout_; }
  // Rows seen, whatever their weights (zero-weight rows included).
  int64_t count() const { return count_; }
  int64_t batches() const { return batches_; }
  // Sum of the rows' weights; count() as a double when no weights were ever given.
  double total_weight() const { return weight_; }
  // Whether any batch or merged source carried row weights (then Snapshot sets total_weight).
  bool weighted() const { return weighted_; }

  // Adds one batch. `row_weights` is empty (every row weighs 1) or has one finite weight >= 0
  // per row; a zero-weight row counts in count() but not in the moments. INVALID_ARGUMENT (and
  // no change) on a bad batch (see ValidateLogitBatch: a non-finite logit is refused whatever
  // its row's weight), a weight list of another length, a negative or non-finite weight (the
  // message names the row), or weights so large that the weighted sums overflow float64.
  absl::Status Add(const LogitBatchView& batch, absl::Span<const double> row_weights = {});

  // Folds another accumulator's rows into this one. INVALID_ARGUMENT on a layout mismatch.
  absl::Status Merge(const ExactAccumulator& other);

  // Folds an EXACT snapshot (count, mean, unbiased variance, total_weight) into this one, e.g. a
  // partial result of another job. INVALID_ARGUMENT on layout mismatch or an EMA snapshot.
  // M2 is recovered as variance·(W − 1), W = snapshot.effective_weight(): a weighted snapshot
  // with W <= 1 has variance 0 and so contributes its mean but no spread of its own.
  absl::Status MergeSnapshot(const Statistics& snapshot);

  // Current statistics. Variance is M2/(W−1) with W the total weight (the row count when
  // unweighted); 0 when W <= 1. total_weight is W when weighted(), else 0.
  // FAILED_PRECONDITION when no row was seen, or every row seen weighed 0.
  absl::StatusOr<Statistics> Snapshot() const;

 private:
  void FoldMoments(int64_t rows, double weight, const double* mean, const double* m2);

  LogitLayout layout_;
  int64_t count_ = 0;
  int64_t batches_ = 0;
  double weight_ = 0.0;  // Σ row weights (= count_ when unweighted)
  bool weighted_ = false;
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
// BatchNorm refuses it too). With row weights the batch statistics are frequency-weighted, as
// if each row appeared w times in the batch: mean Σw·x/W_b, variance Σw·(x − mean)²/(W_b − 1),
// so a weighted batch also needs W_b = Σw > 1. The running statistics stay unweighted EMA
// (Snapshot's total_weight is 0): the momentum, not the weights, sets each batch's share.
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

  // Adds one batch; `row_weights` as in ExactAccumulator::Add. INVALID_ARGUMENT (and no change)
  // on a bad batch or weights, fewer than 2 rows, or weights summing to 1 or less.
  absl::Status Add(const LogitBatchView& batch, absl::Span<const double> row_weights = {});

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
