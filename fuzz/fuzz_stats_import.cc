// ImportVersion's content: an exported version (JSON or binary) or a bare statistics JSON such
// as tools/import_mmdet_logn.py writes.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "calibration/statistics_codec.h"
#include "store/stats_export.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view content(reinterpret_cast<const char*>(data), size);
  const logn::ModelKey model{"fuzz", std::string(64, 'a')};
  absl::StatusOr<logn::NewVersion> imported = logn::ParseImport(content, model);
  if (imported.ok() && !imported->statistics.Validate().ok()) __builtin_trap();
  (void)logn::VersionFromJson(content);
  (void)logn::VersionFromBinary(content);
  absl::StatusOr<logn::Statistics> stats = logn::StatisticsFromJson(content);
  if (stats.ok()) {
    // Statistics that decode must validate and round-trip through both encodings.
    if (!stats->Validate().ok()) __builtin_trap();
    if (!logn::StatisticsFromBinary(logn::StatisticsToBinary(*stats)).ok()) __builtin_trap();
    if (!logn::StatisticsFromJson(logn::StatisticsToJson(*stats)).ok()) __builtin_trap();
  }
  return 0;
}
