#include "client/cli/logits_file.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(LogitsFileTest, NpyRoundTripsInBlocks) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6, 7, 8.5f, -9, 10, 11, 12};
  const std::string path = TempPath("round_trip.npy");
  ASSERT_TRUE(WriteLogitsFile(path, values.data(), 4, 3).ok());
  auto reader = LogitsReader::Open(path, /*width=*/0);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->rows(), 4);
  EXPECT_EQ((*reader)->width(), 3);
  std::vector<float> block, all;
  while (true) {
    auto n = (*reader)->Read(3, &block);
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
    all.insert(all.end(), block.begin(), block.end());
  }
  EXPECT_EQ(all, values);
  // Header padded to a multiple of 64 as NumPy requires.
  EXPECT_EQ((std::filesystem::file_size(path) - values.size() * 4) % 64, 0u);
}

TEST(LogitsFileTest, SkipMovesPastRowsWithoutReadingThem) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::string path = TempPath("skip.npy");
  ASSERT_TRUE(WriteLogitsFile(path, values.data(), 4, 2).ok());
  auto reader = LogitsReader::Open(path, 0);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE((*reader)->Skip(1).ok());
  std::vector<float> block;
  ASSERT_EQ(*(*reader)->Read(1, &block), 1);
  EXPECT_EQ(block, (std::vector<float>{3, 4}));
  ASSERT_TRUE((*reader)->Skip(1).ok());
  EXPECT_EQ((*reader)->rows_read(), 3);
  absl::Status past = (*reader)->Skip(2);
  EXPECT_EQ(past.code(), absl::StatusCode::kInvalidArgument) << past;
  ASSERT_EQ(*(*reader)->Read(5, &block), 1);
  EXPECT_EQ(block, (std::vector<float>{7, 8}));
}

TEST(LogitsFileTest, RawNeedsAWidthThatDividesTheFile) {
  const std::vector<float> values(10, 0.5f);
  const std::string path = TempPath("raw.f32");
  ASSERT_TRUE(WriteLogitsFile(path, values.data(), 2, 5).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 40u);
  auto no_width = LogitsReader::Open(path, 0);
  EXPECT_EQ(no_width.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_width.status().message(), HasSubstr("--width"));
  auto bad_width = LogitsReader::Open(path, 3);
  EXPECT_EQ(bad_width.status().code(), absl::StatusCode::kInvalidArgument);
  auto ok = LogitsReader::Open(path, 5);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)->rows(), 2);
}

TEST(LogitsFileTest, RejectsNonFloat32AndNon2dNpy) {
  auto npy = [](const std::string& header) {
    std::string h = header;
    while ((10 + h.size() + 1) % 64 != 0) h.push_back(' ');
    h.push_back('\n');
    return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(h.size()) + '\0' + h;
  };
  const struct {
    const char* name;
    std::string header;
    size_t data_bytes;
    const char* error;  // in the INVALID_ARGUMENT message
  } kCases[] = {
      {"f64.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", 16, "float32"},
      {"1d.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24, "2-D"},
      {"f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran"},
      {"short.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
       "the shape needs 24"},
  };
  for (const auto& c : kCases) {
    const std::string path = TempPath(c.name);
    WriteBytes(path, npy(c.header) + std::string(c.data_bytes, '\0'));
    const absl::Status status = LogitsReader::Open(path, 0).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(status.message(), HasSubstr(c.error)) << c.name;
  }
  EXPECT_EQ(LogitsReader::Open(TempPath("missing.npy"), 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LogitsFileTest, NpyHeaderVersions) {
  // Version 2.0 (and 3.0) store the header length in 4 bytes instead of 2.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  while ((12 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  std::string v2 = std::string("\x93NUMPY\x02\x00", 8) + static_cast<char>(header.size()) +
                   std::string(3, '\0') + header;
  v2.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  const std::string path = TempPath("v2.npy");
  WriteBytes(path, v2);
  auto reader = LogitsReader::Open(path, 0);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->rows(), 2);
  EXPECT_EQ((*reader)->width(), 3);
  std::vector<float> read;
  ASSERT_TRUE((*reader)->Read(2, &read).ok());
  EXPECT_EQ(read, values);

  const struct {
    const char* name;
    std::string bytes;
    const char* error;
  } kCases[] = {
      {"magic.npy", "NOT A NUMPY FILE", "not a .npy file (bad magic)"},
      {"v9.npy", std::string("\x93NUMPY\x09\x00\x10\x00", 10), "unsupported .npy version 9"},
      {"cut.npy", std::string("\x93NUMPY\x01\x00\x40\x00{'descr'", 17), "truncated .npy header"},
  };
  for (const auto& c : kCases) {
    const std::string bad = TempPath(c.name);
    WriteBytes(bad, c.bytes);
    const absl::Status status = LogitsReader::Open(bad, 0).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(status.message(), HasSubstr(c.error)) << c.name;
  }
}

}  // namespace
}  // namespace logn
