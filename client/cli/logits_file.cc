#include "client/cli/logits_file.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace logn {
namespace {

absl::Status OpenError(const std::string& path, int err) {
  const std::string message = absl::StrCat("cannot open '", path, "': ", std::strerror(err));
  if (err == EACCES) return absl::PermissionDeniedError(message);
  if (err == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

// The value of `key` in a .npy header dict such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
absl::StatusOr<std::string> HeaderValue(absl::string_view header, absl::string_view key,
                                        const std::string& path) {
  const std::string quoted = absl::StrCat("'", key, "'");
  const size_t at = header.find(quoted);
  if (at == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header has no ", quoted));
  }
  absl::string_view rest = header.substr(at + quoted.size());
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!absl::ConsumePrefix(&rest, ":")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed .npy header at ", quoted));
  }
  rest = absl::StripLeadingAsciiWhitespace(rest);
  size_t end;
  if (absl::StartsWith(rest, "(")) {
    end = rest.find(')');
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unterminated shape in .npy header"));
    }
    ++end;
  } else {
    end = rest.find(',');
    if (end == absl::string_view::npos) end = rest.find('}');
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": malformed .npy header at ", quoted));
    }
  }
  return std::string(absl::StripAsciiWhitespace(rest.substr(0, end)));
}

// The header dict of a .npy file whose magic, version and header length are read from `in`.
absl::StatusOr<std::string> ReadNpyHeader(std::istream& in, const std::string& path) {
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file (bad magic)"));
  }
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported .npy version ", major));
  }
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4, little-endian.
  unsigned char len[4] = {0, 0, 0, 0};
  const std::string truncated = absl::StrCat(path, ": truncated .npy header");
  if (!in.read(reinterpret_cast<char*>(len), major == 1 ? 2 : 4)) {
    return absl::InvalidArgumentError(truncated);
  }
  const uint32_t header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (uint32_t{len[3]} << 24);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return absl::InvalidArgumentError(truncated);
  return header;
}

struct NpyShape {
  int64_t rows = 0;
  int32_t width = 0;
};

// The shape of a little-endian float32, C-order, 2-D array from its header dict.
absl::StatusOr<NpyShape> ParseNpyHeader(absl::string_view header, const std::string& path) {
  auto descr = HeaderValue(header, "descr", path);
  if (!descr.ok()) return descr.status();
  if (*descr != "'<f4'" && *descr != "'f4'") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": dtype ", *descr,
                     " is not float32 little-endian ('<f4'); convert with "
                     "array.astype(numpy.float32)"));
  }
  auto fortran = HeaderValue(header, "fortran_order", path);
  if (!fortran.ok()) return fortran.status();
  if (*fortran != "False") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Fortran-order array; save numpy.ascontiguousarray(x)"));
  }
  auto shape = HeaderValue(header, "shape", path);
  if (!shape.ok()) return shape.status();
  absl::string_view dims = *shape;
  absl::ConsumePrefix(&dims, "(");
  absl::ConsumeSuffix(&dims, ")");
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    int64_t v;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad .npy shape ", *shape));
    }
    values.push_back(v);
  }
  if (values.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": .npy shape ", *shape, " is not 2-D (rows, width)"));
  }
  if (values[1] <= 0 || values[1] > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad width ", values[1]));
  }
  return NpyShape{values[0], static_cast<int32_t>(values[1])};
}

}  // namespace

bool IsNpyPath(const std::string& path) {
  return absl::EndsWith(absl::AsciiStrToLower(path), ".npy");
}

absl::StatusOr<std::unique_ptr<LogitsReader>> LogitsReader::Open(const std::string& path,
                                                                 int32_t width) {
  std::unique_ptr<LogitsReader> reader(new LogitsReader());
  reader->path_ = path;
  reader->in_.open(path, std::ios::binary);
  if (!reader->in_) return OpenError(path, errno);
  reader->in_.seekg(0, std::ios::end);
  const int64_t file_size = reader->in_.tellg();
  reader->in_.seekg(0);

  if (IsNpyPath(path)) {
    absl::StatusOr<std::string> header = ReadNpyHeader(reader->in_, path);
    if (!header.ok()) return header.status();
    const int64_t data_bytes = file_size - reader->in_.tellg();
    absl::StatusOr<NpyShape> shape = ParseNpyHeader(*header, path);
    if (!shape.ok()) return shape.status();
    reader->rows_ = shape->rows;
    reader->width_ = shape->width;
    if (data_bytes < reader->rows_ * reader->width_ * 4) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", data_bytes,
                                                     " data bytes, the shape needs ",
                                                     reader->rows_ * reader->width_ * 4));
    }
    return reader;
  }

  if (width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": raw float32 logits need --width (columns per row)"));
  }
  if (file_size % (int64_t{4} * width) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", file_size,
                                                   " bytes is not a whole number of rows of ",
                                                   width, " float32 values"));
  }
  reader->width_ = width;
  reader->rows_ = file_size / (int64_t{4} * width);
  return reader;
}

absl::StatusOr<int64_t> LogitsReader::Read(int64_t max_rows, std::vector<float>* out) {
  const int64_t n = std::min(max_rows, rows_ - rows_read_);
  out->resize(static_cast<size_t>(n) * width_);
  if (n == 0) return 0;
  if (!in_.read(reinterpret_cast<char*>(out->data()), n * width_ * 4)) {
    return absl::DataLossError(absl::StrCat(path_, ": file ended at row ", rows_read_));
  }
  rows_read_ += n;
  return n;
}

absl::Status LogitsReader::Skip(int64_t rows) {
  if (rows < 0 || rows > rows_ - rows_read_) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": cannot skip ", rows, " rows at row ",
                                                   rows_read_, " of ", rows_));
  }
  in_.seekg(rows * width_ * 4, std::ios::cur);
  if (!in_) return absl::DataLossError(absl::StrCat(path_, ": cannot seek past row ", rows_read_));
  rows_read_ += rows;
  return absl::OkStatus();
}

absl::Status WriteLogitsFile(const std::string& path, const float* values, int64_t rows,
                             int32_t width) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return OpenError(path, errno);
  if (IsNpyPath(path)) {
    std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", rows,
                                      ", ", width, "), }");
    // Version 1.0: magic + 2-byte length, total header a multiple of 64, ending in '\n'.
    const size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header.push_back('\n');
    out.write("\x93NUMPY\x01\x00", 8);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(len), 2);
    out << header;
  }
  out.write(reinterpret_cast<const char*>(values), rows * width * 4);
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

}  // namespace logn
