#ifndef LOGN_SERVER_RUNTIME_SHA256_H_
#define LOGN_SERVER_RUNTIME_SHA256_H_

// A small self-contained SHA-256 (FIPS 180-4), for fingerprinting model files: no OpenSSL needed.

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logn {

// Incremental hasher. Not thread-safe (one per thread / file).
class Sha256 {
 public:
  Sha256();
  void Update(absl::string_view data);
  // Finishes and returns the 32-byte digest; the hasher must not be updated afterwards.
  std::array<uint8_t, 32> Finish();
  // Finish() as 64 lowercase hex characters.
  std::string HexDigest();

 private:
  void Compress(const uint8_t* block);

  uint32_t state_[8];
  uint8_t buffer_[64];
  uint64_t length_ = 0;  // bytes hashed
  size_t buffered_ = 0;
};

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Lowercase hex SHA-256 of a file, streamed. NOT_FOUND if it cannot be opened, DATA_LOSS on a read
// error.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace logn

#endif  // LOGN_SERVER_RUNTIME_SHA256_H_
