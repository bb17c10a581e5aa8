#ifndef LOGN_CLIENT_CLI_LOGITS_FILE_H_
#define LOGN_CLIENT_CLI_LOGITS_FILE_H_

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logn {

// Float32 logit matrices on disk, in one of two formats:
//  - NumPy .npy (version 1.0 / 2.0 / 3.0): dtype '<f4', C order, 2-D (rows, width);
//  - raw: rows * width little-endian float32 values, row-major; the width comes from the
//    caller (the file size must be a multiple of 4 * width).
// A path ending in ".npy" is NumPy, anything else raw.
bool IsNpyPath(const std::string& path);

// Streams a logits file a block of rows at a time, so a training set's logits never have to fit
// in memory.
class LogitsReader {
 public:
  // `width` is required (> 0) for raw files and ignored for .npy. NOT_FOUND / PERMISSION_DENIED
  // when unreadable; INVALID_ARGUMENT for a malformed .npy header (names the offending key), a
  // dtype other than little-endian float32, Fortran order, a shape that is not 2-D, or a size
  // that does not match the shape / is not a whole number of rows.
  static absl::StatusOr<std::unique_ptr<LogitsReader>> Open(const std::string& path, int32_t width);

  int64_t rows() const { return rows_; }
  int32_t width() const { return width_; }
  int64_t rows_read() const { return rows_read_; }

  // Reads up to `max_rows` rows into `out` (resized to rows * width); returns the number read,
  // 0 at the end. DATA_LOSS if the file is shorter than its header says.
  absl::StatusOr<int64_t> Read(int64_t max_rows, std::vector<float>* out);
  // Moves past `rows` rows without reading them (shards, resumed jobs). INVALID_ARGUMENT past
  // the end.
  absl::Status Skip(int64_t rows);

 private:
  LogitsReader() = default;
  std::ifstream in_;
  std::string path_;
  int64_t rows_ = 0;
  int32_t width_ = 0;
  int64_t rows_read_ = 0;
};

// Writes `rows` x `width` float32 values as .npy (when the path ends in .npy) or raw.
absl::Status WriteLogitsFile(const std::string& path, const float* values, int64_t rows,
                             int32_t width);

}  // namespace logn

#endif  // LOGN_CLIENT_CLI_LOGITS_FILE_H_
