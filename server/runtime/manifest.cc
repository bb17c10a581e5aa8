#include "server/runtime/manifest.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "calibration/proto_enums.h"
#include "google/protobuf/util/json_util.h"

namespace logn {

namespace {

absl::Status ValidateClasses(const v1::ModelManifest& manifest) {
  absl::flat_hash_set<int32_t> ids;
  absl::flat_hash_set<std::string> names;
  for (int c = 0; c < manifest.classes_size(); ++c) {
    const v1::ClassInfo& info = manifest.classes(c);
    const std::string where = absl::StrCat("manifest: classes[", c, "] (id ", info.id(), ")");
    if (!ids.insert(info.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate id"));
    }
    if (info.name().empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty name"));
    if (!names.insert(info.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": duplicate name \"", info.name(), "\""));
    }
    if (info.image_count() < 0 || info.instance_count() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": negative image/instance count"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInputPolicy(const v1::ModelManifest& manifest) {
  if (!manifest.has_input()) return absl::InvalidArgumentError("manifest: input policy missing");
  const v1::InputPolicy& input = manifest.input();
  switch (input.resize_case()) {
    case v1::InputPolicy::kShorterSide: {
      const auto& r = input.shorter_side();
      if (r.shorter_side() <= 0 || r.max_longer_side() < r.shorter_side()) {
        return absl::InvalidArgumentError(
            absl::StrCat("manifest: input.shorterSide needs 0 < shorterSide <= maxLongerSide, got ",
                         r.shorter_side(), " and ", r.max_longer_side()));
      }
      break;
    }
    case v1::InputPolicy::kFixed:
      if (input.fixed().height() <= 0 || input.fixed().width() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("manifest: input.fixed needs positive height and width, got ",
                         input.fixed().height(), "x", input.fixed().width()));
      }
      break;
    case v1::InputPolicy::RESIZE_NOT_SET:
      return absl::InvalidArgumentError(
          "manifest: input needs a resize rule (shorterSide or fixed)");
  }
  if (input.pixel_mean_size() != 3 || input.pixel_std_size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest: input.pixelMean and input.pixelStd need 3 entries each, got ",
                     input.pixel_mean_size(), " and ", input.pixel_std_size()));
  }
  for (int i = 0; i < 3; ++i) {
    if (!(input.pixel_std(i) > 0.0f) || !std::isfinite(input.pixel_mean(i)) ||
        !std::isfinite(input.pixel_std(i))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "manifest: input.pixelStd[", i, "] must be finite and > 0 (and pixelMean finite)"));
    }
  }
  if (input.channel_order() == v1::CHANNEL_ORDER_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "manifest: input.channelOrder must be CHANNEL_ORDER_RGB or CHANNEL_ORDER_BGR");
  }
  if (input.value_range() == v1::VALUE_RANGE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "manifest: input.valueRange must be VALUE_RANGE_UNIT (0-1) or VALUE_RANGE_BYTE (0-255)");
  }
  return absl::OkStatus();
}

absl::Status ValidateProposals(const v1::ModelManifest& manifest) {
  // Calibration samples RoIs from the proposals and classifies them with classify_rois.
  if (manifest.has_proposals() && !manifest.has_classify_rois()) {
    return absl::InvalidArgumentError(
        "manifest: hasProposals needs hasClassifyRois (RoIs sampled from the proposals are "
        "classified with classify_rois)");
  }
  if (manifest.has_proposal_settings()) {
    const v1::ProposalSettings& settings = manifest.proposal_settings();
    if (!manifest.has_proposals()) {
      return absl::InvalidArgumentError(
          "manifest: proposalSettings given but hasProposals is false");
    }
    if (settings.pre_nms_top_n() <= 0 || settings.post_nms_top_n() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: proposalSettings needs preNmsTopN > 0 and postNmsTopN > 0, got ",
                       settings.pre_nms_top_n(), " and ", settings.post_nms_top_n()));
    }
    if (!(settings.nms_threshold() > 0.0f && settings.nms_threshold() <= 1.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: proposalSettings.nmsThreshold must be in (0, 1], got ",
                       settings.nms_threshold()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateManifest(const v1::ModelManifest& manifest) {
  if (manifest.name().empty()) return absl::InvalidArgumentError("manifest: name is empty");
  if (manifest.classes_size() == 0) return absl::InvalidArgumentError("manifest: no classes");
  if (manifest.classes_size() > LogitLayout::kMaxClasses) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest: ", manifest.classes_size(), " classes, over the limit"));
  }
  if (absl::Status s = ValidateClasses(manifest); !s.ok()) return s;
  if (manifest.background() != v1::BACKGROUND_POSITION_FIRST &&
      manifest.background() != v1::BACKGROUND_POSITION_LAST) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest: background must be BACKGROUND_POSITION_FIRST or "
                     "BACKGROUND_POSITION_LAST, got ",
                     v1::BackgroundPosition_Name(manifest.background())));
  }
  if (manifest.box_layout() == v1::BOX_LAYOUT_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "manifest: boxLayout must be BOX_LAYOUT_CLASS_AGNOSTIC or BOX_LAYOUT_CLASS_SPECIFIC");
  }
  if (absl::Status s = ValidateInputPolicy(manifest); !s.ok()) return s;
  return ValidateProposals(manifest);
}

absl::StatusOr<v1::ModelManifest> ParseManifestJson(absl::string_view json) {
  v1::ModelManifest manifest;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &manifest, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest JSON does not parse: ", status.message().ToString()));
  }
  absl::Status valid = ValidateManifest(manifest);
  if (!valid.ok()) return valid;
  return manifest;
}

absl::StatusOr<v1::ModelManifest> ReadManifestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read manifest ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<v1::ModelManifest> manifest = ParseManifestJson(buffer.str());
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        absl::StrCat(path, ": ", manifest.status().message()));
  }
  return manifest;
}

LogitLayout ManifestLayout(const v1::ModelManifest& manifest) {
  LogitLayout layout;
  layout.num_classes = manifest.classes_size();
  // ValidateManifest admits FIRST and LAST only.
  layout.background =
      BackgroundPositionFromProto(manifest.background()).value_or(BackgroundPosition::kLast);
  return layout;
}

absl::StatusOr<std::vector<double>> ManifestInstanceCounts(const v1::ModelManifest& manifest) {
  std::vector<double> counts;
  counts.reserve(manifest.classes_size());
  for (const v1::ClassInfo& info : manifest.classes()) {
    if (info.instance_count() <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("manifest of ", manifest.name(), ": class ", info.id(), " (", info.name(),
                       ") has no instanceCount; LogA needs every class's training count"));
    }
    counts.push_back(static_cast<double>(info.instance_count()));
  }
  return counts;
}

std::string DefaultManifestPath(absl::string_view model_path) {
  const size_t slash = model_path.find_last_of('/');
  const size_t dot = model_path.find_last_of('.');
  if (dot == absl::string_view::npos || (slash != absl::string_view::npos && dot < slash)) {
    return absl::StrCat(model_path, ".json");
  }
  return absl::StrCat(model_path.substr(0, dot), ".json");
}

}  // namespace logn
