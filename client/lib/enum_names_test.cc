#include "client/lib/enum_names.h"

#include "gtest/gtest.h"

namespace logn {
namespace {

TEST(EnumNamesTest, CalibrationMethodsRoundTripAndUnspecifiedIsTheServersLogN) {
  for (v1::CalibrationMethod m :
       {v1::CALIBRATION_METHOD_NONE, v1::CALIBRATION_METHOD_LOGN, v1::CALIBRATION_METHOD_LOGA}) {
    v1::CalibrationMethod parsed = v1::CALIBRATION_METHOD_UNSPECIFIED;
    ASSERT_TRUE(ParseEnumName(EnumName(m), &parsed)) << EnumName(m);
    EXPECT_EQ(parsed, m);
  }
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_NONE), "none");
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_LOGA), "loga");
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_UNSPECIFIED), "logn");
  EXPECT_EQ(EnumName(static_cast<v1::CalibrationMethod>(99)), "logn");
}

TEST(EnumNamesTest, ParsingIgnoresCaseAndRejectsEverythingElse) {
  v1::CalibrationMethod method = v1::CALIBRATION_METHOD_NONE;
  EXPECT_TRUE(ParseEnumName("LogA", &method));
  EXPECT_EQ(method, v1::CALIBRATION_METHOD_LOGA);
  for (const char* bad : {"", "bogus", "unspecified", "log n"}) {
    EXPECT_FALSE(ParseEnumName(bad, &method)) << bad;
    EXPECT_EQ(method, v1::CALIBRATION_METHOD_LOGA) << "left alone on failure";
  }
  v1::ExportFormat format = v1::EXPORT_FORMAT_UNSPECIFIED;
  EXPECT_TRUE(ParseEnumName("BINARY", &format));
  EXPECT_EQ(format, v1::EXPORT_FORMAT_BINARY);
  EXPECT_TRUE(ParseEnumName("json", &format));
  EXPECT_EQ(format, v1::EXPORT_FORMAT_JSON);
  EXPECT_FALSE(ParseEnumName("xml", &format));
  EXPECT_EQ(EnumName(v1::EXPORT_FORMAT_UNSPECIFIED), "json");
  EXPECT_EQ(EnumName(v1::EXPORT_FORMAT_BINARY), "binary");
}

TEST(EnumNamesTest, VersionSourcesAccumulationAndHealth) {
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_LOGITS), "logits");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_IMAGES), "images");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_MERGE), "merge");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_IMPORT), "import");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EnumName(static_cast<v1::VersionSource>(42)), "");
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_EXACT), "exact");
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_EMA), "ema");
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_UNSPECIFIED), "exact");
  EXPECT_EQ(EnumName(ServingStatus::kServing), "SERVING");
  EXPECT_EQ(EnumName(ServingStatus::kNotServing), "NOT_SERVING");
  EXPECT_EQ(EnumName(ServingStatus::kServiceUnknown), "SERVICE_UNKNOWN");
  EXPECT_EQ(EnumName(ServingStatus::kUnknown), "UNKNOWN");
}

}  // namespace
}  // namespace logn
