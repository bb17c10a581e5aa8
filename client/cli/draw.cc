#include "client/cli/draw.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace logn::cli {
namespace {

// The font: printable ASCII (32-126), 8 rows per glyph, 5 bits per row (0x10 the leftmost
// column). Rows 0-6 stand on the baseline; row 7 holds descenders (g, j, p, q, y).
// clang-format off
constexpr uint8_t kFont[95][kGlyphHeight] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00},  // '!'
    {0x0a, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00},  // '"'
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00},  // '#'
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00},  // '$'
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00},  // '%'
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00},  // '&'
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00},  // '\''
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00},  // '('
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00},  // ')'
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00},  // '*'
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00},  // '+'
    {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08, 0x00},  // ','
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00},  // '-'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00},  // '.'
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00},  // '/'
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00},  // '0'
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00},  // '1'
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00},  // '2'
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00},  // '3'
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00},  // '4'
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00},  // '5'
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00},  // '6'
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00},  // '7'
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00},  // '8'
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00},  // '9'
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00},  // ':'
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08, 0x00},  // ';'
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00},  // '<'
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00},  // '='
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00},  // '>'
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00},  // '?'
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e, 0x00},  // '@'
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00},  // 'A'
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00},  // 'B'
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00},  // 'C'
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00},  // 'D'
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00},  // 'E'
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00},  // 'F'
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00},  // 'G'
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00},  // 'H'
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00},  // 'I'
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00},  // 'J'
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00},  // 'K'
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00},  // 'L'
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00},  // 'M'
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00},  // 'N'
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00},  // 'O'
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00},  // 'P'
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00},  // 'Q'
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00},  // 'R'
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00},  // 'S'
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00},  // 'T'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00},  // 'U'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00},  // 'V'
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00},  // 'W'
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00},  // 'X'
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00},  // 'Y'
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00},  // 'Z'
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00},  // '['
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00},  // '\\'
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00},  // ']'
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00},  // '^'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00},  // '_'
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00},  // '`'
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00},  // 'a'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00},  // 'b'
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00},  // 'c'
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00},  // 'd'
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00},  // 'e'
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00},  // 'f'
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e},  // 'g'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00},  // 'h'
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00},  // 'i'
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0c},  // 'j'
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00},  // 'k'
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00},  // 'l'
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11, 0x00},  // 'm'
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00},  // 'n'
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00},  // 'o'
    {0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10},  // 'p'
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01},  // 'q'
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00},  // 'r'
    {0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e, 0x00},  // 's'
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00},  // 't'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00},  // 'u'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00},  // 'v'
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00},  // 'w'
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00},  // 'x'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e},  // 'y'
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00},  // 'z'
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00},  // '{'
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00},  // '|'
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00},  // '}'
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00},  // '~'
};
// clang-format on

const uint8_t* Glyph(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return kFont[(u >= 32 && u <= 126 ? u : '?') - 32];
}

void SetPixel(Image* image, int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= image->width || y >= image->height) return;
  uint8_t* p = &image->pixels[(static_cast<size_t>(y) * image->width + x) * 3];
  p[0] = color.r;
  p[1] = color.g;
  p[2] = color.b;
}

// HSV (h in [0, 1)) to 8-bit RGB.
Rgb FromHsv(double h, double s, double v) {
  const double h6 = h * 6.0;
  const int sector = static_cast<int>(h6) % 6;
  const double f = h6 - std::floor(h6);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (sector) {
    case 1:
      r = q, g = v, b = p;
      break;
    case 2:
      r = p, g = v, b = t;
      break;
    case 3:
      r = p, g = q, b = v;
      break;
    case 4:
      r = t, g = p, b = v;
      break;
    case 5:
      r = v, g = p, b = q;
      break;
    default:
      break;
  }
  auto byte = [](double x) {
    return static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255));
  };
  return {byte(r), byte(g), byte(b)};
}

// The label tab's padding around the text.
int Padding(const DrawStyle& style) { return style.font_scale; }

}  // namespace

Rgb ClassColor(int32_t category_id) {
  constexpr double kGoldenRatioConjugate = 0.618033988749895;
  double hue = std::fmod(0.11 + static_cast<double>(category_id) * kGoldenRatioConjugate, 1.0);
  if (hue < 0) hue += 1.0;
  return FromHsv(hue, 0.8, 0.95);
}

Rgb TextColorOn(Rgb background) {
  const double luminance = 0.299 * background.r + 0.587 * background.g + 0.114 * background.b;
  return luminance >= 140 ? Rgb{0, 0, 0} : Rgb{255, 255, 255};
}

int TextWidth(absl::string_view text, int scale) {
  if (text.empty()) return 0;
  // The last glyph needs no spacing column after it.
  return (static_cast<int>(text.size()) * kGlyphAdvance - 1) * scale;
}

void DrawText(Image* image, int x, int y, absl::string_view text, Rgb color, int scale) {
  for (size_t i = 0; i < text.size(); ++i) {
    const uint8_t* glyph = Glyph(text[i]);
    const int gx = x + static_cast<int>(i) * kGlyphAdvance * scale;
    for (int row = 0; row < kGlyphHeight; ++row) {
      for (int col = 0; col < 5; ++col) {
        if ((glyph[row] & (0x10 >> col)) == 0) continue;
        FillRect(image, gx + col * scale, y + row * scale, gx + (col + 1) * scale,
                 y + (row + 1) * scale, color);
      }
    }
  }
}

void FillRect(Image* image, int x1, int y1, int x2, int y2, Rgb color) {
  x1 = std::max(x1, 0);
  y1 = std::max(y1, 0);
  x2 = std::min(x2, image->width);
  y2 = std::min(y2, image->height);
  for (int y = y1; y < y2; ++y) {
    for (int x = x1; x < x2; ++x) SetPixel(image, x, y, color);
  }
}

Rgb PixelAt(const Image& image, int x, int y) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return {};
  const uint8_t* p = &image.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
  return {p[0], p[1], p[2]};
}

DrawStyle StyleFor(int height, int width) {
  const int shorter = std::min(height, width);
  DrawStyle style;
  style.line_width = std::max(2, shorter / 250);
  style.font_scale = std::max(1, shorter / 400);
  return style;
}

int AutoScale(int height, int width) {
  constexpr int kLegibleSide = 480;
  constexpr int kMaxFactor = 8;
  const int longer = std::max(std::max(height, width), 1);
  return std::clamp((kLegibleSide + longer - 1) / longer, 1, kMaxFactor);
}

Image Enlarge(const Image& image, int factor) {
  if (factor <= 1) return image;
  Image out;
  out.height = image.height * factor;
  out.width = image.width * factor;
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src_row = &image.pixels[static_cast<size_t>(y / factor) * image.width * 3];
    uint8_t* dst = &out.pixels[static_cast<size_t>(y) * out.width * 3];
    for (int x = 0; x < out.width; ++x) {
      const uint8_t* src = src_row + static_cast<size_t>(x / factor) * 3;
      dst[x * 3] = src[0];
      dst[x * 3 + 1] = src[1];
      dst[x * 3 + 2] = src[2];
    }
  }
  return out;
}

PixelRect BoxPixels(const DrawnBox& box, float scale, int height, int width) {
  // A box from 10.0 to 20.0 covers pixels 10..19; a degenerate one still gets one pixel.
  const double x1 = std::floor(static_cast<double>(box.x1) * scale);
  const double y1 = std::floor(static_cast<double>(box.y1) * scale);
  const double x2 = std::max(x1, std::ceil(static_cast<double>(box.x2) * scale) - 1);
  const double y2 = std::max(y1, std::ceil(static_cast<double>(box.y2) * scale) - 1);
  PixelRect r;
  if (!(x2 >= 0 && y2 >= 0 && x1 < width && y1 < height)) return r;  // outside (or NaN)
  r.x1 = static_cast<int>(std::max(x1, 0.0));
  r.y1 = static_cast<int>(std::max(y1, 0.0));
  r.x2 = static_cast<int>(std::min(x2, width - 1.0));
  r.y2 = static_cast<int>(std::min(y2, height - 1.0));
  return r;
}

LabelRect LabelPlacement(const PixelRect& box, absl::string_view label, const DrawStyle& style,
                         int height, int width, absl::Span<const LabelRect> taken) {
  const int pad = Padding(style);
  const int w = TextWidth(label, style.font_scale) + 2 * pad;
  const int h = kGlyphHeight * style.font_scale + 2 * pad;
  auto at = [&](int y1) {
    LabelRect r;
    r.x1 = std::max(0, std::min(box.x1, width - w));
    r.y1 = y1;
    r.x2 = std::min(r.x1 + w, width);
    r.y2 = std::min(r.y1 + h, height);
    return r;
  };
  auto free = [&](const LabelRect& r) {
    return std::none_of(taken.begin(), taken.end(),
                        [&](const LabelRect& t) { return r.Overlaps(t); });
  };
  const int first = box.y1 - h >= 0 ? box.y1 - h : box.y1;
  const LabelRect preferred = at(first);
  if (free(preferred)) return preferred;
  // Rows down into the box (as long as the tab stays inside it and the image) ...
  for (int y = std::max(first + h, box.y1); y + h <= std::min(box.y2 + 1, height); y += h) {
    if (const LabelRect r = at(y); free(r)) return r;
  }
  // ... then rows up above the first choice.
  for (int y = first - h; y >= 0; y -= h) {
    if (const LabelRect r = at(y); free(r)) return r;
  }
  return preferred;
}

void DrawDetections(Image* image, absl::Span<const DrawnBox> boxes, float scale) {
  const DrawStyle style = StyleFor(image->height, image->width);
  const int lw = style.line_width;
  std::vector<PixelRect> rects;
  rects.reserve(boxes.size());
  for (const DrawnBox& box : boxes)
    rects.push_back(BoxPixels(box, scale, image->height, image->width));
  for (size_t k = boxes.size(); k-- > 0;) {
    const PixelRect& r = rects[k];
    if (r.x2 < r.x1 || r.y2 < r.y1) continue;
    const Rgb color = ClassColor(boxes[k].category_id);
    FillRect(image, r.x1, r.y1, r.x2 + 1, std::min(r.y1 + lw, r.y2 + 1), color);      // top
    FillRect(image, r.x1, std::max(r.y2 + 1 - lw, r.y1), r.x2 + 1, r.y2 + 1, color);  // bottom
    FillRect(image, r.x1, r.y1, std::min(r.x1 + lw, r.x2 + 1), r.y2 + 1, color);      // left
    FillRect(image, std::max(r.x2 + 1 - lw, r.x1), r.y1, r.x2 + 1, r.y2 + 1, color);  // right
  }
  // Labels after every outline, so that no outline crosses a label; placed best first, drawn
  // best last.
  std::vector<LabelRect> labels(boxes.size());
  std::vector<LabelRect> taken;
  for (size_t k = 0; k < boxes.size(); ++k) {
    const PixelRect& r = rects[k];
    if (r.x2 < r.x1 || r.y2 < r.y1 || boxes[k].label.empty()) continue;
    labels[k] = LabelPlacement(r, boxes[k].label, style, image->height, image->width, taken);
    taken.push_back(labels[k]);
  }
  const int pad = Padding(style);
  for (size_t k = boxes.size(); k-- > 0;) {
    const PixelRect& r = rects[k];
    if (r.x2 < r.x1 || r.y2 < r.y1 || boxes[k].label.empty()) continue;
    const Rgb color = ClassColor(boxes[k].category_id);
    const LabelRect& label = labels[k];
    FillRect(image, label.x1, label.y1, label.x2, label.y2, color);
    DrawText(image, label.x1 + pad, label.y1 + pad, boxes[k].label, TextColorOn(color),
             style.font_scale);
  }
}

absl::StatusOr<std::string> RenderDetectionsPng(absl::string_view encoded,
                                                absl::Span<const DrawnBox> boxes, int scale) {
  absl::StatusOr<Image> image = DecodeImage(encoded, ImageLimits{});
  if (!image.ok()) return image.status();
  if (scale <= 0) scale = AutoScale(image->height, image->width);
  constexpr int64_t kMaxDrawnPixels = 100'000'000;
  if (image->num_pixels() * scale * scale > kMaxDrawnPixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", image->width, "x", image->height, " image enlarged ", scale,
                     " times is over the drawing limit of ", kMaxDrawnPixels, " pixels"));
  }
  Image drawn = Enlarge(*image, scale);
  DrawDetections(&drawn, boxes, static_cast<float>(scale));
  return EncodePng(drawn);
}

}  // namespace logn::cli
