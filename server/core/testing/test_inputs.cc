#include "server/core/testing/test_inputs.h"

#include <cstdlib>

#include "server/runtime/image.h"

namespace logn {
namespace core_testing {

std::string ContractModelPath(const std::string& name) {
  const char* dir = std::getenv("LOGN_TEST_MODEL_DIR");
  return std::string(dir ? dir : "server/runtime/testdata") + "/contract/" + name + ".pt";
}

std::string SyntheticPng(int height, int width, uint8_t seed) {
  Image image;
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * width * 3);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = static_cast<uint8_t>((i * 7 + seed * 31) % 251);
  }
  return EncodePng(image).value();
}

}  // namespace core_testing
}  // namespace logn
