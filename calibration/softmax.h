#ifndef LOGN_CALIBRATION_SOFTMAX_H_
#define LOGN_CALIBRATION_SOFTMAX_H_

#include <cstdint>

namespace logn {

// Numerically stable softmax of each row (subtract the row max). `in` and `out` may alias.
// The rows must be finite (logits are validated before they get here): the kernel is compiled
// with -ffinite-math-only so that the row max vectorises.
void SoftmaxRows(const float* in, float* out, int64_t rows, int64_t width);

}  // namespace logn

#endif  // LOGN_CALIBRATION_SOFTMAX_H_
