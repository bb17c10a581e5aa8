#include "server/runtime/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace logn {
namespace {

constexpr unsigned char kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

struct TjDeleter {
  void operator()(void* handle) const {
    if (handle != nullptr) tjDestroy(handle);
  }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// png_image owns decoder state until png_image_free; this frees it on every path.
struct PngImage {
  png_image image;
  PngImage() {
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
  }
  ~PngImage() { png_image_free(&image); }
};

bool IsPng(absl::string_view bytes) {
  return bytes.size() >= sizeof(kPngMagic) &&
         std::memcmp(bytes.data(), kPngMagic, sizeof(kPngMagic)) == 0;
}
bool IsJpeg(absl::string_view bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
         static_cast<unsigned char>(bytes[1]) == 0xD8 &&
         static_cast<unsigned char>(bytes[2]) == 0xFF;
}

absl::Status CheckDimensions(int64_t height, int64_t width, const ImageLimits& limits,
                             absl::string_view what) {
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has empty dimensions ", height, "x", width));
  }
  if (height > limits.max_side || width > limits.max_side) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", height, "x", width,
                                                   " (HxW), over the side limit of ",
                                                   limits.max_side, " pixels"));
  }
  if (height * width > limits.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", height, "x", width, " = ",
                                                   height * width, " pixels, over the limit of ",
                                                   limits.max_pixels));
  }
  return absl::OkStatus();
}

absl::Status CheckBytes(int64_t size, const ImageLimits& limits) {
  if (size > limits.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", size, " bytes, over the limit of ", limits.max_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageHeader> ReadJpegHeader(tjhandle handle, absl::string_view bytes) {
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(handle, reinterpret_cast<const unsigned char*>(bytes.data()),
                          bytes.size(), &width, &height, &subsamp, &colorspace) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("JPEG header unreadable: ", tjGetErrorStr2(handle)));
  }
  return ImageHeader{ImageFormat::kJpeg, height, width};
}

absl::StatusOr<ImageHeader> ReadPngHeader(PngImage& png, absl::string_view bytes) {
  if (!png_image_begin_read_from_memory(&png.image, bytes.data(), bytes.size())) {
    return absl::InvalidArgumentError(absl::StrCat("PNG header unreadable: ", png.image.message));
  }
  return ImageHeader{ImageFormat::kPng, static_cast<int32_t>(png.image.height),
                     static_cast<int32_t>(png.image.width)};
}

absl::StatusOr<Image> DecodeJpeg(absl::string_view bytes, const ImageLimits& limits) {
  TjHandle handle(tjInitDecompress());
  if (handle == nullptr) return absl::InternalError("tjInitDecompress failed");
  LOGN_ASSIGN_OR_RETURN(ImageHeader header, ReadJpegHeader(handle.get(), bytes));
  LOGN_RETURN_IF_ERROR(CheckDimensions(header.height, header.width, limits, "JPEG image"));
  Image image;
  image.height = header.height;
  image.width = header.width;
  image.pixels.resize(static_cast<size_t>(image.num_pixels()) * 3);
  // STOPONWARNING: a truncated stream is a warning to libjpeg (it pads with grey); we refuse it.
  if (tjDecompress2(handle.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), image.pixels.data(), image.width, /*pitch=*/0, image.height,
                    TJPF_RGB, TJFLAG_STOPONWARNING) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("JPEG data corrupt or truncated: ", tjGetErrorStr2(handle.get())));
  }
  return image;
}

absl::StatusOr<Image> DecodePng(absl::string_view bytes, const ImageLimits& limits) {
  PngImage png;
  LOGN_ASSIGN_OR_RETURN(ImageHeader header, ReadPngHeader(png, bytes));
  LOGN_RETURN_IF_ERROR(CheckDimensions(header.height, header.width, limits, "PNG image"));
  // Alpha is dropped, not composited (as PIL's convert("RGB") and torchvision's RGB read mode).
  const bool has_alpha = (png.image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  png.image.format = has_alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  const int channels = has_alpha ? 4 : 3;
  std::vector<uint8_t> buffer(static_cast<size_t>(header.height) * header.width * channels);
  if (!png_image_finish_read(&png.image, /*background=*/nullptr, buffer.data(),
                             /*row_stride=*/0, /*colormap=*/nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PNG data corrupt or truncated: ", png.image.message));
  }
  Image image;
  image.height = header.height;
  image.width = header.width;
  if (!has_alpha) {
    image.pixels = std::move(buffer);
  } else {
    image.pixels.resize(static_cast<size_t>(image.num_pixels()) * 3);
    for (int64_t i = 0; i < image.num_pixels(); ++i) {
      std::memcpy(&image.pixels[i * 3], &buffer[i * 4], 3);
    }
  }
  return image;
}

}  // namespace

absl::string_view ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "jpeg";
    case ImageFormat::kPng:
      return "png";
    case ImageFormat::kRaw:
      return "raw";
  }
  return "unknown";
}

ImageSource ImageSource::Encoded(absl::string_view bytes) {
  ImageSource source;
  source.bytes_ = bytes;
  return source;
}

ImageSource ImageSource::Raw(absl::Span<const uint8_t> hwc, int32_t height, int32_t width,
                             int32_t channels) {
  ImageSource source;
  source.raw_ = true;
  source.raw_pixels_ = hwc;
  source.height_ = height;
  source.width_ = width;
  source.channels_ = channels;
  return source;
}

absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view bytes) {
  if (IsJpeg(bytes)) {
    TjHandle handle(tjInitDecompress());
    if (handle == nullptr) return absl::InternalError("tjInitDecompress failed");
    return ReadJpegHeader(handle.get(), bytes);
  }
  if (IsPng(bytes)) {
    PngImage png;
    return ReadPngHeader(png, bytes);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unrecognised image format (", bytes.size(),
                   " bytes): expected JPEG (FF D8 FF) or PNG (89 50 4E 47 0D 0A 1A 0A)"));
}

absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const ImageLimits& limits) {
  LOGN_RETURN_IF_ERROR(CheckBytes(static_cast<int64_t>(bytes.size()), limits));
  if (IsJpeg(bytes)) return DecodeJpeg(bytes, limits);
  if (IsPng(bytes)) return DecodePng(bytes, limits);
  if (bytes.empty()) return absl::InvalidArgumentError("image is empty (0 bytes)");
  return ReadImageHeader(bytes).status();  // the format error
}

absl::StatusOr<Image> DecodeImageSource(const ImageSource& source, const ImageLimits& limits) {
  if (!source.is_raw()) return DecodeImage(source.bytes(), limits);
  const int32_t channels = source.raw_channels();
  if (channels != 1 && channels != 3 && channels != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw image has ", channels, " channels; expected 1, 3 or 4 (HWC uint8)"));
  }
  LOGN_RETURN_IF_ERROR(
      CheckDimensions(source.raw_height(), source.raw_width(), limits, "raw image"));
  const int64_t pixels = static_cast<int64_t>(source.raw_height()) * source.raw_width();
  LOGN_RETURN_IF_ERROR(CheckBytes(pixels * channels, limits));
  if (static_cast<int64_t>(source.raw_pixels().size()) != pixels * channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw image has ", source.raw_pixels().size(), " bytes; ", source.raw_height(),
                     "x", source.raw_width(), "x", channels, " (HxWxC) needs ", pixels * channels));
  }
  Image image;
  image.height = source.raw_height();
  image.width = source.raw_width();
  const uint8_t* in = source.raw_pixels().data();
  if (channels == 3) {
    image.pixels.assign(in, in + pixels * 3);
    return image;
  }
  image.pixels.resize(static_cast<size_t>(pixels) * 3);
  uint8_t* out = image.pixels.data();
  for (int64_t i = 0; i < pixels; ++i) {
    if (channels == 1) {
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
    } else {
      std::memcpy(out + 3 * i, in + 4 * i, 3);
    }
  }
  return image;
}

absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality) {
  if (quality < 1 || quality > 100) {
    return absl::InvalidArgumentError(absl::StrCat("JPEG quality ", quality, " not in [1, 100]"));
  }
  if (image.num_pixels() <= 0 ||
      static_cast<int64_t>(image.pixels.size()) != image.num_pixels() * 3) {
    return absl::InvalidArgumentError("image has no pixels or a wrong pixel buffer size");
  }
  TjHandle handle(tjInitCompress());
  if (handle == nullptr) return absl::InternalError("tjInitCompress failed");
  unsigned char* out = nullptr;
  unsigned long size = 0;
  if (tjCompress2(handle.get(), image.pixels.data(), image.width, /*pitch=*/0, image.height,
                  TJPF_RGB, &out, &size, TJSAMP_420, quality, 0) != 0) {
    if (out != nullptr) tjFree(out);
    return absl::InternalError(absl::StrCat("JPEG encode failed: ", tjGetErrorStr2(handle.get())));
  }
  std::string bytes(reinterpret_cast<const char*>(out), size);
  tjFree(out);
  return bytes;
}

absl::StatusOr<std::string> EncodePng(const Image& image) {
  if (image.num_pixels() <= 0 ||
      static_cast<int64_t>(image.pixels.size()) != image.num_pixels() * 3) {
    return absl::InvalidArgumentError("image has no pixels or a wrong pixel buffer size");
  }
  PngImage png;
  png.image.width = image.width;
  png.image.height = image.height;
  png.image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png.image, nullptr, &size, 0, image.pixels.data(), 0, nullptr)) {
    return absl::InternalError(absl::StrCat("PNG encode failed: ", png.image.message));
  }
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&png.image, bytes.data(), &size, 0, image.pixels.data(), 0,
                                 nullptr)) {
    return absl::InternalError(absl::StrCat("PNG encode failed: ", png.image.message));
  }
  bytes.resize(size);
  return bytes;
}

}  // namespace logn
