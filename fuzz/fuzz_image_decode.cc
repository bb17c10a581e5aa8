// JPEG / PNG bytes as a client sends them in Detect or an ImageBatch: the header check and the
// decode must answer every input with an image or a status, never a crash or a huge allocation.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "server/runtime/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  logn::ImageLimits limits;
  limits.max_pixels = 1 << 22;  // what a header may claim; keeps each run fast
  (void)logn::ReadImageHeader(bytes);
  absl::StatusOr<logn::Image> image = logn::DecodeImage(bytes, limits);
  if (image.ok() && image->pixels.size() != static_cast<size_t>(image->height) * image->width * 3) {
    __builtin_trap();  // a decoded image must be exactly height x width RGB
  }
  return 0;
}
