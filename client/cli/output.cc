#include "client/cli/output.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/lib/enum_names.h"
#include "google/protobuf/util/json_util.h"

namespace logn::cli {

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

std::string ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

absl::Status WriteFile(const std::string& path, absl::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out.write(content.data(), content.size());
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

std::string FormatSeconds(absl::Duration d) {
  return absl::StrFormat("%.2fs", absl::ToDoubleSeconds(d));
}

std::string TimestampText(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

std::string VersionHeader() {
  return absl::StrFormat("%7s  %-20s  %10s  %7s  %-12s  %-7s  %-16s  %s\n", "version", "created",
                         "rows", "images", "method", "source", "aliases", "description");
}

std::string VersionLine(const v1::StatisticsVersion& v) {
  std::string method(EnumName(v.method()));
  if (v.method() == v1::ACCUMULATION_METHOD_EMA) {
    method = absl::StrFormat("%s(%g)", method, v.momentum());
  }
  return absl::StrFormat(
      "%7d  %-20s  %10d  %7d  %-12s  %-7s  %-16s  %s", v.version(), TimestampText(v.created_at()),
      v.rows_seen(), v.images_seen(), method, EnumName(v.source()),
      v.aliases().empty() ? "-" : absl::StrJoin(v.aliases(), ","), v.description());
}

std::string SettingName(const v1::CalibrationSetting& setting) {
  return setting.name().empty() ? std::string(EnumName(setting.calibration_method()))
                                : setting.name();
}

std::string SelectorText(const v1::StatisticsSelector& selector) {
  if (selector.selector_case() == v1::StatisticsSelector::kVersion) {
    return absl::StrCat(selector.version());
  }
  if (selector.selector_case() == v1::StatisticsSelector::kAlias) return selector.alias();
  return "active";
}

Detection ToLvisDetection(int64_t image_id, const v1::Detection& d) {
  Detection out;
  out.image_id = image_id;
  out.category_id = d.category_id();
  out.bbox = {d.box().x1(), d.box().y1(), d.box().x2() - d.box().x1(), d.box().y2() - d.box().y1()};
  out.score = d.score();
  return out;
}

}  // namespace logn::cli
