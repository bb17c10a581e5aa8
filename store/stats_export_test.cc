#include "store/stats_export.h"

#include "absl/strings/str_replace.h"
#include "calibration/statistics_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "logn/v1/store.pb.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

using ::testing::HasSubstr;
using store_testing::RandomStatistics;
using store_testing::UniqueModel;

class StatsExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<StatsStore>> s =
        OpenStatsStore(store_testing::FreshSqliteUrl("export-test"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    model_ = UniqueModel("export");
    NewVersion parent{model_, RandomStatistics(4, 1)};
    parent.sampling = store_testing::ProposalSampling(30, 512, 0.08, 0.001);
    ASSERT_TRUE(store_->Put(parent).ok());
    NewVersion v{model_, RandomStatistics(4, 2)};
    v.statistics.method = AccumulationMethod::kEma;
    v.statistics.momentum = 0.1;
    v.job_id = "job-42";
    v.description = "merged \"quoted\" description";
    v.source = VersionSource::kMerge;
    v.parent_versions = {1};
    absl::StatusOr<VersionRecord> r = store_->Put(v);
    ASSERT_TRUE(r.ok()) << r.status();
    record_ = *r;
    ASSERT_EQ(record_.info.sampling, parent.sampling);  // a merge of one parent
  }

  static void ExpectSame(const VersionRecord& a, const VersionRecord& b) {
    EXPECT_EQ(a.info.model, b.info.model);
    EXPECT_EQ(a.info.version, b.info.version);
    EXPECT_EQ(a.info.created_at, b.info.created_at);
    EXPECT_EQ(a.info.job_id, b.info.job_id);
    EXPECT_EQ(a.info.description, b.info.description);
    EXPECT_EQ(a.info.source, b.info.source);
    EXPECT_EQ(a.info.rows_seen, b.info.rows_seen);
    EXPECT_EQ(a.info.images_seen, b.info.images_seen);
    EXPECT_EQ(a.info.method, b.info.method);
    EXPECT_EQ(a.info.momentum, b.info.momentum);
    EXPECT_EQ(a.info.parent_versions, b.info.parent_versions);
    EXPECT_EQ(a.info.payload_sha256, b.info.payload_sha256);
    EXPECT_EQ(a.info.partial, b.info.partial);
    EXPECT_EQ(a.info.sampling, b.info.sampling);
    EXPECT_EQ(a.info.calibration_profile, b.info.calibration_profile);
    EXPECT_EQ(a.statistics.mean, b.statistics.mean);
    EXPECT_EQ(a.statistics.variance, b.statistics.variance);
    EXPECT_EQ(StatisticsToBinary(a.statistics), StatisticsToBinary(b.statistics));
  }

  std::unique_ptr<StatsStore> store_;
  ModelKey model_;
  VersionRecord record_;
};

TEST_F(StatsExportTest, JsonRoundTripsExactly) {
  const std::string json = VersionToJson(record_);
  EXPECT_THAT(json, HasSubstr("\"format\": \"logn.statistics_version.v1\""));
  EXPECT_THAT(json, HasSubstr("\"source\": \"VERSION_SOURCE_MERGE\""));
  EXPECT_THAT(json, HasSubstr("\"payload_sha256\": \"" + record_.info.payload_sha256 + "\""));
  EXPECT_THAT(json, HasSubstr("\"roi_source\": \"ROI_SOURCE_PROPOSALS\""));
  EXPECT_THAT(json, HasSubstr("\"rfs_threshold\": 0.001"));
  absl::StatusOr<VersionRecord> back = VersionFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(*back, record_);
}

TEST_F(StatsExportTest, FilesCarryNoAliasesAndImportIgnoresThem) {
  EXPECT_THAT(VersionToJson(record_), HasSubstr("\"aliases\": []"));
  // A full-view GetVersion response (aliases set) is itself a valid export.
  v1::StatisticsVersion with_aliases;
  ASSERT_TRUE(with_aliases.ParseFromString(VersionToBinary(record_)));
  with_aliases.add_aliases("active");
  absl::StatusOr<VersionRecord> back = VersionFromBinary(with_aliases.SerializeAsString());
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(*back, record_);
}

TEST_F(StatsExportTest, AnExportWithoutAValidSourceIsRefused) {
  v1::StatisticsVersion proto;
  ASSERT_TRUE(proto.ParseFromString(VersionToBinary(record_)));
  proto.set_source(v1::VERSION_SOURCE_UNSPECIFIED);
  const absl::Status s = VersionFromBinary(proto.SerializeAsString()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("export has no valid source (got 0)"));
}

TEST_F(StatsExportTest, BinaryRoundTripsExactly) {
  absl::StatusOr<VersionRecord> back = VersionFromBinary(VersionToBinary(record_));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(*back, record_);
  EXPECT_EQ(VersionFromBinary("\xff\xff garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StatsExportTest, EditedFileIsDataLoss) {
  VersionRecord edited = record_;
  edited.statistics.mean[0] += 1.0;
  absl::Status s = VersionFromJson(VersionToJson(edited)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("checksum"));
}

TEST_F(StatsExportTest, WrongFormatOrMalformedJsonIsInvalidArgument) {
  std::string json = absl::StrReplaceAll(VersionToJson(record_),
                                         {{"logn.statistics_version.v1", "something.else"}});
  absl::Status s = VersionFromJson(json).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("something.else"));
  EXPECT_EQ(VersionFromJson("{not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseImportJson("[]", model_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StatsExportTest, ImportIntoAnotherStoreKeepsTheSnapshot) {
  absl::StatusOr<std::unique_ptr<StatsStore>> other =
      OpenStatsStore(store_testing::FreshSqliteUrl("import-test"));
  ASSERT_TRUE(other.ok());
  absl::StatusOr<NewVersion> v = ParseImportJson(VersionToJson(record_), model_);
  ASSERT_TRUE(v.ok()) << v.status();
  absl::StatusOr<VersionRecord> imported = (*other)->Put(*v);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->info.version, 1);
  EXPECT_EQ(imported->info.source, VersionSource::kImport);
  EXPECT_TRUE(imported->info.parent_versions.empty());
  EXPECT_EQ(imported->info.payload_sha256, record_.info.payload_sha256);
  EXPECT_EQ(imported->info.job_id, "job-42");
  // How the rows were sampled does not change by moving them: the file's record is kept.
  EXPECT_EQ(imported->info.sampling, record_.info.sampling);

  // Statistics exported for one model cannot be imported for another.
  absl::StatusOr<NewVersion> wrong = ParseImportJson(VersionToJson(record_), UniqueModel("x"));
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ((*other)->Put(*wrong).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(StatsExportTest, ParseImportDetectsTheForm) {
  absl::StatusOr<NewVersion> from_json = ParseImport("\n  " + VersionToJson(record_), model_);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  absl::StatusOr<NewVersion> from_binary = ParseImport(VersionToBinary(record_), model_);
  ASSERT_TRUE(from_binary.ok()) << from_binary.status();
  EXPECT_EQ(from_json->statistics.mean, record_.statistics.mean);
  EXPECT_EQ(from_binary->statistics.mean, record_.statistics.mean);
  EXPECT_EQ(from_binary->source, VersionSource::kImport);
  EXPECT_EQ(ParseImport("", model_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StatsExportTest, ServedTrafficStaysServedTrafficThroughImport) {
  VersionRecord served = record_;
  served.info.source = VersionSource::kServedTraffic;
  for (const std::string& file : {VersionToJson(served), VersionToBinary(served)}) {
    absl::StatusOr<NewVersion> v = ParseImport(file, model_);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->source, VersionSource::kServedTraffic);
  }
}

TEST_F(StatsExportTest, ImportsABareStatisticsJson) {
  Statistics stats = RandomStatistics(4, 9);
  stats.provenance.description = "from a checkpoint";
  absl::StatusOr<NewVersion> v = ParseImportJson(StatisticsToJson(stats), model_);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->source, VersionSource::kImport);
  EXPECT_EQ(v->description, "from a checkpoint");
  EXPECT_EQ(v->sampling, std::nullopt);
  absl::StatusOr<VersionRecord> r = store_->Put(*v);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->statistics.mean, stats.mean);
  // A checkpoint's statistics: how their rows were obtained is unknown, only that they were
  // imported.
  ASSERT_TRUE(r->info.sampling.has_value());
  EXPECT_EQ(r->info.sampling->roi_source, RoiSource::kImported);
  EXPECT_EQ(r->info.sampling->rois, 0);
}

TEST_F(StatsExportTest, FilesWithoutARecordImportAsImported) {
  // A file exported before versions recorded their sampling.
  v1::StatisticsVersion old;
  ASSERT_TRUE(old.ParseFromString(VersionToBinary(record_)));
  old.clear_sampling();
  absl::StatusOr<VersionRecord> read = VersionFromBinary(old.SerializeAsString());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->info.sampling, std::nullopt);
  absl::StatusOr<NewVersion> v = ParseImport(old.SerializeAsString(), model_);
  ASSERT_TRUE(v.ok()) << v.status();
  absl::StatusOr<VersionRecord> r = store_->Put(*v);
  ASSERT_TRUE(r.ok()) << r.status();
  RoiSamplingRecord imported;
  imported.roi_source = RoiSource::kImported;
  EXPECT_EQ(r->info.sampling, imported);

  // A record that names no source keeps its counts and is marked imported.
  v1::StatisticsVersion unnamed;
  ASSERT_TRUE(unnamed.ParseFromString(VersionToBinary(record_)));
  unnamed.mutable_sampling()->set_roi_source(v1::ROI_SOURCE_UNSPECIFIED);
  v = ParseImport(unnamed.SerializeAsString(), model_);
  ASSERT_TRUE(v.ok()) << v.status();
  RoiSamplingRecord expected = *record_.info.sampling;
  expected.roi_source = RoiSource::kImported;
  EXPECT_EQ(v->sampling, expected);
  EXPECT_TRUE(store_->Put(*v).ok());

  // A source this build does not know (a newer writer's) is refused, not guessed.
  unnamed.mutable_sampling()->set_roi_source(static_cast<v1::RoiSource>(77));
  const absl::Status s = ParseImport(unnamed.SerializeAsString(), model_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("sampling"));
}

// The calibration profile chosen for a version goes with its statistics: exported in both
// forms, imported with the same content and set at the import.
TEST_F(StatsExportTest, CalibrationProfileRoundTripsThroughExportAndImport) {
  EXPECT_THAT(VersionToJson(record_), ::testing::Not(HasSubstr("calibration_profile")));
  const std::string profile = store_testing::TestProfile("logn tune --objective apr", 0.75);
  ASSERT_TRUE(store_->SetCalibrationProfile(model_, VersionSelector::Number(2), profile).ok());
  absl::StatusOr<VersionRecord> with_profile = store_->Get(model_, VersionSelector::Number(2));
  ASSERT_TRUE(with_profile.ok()) << with_profile.status();
  ASSERT_TRUE(with_profile->info.calibration_profile.has_value());
  const absl::Time set_at = with_profile->info.calibration_profile->set_at;

  const std::string json = VersionToJson(*with_profile);
  EXPECT_THAT(json, HasSubstr("\"calibration_profile\": {"));
  EXPECT_THAT(json, HasSubstr("\"description\": \"logn tune --objective apr\""));
  EXPECT_THAT(json, HasSubstr("\"mean_weight\": 0.75"));
  EXPECT_THAT(json, HasSubstr("\"set_at\": \""));
  absl::StatusOr<VersionRecord> from_json = VersionFromJson(json);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  ExpectSame(*from_json, *with_profile);
  absl::StatusOr<VersionRecord> from_binary = VersionFromBinary(VersionToBinary(*with_profile));
  ASSERT_TRUE(from_binary.ok()) << from_binary.status();
  ExpectSame(*from_binary, *with_profile);

  absl::StatusOr<std::unique_ptr<StatsStore>> other =
      OpenStatsStore(store_testing::FreshSqliteUrl("import-profile-test"));
  ASSERT_TRUE(other.ok()) << other.status();
  for (const std::string& file : {json, VersionToBinary(*with_profile)}) {
    absl::StatusOr<NewVersion> v = ParseImport(file, model_);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->calibration_profile, profile);
    const absl::Time before = absl::Now() - absl::Milliseconds(1);
    absl::StatusOr<VersionRecord> imported = (*other)->Put(*v);
    ASSERT_TRUE(imported.ok()) << imported.status();
    absl::StatusOr<VersionRecord> got =
        (*other)->Get(model_, VersionSelector::Number(imported->info.version));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->info.calibration_profile.has_value());
    EXPECT_EQ(got->info.calibration_profile->profile, profile) << "the same profile";
    EXPECT_GE(got->info.calibration_profile->set_at, before) << "set by the import";
    EXPECT_NE(got->info.calibration_profile->set_at, set_at);
  }
  // A file without one (exported before profiles, or from a version without) imports none.
  absl::StatusOr<NewVersion> none = ParseImport(VersionToBinary(record_), model_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->calibration_profile, std::nullopt);
}

}  // namespace
}  // namespace logn
