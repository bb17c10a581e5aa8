#ifndef LOGN_CALIBRATION_LAYOUT_H_
#define LOGN_CALIBRATION_LAYOUT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace logn {

// Where the background logit sits in a row.
enum class BackgroundPosition {
  kFirst,  // index 0: the paper's Algorithm 1, torchvision
  kLast,   // index C: mmdetection, detectron2, the paper's official code
  kNone,   // no background: a C-way classifier
};

// Parses "first" / "last" / "none".
absl::Status ParseBackgroundPosition(absl::string_view text, BackgroundPosition* out);
absl::string_view BackgroundPositionName(BackgroundPosition position);

// The shape of one row of logits: C foreground classes plus an optional background column.
struct LogitLayout {
  int32_t num_classes = 0;  // C
  BackgroundPosition background = BackgroundPosition::kLast;

  // Columns per row: C+1 with a background, C without.
  int32_t width() const {
    return background == BackgroundPosition::kNone ? num_classes : num_classes + 1;
  }
  bool has_background() const { return background != BackgroundPosition::kNone; }
  // Column of the background logit; -1 when there is none.
  int32_t background_column() const {
    switch (background) {
      case BackgroundPosition::kFirst: return 0;
      case BackgroundPosition::kLast: return num_classes;
      case BackgroundPosition::kNone: return -1;
    }
    return -1;
  }
  // Column of foreground class c in [0, C).
  int32_t foreground_column(int32_t c) const {
    return background == BackgroundPosition::kFirst ? c + 1 : c;
  }
  // INVALID_ARGUMENT unless 0 < C <= kMaxClasses.
  absl::Status Validate() const;

  friend bool operator==(const LogitLayout& a, const LogitLayout& b) {
    return a.num_classes == b.num_classes && a.background == b.background;
  }
  friend bool operator!=(const LogitLayout& a, const LogitLayout& b) { return !(a == b); }

  // E.g. "1203 classes, background last".
  std::string DebugString() const;

  // Generous bound (LVIS has 1,203) that keeps width * rows arithmetic far from overflow.
  static constexpr int32_t kMaxClasses = 1 << 20;
};

}  // namespace logn

#endif  // LOGN_CALIBRATION_LAYOUT_H_
