#include "client/lib/enum_names.h"

#include <initializer_list>

#include "gtest/gtest.h"

namespace logn {
namespace {

// Each of `values` parses back from its name.
template <typename Enum>
void ExpectRoundTrips(std::initializer_list<Enum> values, Enum unset) {
  for (Enum value : values) {
    Enum parsed = unset;
    ASSERT_TRUE(ParseEnumName(EnumName(value), &parsed)) << EnumName(value);
    EXPECT_EQ(parsed, value);
  }
}

// None of `names` parses, and a failed parse leaves the output alone.
template <typename Enum>
void ExpectRejected(std::initializer_list<const char*> names, Enum before) {
  for (const char* name : names) {
    Enum out = before;
    EXPECT_FALSE(ParseEnumName(name, &out)) << name;
    EXPECT_EQ(out, before) << "left alone on failure";
  }
}

TEST(EnumNamesTest, CalibrationMethodsRoundTripAndUnspecifiedIsTheServersLogN) {
  ExpectRoundTrips(
      {v1::CALIBRATION_METHOD_NONE, v1::CALIBRATION_METHOD_LOGN, v1::CALIBRATION_METHOD_LOGA},
      v1::CALIBRATION_METHOD_UNSPECIFIED);
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_NONE), "none");
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_LOGA), "loga");
  EXPECT_EQ(EnumName(v1::CALIBRATION_METHOD_UNSPECIFIED), "logn");
  EXPECT_EQ(EnumName(static_cast<v1::CalibrationMethod>(99)), "logn");
}

TEST(EnumNamesTest, ParsingIgnoresCaseAndRejectsEverythingElse) {
  v1::CalibrationMethod method = v1::CALIBRATION_METHOD_NONE;
  EXPECT_TRUE(ParseEnumName("LogA", &method));
  EXPECT_EQ(method, v1::CALIBRATION_METHOD_LOGA);
  ExpectRejected({"", "bogus", "unspecified", "log n"}, v1::CALIBRATION_METHOD_LOGA);
  v1::ExportFormat format = v1::EXPORT_FORMAT_UNSPECIFIED;
  EXPECT_TRUE(ParseEnumName("BINARY", &format));
  EXPECT_EQ(format, v1::EXPORT_FORMAT_BINARY);
  EXPECT_TRUE(ParseEnumName("json", &format));
  EXPECT_EQ(format, v1::EXPORT_FORMAT_JSON);
  ExpectRejected({"xml", "unspecified"}, v1::EXPORT_FORMAT_JSON);
  EXPECT_EQ(EnumName(v1::EXPORT_FORMAT_UNSPECIFIED), "json");
  EXPECT_EQ(EnumName(v1::EXPORT_FORMAT_BINARY), "binary");
}

TEST(EnumNamesTest, VersionAndRoiSourcesAccumulationAndHealth) {
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_LOGITS), "logits");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_IMAGES), "images");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_MERGE), "merge");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_IMPORT), "import");
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EnumName(static_cast<v1::VersionSource>(42)), "");
  // Parsed for `logn stats list --source`; "unspecified" is printed but never a filter.
  EXPECT_EQ(EnumName(v1::VERSION_SOURCE_SERVED_TRAFFIC), "served");
  ExpectRoundTrips({v1::VERSION_SOURCE_LOGITS, v1::VERSION_SOURCE_IMAGES, v1::VERSION_SOURCE_MERGE,
                    v1::VERSION_SOURCE_IMPORT, v1::VERSION_SOURCE_SERVED_TRAFFIC},
                   v1::VERSION_SOURCE_UNSPECIFIED);
  v1::VersionSource source = v1::VERSION_SOURCE_MERGE;
  EXPECT_TRUE(ParseEnumName("Logits", &source));
  EXPECT_EQ(source, v1::VERSION_SOURCE_LOGITS);
  EXPECT_TRUE(ParseEnumName("served-traffic", &source));
  EXPECT_EQ(source, v1::VERSION_SOURCE_SERVED_TRAFFIC);
  ExpectRejected({"", "unspecified", "UNSPECIFIED", "shard", "served_traffic"},
                 v1::VERSION_SOURCE_LOGITS);
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_EXACT), "exact");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_PROPOSALS), "proposals");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_CANDIDATES), "candidates");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_DETECTIONS), "detections");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_LOGITS), "logits");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_IMPORTED), "imported");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_MIXED), "mixed");
  EXPECT_EQ(EnumName(v1::ROI_SOURCE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EnumName(static_cast<v1::RoiSource>(42)), "");
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_EMA), "ema");
  EXPECT_EQ(EnumName(v1::ACCUMULATION_METHOD_UNSPECIFIED), "exact");
  EXPECT_EQ(EnumName(ServingStatus::kServing), "SERVING");
  EXPECT_EQ(EnumName(ServingStatus::kNotServing), "NOT_SERVING");
  EXPECT_EQ(EnumName(ServingStatus::kServiceUnknown), "SERVICE_UNKNOWN");
  EXPECT_EQ(EnumName(ServingStatus::kUnknown), "UNKNOWN");
}

TEST(EnumNamesTest, ModelRepositoryAndDriftEnums) {
  EXPECT_EQ(EnumName(v1::MODEL_VERSION_STATE_LOADING), "loading");
  EXPECT_EQ(EnumName(v1::MODEL_VERSION_STATE_AVAILABLE), "available");
  EXPECT_EQ(EnumName(v1::MODEL_VERSION_STATE_UNLOADING), "unloading");
  EXPECT_EQ(EnumName(v1::MODEL_VERSION_STATE_FAILED), "failed");
  EXPECT_EQ(EnumName(v1::MODEL_VERSION_STATE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EnumName(static_cast<v1::ModelVersionState>(42)), "");
  // UNSPECIFIED is what the server does without a model_config.json: refuse.
  EXPECT_EQ(EnumName(v1::MISSING_STATISTICS_ACTION_UNSPECIFIED), "refuse");
  EXPECT_EQ(EnumName(v1::MISSING_STATISTICS_ACTION_REFUSE), "refuse");
  EXPECT_EQ(EnumName(v1::MISSING_STATISTICS_ACTION_FALLBACK), "fallback");
  EXPECT_EQ(EnumName(v1::DRIFT_STATE_DISABLED), "disabled");
  EXPECT_EQ(EnumName(v1::DRIFT_STATE_COLLECTING_REFERENCE), "collecting-reference");
  EXPECT_EQ(EnumName(v1::DRIFT_STATE_MONITORING), "monitoring");
  EXPECT_EQ(EnumName(v1::DRIFT_STATE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EnumName(static_cast<v1::DriftState>(42)), "");
  EXPECT_EQ(EnumName(v1::FREQUENCY_GROUP_RARE), "rare");
  EXPECT_EQ(EnumName(v1::FREQUENCY_GROUP_COMMON), "common");
  EXPECT_EQ(EnumName(v1::FREQUENCY_GROUP_FREQUENT), "frequent");
  EXPECT_EQ(EnumName(v1::FREQUENCY_GROUP_UNSPECIFIED), "unspecified");
}

}  // namespace
}  // namespace logn
