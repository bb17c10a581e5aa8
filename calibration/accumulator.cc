#include "calibration/accumulator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace logn {
namespace {

// Shifted sums over a batch in one pass: s1 = Σ(x − shift), s2 = Σ(x − shift)², per column.
// With a shift near the mean this is as stable as Welford and, unlike Welford, has no division in
// the loop, so it vectorises. Cloned for AVX2 and resolved at load time; AVX2 has no FMA here, so
// both clones round identically and results do not depend on the machine.
__attribute__((target_clones("avx2", "default"))) void ShiftedSums(
    const float* __restrict data, int64_t rows, int64_t width, const double* __restrict shift,
    double* __restrict s1, double* __restrict s2) {
  std::fill(s1, s1 + width, 0.0);
  std::fill(s2, s2 + width, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = data + r * width;
    for (int64_t j = 0; j < width; ++j) {
      const double d = static_cast<double>(row[j]) - shift[j];
      s1[j] += d;
      s2[j] += d * d;
    }
  }
}

// The same with row weights: s1 = Σw·(x − shift), s2 = Σw·(x − shift)²; returns Σw. A weight of
// 1 rounds exactly as the unweighted kernel does (w·d = d), so weights of 1 change nothing.
// Zero-weight rows are not skipped: 0·NaN and 0·Inf stay NaN, so bad values are still caught.
__attribute__((target_clones("avx2", "default"))) double WeightedShiftedSums(
    const float* __restrict data, const double* __restrict weights, int64_t rows, int64_t width,
    const double* __restrict shift, double* __restrict s1, double* __restrict s2) {
  std::fill(s1, s1 + width, 0.0);
  std::fill(s2, s2 + width, 0.0);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = data + r * width;
    const double w = weights[r];
    total += w;
    for (int64_t j = 0; j < width; ++j) {
      const double d = static_cast<double>(row[j]) - shift[j];
      const double wd = w * d;
      s1[j] += wd;
      s2[j] += wd * d;
    }
  }
  return total;
}

absl::Status CheckShape(const LogitLayout& layout, const LogitBatchView& batch) {
  if (batch.width != layout.width()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit batch has width ", batch.width, " but the model's layout (", layout.DebugString(),
        ") needs ", layout.width(), " logits per row"));
  }
  if (batch.rows <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("logit batch has ", batch.rows, " rows; at least one is needed"));
  }
  if (batch.data == nullptr) {
    return absl::InvalidArgumentError("logit batch has no data");
  }
  return absl::OkStatus();
}

absl::Status FindNonFinite(const LogitBatchView& batch) {
  for (int64_t r = 0; r < batch.rows; ++r) {
    const float* row = batch.data + r * batch.width;
    for (int64_t j = 0; j < batch.width; ++j) {
      if (!std::isfinite(row[j])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "logit batch has a non-finite value (", row[j], ") at row ", r, ", column ", j));
      }
    }
  }
  return absl::OkStatus();
}

// Rows reduced per block. Blocks keep each shifted sum short (rounding error grows with the
// number of terms) and let every block shift by the mean of the rows before it; 256 rows of
// LVIS width are 1.2 MB, so a block's sums stay in L1 while its rows stream through once.
constexpr int64_t kBlockRows = 256;

absl::Status CheckRowWeights(const LogitBatchView& batch, absl::Span<const double> weights) {
  if (weights.empty()) return absl::OkStatus();
  if (static_cast<int64_t>(weights.size()) != batch.rows) {
    return absl::InvalidArgumentError(absl::StrCat("logit batch has ", batch.rows, " rows but ",
                                                   weights.size(),
                                                   " row weights: send one per row, or none "
                                                   "(every row weighs 1)"));
  }
  for (size_t r = 0; r < weights.size(); ++r) {
    if (!(weights[r] >= 0) || !std::isfinite(weights[r])) {
      return absl::InvalidArgumentError(absl::StrCat("row weight ", weights[r], " at row ", r,
                                                     " is not a finite value >= 0"));
    }
  }
  return absl::OkStatus();
}

// Reduces a batch of validated shape (and weights) to its mean, M2 and total weight (rows when
// `weights` is empty) in one pass over the data, or INVALID_ARGUMENT naming the first non-finite
// value. `scratch` needs 2·width doubles. A batch of total weight 0 has mean = its first row and
// M2 = 0, which the callers never fold in.
absl::StatusOr<double> BatchMoments(const LogitBatchView& batch,
                                    absl::Span<const double> weights, double* mean, double* m2,
                                    std::vector<double>* scratch) {
  const int64_t width = batch.width;
  scratch->resize(2 * width);
  double* s1 = scratch->data();
  double* s2 = scratch->data() + width;
  // The first block shifts by the batch's first row, later ones by the mean so far.
  std::copy(batch.data, batch.data + width, mean);
  std::fill(m2, m2 + width, 0.0);
  double seen = 0;
  bool finite = true;
  for (int64_t start = 0; start < batch.rows; start += kBlockRows) {
    const int64_t n = std::min(kBlockRows, batch.rows - start);
    const float* block = batch.data + start * width;
    double nb = static_cast<double>(n);
    if (weights.empty()) {
      ShiftedSums(block, n, width, mean, s1, s2);
    } else {
      nb = WeightedShiftedSums(block, weights.data() + start, n, width, mean, s1, s2);
    }
    if (nb == 0) {  // weightless rows: nothing to fold, but their values are still checked
      for (int64_t j = 0; j < width; ++j) finite &= std::isfinite(s1[j]) && std::isfinite(s2[j]);
      continue;
    }
    const double na = seen;
    const double total = na + nb;
    for (int64_t j = 0; j < width; ++j) {
      finite &= std::isfinite(s1[j]) && std::isfinite(s2[j]);
      // Block moments about the shift, folded in with Chan et al.'s formula; the block mean
      // minus the current mean is exactly s1/n (s1/Σw when weighted).
      const double delta = s1[j] / nb;
      const double block_m2 = std::max(0.0, s2[j] - s1[j] * delta);
      mean[j] += delta * (nb / total);
      m2[j] += block_m2 + delta * delta * (na * nb / total);
    }
    if (!weights.empty()) {  // finite sums can still overflow here, with huge weights
      for (int64_t j = 0; j < width; ++j) finite &= std::isfinite(mean[j]) && std::isfinite(m2[j]);
    }
    seen = total;
  }
  // A NaN or ±Inf anywhere in a column makes its sums non-finite, so the slow scan runs only
  // for a bad batch.
  if (!finite) {
    LOGN_RETURN_IF_ERROR(FindNonFinite(batch));
    return absl::InvalidArgumentError(
        "the batch's weighted sums overflow float64: its row weights are too large");
  }
  return seen;
}

}  // namespace

absl::Status ValidateLogitBatch(const LogitLayout& layout, const LogitBatchView& batch) {
  LOGN_RETURN_IF_ERROR(CheckShape(layout, batch));
  return FindNonFinite(batch);
}

// ---------------------------------------------------------------------------------------------
// ExactAccumulator

ExactAccumulator::ExactAccumulator(const LogitLayout& layout)
    : layout_(layout),
      mean_(layout.width(), 0.0),
      m2_(layout.width(), 0.0),
      batch_mean_(layout.width(), 0.0),
      batch_m2_(layout.width(), 0.0) {}

void ExactAccumulator::FoldMoments(int64_t rows, double weight, const double* mean,
                                   const double* m2) {
  count_ += rows;
  if (weight == 0) return;  // weightless rows count as rows, nothing else
  if (weight_ == 0) {
    std::copy(mean, mean + mean_.size(), mean_.begin());
    std::copy(m2, m2 + m2_.size(), m2_.begin());
    weight_ = weight;
    return;
  }
  // Chan, Golub & LeVeque's pairwise update, with weights in place of counts (each row counts
  // `w` times), which is exact for frequency weights.
  const double na = weight_;
  const double nb = weight;
  const double total = na + nb;
  for (size_t j = 0; j < mean_.size(); ++j) {
    const double delta = mean[j] - mean_[j];
    mean_[j] += delta * (nb / total);
    m2_[j] += m2[j] + delta * delta * (na * nb / total);
  }
  weight_ = total;
}

absl::Status ExactAccumulator::Add(const LogitBatchView& batch,
                                   absl::Span<const double> row_weights) {
  LOGN_RETURN_IF_ERROR(CheckShape(layout_, batch));
  LOGN_RETURN_IF_ERROR(CheckRowWeights(batch, row_weights));
  LOGN_ASSIGN_OR_RETURN(
      const double weight,
      BatchMoments(batch, row_weights, batch_mean_.data(), batch_m2_.data(), &scratch_));
  FoldMoments(batch.rows, weight, batch_mean_.data(), batch_m2_.data());
  weighted_ |= !row_weights.empty();
  ++batches_;
  return absl::OkStatus();
}

absl::Status ExactAccumulator::Merge(const ExactAccumulator& other) {
  if (other.layout_ != layout_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge statistics for ",
                                                   other.layout_.DebugString(), " into ",
                                                   layout_.DebugString()));
  }
  FoldMoments(other.count_, other.weight_, other.mean_.data(), other.m2_.data());
  weighted_ |= other.weighted_;
  batches_ += other.batches_;
  return absl::OkStatus();
}

absl::Status ExactAccumulator::MergeSnapshot(const Statistics& snapshot) {
  LOGN_RETURN_IF_ERROR(snapshot.Validate());
  if (snapshot.method != AccumulationMethod::kExact) {
    return absl::InvalidArgumentError(
        "only exact statistics can be merged: EMA statistics are not sums over their rows");
  }
  if (snapshot.layout != layout_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge statistics for ",
                                                   snapshot.layout.DebugString(), " into ",
                                                   layout_.DebugString()));
  }
  const double weight = snapshot.effective_weight();
  std::vector<double> m2(snapshot.variance.size());
  const double dof = weight > 1 ? weight - 1 : 0.0;
  for (size_t j = 0; j < m2.size(); ++j) m2[j] = snapshot.variance[j] * dof;
  FoldMoments(snapshot.count, weight, snapshot.mean.data(), m2.data());
  weighted_ |= snapshot.total_weight > 0;
  batches_ += snapshot.provenance.batches_seen;
  return absl::OkStatus();
}

absl::StatusOr<Statistics> ExactAccumulator::Snapshot() const {
  if (count_ == 0) {
    return absl::FailedPreconditionError("no logits were accumulated: statistics need rows");
  }
  if (weight_ == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", count_, " rows accumulated all have weight 0: statistics need a positive weight"));
  }
  Statistics stats;
  stats.layout = layout_;
  stats.count = count_;
  stats.method = AccumulationMethod::kExact;
  stats.total_weight = weighted_ ? weight_ : 0.0;
  stats.mean = mean_;
  stats.variance.resize(m2_.size());
  const double dof = weight_ > 1 ? weight_ - 1 : 0.0;
  for (size_t j = 0; j < m2_.size(); ++j) stats.variance[j] = dof > 0 ? m2_[j] / dof : 0.0;
  stats.provenance.batches_seen = batches_;
  return stats;
}

// ---------------------------------------------------------------------------------------------
// EmaAccumulator

EmaAccumulator::EmaAccumulator(const LogitLayout& layout, double momentum)
    : layout_(layout),
      momentum_(momentum),
      running_mean_(layout.width(), 0.0),
      running_var_(layout.width(), 1.0),
      batch_mean_(layout.width(), 0.0),
      batch_m2_(layout.width(), 0.0) {}

absl::StatusOr<EmaAccumulator> EmaAccumulator::Create(const LogitLayout& layout,
                                                      double momentum) {
  LOGN_RETURN_IF_ERROR(layout.Validate());
  if (!(momentum > 0 && momentum <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EMA momentum must be in (0, 1], got ", momentum));
  }
  return EmaAccumulator(layout, momentum);
}

absl::StatusOr<EmaAccumulator> EmaAccumulator::CreateFrom(const Statistics& initial,
                                                          double momentum) {
  LOGN_RETURN_IF_ERROR(initial.Validate());
  LOGN_ASSIGN_OR_RETURN(EmaAccumulator accumulator, Create(initial.layout, momentum));
  accumulator.running_mean_ = initial.mean;
  accumulator.running_var_ = initial.variance;
  accumulator.count_ = initial.count;
  accumulator.batches_ = initial.provenance.batches_seen;
  return accumulator;
}

absl::Status EmaAccumulator::Add(const LogitBatchView& batch,
                                 absl::Span<const double> row_weights) {
  LOGN_RETURN_IF_ERROR(CheckShape(layout_, batch));
  if (batch.rows < 2) {
    return absl::InvalidArgumentError(
        "EMA statistics need batches of at least 2 rows: the unbiased variance of one row is "
        "undefined (BatchNorm refuses it too)");
  }
  LOGN_RETURN_IF_ERROR(CheckRowWeights(batch, row_weights));
  LOGN_ASSIGN_OR_RETURN(
      const double weight,
      BatchMoments(batch, row_weights, batch_mean_.data(), batch_m2_.data(), &scratch_));
  if (!(weight > 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EMA statistics need a batch whose row weights sum to more than 1 (the unbiased variance "
        "divides by the sum minus 1); this one sums to ", weight));
  }
  const double m = momentum_;
  const double dof = weight - 1;
  for (size_t j = 0; j < running_mean_.size(); ++j) {
    running_mean_[j] = (1 - m) * running_mean_[j] + m * batch_mean_[j];
    running_var_[j] = (1 - m) * running_var_[j] + m * (batch_m2_[j] / dof);
  }
  count_ += batch.rows;
  ++batches_;
  return absl::OkStatus();
}

Statistics EmaAccumulator::Snapshot() const {
  Statistics stats;
  stats.layout = layout_;
  stats.count = count_;
  stats.method = AccumulationMethod::kEma;
  stats.momentum = momentum_;
  stats.mean = running_mean_;
  stats.variance = running_var_;
  stats.provenance.batches_seen = batches_;
  return stats;
}

}  // namespace logn
