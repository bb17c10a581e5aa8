#include "common/sha256.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace logn {
namespace {

// FIPS 180-4 / NIST CAVP vectors.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::string WriteTempFile(const std::string& name, const std::string& data) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary);
  out << data;
  return path;
}

TEST(Sha256Test, FileHashAndMissingFile) {
  const std::string path = WriteTempFile("sha256_test.bin", "abc");
  EXPECT_EQ(Sha256File(path).value(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::remove(path.c_str());
  EXPECT_EQ(Sha256File(path).status().code(), absl::StatusCode::kNotFound);
}

// Files are hashed in 1 MiB chunks: a file over several chunks hashes as its bytes do.
TEST(Sha256Test, FileOverSeveralChunksEqualsTheBytes) {
  std::string data(3 * (1 << 20) + 5, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 3);
  const std::string path = WriteTempFile("sha256_chunks.bin", data);
  EXPECT_EQ(Sha256File(path).value(), Sha256Hex(data));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace logn
