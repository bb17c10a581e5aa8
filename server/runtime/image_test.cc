#include "server/runtime/image.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

Image Gradient(int32_t height, int32_t width) {
  Image image;
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * width * 3);
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      uint8_t* p = &image.pixels[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>((x + y) % 256);
    }
  }
  return image;
}

TEST(ImageTest, PngRoundTripIsExact) {
  const Image image = Gradient(37, 53);
  const std::string png = EncodePng(image).value();
  const absl::StatusOr<ImageHeader> header = ReadImageHeader(png);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->format, ImageFormat::kPng);
  EXPECT_EQ(header->height, 37);
  EXPECT_EQ(header->width, 53);
  const absl::StatusOr<Image> decoded = DecodeImage(png, ImageLimits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->height, 37);
  EXPECT_EQ(decoded->width, 53);
  EXPECT_EQ(decoded->pixels, image.pixels);
}

TEST(ImageTest, JpegDecodesCloseToTheOriginal) {
  const Image image = Gradient(64, 48);
  const std::string jpeg = EncodeJpeg(image, 95).value();
  const absl::StatusOr<Image> decoded = DecodeImage(jpeg, ImageLimits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->height, 64);
  ASSERT_EQ(decoded->width, 48);
  double total_error = 0;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    total_error += std::abs(int{decoded->pixels[i]} - int{image.pixels[i]});
  }
  EXPECT_LT(total_error / image.pixels.size(), 4.0);  // lossy, but the same picture
  EXPECT_EQ(ReadImageHeader(jpeg)->format, ImageFormat::kJpeg);
}

TEST(ImageTest, TruncatedJpegIsInvalidArgumentWithTheReason) {
  Image noisy = Gradient(128, 128);
  for (size_t i = 0; i < noisy.pixels.size(); ++i)
    noisy.pixels[i] ^= static_cast<uint8_t>(i * 2654435761u >> 24);
  const std::string jpeg = EncodeJpeg(noisy, 90).value();
  // Cut inside the entropy-coded data: the header (with SOS) is intact, the scan is not.
  const absl::StatusOr<Image> decoded =
      DecodeImage(jpeg.substr(0, jpeg.size() * 3 / 4), ImageLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("JPEG data corrupt or truncated"));
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("Premature end"));
}

TEST(ImageTest, CorruptJpegHeaderIsInvalidArgument) {
  std::string jpeg = EncodeJpeg(Gradient(16, 16), 90).value();
  for (size_t i = 3; i < 200 && i < jpeg.size(); ++i) jpeg[i] = static_cast<char>(0x5A);
  const absl::StatusOr<Image> decoded = DecodeImage(jpeg, ImageLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("JPEG"));
}

TEST(ImageTest, TruncatedPngIsInvalidArgumentWithTheReason) {
  const std::string png = EncodePng(Gradient(64, 64)).value();
  const absl::StatusOr<Image> decoded = DecodeImage(png.substr(0, png.size() - 40), ImageLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("PNG data corrupt or truncated: "));
}

TEST(ImageTest, CorruptPngDataIsInvalidArgument) {
  std::string png = EncodePng(Gradient(64, 64)).value();
  // Flip bytes in the middle of the IDAT stream: the CRC or zlib check fails.
  for (size_t i = png.size() / 2; i < png.size() / 2 + 16; ++i) png[i] ^= 0x55;
  const absl::StatusOr<Image> decoded = DecodeImage(png, ImageLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("PNG"));
}

TEST(ImageTest, UnknownFormatAndEmptyInput) {
  EXPECT_EQ(DecodeImage("GIF89a....", ImageLimits()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(DecodeImage("GIF89a....", ImageLimits()).status().message()),
              HasSubstr("unrecognised image format"));
  EXPECT_EQ(DecodeImage("", ImageLimits()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ImageTest, ByteLimitIsCheckedFirst) {
  const std::string png = EncodePng(Gradient(32, 32)).value();
  ImageLimits limits;
  limits.max_bytes = static_cast<int64_t>(png.size()) - 1;
  const absl::Status status = DecodeImage(png, limits).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("over the limit of"));
}

TEST(ImageTest, PixelLimitIsCheckedFromTheHeaderBeforeDecoding) {
  // A valid header followed by garbage: if the decoder ran first, we would see a data error.
  for (bool jpeg : {false, true}) {
    const Image image = Gradient(100, 120);
    std::string bytes = jpeg ? EncodeJpeg(image, 90).value() : EncodePng(image).value();
    const absl::StatusOr<ImageHeader> header = ReadImageHeader(bytes);
    ASSERT_TRUE(header.ok());
    bytes.resize(bytes.size() * 2 / 3);  // truncated pixel data
    ImageLimits limits;
    limits.max_pixels = 100 * 120 - 1;
    const absl::Status status = DecodeImage(bytes, limits).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << jpeg;
    EXPECT_THAT(std::string(status.message()), HasSubstr("100x120 = 12000 pixels")) << jpeg;
    limits = ImageLimits();
    limits.max_side = 119;
    EXPECT_THAT(std::string(DecodeImage(bytes, limits).status().message()),
                HasSubstr("over the side limit of 119"))
        << jpeg;
  }
}

TEST(ImageTest, RawSourcesAreValidatedAndConvertedToRgb) {
  const std::vector<uint8_t> gray = {0, 10, 20, 30, 40, 50};
  const absl::StatusOr<Image> g = DecodeImageSource(ImageSource::Raw(gray, 2, 3, 1), ImageLimits());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->pixels, (std::vector<uint8_t>{0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40,
                                             40, 50, 50, 50}));
  const std::vector<uint8_t> rgba = {1, 2, 3, 255, 4, 5, 6, 0};
  const absl::StatusOr<Image> a = DecodeImageSource(ImageSource::Raw(rgba, 1, 2, 4), ImageLimits());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->pixels, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));

  EXPECT_THAT(
      std::string(
          DecodeImageSource(ImageSource::Raw(gray, 2, 2, 1), ImageLimits()).status().message()),
      HasSubstr("needs 4"));
  EXPECT_EQ(DecodeImageSource(ImageSource::Raw(gray, 2, 3, 2), ImageLimits()).status().code(),
            absl::StatusCode::kInvalidArgument);
  ImageLimits limits;
  limits.max_pixels = 5;
  EXPECT_EQ(DecodeImageSource(ImageSource::Raw(gray, 2, 3, 1), limits).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeImageSource(ImageSource::Raw({}, 0, 3, 3), ImageLimits()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ImageTest, EncodedSourceDecodes) {
  const Image image = Gradient(8, 9);
  const std::string png = EncodePng(image).value();
  const absl::StatusOr<Image> decoded = DecodeImageSource(ImageSource::Encoded(png), ImageLimits());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->pixels, image.pixels);
}

}  // namespace
}  // namespace logn
