#include "client/eval/lvis_dataset.h"

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "logn/eval/v1/lvis.pb.h"

namespace logn {
namespace {

// Doubles hold integers exactly up to 2^53; ids beyond that would silently change.
constexpr double kMaxExactInteger = 9007199254740992.0;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status ParseJson(absl::string_view json, google::protobuf::Message* message,
                       absl::string_view what) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) {
    // protobuf names the offending field path, or puts the text around the position on a second
    // line with a caret under it; fold that into one line so CLIs can print a one-line reason.
    const std::vector<std::string> lines = absl::StrSplit(
        absl::string_view(status.message().data(), status.message().size()), '\n');
    std::string reason = lines.empty() ? "" : lines[0];
    if (lines.size() >= 3 && !absl::StripAsciiWhitespace(lines[1]).empty()) {
      // At most 60 characters of context around the caret: minified files are one long line.
      const size_t caret = std::min(lines[2].find('^'), lines[1].size());
      const size_t from = caret > 30 ? caret - 30 : 0;
      absl::StrAppend(&reason, " at: '", absl::string_view(lines[1]).substr(from, 60), "'");
    }
    return absl::InvalidArgumentError(absl::StrCat("malformed ", what, " JSON: ", reason));
  }
  return absl::OkStatus();
}

absl::Status ReadIdList(const google::protobuf::ListValue& list, const std::string& field,
                        std::vector<int64_t>* out) {
  out->reserve(list.values_size());
  for (int i = 0; i < list.values_size(); ++i) {
    const google::protobuf::Value& v = list.values(i);
    const double x = v.number_value();
    if (v.kind_case() != google::protobuf::Value::kNumberValue || std::floor(x) != x ||
        std::fabs(x) > kMaxExactInteger) {
      return Invalid(absl::StrCat(field, "[", i, "]"), "expected an integer category id");
    }
    out->push_back(static_cast<int64_t>(x));
  }
  return absl::OkStatus();
}

absl::Status ReadBox(const google::protobuf::RepeatedField<double>& bbox, const std::string& field,
                     BoxXywh* out) {
  if (bbox.size() != 4) {
    return Invalid(field, absl::StrCat("expected [x, y, w, h] (4 numbers), got ",
                                       bbox.size() == 0 ? "none" : absl::StrCat(bbox.size())));
  }
  for (int i = 0; i < 4; ++i) {
    if (!std::isfinite(bbox[i])) return Invalid(field, "coordinates must be finite");
  }
  if (bbox[2] < 0 || bbox[3] < 0) {
    return Invalid(field, absl::StrFormat("negative width or height (w=%g, h=%g)", bbox[2], bbox[3]));
  }
  *out = BoxXywh{bbox[0], bbox[1], bbox[2], bbox[3]};
  return absl::OkStatus();
}

std::string BaseName(const std::string& url) {
  const size_t slash = url.find_last_of('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

void AppendNumber(std::string* out, double x) {
  // %.17g round-trips every double; integers print without a fraction.
  absl::StrAppend(out, absl::StrFormat("%.17g", x));
}

void AppendBox(std::string* out, const BoxXywh& b) {
  out->push_back('[');
  AppendNumber(out, b.x);
  out->push_back(',');
  AppendNumber(out, b.y);
  out->push_back(',');
  AppendNumber(out, b.w);
  out->push_back(',');
  AppendNumber(out, b.h);
  out->push_back(']');
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace

absl::string_view FrequencyName(Frequency frequency) {
  switch (frequency) {
    case Frequency::kRare: return "r";
    case Frequency::kCommon: return "c";
    case Frequency::kFrequent: return "f";
  }
  return "?";
}

absl::StatusOr<Frequency> ParseFrequency(absl::string_view text) {
  if (text == "r") return Frequency::kRare;
  if (text == "c") return Frequency::kCommon;
  if (text == "f") return Frequency::kFrequent;
  return absl::InvalidArgumentError(
      absl::StrCat("frequency must be \"r\", \"c\" or \"f\", got \"", text, "\""));
}

Frequency FrequencyForImageCount(int64_t image_count) {
  if (image_count <= 10) return Frequency::kRare;
  if (image_count <= 100) return Frequency::kCommon;
  return Frequency::kFrequent;
}

absl::Status ValidateLvisDataset(const LvisDataset& dataset) {
  absl::flat_hash_set<int64_t> image_ids;
  absl::flat_hash_set<int64_t> category_ids;
  absl::flat_hash_set<int64_t> annotation_ids;
  for (size_t i = 0; i < dataset.categories.size(); ++i) {
    if (!category_ids.insert(dataset.categories[i].id).second) {
      return Invalid(absl::StrCat("categories[", i, "].id"),
                     absl::StrCat("duplicate category id ", dataset.categories[i].id));
    }
  }
  for (size_t i = 0; i < dataset.images.size(); ++i) {
    const LvisImage& image = dataset.images[i];
    if (!image_ids.insert(image.id).second) {
      return Invalid(absl::StrCat("images[", i, "].id"), absl::StrCat("duplicate image id ", image.id));
    }
    for (const auto* list : {&image.neg_category_ids, &image.not_exhaustive_category_ids}) {
      const char* name = list == &image.neg_category_ids ? "neg_category_ids" : "not_exhaustive_category_ids";
      for (size_t j = 0; j < list->size(); ++j) {
        if (!category_ids.contains((*list)[j])) {
          return Invalid(absl::StrCat("images[", i, "].", name, "[", j, "]"),
                         absl::StrCat((*list)[j], " is not a category"));
        }
      }
    }
  }
  for (size_t i = 0; i < dataset.annotations.size(); ++i) {
    const LvisAnnotation& a = dataset.annotations[i];
    const std::string where = absl::StrCat("annotations[", i, "]");
    if (a.id < 1) return Invalid(where + ".id", absl::StrCat("must be >= 1, got ", a.id));
    if (!annotation_ids.insert(a.id).second) {
      return Invalid(where + ".id", absl::StrCat("duplicate annotation id ", a.id));
    }
    if (!image_ids.contains(a.image_id)) {
      return Invalid(where + ".image_id", absl::StrCat(a.image_id, " is not an image"));
    }
    if (!category_ids.contains(a.category_id)) {
      return Invalid(where + ".category_id", absl::StrCat(a.category_id, " is not a category"));
    }
    const BoxXywh& b = a.bbox;
    if (!std::isfinite(b.x) || !std::isfinite(b.y) || !std::isfinite(b.w) || !std::isfinite(b.h) ||
        b.w < 0 || b.h < 0) {
      return Invalid(where + ".bbox", "needs finite coordinates and w, h >= 0");
    }
    if (!std::isfinite(a.area) || a.area < 0) {
      return Invalid(where + ".area", "must be finite and >= 0");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LvisDataset> ParseLvisDataset(absl::string_view json) {
  eval::v1::LvisDatasetJson proto;
  LOGN_RETURN_IF_ERROR(ParseJson(json, &proto, "dataset"));
  if (proto.images_size() == 0) return Invalid("images", "missing or empty");
  if (proto.categories_size() == 0) return Invalid("categories", "missing or empty");

  LvisDataset dataset;
  dataset.images.reserve(proto.images_size());
  for (int i = 0; i < proto.images_size(); ++i) {
    const eval::v1::LvisImageJson& p = proto.images(i);
    const std::string where = absl::StrCat("images[", i, "]");
    LvisImage image;
    if (!p.has_id()) return Invalid(where + ".id", "missing");
    image.id = p.id();
    image.width = p.width();
    image.height = p.height();
    image.file_name = p.has_file_name() ? p.file_name() : BaseName(p.coco_url());
    if (!p.has_neg_category_ids()) return Invalid(where + ".neg_category_ids", "missing (LVIS federated field)");
    if (!p.has_not_exhaustive_category_ids()) {
      return Invalid(where + ".not_exhaustive_category_ids", "missing (LVIS federated field)");
    }
    LOGN_RETURN_IF_ERROR(
        ReadIdList(p.neg_category_ids(), where + ".neg_category_ids", &image.neg_category_ids));
    LOGN_RETURN_IF_ERROR(ReadIdList(p.not_exhaustive_category_ids(),
                                    where + ".not_exhaustive_category_ids",
                                    &image.not_exhaustive_category_ids));
    dataset.images.push_back(std::move(image));
  }

  dataset.annotations.reserve(proto.annotations_size());
  for (int i = 0; i < proto.annotations_size(); ++i) {
    const eval::v1::LvisAnnotationJson& p = proto.annotations(i);
    const std::string where = absl::StrCat("annotations[", i, "]");
    LvisAnnotation a;
    if (!p.has_id()) return Invalid(where + ".id", "missing");
    if (!p.has_image_id()) return Invalid(where + ".image_id", "missing");
    if (!p.has_category_id()) return Invalid(where + ".category_id", "missing");
    if (!p.has_area()) return Invalid(where + ".area", "missing");
    a.id = p.id();
    a.image_id = p.image_id();
    a.category_id = p.category_id();
    LOGN_RETURN_IF_ERROR(ReadBox(p.bbox(), where + ".bbox", &a.bbox));
    a.area = p.area();
    a.iscrowd = p.iscrowd() != 0;
    a.ignore = p.ignore() != 0;
    dataset.annotations.push_back(a);
  }

  dataset.categories.reserve(proto.categories_size());
  for (int i = 0; i < proto.categories_size(); ++i) {
    const eval::v1::LvisCategoryJson& p = proto.categories(i);
    const std::string where = absl::StrCat("categories[", i, "]");
    LvisCategory c;
    if (!p.has_id()) return Invalid(where + ".id", "missing");
    if (!p.has_frequency()) return Invalid(where + ".frequency", "missing (LVIS field: \"r\", \"c\" or \"f\")");
    if (!p.has_image_count()) return Invalid(where + ".image_count", "missing");
    if (!p.has_instance_count()) return Invalid(where + ".instance_count", "missing");
    c.id = p.id();
    c.name = p.name();
    absl::StatusOr<Frequency> frequency = ParseFrequency(p.frequency());
    if (!frequency.ok()) return Invalid(where + ".frequency", frequency.status().message());
    c.frequency = *frequency;
    c.image_count = p.image_count();
    c.instance_count = p.instance_count();
    dataset.categories.push_back(std::move(c));
  }
  LOGN_RETURN_IF_ERROR(ValidateLvisDataset(dataset));
  return dataset;
}

absl::StatusOr<std::vector<LvisDetection>> ParseLvisResults(absl::string_view json) {
  // Results are a bare array; protobuf's JSON parser wants an object, so wrap it.
  const size_t first = json.find_first_not_of(" \t\r\n");
  if (first == absl::string_view::npos || json[first] != '[') {
    return absl::InvalidArgumentError(
        "results: expected a JSON array of {image_id, category_id, bbox, score} at the top level");
  }
  std::string wrapped;
  wrapped.reserve(json.size() + 16);
  absl::StrAppend(&wrapped, "{\"results\":", json, "}");
  eval::v1::LvisResultsJson proto;
  LOGN_RETURN_IF_ERROR(ParseJson(wrapped, &proto, "results"));

  std::vector<LvisDetection> detections;
  detections.reserve(proto.results_size());
  for (int i = 0; i < proto.results_size(); ++i) {
    const eval::v1::LvisDetectionJson& p = proto.results(i);
    const std::string where = absl::StrCat("results[", i, "]");
    LvisDetection d;
    if (!p.has_image_id()) return Invalid(where + ".image_id", "missing");
    if (!p.has_category_id()) return Invalid(where + ".category_id", "missing");
    if (!p.has_score()) return Invalid(where + ".score", "missing");
    if (!std::isfinite(p.score())) return Invalid(where + ".score", "must be finite");
    d.image_id = p.image_id();
    d.category_id = p.category_id();
    d.score = p.score();
    LOGN_RETURN_IF_ERROR(ReadBox(p.bbox(), where + ".bbox", &d.bbox));
    detections.push_back(d);
  }
  return detections;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string reason = absl::StrCat(path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(reason);
    if (err == EACCES) return absl::PermissionDeniedError(reason);
    return absl::InternalError(reason);
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat(path, ": read failed"));
  return std::move(buffer).str();
}

namespace {
template <typename T>
absl::StatusOr<T> WithPath(absl::StatusOr<T> result, const std::string& path) {
  if (result.ok()) return result;
  return absl::Status(result.status().code(), absl::StrCat(path, ": ", result.status().message()));
}
}  // namespace

absl::StatusOr<LvisDataset> ReadLvisDataset(const std::string& path) {
  LOGN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return WithPath(ParseLvisDataset(text), path);
}

absl::StatusOr<std::vector<LvisDetection>> ReadLvisResults(const std::string& path) {
  LOGN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return WithPath(ParseLvisResults(text), path);
}

std::string LvisDatasetToJson(const LvisDataset& dataset) {
  std::string out = "{\"images\":[";
  for (size_t i = 0; i < dataset.images.size(); ++i) {
    const LvisImage& im = dataset.images[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"id\":", im.id, ",\"width\":", im.width, ",\"height\":", im.height,
                    ",\"file_name\":", JsonString(im.file_name), ",\"neg_category_ids\":[",
                    absl::StrJoin(im.neg_category_ids, ","), "],\"not_exhaustive_category_ids\":[",
                    absl::StrJoin(im.not_exhaustive_category_ids, ","), "]}");
  }
  out += "],\"annotations\":[";
  for (size_t i = 0; i < dataset.annotations.size(); ++i) {
    const LvisAnnotation& a = dataset.annotations[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"id\":", a.id, ",\"image_id\":", a.image_id,
                    ",\"category_id\":", a.category_id, ",\"bbox\":");
    AppendBox(&out, a.bbox);
    out += ",\"area\":";
    AppendNumber(&out, a.area);
    absl::StrAppend(&out, ",\"iscrowd\":", a.iscrowd ? 1 : 0);
    if (a.ignore) out += ",\"ignore\":1";
    out.push_back('}');
  }
  out += "],\"categories\":[";
  for (size_t i = 0; i < dataset.categories.size(); ++i) {
    const LvisCategory& c = dataset.categories[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"id\":", c.id, ",\"name\":", JsonString(c.name), ",\"frequency\":\"",
                    FrequencyName(c.frequency), "\",\"image_count\":", c.image_count,
                    ",\"instance_count\":", c.instance_count, "}");
  }
  out += "]}";
  return out;
}

std::string LvisResultsToJson(const std::vector<LvisDetection>& detections) {
  std::string out = "[";
  for (size_t i = 0; i < detections.size(); ++i) {
    const LvisDetection& d = detections[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"image_id\":", d.image_id, ",\"category_id\":", d.category_id,
                    ",\"bbox\":");
    AppendBox(&out, d.bbox);
    out += ",\"score\":";
    AppendNumber(&out, d.score);
    out.push_back('}');
  }
  out += "]";
  return out;
}

}  // namespace logn
