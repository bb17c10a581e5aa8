#include "calibration/layout.h"

#include "absl/strings/str_cat.h"

namespace logn {

absl::Status ParseBackgroundPosition(absl::string_view text, BackgroundPosition* out) {
  if (text == "first") {
    *out = BackgroundPosition::kFirst;
  } else if (text == "last") {
    *out = BackgroundPosition::kLast;
  } else if (text == "none") {
    *out = BackgroundPosition::kNone;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown background position '", text, "': expected first, last or none"));
  }
  return absl::OkStatus();
}

absl::string_view BackgroundPositionName(BackgroundPosition position) {
  switch (position) {
    case BackgroundPosition::kFirst: return "first";
    case BackgroundPosition::kLast: return "last";
    case BackgroundPosition::kNone: return "none";
  }
  return "unknown";
}

absl::Status LogitLayout::Validate() const {
  if (num_classes <= 0 || num_classes > kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrCat(
        "number of foreground classes must be in [1, ", kMaxClasses, "], got ", num_classes));
  }
  return absl::OkStatus();
}

std::string LogitLayout::DebugString() const {
  return absl::StrCat(num_classes, " classes, background ", BackgroundPositionName(background));
}

}  // namespace logn
