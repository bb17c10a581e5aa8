// SoftmaxRows. Its own translation unit because it is compiled with
// -ffinite-math-only -fno-signed-zeros (see CMakeLists.txt), which lets GCC vectorise the row
// max; logits are validated finite before they get here.
#include <algorithm>
#include <cstdint>

#include "calibration/softmax.h"

namespace logn {
namespace {

// exp(x) for x <= 0 without a libm call or a branch, so the loop vectorises: Cody–Waite range
// reduction to r in [-ln2/2, ln2/2], Cephes' degree-6 polynomial, then 2^n through the exponent
// bits. Relative error < 2e-7; exp(x) below -87 (under FLT_MIN) is 0.
inline float ExpNonPositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const float xc = x < -87.0f ? -87.0f : x;
  // Round to nearest for xc·log2e <= 0: truncation toward zero of (v − 0.5).
  const int32_t n = static_cast<int32_t>(xc * kLog2e - 0.5f);
  const float nf = static_cast<float>(n);
  const float r = (xc - nf * kLn2Hi) - nf * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float two_to_n = __builtin_bit_cast(float, (n + 127) << 23);
  return x < -87.0f ? 0.0f : p * two_to_n;
}

__attribute__((target_clones("arch=haswell", "default"))) void SoftmaxRowsKernel(
    const float* in, float* out, int64_t rows, int64_t width) {
  constexpr int kLanes = 16;  // independent partial sums: the sum vectorises without reordering
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * width;
    float* y = out + r * width;
    float max = x[0];
    for (int64_t j = 1; j < width; ++j) max = std::max(max, x[j]);
    for (int64_t j = 0; j < width; ++j) y[j] = ExpNonPositive(x[j] - max);
    float partial[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= width; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) partial[k] += y[j + k];
    }
    for (; j < width; ++j) partial[0] += y[j];
    float sum = 0;
    for (float p : partial) sum += p;
    const float inv = 1.0f / sum;
    for (j = 0; j < width; ++j) y[j] *= inv;
  }
}

}  // namespace

void SoftmaxRows(const float* in, float* out, int64_t rows, int64_t width) {
  SoftmaxRowsKernel(in, out, rows, width);
}

}  // namespace logn
