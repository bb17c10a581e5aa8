#ifndef LOGN_SERVER_CORE_REQUESTS_H_
#define LOGN_SERVER_CORE_REQUESTS_H_

// Requests and results of the server core in core types. proto_convert turns the API messages
// into these once, at the edge, and the results back into messages at the end; the core's logic
// in between never reads a proto field.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "calibration/calibrator.h"
#include "calibration/statistics.h"
#include "server/core/roi_sampler.h"
#include "server/runtime/image.h"
#include "server/runtime/postprocess.h"
#include "store/stats_store.h"

namespace logn {

// One named calibration setting of a request.
struct NamedSpec {
  CalibrationSpec spec;
  std::string name;
  // The model's default (CALIBRATION_METHOD_MODEL_DEFAULT, or a Detect request naming no
  // setting): `spec` is meaningless until the server replaces it with the calibration profile of
  // the statistics version used (LogN with its defaults when that version has none).
  bool model_default = false;

  static NamedSpec ModelDefault(std::string name) {
    return NamedSpec{CalibrationSpec(), std::move(name), true};
  }
};

// Which statistics a request's LogN settings use. The selector is kept with its conversion error
// (a malformed alias, a non-positive number) because the error only matters when a setting needs
// statistics: a request for method NONE alone ignores it.
struct StatisticsChoice {
  absl::StatusOr<VersionSelector> selector = VersionSelector::Active();
  bool explicitly_set = false;  // the request named a version or an alias
};

// A Detect request. The images are views into the request message, which must outlive this.
struct DetectQuery {
  std::string model;  // empty: the served model
  std::string request_id;
  std::vector<ImageSource> images;
  std::vector<std::string> image_ids;  // one per image
  std::vector<NamedSpec> settings;     // at least one: the model's default when the request has none
  StatisticsChoice statistics;
  PostprocessOptions postprocess;      // validated
  bool include_uncalibrated_score = false;
  bool include_raw_candidates = false;
};

// A Detect result: for each setting, in request order, each image's detections.
struct DetectOutcome {
  struct Image {
    std::string image_id;
    std::vector<Detection> detections;  // best first, boxes in original-image pixels
    // Per detection, the softmax score of the same class without calibration; empty unless the
    // request asked for it.
    std::vector<float> uncalibrated_scores;
  };
  struct Setting {
    NamedSpec setting;  // as resolved: never a model_default placeholder
    std::vector<Image> images;
  };
  std::string request_id;
  int64_t statistics_version = 0;  // 0 when no setting needed statistics
  std::vector<Setting> results;
  absl::Duration decode;
  absl::Duration inference;  // preprocessing and the forward pass
  absl::Duration postprocess;
  // Candidates that gave no detection because a logit was not finite (all settings).
  PostprocessStats dropped;
};

// One image of a Calibrate image batch (a view into the request message).
struct AnnotatedImageInput {
  ImageSource image;
  std::vector<float> ground_truth;  // G·4 floats, xyxy, original-image pixels
  double weight = 1.0;  // its repeat factor: each of its rows counts this many times (>= 0)
};

// A Calibrate stream's header.
struct CalibrationJobHeader {
  std::string model;  // empty: the served model
  VersionSource source = VersionSource::kLogits;  // kLogits or kImages
  std::string description;
  std::string job_id;  // empty: no checkpoints, not resumable
  bool activate = false;  // point "active" at the committed version
  bool partial = false;
  // As sent: > 0 an interval in batches, 0 the server's default, < 0 never.
  int32_t checkpoint_every_batches = 0;
  bool resume = false;
  int64_t resume_from_batch = 0;
  AccumulationMethod method = AccumulationMethod::kExact;
  double ema_momentum = 0.0;  // EMA only, validated by the accumulator
  // EMA only: the stored version to start the running averages from (converted when used), or
  // the 0/1 prior when ema_from_prior; exactly one of the two (checked at conversion).
  std::optional<absl::StatusOr<VersionSelector>> ema_init;
  bool ema_from_prior = false;
  RoiSamplingOverrides sampler;  // over the server's defaults; validated once applied
  // kProposals, kCandidates, or kUnspecified: proposals when the model has them.
  RoiSource sample_from = RoiSource::kUnspecified;
  double rfs_threshold = 0.0;  // recorded only: the client weighted the images with it
};

}  // namespace logn

#endif  // LOGN_SERVER_CORE_REQUESTS_H_
