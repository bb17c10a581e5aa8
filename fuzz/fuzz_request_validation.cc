// Every logn.v1 request message as the server receives it: the first byte picks the message,
// the rest is its wire form. Runs the transport-free validation the RPCs apply before any model
// or store work (images, logit batches, calibration settings, selectors, post-processing,
// aliases, calibrate headers, version views, list filters), which must answer any message with
// a value or a status.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "calibration/accumulator.h"
#include "calibration/calibrator.h"
#include "logn/v1/calibration_service.pb.h"
#include "logn/v1/detection_service.pb.h"
#include "logn/v1/stats_service.pb.h"
#include "server/core/proto_convert.h"
#include "server/runtime/image.h"
#include "store/stats_store.h"

namespace {

using namespace logn;  // NOLINT: a fuzz driver, not a library

// A small model's statistics, so calibration settings are built for real.
const Statistics& SyntheticStatistics() {
  static const Statistics* stats = [] {
    auto* s = new Statistics;
    s->layout = LogitLayout{4, BackgroundPosition::kFirst};
    s->count = 100;
    s->mean = {2.0, -1.0, -2.0, -3.0, -4.0};
    s->variance = {1.0, 0.5, 0.25, 2.0, 4.0};
    return s;
  }();
  return *stats;
}

void CheckImage(const v1::Image& image) {
  absl::StatusOr<ImageSource> source = ImageFromProto(image, 0);
  if (!source.ok()) return;
  ImageLimits limits;
  limits.max_pixels = 1 << 20;
  (void)DecodeImageSource(*source, limits);
}

void CheckLogits(const v1::LogitBatch& batch) {
  absl::StatusOr<std::vector<float>> values = LogitsFromProto(batch);
  if (!values.ok()) return;
  if (values->size() != static_cast<size_t>(batch.rows()) * batch.width()) __builtin_trap();
  const LogitLayout layout{batch.width() - 1, BackgroundPosition::kFirst};
  if (!layout.Validate().ok()) return;
  (void)ValidateLogitBatch(layout, {values->data(), batch.rows(), batch.width()});
}

void CheckSetting(const v1::CalibrationSetting& setting) {
  absl::StatusOr<CalibrationSpec> spec = SpecFromProto(setting);
  if (!spec.ok()) return;
  (void)SpecToProto(*spec, setting.name());
  if (spec->method == CalibrationMethod::kLogN) {
    (void)Calibrator::ForLogN(SyntheticStatistics(), spec->logn);
  }
}

void CheckSelector(const v1::StatisticsSelector& selector) {
  absl::StatusOr<VersionSelector> parsed = SelectorFromProto(selector);
  if (parsed.ok()) (void)parsed->DebugString();
}

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* message) {
  return message->ParseFromArray(data, static_cast<int>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1 << 20)) return 0;
  const uint8_t kind = data[0];
  ++data;
  --size;
  switch (kind % 7) {
    case 0: {
      v1::DetectRequest r;
      if (!Parse(data, size, &r)) return 0;
      for (const v1::Image& image : r.images()) CheckImage(image);
      for (const v1::CalibrationSetting& s : r.calibrations()) CheckSetting(s);
      CheckSelector(r.selector());
      (void)PostprocessFromProto(r.postprocess());
      break;
    }
    case 1: {
      v1::CalibrateRequest r;
      if (!Parse(data, size, &r)) return 0;
      if (r.has_logit_batch()) CheckLogits(r.logit_batch());
      for (const v1::AnnotatedImage& image : r.image_batch().annotated_images()) {
        CheckImage(image.image());
      }
      if (r.has_image_batch()) (void)ImageBatchFromProto(r.image_batch());
      if (r.has_header()) (void)JobHeaderFromProto(r.header());
      if (r.has_header() && r.header().has_ema()) CheckSelector(r.header().ema().init());
      break;
    }
    case 2: {
      v1::ApplyRequest r;
      if (!Parse(data, size, &r)) return 0;
      CheckLogits(r.logits());
      CheckSetting(r.calibration());
      CheckSelector(r.selector());
      break;
    }
    case 3: {
      v1::SetAliasRequest r;
      if (!Parse(data, size, &r)) return 0;
      (void)ValidateAliasName(r.alias());
      (void)VersionSelector::Parse(r.alias());
      break;
    }
    case 4: {
      v1::GetVersionRequest r;
      if (!Parse(data, size, &r)) return 0;
      CheckSelector(r.selector());
      (void)FullViewFromProto(r.view());
      break;
    }
    case 5: {
      v1::ExportVersionRequest r;
      if (!Parse(data, size, &r)) return 0;
      CheckSelector(r.selector());
      break;
    }
    case 6: {
      v1::ListVersionsRequest r;
      if (!Parse(data, size, &r)) return 0;
      (void)VersionFilterFromProto(r);
      break;
    }
  }
  return 0;
}
