#include "client/cli/draw.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn::cli {
namespace {

constexpr Rgb kGrey{90, 90, 90};

Image Solid(int height, int width, Rgb color) {
  Image image;
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * width * 3);
  FillRect(&image, 0, 0, width, height, color);
  return image;
}

// Pixels of `color` in [x1, x2) x [y1, y2).
int Count(const Image& image, int x1, int y1, int x2, int y2, Rgb color) {
  int n = 0;
  for (int y = y1; y < y2; ++y) {
    for (int x = x1; x < x2; ++x) n += PixelAt(image, x, y) == color;
  }
  return n;
}

DrawnBox Box(float x1, float y1, float x2, float y2, int32_t category, std::string label) {
  DrawnBox box;
  box.x1 = x1;
  box.y1 = y1;
  box.x2 = x2;
  box.y2 = y2;
  box.category_id = category;
  box.label = std::move(label);
  return box;
}

TEST(DrawTest, ClassColoursAreStableDistinctAndReadable) {
  EXPECT_EQ(ClassColor(7), ClassColor(7));
  for (int id = 1; id < 50; ++id) {
    EXPECT_NE(ClassColor(id), ClassColor(id + 1)) << id;
    const Rgb c = ClassColor(id);
    EXPECT_GE(std::max({c.r, c.g, c.b}), 200) << "bright: " << id;
  }
  EXPECT_EQ(TextColorOn(Rgb{255, 255, 0}), (Rgb{0, 0, 0}));
  EXPECT_EQ(TextColorOn(Rgb{0, 0, 200}), (Rgb{255, 255, 255}));
}

TEST(DrawTest, GlyphsArePixelExact) {
  Image image = Solid(20, 20, kGrey);
  const Rgb ink{255, 0, 0};
  DrawText(&image, 2, 3, "T", ink, 1);
  // 'T': the top row is five pixels, then the stem in the middle column.
  for (int x = 2; x < 7; ++x) EXPECT_EQ(PixelAt(image, x, 3), ink) << x;
  for (int y = 4; y < 10; ++y) EXPECT_EQ(PixelAt(image, 4, y), ink) << y;
  EXPECT_EQ(PixelAt(image, 2, 4), kGrey);
  EXPECT_EQ(Count(image, 0, 0, 20, 20, ink), 5 + 6);
  // At scale 2 every font pixel is a 2x2 square.
  Image big = Solid(20, 20, kGrey);
  DrawText(&big, 0, 0, "T", ink, 2);
  EXPECT_EQ(Count(big, 0, 0, 20, 20, ink), 4 * (5 + 6));
  EXPECT_EQ(TextWidth("", 1), 0);
  EXPECT_EQ(TextWidth("ab", 1), 11);
  EXPECT_EQ(TextWidth("ab", 3), 33);
  // Bytes outside printable ASCII draw as '?'.
  Image a = Solid(10, 10, kGrey), b = Solid(10, 10, kGrey);
  DrawText(&a, 0, 0, "\xc3", ink, 1);
  DrawText(&b, 0, 0, "?", ink, 1);
  EXPECT_EQ(a.pixels, b.pixels);
  // Text running off the image is clipped, not a crash.
  DrawText(&a, 8, 8, "WWW", ink, 4);
}

TEST(DrawTest, BoxEdgesHaveTheClassColourAndTheLabelIsDrawn) {
  Image image = Solid(100, 200, kGrey);
  const DrawnBox box = Box(20, 30, 120, 80, 7, "cat 0.91");
  DrawDetections(&image, {box}, 1.0f);
  const Rgb color = ClassColor(7);
  const DrawStyle style = StyleFor(100, 200);
  ASSERT_EQ(style.line_width, 2);
  // Pixels 20..119 x 30..79; each edge two pixels thick, inside the box.
  for (int y = 32; y < 80; ++y) {
    EXPECT_EQ(PixelAt(image, 20, y), color) << y;
    EXPECT_EQ(PixelAt(image, 21, y), color) << y;
    EXPECT_EQ(PixelAt(image, 118, y), color) << y;
    EXPECT_EQ(PixelAt(image, 119, y), color) << y;
    EXPECT_EQ(PixelAt(image, 19, y), kGrey) << y;
    EXPECT_EQ(PixelAt(image, 120, y), kGrey) << y;
  }
  for (int x = 20; x < 120; ++x) {
    EXPECT_EQ(PixelAt(image, x, 78), color) << x;
    EXPECT_EQ(PixelAt(image, x, 79), color) << x;
    EXPECT_EQ(PixelAt(image, x, 80), kGrey) << x;
  }
  EXPECT_EQ(Count(image, 22, 32, 118, 78, kGrey), 96 * 46) << "the inside is untouched";

  // The label sits on a tab of the class colour right above the box, its text in black or white.
  const PixelRect pixels = BoxPixels(box, 1.0f, 100, 200);
  const LabelRect label = LabelPlacement(pixels, box.label, style, 100, 200);
  EXPECT_EQ(label.x1, 20);
  EXPECT_EQ(label.y2, 30);
  EXPECT_EQ(label.y1, 30 - (kGlyphHeight + 2));
  EXPECT_EQ(label.x2, 20 + TextWidth("cat 0.91", 1) + 2);
  const int area = (label.x2 - label.x1) * (label.y2 - label.y1);
  const int ink = Count(image, label.x1, label.y1, label.x2, label.y2, TextColorOn(color));
  const int tab = Count(image, label.x1, label.y1, label.x2, label.y2, color);
  EXPECT_GT(ink, 20) << "text drawn";
  EXPECT_EQ(ink + tab, area) << "nothing but tab and text";
  EXPECT_EQ(Count(image, label.x1, label.y1 - 1, label.x2, label.y1, kGrey), label.x2 - label.x1);
}

TEST(DrawTest, LabelsGoInsideAtTheTopAndStayInTheImage) {
  const DrawStyle style{2, 1};
  // No room above: just inside the top edge.
  LabelRect r = LabelPlacement(PixelRect{10, 0, 50, 40}, "x", style, 100, 100);
  EXPECT_EQ(r.y1, 0);
  EXPECT_EQ(r.x1, 10);
  // Near the right edge: shifted left so the whole tab shows.
  r = LabelPlacement(PixelRect{90, 50, 99, 60}, "long label", style, 100, 100);
  EXPECT_EQ(r.x2, 100);
  EXPECT_EQ(r.x1, 100 - (TextWidth("long label", 1) + 2));
}

TEST(DrawTest, LabelsOfOneBoxStackInsteadOfCoveringEachOther) {
  const DrawStyle style{2, 1};
  const PixelRect box{20, 40, 90, 90};
  const int h = kGlyphHeight + 2;
  std::vector<LabelRect> taken;
  for (const char* label : {"first 0.50", "second 0.40", "third 0.30"}) {
    taken.push_back(LabelPlacement(box, label, style, 100, 100, taken));
  }
  EXPECT_EQ(taken[0].y1, 40 - h) << "above the box";
  EXPECT_EQ(taken[1].y1, 40) << "then inside, under the top edge";
  EXPECT_EQ(taken[2].y1, 40 + h);
  // No room inside: rows up above the first.
  const PixelRect flat{20, 40, 90, 45};
  std::vector<LabelRect> up;
  for (const char* label : {"a", "b"})
    up.push_back(LabelPlacement(flat, label, style, 100, 100, up));
  EXPECT_EQ(up[1].y1, 40 - 2 * h);
  // Drawn: both labels' texts are visible (two identical boxes, two classes).
  Image image = Solid(100, 100, kGrey);
  DrawDetections(&image, {Box(20, 40, 90, 90, 1, "one"), Box(20, 40, 90, 90, 2, "two")}, 1.0f);
  EXPECT_GT(Count(image, 20, 40 - h, 90, 40, ClassColor(1)), 0);
  EXPECT_GT(Count(image, 22, 40, 90, 40 + h, ClassColor(2)), 20) << "the second tab, inside";
}

TEST(DrawTest, BoxesAreClippedAndTheFirstIsOnTop) {
  Image image = Solid(50, 50, kGrey);
  // Half outside: clipped to the image, its visible edges drawn.
  DrawDetections(&image, {Box(-20, 10, 30, 40, 3, "")}, 1.0f);
  EXPECT_EQ(PixelAt(image, 0, 20), ClassColor(3));
  EXPECT_EQ(PixelAt(image, 29, 20), ClassColor(3));
  // Entirely outside, or NaN: nothing drawn.
  Image untouched = Solid(50, 50, kGrey);
  Image copy = untouched;
  DrawDetections(&copy, {Box(60, 60, 80, 80, 3, "far"), Box(NAN, 0, 10, 10, 3, "nan")}, 1.0f);
  EXPECT_EQ(copy.pixels, untouched.pixels);
  // Two boxes sharing an edge: the first (best) one's colour wins.
  Image both = Solid(50, 50, kGrey);
  DrawDetections(&both, {Box(10, 10, 40, 40, 1, ""), Box(10, 10, 30, 30, 2, "")}, 1.0f);
  EXPECT_EQ(PixelAt(both, 10, 20), ClassColor(1));
  EXPECT_EQ(PixelAt(both, 29, 20), ClassColor(2));
}

TEST(DrawTest, SmallImagesAreEnlargedByAnIntegerFactor) {
  EXPECT_EQ(AutoScale(160, 160), 3);
  EXPECT_EQ(AutoScale(128, 100), 4);
  EXPECT_EQ(AutoScale(480, 300), 1);
  EXPECT_EQ(AutoScale(2000, 3000), 1);
  EXPECT_EQ(AutoScale(10, 10), 8);
  Image image = Solid(2, 3, kGrey);
  FillRect(&image, 1, 0, 2, 1, Rgb{1, 2, 3});
  const Image big = Enlarge(image, 4);
  EXPECT_EQ(big.height, 8);
  EXPECT_EQ(big.width, 12);
  EXPECT_EQ(Count(big, 0, 0, 12, 8, Rgb{1, 2, 3}), 16);
  EXPECT_EQ(Count(big, 4, 0, 8, 4, Rgb{1, 2, 3}), 16);
  EXPECT_EQ(StyleFor(480, 480).font_scale, 1);
  EXPECT_EQ(StyleFor(1000, 1600).line_width, 4);
  EXPECT_EQ(StyleFor(1000, 1600).font_scale, 2);
}

TEST(DrawTest, RendersAPngInputToAPngOfTheRightSize) {
  const Image input = Solid(120, 160, kGrey);
  const std::string png = EncodePng(input).value();
  const std::vector<DrawnBox> boxes = {Box(10, 20, 60, 70, 5, "disc_warm-solid 0.83")};
  for (const int scale : {1, 0, 2}) {
    const int factor = scale == 0 ? 3 : scale;  // auto: 160 px -> 480
    absl::StatusOr<std::string> drawn = RenderDetectionsPng(png, boxes, scale);
    ASSERT_TRUE(drawn.ok()) << drawn.status();
    ASSERT_EQ(drawn->substr(1, 3), "PNG");
    const Image out = DecodeImage(*drawn, ImageLimits{}).value();
    EXPECT_EQ(out.height, 120 * factor) << scale;
    EXPECT_EQ(out.width, 160 * factor) << scale;
    const Rgb color = ClassColor(5);
    EXPECT_EQ(PixelAt(out, 10 * factor, 45 * factor), color) << "left edge, scale " << scale;
    EXPECT_EQ(PixelAt(out, 60 * factor - 1, 45 * factor), color) << "right edge";
    EXPECT_EQ(PixelAt(out, 35 * factor, 70 * factor - 1), color) << "bottom edge";
    EXPECT_EQ(PixelAt(out, 35 * factor, 45 * factor), kGrey) << "inside";
    EXPECT_EQ(PixelAt(out, 100 * factor, 100 * factor), kGrey) << "elsewhere";
    // The label tab above the box.
    EXPECT_EQ(PixelAt(out, 10 * factor, 20 * factor - 1), color);
  }
}

TEST(DrawTest, RendersAJpegInputToAPng) {
  // A JPEG of a smooth gradient, so its decoded pixels are close to the originals.
  Image input = Solid(90, 70, kGrey);
  for (int y = 0; y < 90; ++y) {
    for (int x = 0; x < 70; ++x)
      FillRect(&input, x, y, x + 1, y + 1, Rgb{uint8_t(x), uint8_t(y), 128});
  }
  const std::string jpeg = EncodeJpeg(input, 95).value();
  ASSERT_EQ(static_cast<unsigned char>(jpeg[0]), 0xFF);
  absl::StatusOr<std::string> drawn =
      RenderDetectionsPng(jpeg, {Box(5, 30, 50, 80, 11, "a 0.50")}, 1);
  ASSERT_TRUE(drawn.ok()) << drawn.status();
  const Image out = DecodeImage(*drawn, ImageLimits{}).value();
  EXPECT_EQ(out.height, 90);
  EXPECT_EQ(out.width, 70);
  EXPECT_EQ(PixelAt(out, 5, 60), ClassColor(11));
  EXPECT_EQ(PixelAt(out, 49, 60), ClassColor(11));
  const Rgb inside = PixelAt(out, 30, 60);
  EXPECT_NEAR(inside.r, 30, 6);
  EXPECT_NEAR(inside.g, 60, 6);
}

TEST(DrawTest, RefusesWhatItCannotDecodeOrDraw) {
  absl::StatusOr<std::string> drawn = RenderDetectionsPng("not an image", {}, 1);
  EXPECT_EQ(drawn.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string png = EncodePng(Solid(1000, 1000, kGrey)).value();
  drawn = RenderDetectionsPng(png, {}, 16);
  EXPECT_EQ(drawn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(drawn.status().message(), ::testing::HasSubstr("drawing limit"));
}

}  // namespace
}  // namespace logn::cli
