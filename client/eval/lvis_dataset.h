#ifndef LOGN_CLIENT_EVAL_LVIS_DATASET_H_
#define LOGN_CLIENT_EVAL_LVIS_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logn {

// In-memory LVIS / COCO detection data: what the evaluator, the CLI and the dataset tools share.
// Only the fields bbox evaluation and calibration need are kept; everything else in the JSON
// (segmentation, coco_url, info, licenses, ...) is skipped by the readers.

// An axis-aligned box in COCO convention: top-left corner plus width and height, in pixels.
struct BoxXywh {
  double x = 0;
  double y = 0;
  double w = 0;
  double h = 0;
};

// LVIS frequency groups, by the number of training images a category appears in:
// rare 1-10, common 11-100, frequent > 100.
enum class Frequency { kRare, kCommon, kFrequent };
// "r" / "c" / "f".
absl::string_view FrequencyName(Frequency frequency);
absl::StatusOr<Frequency> ParseFrequency(absl::string_view text);
// The LVIS rule: 1..10 -> rare, 11..100 -> common, > 100 -> frequent (0 counts as rare).
Frequency FrequencyForImageCount(int64_t image_count);

struct LvisImage {
  int64_t id = 0;
  int64_t width = 0;   // 0 when the file does not say
  int64_t height = 0;  // 0 when the file does not say
  std::string file_name;  // file_name, or the last path component of coco_url (LVIS v1)
  // Categories verified absent from this image: detections of them count as false positives.
  std::vector<int64_t> neg_category_ids;
  // Categories present but not exhaustively annotated: their unmatched detections are ignored.
  std::vector<int64_t> not_exhaustive_category_ids;
};

struct LvisAnnotation {
  int64_t id = 0;  // >= 1 (lvis-api's matching treats id 0 as "unmatched")
  int64_t image_id = 0;
  int64_t category_id = 0;
  BoxXywh bbox;
  double area = 0;  // the file's "area" (for boxes-only data, w * h); drives the area ranges
  bool iscrowd = false;  // read and kept; LVIS evaluation does not use it (see docs/evaluation.md)
  bool ignore = false;   // lvis-api's optional "ignore" flag: matched detections are not counted
};

struct LvisCategory {
  int64_t id = 0;
  std::string name;
  Frequency frequency = Frequency::kRare;
  int64_t image_count = 0;     // training images containing the category
  int64_t instance_count = 0;  // training instances of the category
};

struct LvisDataset {
  std::vector<LvisImage> images;
  std::vector<LvisAnnotation> annotations;
  std::vector<LvisCategory> categories;
};

// One entry of an LVIS / COCO results file.
struct LvisDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  BoxXywh bbox;
  double score = 0;
};

// Checks the invariants every reader guarantees: unique image / category / annotation ids,
// annotation ids >= 1, annotations and federated lists referring to known images and
// categories, finite non-negative box sizes and areas. INVALID_ARGUMENT naming the first
// offending element (e.g. "annotations[12].category_id: 7 is not a category") otherwise.
absl::Status ValidateLvisDataset(const LvisDataset& dataset);

// Parses LVIS-format ground truth. Required: images[].{id, neg_category_ids,
// not_exhaustive_category_ids}, annotations[].{id, image_id, category_id, bbox, area},
// categories[].{id, frequency, image_count, instance_count}; optional: image width / height /
// file_name / coco_url, annotation iscrowd / ignore, category name. Malformed JSON, a missing
// or ill-typed field or a failed ValidateLvisDataset check gives INVALID_ARGUMENT naming the
// field or the position in the text.
absl::StatusOr<LvisDataset> ParseLvisDataset(absl::string_view json);
// Reads and parses a file: NOT_FOUND / PERMISSION_DENIED / INTERNAL when it cannot be read,
// otherwise as ParseLvisDataset with the path in the message.
absl::StatusOr<LvisDataset> ReadLvisDataset(const std::string& path);

// Parses a results file: a JSON array of {image_id, category_id, bbox [x,y,w,h], score} (other
// keys are ignored). Every field is required; bbox must hold 4 finite numbers with w, h >= 0;
// score must be finite. Errors are INVALID_ARGUMENT naming the entry and field.
absl::StatusOr<std::vector<LvisDetection>> ParseLvisResults(absl::string_view json);
absl::StatusOr<std::vector<LvisDetection>> ReadLvisResults(const std::string& path);

// Serialises back to LVIS JSON (compact; the fields above only). Round-trips through the
// parsers; used by tests and tools that rewrite datasets.
std::string LvisDatasetToJson(const LvisDataset& dataset);
std::string LvisResultsToJson(const std::vector<LvisDetection>& detections);

// Reads a whole file into memory with errno-based status codes.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace logn

#endif  // LOGN_CLIENT_EVAL_LVIS_DATASET_H_
