#include "client/cli/output.h"

#include <algorithm>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

LvisDetection ToLvisDetection(int64_t image_id, const v1::Detection& d) {
  LvisDetection out;
  out.image_id = image_id;
  out.category_id = d.category_id();
  out.bbox = {d.box().x1(), d.box().y1(), d.box().x2() - d.box().x1(), d.box().y2() - d.box().y1()};
  out.score = d.score();
  return out;
}

std::string GroupLetter(v1::FrequencyGroup group) {
  switch (group) {
    case v1::FREQUENCY_GROUP_RARE:
      return "r";
    case v1::FREQUENCY_GROUP_COMMON:
      return "c";
    case v1::FREQUENCY_GROUP_FREQUENT:
      return "f";
    default:
      return "-";
  }
}

ClassNames::ClassNames(const v1::ModelManifest& manifest) {
  for (const v1::ClassInfo& c : manifest.classes()) classes_[c.id()] = {c.name(), c.frequency()};
}

std::string ClassNames::Name(int32_t category_id) const {
  auto it = classes_.find(category_id);
  return it == classes_.end() ? absl::StrCat("#", category_id) : it->second.first;
}

std::string ClassNames::Group(int32_t category_id) const {
  auto it = classes_.find(category_id);
  return it == classes_.end() ? "-" : GroupLetter(it->second.second);
}

namespace {

// The width human-readable output wraps at, and the label column of `logn info`.
constexpr size_t kLineWidth = 100;
constexpr int kLabelWidth = 21;

// "label   value", the value's words wrapped at kLineWidth under the value column.
std::string Field(absl::string_view label, absl::string_view value) {
  const std::string indent(kLabelWidth, ' ');
  std::string out = absl::StrFormat("%-*s", kLabelWidth - 1, label);
  size_t line_length = out.size();
  bool first = true;
  for (absl::string_view word : absl::StrSplit(value, ' ', absl::SkipEmpty())) {
    if (!first && line_length + 1 + word.size() > kLineWidth) {
      absl::StrAppend(&out, "\n", indent, word);
      line_length = indent.size() + word.size();
    } else {
      absl::StrAppend(&out, " ", word);
      line_length += 1 + word.size();
    }
    first = false;
  }
  return out + "\n";
}

// Shortest %g-style text of a parameter: "1", "0.5", "1e-05".
std::string Number(double x) { return absl::StrFormat("%g", x); }

std::string BetaText(const v1::LogNParams& p) {
  if (p.has_use_beta() && !p.use_beta()) return "no β";
  switch (p.beta_policy()) {
    case v1::BETA_POLICY_AVG_FOREGROUND_MEAN:
      return "β=mean μ";
    case v1::BETA_POLICY_MAX_FOREGROUND_MEAN:
      return "β=max μ";
    case v1::BETA_POLICY_BACKGROUND_MEAN:
      return "β=background μ";
    case v1::BETA_POLICY_CONSTANT:
      return absl::StrCat("β=", Number(p.beta_constant()));
    default:
      return "β=min μ";
  }
}

std::string LogNText(const v1::LogNParams& p) {
  const double alpha = p.has_mean_weight() ? p.mean_weight() : (!p.has_use_mean() || p.use_mean());
  const double gamma = p.has_std_exponent() ? p.std_exponent() : (!p.has_use_std() || p.use_std());
  std::string out = absl::StrCat("LogN α=", Number(alpha), " γ=", Number(gamma), " ", BetaText(p));
  if (p.has_epsilon()) absl::StrAppend(&out, " ε=", Number(p.epsilon()));
  if (p.official_formula()) absl::StrAppend(&out, ", official formula (no ε)");
  if (p.normalize_background()) absl::StrAppend(&out, ", background normalised");
  return out;
}

// The held-out AP of a tuning record's setting, "" when it has none.
std::string HeldOutAp(const v1::TuningRecord& tuning, absl::string_view setting) {
  for (const v1::HeldOutFigures& f : tuning.heldout()) {
    if (f.setting_name() == setting) return absl::StrFormat("%.1f", 100 * f.ap_mean());
  }
  return "";
}

// The active version's calibration profile when it is the one `info` defaults to.
const v1::CalibrationProfile* DefaultProfile(const v1::GetModelInfoResponse& info) {
  if (info.default_calibration_version() == 0 || !info.has_active_statistics_version()) {
    return nullptr;
  }
  const v1::StatisticsVersion& v = info.active_statistics_version();
  if (v.version() != info.default_calibration_version() || !v.has_calibration_profile()) {
    return nullptr;
  }
  return &v.calibration_profile();
}

std::string InputText(const v1::InputPolicy& input) {
  std::string out;
  if (input.has_shorter_side()) {
    out = absl::StrFormat("shorter side resized to %d px, longer at most %d px;",
                          input.shorter_side().shorter_side(),
                          input.shorter_side().max_longer_side());
  } else if (input.has_fixed()) {
    out = absl::StrFormat("resized to %dx%d px (height x width);", input.fixed().height(),
                          input.fixed().width());
  } else {
    out = "no resize rule;";
  }
  absl::StrAppend(
      &out, input.channel_order() == v1::CHANNEL_ORDER_BGR ? " BGR," : " RGB,",
      input.value_range() == v1::VALUE_RANGE_BYTE ? " pixels 0-255," : " pixels / 255,");
  auto triple = [](const google::protobuf::RepeatedField<float>& v) {
    std::vector<std::string> parts;
    for (float x : v) parts.push_back(Number(x));
    return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
  };
  absl::StrAppend(&out, " mean ", triple(input.pixel_mean()), " std ", triple(input.pixel_std()));
  return out;
}

std::string LayoutText(const v1::ModelManifest& m) {
  std::string out;
  switch (m.background()) {
    case v1::BACKGROUND_POSITION_FIRST:
      out = "background logit first (column 0, as torchvision)";
      break;
    case v1::BACKGROUND_POSITION_LAST:
      out = "background logit last (column C, as detectron2 / mmdetection)";
      break;
    case v1::BACKGROUND_POSITION_NONE:
      out = "no background logit (a C-way classifier)";
      break;
    default:
      out = "background position unspecified";
  }
  absl::StrAppend(&out, "; ",
                  m.box_layout() == v1::BOX_LAYOUT_CLASS_SPECIFIC ? "class-specific boxes"
                                                                  : "class-agnostic boxes");
  return out;
}

std::string MethodsText(const v1::ModelManifest& m) {
  std::vector<std::string> methods = {"detections"};
  if (m.has_classify_rois()) methods.push_back("classify_rois (RoI-sampled statistics)");
  if (m.has_proposals()) {
    const v1::ProposalSettings& p = m.proposal_settings();
    methods.push_back(absl::StrFormat(
        "proposals (RPN: pre-NMS top %d, post-NMS top %d, NMS IoU %s)", p.pre_nms_top_n(),
        p.post_nms_top_n(), Number(p.nms_threshold())));
  }
  return absl::StrJoin(methods, ", ");
}

std::string StatisticsText(const v1::GetModelInfoResponse& info) {
  if (info.active_version() == 0) {
    return "none active (LogN needs statistics: logn calibrate ... --activate)";
  }
  if (!info.has_active_statistics_version()) return absl::StrCat("version ", info.active_version());
  const v1::StatisticsVersion& v = info.active_statistics_version();
  std::string out = absl::StrFormat("version %d, created %s: %d rows from %d images, %s",
                                    v.version(), TimestampText(v.created_at()), v.rows_seen(),
                                    v.images_seen(), EnumName(v.method()));
  if (v.method() == v1::ACCUMULATION_METHOD_EMA) {
    absl::StrAppend(&out, "(", Number(v.momentum()), ")");
  }
  if (v.has_sampling()) {
    const v1::RoiSampling& s = v.sampling();
    absl::StrAppend(&out, "; RoIs from ", EnumName(s.roi_source()));
    if (s.images() > 0 && s.rois() > 0) {
      absl::StrAppendFormat(&out, ", %.0f per image", static_cast<double>(s.rois()) / s.images());
      if (s.positive_rois() > 0 || s.positive_fraction() > 0) {
        absl::StrAppendFormat(&out, ", %.1f%% positive",
                              100.0 * static_cast<double>(s.positive_rois()) / s.rois());
      }
    }
  }
  return out;
}

// "23   name, name, name and 20 more", fitting the value column.
std::string GroupText(const std::vector<std::string>& names) {
  std::string out = absl::StrFormat("%-4d", names.size());
  const size_t budget = kLineWidth - kLabelWidth;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string piece = absl::StrCat(i ? ", " : " ", names[i]);
    const bool last = i + 1 == names.size();
    const std::string more = absl::StrFormat(" and %d more", names.size() - i - 1);
    if (out.size() + piece.size() + (last ? 0 : more.size()) > budget) {
      absl::StrAppendFormat(&out, "%s%d more", i ? " and " : " ", names.size() - i);
      break;
    }
    absl::StrAppend(&out, piece);
  }
  return out;
}

}  // namespace

std::string DescribeSetting(const v1::CalibrationSetting& setting) {
  switch (setting.calibration_method()) {
    case v1::CALIBRATION_METHOD_NONE:
      return "none (raw logits)";
    case v1::CALIBRATION_METHOD_LOGA:
      return absl::StrCat("LogA τ=",
                          Number(setting.loga().has_tau() ? setting.loga().tau() : 1.0));
    case v1::CALIBRATION_METHOD_MODEL_DEFAULT:
      return "the model's default";
    default:
      return LogNText(setting.logn());
  }
}

std::string DefaultCalibrationText(const v1::GetModelInfoResponse& info) {
  const v1::CalibrationSetting& setting = info.default_calibration();
  if (info.calibration_fallback()) {
    return absl::StrCat(DescribeSetting(setting),
                        " (fallback: this model version has no active statistics)");
  }
  const bool described = info.has_default_calibration() &&
                         setting.calibration_method() != v1::CALIBRATION_METHOD_MODEL_DEFAULT;
  if (info.default_calibration_version() == 0) {
    return absl::StrCat("built-in ",
                        DescribeSetting(described ? setting : v1::CalibrationSetting()),
                        " (no calibration profile)");
  }
  std::string out = absl::StrCat(DescribeSetting(setting), " (profile of version ",
                                 info.default_calibration_version());
  const v1::CalibrationProfile* profile = DefaultProfile(info);
  if (profile == nullptr || !profile->has_tuning()) {
    absl::StrAppend(&out, profile == nullptr ? "" : ", set by hand");
  } else {
    const v1::TuningRecord& t = profile->tuning();
    absl::StrAppend(&out, ", tuned: objective ", t.objective().empty() ? "?" : t.objective());
    const std::string tuned = HeldOutAp(t, "tuned"), logn = HeldOutAp(t, "logn");
    if (!tuned.empty()) {
      absl::StrAppend(&out, ", held-out AP ", tuned);
      if (!logn.empty()) absl::StrAppend(&out, " vs ", logn, " for built-in LogN");
    }
  }
  return out + ")";
}

std::string InfoSummary(const v1::GetModelInfoResponse& info) {
  const v1::ModelManifest& m = info.manifest();
  std::string out = Field("model", m.name());
  // A server that predates model versions says 0: nothing to print.
  if (info.model_version() > 0) {
    absl::StrAppend(&out, Field("model version", absl::StrCat(info.model_version())));
  }
  if (info.memory_bytes() > 0) {
    absl::StrAppend(&out, Field("memory", absl::StrCat(MemoryText(info.memory_bytes()),
                                                       " (estimate: parameters, buffers, "
                                                       "warm-up working memory)")));
  }
  if (!m.description().empty()) absl::StrAppend(&out, Field("description", m.description()));
  absl::StrAppend(&out, Field("sha256", info.model_sha256()), Field("device", info.device()));
  if (m.classes_size() == 0) {
    absl::StrAppend(&out, Field("classes", "none"));
  } else {
    int32_t lo = m.classes(0).id(), hi = lo;
    std::vector<std::string> by_group[4];
    for (const v1::ClassInfo& c : m.classes()) {
      lo = std::min(lo, c.id());
      hi = std::max(hi, c.id());
      const int g = c.frequency() >= 0 && c.frequency() <= 3 ? c.frequency() : 0;
      by_group[g].push_back(c.name());
    }
    absl::StrAppend(&out, Field("classes", absl::StrFormat("%d foreground classes, ids %d-%d "
                                                           "(logn info --classes lists them)",
                                                           m.classes_size(), lo, hi)));
    const struct {
      const char* label;
      int group;
    } kGroups[] = {{"  rare", v1::FREQUENCY_GROUP_RARE},
                   {"  common", v1::FREQUENCY_GROUP_COMMON},
                   {"  frequent", v1::FREQUENCY_GROUP_FREQUENT},
                   {"  no group", v1::FREQUENCY_GROUP_UNSPECIFIED}};
    for (const auto& g : kGroups) {
      if (by_group[g.group].empty()) continue;
      absl::StrAppend(&out, absl::StrFormat("%-*s %s\n", kLabelWidth - 1, g.label,
                                            GroupText(by_group[g.group])));
    }
  }
  absl::StrAppend(&out, Field("layout", LayoutText(m)), Field("model methods", MethodsText(m)),
                  Field("input", InputText(m.input())),
                  Field("active statistics", StatisticsText(info)));
  if (info.has_active_statistics_version() &&
      !info.active_statistics_version().description().empty()) {
    const std::string& description = info.active_statistics_version().description();
    absl::StrAppend(&out, Field("", absl::StrCat("\"", description, "\"")));
  }
  absl::StrAppend(&out, Field("default calibration", DefaultCalibrationText(info)));
  if (const v1::CalibrationProfile* profile = DefaultProfile(info);
      profile != nullptr && !profile->description().empty()) {
    absl::StrAppend(&out, Field("", absl::StrCat("\"", profile->description(), "\"")));
  }
  return out;
}

std::string ClassTable(const v1::ModelManifest& manifest) {
  std::string out = absl::StrFormat("%6s  %-5s  %8s  %9s  %s\n", "id", "group", "images",
                                    "instances", "name");
  for (const v1::ClassInfo& c : manifest.classes()) {
    absl::StrAppendFormat(&out, "%6d  %-5s  %8d  %9d  %s\n", c.id(), GroupLetter(c.frequency()),
                          c.image_count(), c.instance_count(), c.name());
  }
  return out;
}

std::string ScoreText(float score) {
  return score >= 0.001f || score <= 0 ? absl::StrFormat("%.3f", score)
                                       : absl::StrFormat("%.1e", score);
}

std::string DetectionTable(const v1::ImageDetections& image, const v1::CalibrationSetting& setting,
                           int64_t version, const ClassNames& classes, int top) {
  const int total = image.detections_size();
  const int shown = top > 0 ? std::min(top, total) : total;
  std::string out = absl::StrFormat("%s: %d detection%s (setting %s", image.image_id(), total,
                                    total == 1 ? "" : "s", SettingName(setting));
  // The response's version is shared by its settings; only LogN's depend on it.
  const bool uses_statistics = setting.calibration_method() != v1::CALIBRATION_METHOD_NONE &&
                               setting.calibration_method() != v1::CALIBRATION_METHOD_LOGA;
  if (version > 0 && uses_statistics) absl::StrAppend(&out, ", statistics version ", version);
  absl::StrAppend(&out, ")");
  if (total == 0) return out + "\n";
  if (shown < total) absl::StrAppend(&out, ", top ", shown);
  absl::StrAppend(&out, "\n");
  std::vector<std::string> names;
  size_t name_width = 5;  // "class"
  for (int j = 0; j < shown; ++j) {
    names.push_back(classes.Name(image.detections(j).category_id()));
    name_width = std::max(name_width, names.back().size());
  }
  absl::StrAppendFormat(&out, "%5s  %-*s  %-5s  %7s  %8s %8s %8s %8s\n", "rank",
                        static_cast<int>(name_width), "class", "group", "score", "x1", "y1", "x2",
                        "y2");
  for (int j = 0; j < shown; ++j) {
    const v1::Detection& d = image.detections(j);
    absl::StrAppendFormat(&out, "%5d  %-*s  %-5s  %7s  %8.1f %8.1f %8.1f %8.1f\n", j + 1,
                          static_cast<int>(name_width), names[j], classes.Group(d.category_id()),
                          ScoreText(d.score()), d.box().x1(), d.box().y1(), d.box().x2(),
                          d.box().y2());
  }
  if (shown < total) {
    absl::StrAppendFormat(&out, "%5s  (%d more, down to score %s; --top 0 shows all)\n", "...",
                          total - shown, ScoreText(image.detections(total - 1).score()));
  }
  return out;
}

std::string DetectionTables(const v1::DetectResponse& response, const ClassNames& classes,
                            int top) {
  std::vector<std::string> tables;
  const int images =
      response.results_size() == 0 ? 0 : response.results(0).image_detections_size();
  for (int i = 0; i < images; ++i) {
    for (const v1::CalibrationResult& result : response.results()) {
      if (i >= result.image_detections_size()) continue;
      tables.push_back(DetectionTable(result.image_detections(i), result.setting(),
                                      response.version(), classes, top));
    }
  }
  return absl::StrJoin(tables, "\n");
}

std::string DetectionJsonLines(const v1::DetectResponse& response) {
  std::string out;
  const int images =
      response.results_size() == 0 ? 0 : response.results(0).image_detections_size();
  for (int i = 0; i < images; ++i) {
    for (const v1::CalibrationResult& result : response.results()) {
      if (i >= result.image_detections_size()) continue;
      const v1::ImageDetections& image = result.image_detections(i);
      absl::StrAppend(&out, "{\"image\":", JsonString(image.image_id()),
                      ",\"setting\":", JsonString(SettingName(result.setting())),
                      ",\"version\":", response.version(),
                      ",\"model_version\":", response.model_version(), ",\"calibration_fallback\":",
                      response.calibration_fallback() ? "true" : "false", ",\"detections\":[");
      for (int j = 0; j < image.detections_size(); ++j) {
        const v1::Detection& d = image.detections(j);
        absl::StrAppendFormat(
            &out, "%s{\"category_id\":%d,\"score\":%.6g,\"box\":[%.2f,%.2f,%.2f,%.2f]}",
            j ? "," : "", d.category_id(), d.score(), d.box().x1(), d.box().y1(), d.box().x2(),
            d.box().y2());
      }
      absl::StrAppend(&out, "]}\n");
    }
  }
  return out;
}

}  // namespace logn::cli
