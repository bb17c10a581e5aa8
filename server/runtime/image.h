#ifndef LOGN_SERVER_RUNTIME_IMAGE_H_
#define LOGN_SERVER_RUNTIME_IMAGE_H_

// Image decoding for the detector runtime: JPEG (libturbojpeg), PNG (libpng) or raw uint8 HWC, to
// 8-bit RGB. Size limits are enforced from the header before any pixel is decoded, so a hostile
// "decompression bomb" costs nothing. Thread-safe: every call uses its own decoder state.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace logn {

enum class ImageFormat { kJpeg, kPng, kRaw };
absl::string_view ImageFormatName(ImageFormat format);

// A decoded image: height rows of width RGB pixels, row-major (HWC), no padding.
struct Image {
  int32_t height = 0;
  int32_t width = 0;
  std::vector<uint8_t> pixels;  // height * width * 3

  int64_t num_pixels() const { return static_cast<int64_t>(height) * width; }
};

// Limits applied to every input before decoding. Exceeding one is INVALID_ARGUMENT (the request
// is unservable as sent; retrying does not help).
struct ImageLimits {
  int64_t max_bytes = 32 << 20;     // encoded size (raw: height * width * channels)
  int64_t max_pixels = 40'000'000;  // height * width
  int32_t max_side = 16384;         // each of height and width
};

// An image as a request carries it: encoded bytes, or raw uint8 HWC pixels with 1 (gray),
// 3 (RGB) or 4 (RGBA; alpha dropped) channels. Views only: the data must outlive the call.
class ImageSource {
 public:
  // JPEG or PNG bytes; the format is sniffed from the magic number.
  static ImageSource Encoded(absl::string_view bytes);
  static ImageSource Raw(absl::Span<const uint8_t> hwc, int32_t height, int32_t width,
                         int32_t channels);

  bool is_raw() const { return raw_; }
  absl::string_view bytes() const { return bytes_; }
  absl::Span<const uint8_t> raw_pixels() const { return raw_pixels_; }
  int32_t raw_height() const { return height_; }
  int32_t raw_width() const { return width_; }
  int32_t raw_channels() const { return channels_; }

 private:
  ImageSource() = default;
  bool raw_ = false;
  absl::string_view bytes_;
  absl::Span<const uint8_t> raw_pixels_;
  int32_t height_ = 0;
  int32_t width_ = 0;
  int32_t channels_ = 0;
};

// What the header says, without decoding pixels.
struct ImageHeader {
  ImageFormat format = ImageFormat::kRaw;
  int32_t height = 0;
  int32_t width = 0;
};

// Sniffs the format and reads the dimensions. INVALID_ARGUMENT for an unknown format or an
// unreadable header (with the decoder's reason).
absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view bytes);

// Decodes JPEG / PNG bytes to RGB (grayscale expanded, alpha dropped, 16-bit PNG reduced to 8).
// INVALID_ARGUMENT when a limit is exceeded (checked on the byte count and header first), or the
// data is corrupt or truncated (the decoder's message is included; libjpeg's "premature end of
// data" warnings count as errors, since the pixels would be partly made up).
absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const ImageLimits& limits);

// Decodes any source (raw: validated against the limits and converted to RGB).
absl::StatusOr<Image> DecodeImageSource(const ImageSource& source, const ImageLimits& limits);

// Encoders, for tests, benchmarks and tools. `quality` in [1, 100].
absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality);
absl::StatusOr<std::string> EncodePng(const Image& image);

}  // namespace logn

#endif  // LOGN_SERVER_RUNTIME_IMAGE_H_
