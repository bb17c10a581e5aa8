// LVIS / COCO JSON as `logn calibrate --dataset`, `logn eval` and `logn compare` read it.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "client/eval/lvis_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<logn::LvisDataset> dataset = logn::ParseLvisDataset(json);
  if (dataset.ok()) {
    // What parses must validate and survive a round trip.
    if (!logn::ValidateLvisDataset(*dataset).ok()) __builtin_trap();
    if (!logn::ParseLvisDataset(logn::LvisDatasetToJson(*dataset)).ok()) __builtin_trap();
  }
  (void)logn::ParseLvisResults(json);
  return 0;
}
