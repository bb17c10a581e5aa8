#ifndef LOGN_CLIENT_CLI_DRAW_H_
#define LOGN_CLIENT_CLI_DRAW_H_

// Pictures of detections for `logn detect --draw DIR`: each box outlined in its class's colour,
// with a label ("class_name 0.83") on a filled tab of the same colour, written as a PNG. Decoding
// and encoding are the runtime's (server/runtime/image.h: libturbojpeg, libpng; no torch); the
// text is a built-in 5x8 bitmap font (printable ASCII), so nothing else is needed.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/runtime/image.h"

namespace logn::cli {

struct Rgb {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

// One detection to draw: its box in pixels of the original image (x1, y1 top-left; x2, y2
// bottom-right, as BoundingBox), the category id that picks its colour, and its label.
struct DrawnBox {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int32_t category_id = 0;
  std::string label;
};

// The colour of a class: hues a golden-ratio turn apart by category id (neighbouring ids, often
// sibling classes, get clearly different colours), saturated and bright.
Rgb ClassColor(int32_t category_id);
// Black or white, whichever reads better on `background`.
Rgb TextColorOn(Rgb background);

// The bitmap font: every glyph is 5x8 pixels (7 above the baseline, 1 descender) in a 6x8 cell,
// each pixel a `scale` x `scale` square. Bytes outside printable ASCII draw as '?'.
inline constexpr int kGlyphAdvance = 6;
inline constexpr int kGlyphHeight = 8;
int TextWidth(absl::string_view text, int scale);
// Draws `text` with its cell's top-left corner at (x, y); pixels outside the image are skipped.
void DrawText(Image* image, int x, int y, absl::string_view text, Rgb color, int scale);

// Fills [x1, x2) x [y1, y2), clipped to the image.
void FillRect(Image* image, int x1, int y1, int x2, int y2, Rgb color);
// The pixel at (x, y) (for tests); (0, 0, 0) outside the image.
Rgb PixelAt(const Image& image, int x, int y);

// Line width and font scale for an image of this size: lines of 1/250 of the shorter side (at
// least 2 px), text at 1/400 of it (at least 1x: 8 px high); 2 px and 1x up to 500 px.
struct DrawStyle {
  int line_width = 2;
  int font_scale = 1;
};
DrawStyle StyleFor(int height, int width);

// The enlargement `--draw-scale auto` picks: the smallest integer factor that brings the longer
// side to at least 480 px (so that labels stay legible on small images), at most 8; 1 for an
// image already that large.
int AutoScale(int height, int width);
// Nearest-neighbour enlargement by an integer factor >= 1.
Image Enlarge(const Image& image, int factor);

// The pixel rectangle a box covers once scaled by `scale`: columns [x1, x2] and rows [y1, y2]
// inclusive, clipped to the image; empty (x2 < x1 or y2 < y1) when it lies outside.
struct PixelRect {
  int x1 = 0, y1 = 0, x2 = -1, y2 = -1;
};
PixelRect BoxPixels(const DrawnBox& box, float scale, int height, int width);

// Where a box's label tab goes: above the box's top-left corner, or just inside its top edge when
// there is no room above; shifted left to stay inside the image. A tab that would cover one of
// `taken` (the better detections' labels, placed first) moves a row down into the box, then a row
// up above it, to the nearest free place; where none is free, the first choice. [x1, x2) x
// [y1, y2).
struct LabelRect {
  int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  bool Overlaps(const LabelRect& o) const {
    return x1 < o.x2 && o.x1 < x2 && y1 < o.y2 && o.y1 < y2;
  }
};
LabelRect LabelPlacement(const PixelRect& box, absl::string_view label, const DrawStyle& style,
                         int height, int width, absl::Span<const LabelRect> taken = {});

// Draws `boxes` (original-image pixels times `scale`) on `image`: outlines first, then labels,
// each in reverse order, so that the first box (the best detection) ends up on top; labels are
// placed best first, so that the best detections get the places next to their boxes.
void DrawDetections(Image* image, absl::Span<const DrawnBox> boxes, float scale);

// Decodes a JPEG or PNG file's bytes, enlarges it by `scale` (0: AutoScale), draws `boxes` and
// returns the PNG. INVALID_ARGUMENT for undecodable bytes, as the server's decoder says.
absl::StatusOr<std::string> RenderDetectionsPng(absl::string_view encoded,
                                                absl::Span<const DrawnBox> boxes, int scale);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_DRAW_H_
