#ifndef LOGN_CALIBRATION_STATISTICS_H_
#define LOGN_CALIBRATION_STATISTICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "calibration/layout.h"

namespace logn {

enum class AccumulationMethod {
  kExact,  // exact mean / unbiased variance over all rows; mergeable
  kEma,    // BatchNorm-style running statistics, for parity with the official code
};

absl::string_view AccumulationMethodName(AccumulationMethod method);
absl::Status ParseAccumulationMethod(absl::string_view text, AccumulationMethod* out);

// Informational record of where a snapshot came from; never used in the math.
struct StatisticsProvenance {
  std::string model_name;
  std::string model_sha256;  // lowercase hex of the model file
  absl::Time created_at = absl::UnixEpoch();
  std::string description;
  int64_t images_seen = 0;
  int64_t batches_seen = 0;
};

// An immutable set of per-column logit statistics: the input to LogN.
// `mean` and `variance` have layout.width() entries in row order (background included).
// Variance is unbiased (n-1), like torch.var and BatchNorm's running_var. With row weights
// (EXACT only) both are frequency-weighted: a row of weight w counts as w rows, so the mean is
// Σw·x / W and the variance Σw·(x − mean)² / (W − 1), W = total_weight (0 when W <= 1).
struct Statistics {
  LogitLayout layout;
  int64_t count = 0;  // rows accumulated (each row feeds every column), whatever their weights
  std::vector<double> mean;
  std::vector<double> variance;
  AccumulationMethod method = AccumulationMethod::kExact;
  double momentum = 0.0;  // EMA only
  // Sum of the rows' weights (e.g. repeat factors) when the rows were weighted; 0 means
  // unweighted, i.e. every row weighed 1 and the total weight is `count` (every version written
  // before weights existed, and EMA statistics, which are not sums over their rows).
  double total_weight = 0.0;
  StatisticsProvenance provenance;

  // INVALID_ARGUMENT unless the layout is valid, both vectors have width() finite entries,
  // variances are >= 0, count >= 0, total_weight is finite and >= 0 and (for EMA)
  // 0 < momentum <= 1.
  absl::Status Validate() const;

  // The weight the moments stand for: total_weight when weighted, else count.
  double effective_weight() const {
    return total_weight > 0 ? total_weight : static_cast<double>(count);
  }

  // Mean of foreground class c (column layout.foreground_column(c)).
  double foreground_mean(int32_t c) const { return mean[layout.foreground_column(c)]; }
};

}  // namespace logn

#endif  // LOGN_CALIBRATION_STATISTICS_H_
