#ifndef LOGN_COMMON_SHA256_H_
#define LOGN_COMMON_SHA256_H_

// SHA-256 for the whole project (model fingerprints, statistics payload checksums), over
// OpenSSL's EVP interface: one implementation in every binary.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logn {

// Lowercase hex (64 characters) SHA-256 of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

// Lowercase hex SHA-256 of a file's contents, read in 1 MiB chunks (model files are large).
// NOT_FOUND if it cannot be opened, DATA_LOSS on a read error, INTERNAL if OpenSSL fails.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace logn

#endif  // LOGN_COMMON_SHA256_H_
