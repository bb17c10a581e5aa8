#include "store/store_internal.h"

#include <string>
#include <vector>

#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace store_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using store_testing::RandomStatistics;
using store_testing::UniqueModel;

NewVersion Valid() {
  NewVersion v;
  v.model = UniqueModel("internal");
  v.statistics = RandomStatistics(4, 7);
  v.job_id = "job";
  v.description = "d";
  return v;
}

TEST(PrepareVersionTest, StampsTheModelAndComputesTheChecksum) {
  NewVersion v = Valid();
  v.parent_versions = {3, 1, 3};
  v.source = VersionSource::kMerge;
  v.partial = true;
  v.created_at = absl::FromUnixNanos(1'750'000'000'123'456'789);
  absl::StatusOr<PreparedVersion> p = PrepareVersion(v, absl::Now());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->info.model, v.model);
  EXPECT_EQ(p->info.created_at, absl::FromUnixMicros(1'750'000'000'123'456));  // µs precision
  EXPECT_THAT(p->info.parent_versions, ElementsAre(1, 3));
  EXPECT_EQ(p->info.rows_seen, v.statistics.count);
  EXPECT_EQ(p->info.images_seen, v.statistics.provenance.images_seen);
  EXPECT_TRUE(p->info.partial);
  EXPECT_EQ(p->info.payload_sha256, Sha256Hex(p->payload));
  EXPECT_EQ(p->layout, v.statistics.layout);
  absl::StatusOr<Statistics> back = StatisticsFromBinary(p->payload);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->provenance.model_name, v.model.name);
  EXPECT_EQ(back->provenance.model_sha256, v.model.sha256);
}

TEST(PrepareVersionTest, UsesNowWhenCreatedAtIsUnset) {
  const absl::Time now = absl::FromUnixMicros(1'700'000'000'000'001);
  absl::StatusOr<PreparedVersion> p = PrepareVersion(Valid(), now);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->info.created_at, now);
}

TEST(PrepareVersionTest, RefusesWhatThePutContractRefuses) {
  auto code = [](const NewVersion& v) { return PrepareVersion(v, absl::Now()).status().code(); };
  NewVersion v = Valid();
  v.model.sha256 = "abc";
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.statistics.variance.pop_back();
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.statistics.provenance.model_sha256 = std::string(64, 'b');
  EXPECT_EQ(code(v), absl::StatusCode::kFailedPrecondition);
  v = Valid();
  v.statistics.provenance.model_name = "another";
  EXPECT_EQ(code(v), absl::StatusCode::kFailedPrecondition);
  v = Valid();
  v.job_id = std::string(257, 'j');
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.description = std::string(64 * 1024 + 1, 'd');
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.parent_versions.assign(4097, 1);
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.parent_versions = {2, 0};
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.source = VersionSource::kMerge;
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
  v = Valid();
  v.created_at = absl::InfiniteFuture();
  EXPECT_EQ(code(v), absl::StatusCode::kInvalidArgument);
}

TEST(DecodePayloadTest, VerifiesTheChecksum) {
  absl::StatusOr<PreparedVersion> p = PrepareVersion(Valid(), absl::Now());
  ASSERT_TRUE(p.ok());
  const ModelKey& model = p->info.model;
  absl::StatusOr<Statistics> ok = DecodePayload(model, 3, p->payload, p->info.payload_sha256);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->mean, Valid().statistics.mean);

  std::string damaged = p->payload;
  damaged.back() ^= 1;
  absl::Status s = DecodePayload(model, 3, damaged, p->info.payload_sha256).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("version 3 of"));
  EXPECT_THAT(s.message(), HasSubstr("corrupt"));

  // A checksum that matches bytes that are no snapshot.
  s = DecodePayload(model, 3, "\xff\xff", Sha256Hex("\xff\xff")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("does not decode"));
}

TEST(VersionRowTest, RoundTripsAndReportsCorruptColumns) {
  absl::StatusOr<PreparedVersion> p = PrepareVersion(Valid(), absl::Now());
  ASSERT_TRUE(p.ok());
  VersionInfo info = p->info;
  info.version = 5;
  info.parent_versions = {1, 4};
  info.method = AccumulationMethod::kEma;
  info.momentum = 0.25;
  const VersionRow row = EncodeVersionRow(info, p->payload);
  EXPECT_EQ(row.parents, "1,4");
  EXPECT_EQ(row.payload, p->payload);
  absl::StatusOr<VersionInfo> back = DecodeVersionRow(info.model, row);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 5);
  EXPECT_EQ(back->created_at, info.created_at);
  EXPECT_EQ(back->job_id, info.job_id);
  EXPECT_EQ(back->source, info.source);
  EXPECT_EQ(back->method, AccumulationMethod::kEma);
  EXPECT_EQ(back->momentum, 0.25);
  EXPECT_THAT(back->parent_versions, ElementsAre(1, 4));
  EXPECT_EQ(back->payload_sha256, info.payload_sha256);
  EXPECT_FALSE(row.sampling.has_value());
  EXPECT_EQ(back->sampling, std::nullopt);

  info.sampling = store_testing::ProposalSampling(12, 512, 0.08, 0.001);
  info.sampling->positive_iou = 0.7f;  // not exactly a double: stored as one, read back exactly
  const VersionRow sampled = EncodeVersionRow(info, p->payload);
  ASSERT_TRUE(sampled.sampling.has_value());
  EXPECT_EQ(sampled.sampling->roi_source, "proposals");
  EXPECT_EQ(sampled.sampling->rois, 12 * 512);
  back = DecodeVersionRow(info.model, sampled);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sampling, info.sampling);

  for (auto damage : {+[](VersionRow& r) { r.source = "gossip"; },
                      +[](VersionRow& r) { r.method = "guess"; },
                      +[](VersionRow& r) { r.parents = "1,x"; },
                      +[](VersionRow& r) { r.sampling->roi_source = "hearsay"; },
                      +[](VersionRow& r) { r.sampling->roi_source = "unspecified"; },
                      +[](VersionRow& r) { r.sampling->positive_rois = -1; }}) {
    VersionRow bad = sampled;
    damage(bad);
    absl::Status s = DecodeVersionRow(info.model, bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
}

TEST(CheckpointTest, PreparesRowsAndDecodesThem) {
  JobCheckpoint cp;
  cp.model = UniqueModel("cp");
  cp.job_id = "shard-2";
  cp.batches = 8;
  cp.images_seen = 64;
  cp.source = VersionSource::kImages;
  cp.statistics = RandomStatistics(3, 9);
  const absl::Time now = absl::FromUnixMicros(1'700'000'000'000'000);
  absl::StatusOr<PreparedCheckpoint> p = PrepareCheckpoint(cp, now);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->row.job_id, "shard-2");
  EXPECT_EQ(p->row.source, "images");
  EXPECT_EQ(p->row.updated_at_us, ToMicros(now));
  EXPECT_EQ(p->row.payload_sha256, Sha256Hex(p->row.payload));
  EXPECT_EQ(p->layout, cp.statistics.layout);

  absl::StatusOr<JobCheckpoint> back = DecodeCheckpointRow(cp.model, p->row);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->batches, 8);
  EXPECT_EQ(back->images_seen, 64);
  EXPECT_EQ(back->source, VersionSource::kImages);
  EXPECT_EQ(back->updated_at, now);
  EXPECT_EQ(back->statistics.mean, cp.statistics.mean);
  EXPECT_EQ(back->sampling, std::nullopt);
  cp.sampling = store_testing::ProposalSampling(64);
  absl::StatusOr<PreparedCheckpoint> sampled = PrepareCheckpoint(cp, now);
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  ASSERT_TRUE(sampled->row.sampling.has_value());
  back = DecodeCheckpointRow(cp.model, sampled->row);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sampling, cp.sampling);
  cp.sampling.reset();

  CheckpointRow bad = p->row;
  bad.source = "rumour";
  EXPECT_EQ(DecodeCheckpointRow(cp.model, bad).status().code(), absl::StatusCode::kDataLoss);
  bad = p->row;
  bad.payload += "x";
  absl::Status s = DecodeCheckpointRow(cp.model, bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("checkpoint of job 'shard-2'"));

  cp.job_id = "";
  EXPECT_EQ(PrepareCheckpoint(cp, now).status().code(), absl::StatusCode::kInvalidArgument);
  cp.job_id = "j";
  cp.batches = 0;
  EXPECT_EQ(PrepareCheckpoint(cp, now).status().code(), absl::StatusCode::kInvalidArgument);
  cp.batches = 1;
  cp.statistics.provenance.model_name = "other";
  EXPECT_EQ(PrepareCheckpoint(cp, now).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PrepareVersionTest, DecidesTheSamplingRecordOfImportsAndMerges) {
  NewVersion v = Valid();
  v.source = VersionSource::kImport;
  absl::StatusOr<PreparedVersion> p = PrepareVersion(v, absl::Now());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->info.sampling.has_value());
  EXPECT_EQ(p->info.sampling->roi_source, RoiSource::kImported);
  EXPECT_EQ(p->info.sampling->rois, 0);
  // A merge's record is left to Put (from the parents): even a malformed one is not checked.
  v.source = VersionSource::kMerge;
  v.parent_versions = {1};
  v.sampling = RoiSamplingRecord{};
  p = PrepareVersion(v, absl::Now());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->info.sampling, std::nullopt);
  v.source = VersionSource::kImages;
  EXPECT_EQ(PrepareVersion(v, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  v.sampling = store_testing::ProposalSampling(3);
  p = PrepareVersion(v, absl::Now());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->info.sampling, store_testing::ProposalSampling(3));
}

TEST(CalibrationProfileTest, PreparedEncodedAndDecoded) {
  NewVersion v = Valid();
  v.calibration_profile = store_testing::TestProfile("p");
  const absl::Time now = absl::FromUnixMicros(1'800'000'000'000'001) + absl::Nanoseconds(500);
  absl::StatusOr<PreparedVersion> p = PrepareVersion(v, now);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->info.calibration_profile.has_value());
  EXPECT_EQ(p->info.calibration_profile->profile, *v.calibration_profile);
  EXPECT_EQ(p->info.calibration_profile->set_at, absl::FromUnixMicros(1'800'000'000'000'001))
      << "set now, to the microsecond";
  p->info.version = 2;
  VersionRow row = EncodeVersionRow(p->info, p->payload);
  ASSERT_TRUE(row.profile.has_value());
  EXPECT_EQ(row.profile->set_at_us, 1'800'000'000'000'001);
  absl::StatusOr<VersionInfo> back = DecodeVersionRow(v.model, row);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->calibration_profile, p->info.calibration_profile);
  // Bytes damaged in the database.
  row.profile->profile = std::string("\xff\xff", 2);
  const absl::Status corrupt = DecodeVersionRow(v.model, row).status();
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kDataLoss) << corrupt;
  EXPECT_THAT(corrupt.message(), HasSubstr("calibration profile of the version 2"));

  // The rules, in one place for Put and SetCalibrationProfile.
  EXPECT_TRUE(CheckCalibrationProfile(std::string(), "v").ok());
  EXPECT_EQ(CheckCalibrationProfile(std::string(kMaxCalibrationProfileBytes + 1, 'x'), "v").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckCalibrationProfile("\xff", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckProfileTarget(false, "v").ok());
  EXPECT_EQ(CheckProfileTarget(true, "v").code(), absl::StatusCode::kFailedPrecondition);
  v.partial = true;
  EXPECT_EQ(PrepareVersion(v, now).status().code(), absl::StatusCode::kFailedPrecondition);
  v.partial = false;
  v.calibration_profile = "\xff";
  EXPECT_EQ(PrepareVersion(v, now).status().code(), absl::StatusCode::kInvalidArgument);
  v.calibration_profile.reset();
  p = PrepareVersion(v, now);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->info.calibration_profile, std::nullopt);
  EXPECT_FALSE(EncodeVersionRow(p->info, p->payload).profile.has_value());
}

TEST(RoiSourceTest, NamesRoundTrip) {
  for (RoiSource s : {RoiSource::kUnspecified, RoiSource::kProposals, RoiSource::kCandidates,
                      RoiSource::kDetections, RoiSource::kLogits, RoiSource::kImported,
                      RoiSource::kMixed}) {
    RoiSource back = RoiSource::kMixed;
    ASSERT_TRUE(ParseRoiSource(RoiSourceName(s), &back).ok()) << RoiSourceName(s);
    EXPECT_EQ(back, s);
  }
  EXPECT_EQ(RoiSourceName(RoiSource::kProposals), "proposals");
  EXPECT_EQ(RoiSourceName(RoiSource::kImported), "imported");
  RoiSource out = RoiSource::kLogits;
  EXPECT_EQ(ParseRoiSource("Proposals", &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out, RoiSource::kLogits);
}

TEST(MergeRoiSamplingTest, SumsCountsAndKeepsWhatParentsAgreeOn) {
  using store_testing::ProposalSampling;
  EXPECT_EQ(MergeRoiSampling({}), std::nullopt);
  EXPECT_EQ(MergeRoiSampling({ProposalSampling(3)}), ProposalSampling(3));
  EXPECT_EQ(MergeRoiSampling({ProposalSampling(3), std::nullopt}), std::nullopt);

  RoiSamplingRecord detections;
  detections.roi_source = RoiSource::kDetections;
  detections.images = 5;
  detections.rois = 400;
  detections.rfs_threshold = 0.001;
  // Order does not matter, and a parameter a parent has not (0) is a disagreement.
  for (const auto& parents : std::vector<std::vector<std::optional<RoiSamplingRecord>>>{
           {ProposalSampling(2, 512, 0.1, 0.001), detections},
           {detections, ProposalSampling(2, 512, 0.1, 0.001)}}) {
    const std::optional<RoiSamplingRecord> merged = MergeRoiSampling(parents);
    ASSERT_TRUE(merged.has_value());
    EXPECT_EQ(merged->roi_source, RoiSource::kMixed);
    EXPECT_EQ(merged->num_rois, 0);
    EXPECT_EQ(merged->positive_fraction, 0.0);
    EXPECT_EQ(merged->positive_iou, 0.0f);
    EXPECT_EQ(merged->rfs_threshold, 0.001);  // both weighted with t = 0.001
    EXPECT_EQ(merged->images, 7);
    EXPECT_EQ(merged->rois, 1024 + 400);
    EXPECT_EQ(merged->positive_rois, ProposalSampling(2, 512, 0.1).positive_rois);
  }
  // Mixed stays mixed; the same parents thrice are one parent with thrice the counts.
  RoiSamplingRecord mixed = detections;
  mixed.roi_source = RoiSource::kMixed;
  EXPECT_EQ(MergeRoiSampling({mixed, mixed})->roi_source, RoiSource::kMixed);
  RoiSamplingRecord thrice = ProposalSampling(30, 512, 0.08, 0.5);
  thrice.positive_rois = 3 * ProposalSampling(10, 512, 0.08).positive_rois;
  const RoiSamplingRecord once = ProposalSampling(10, 512, 0.08, 0.5);
  EXPECT_EQ(MergeRoiSampling({once, once, once}), thrice);
}

TEST(ModelLayoutTest, DecodesOrReportsDataLoss) {
  absl::StatusOr<LogitLayout> layout = DecodeModelLayout(ModelRow{1, 7, "last", 1});
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->num_classes, 7);
  EXPECT_EQ(layout->background, BackgroundPosition::kLast);
  EXPECT_EQ(DecodeModelLayout(ModelRow{1, 7, "middle", 1}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(EncodeFilterTest, UnsetFieldsMatchEverything) {
  VersionRowFilter all = EncodeFilter(VersionFilter{});
  EXPECT_FALSE(all.by_job_id);
  EXPECT_EQ(all.source, "");
  EXPECT_EQ(all.partial, -1);

  VersionFilter f;
  f.job_id = "";
  f.source = VersionSource::kMerge;
  f.partial = false;
  VersionRowFilter row = EncodeFilter(f);
  EXPECT_TRUE(row.by_job_id);
  EXPECT_EQ(row.job_id, "");
  EXPECT_EQ(row.source, "merge");
  EXPECT_EQ(row.partial, 0);
  f.partial = true;
  EXPECT_EQ(EncodeFilter(f).partial, 1);
}

TEST(ParentsTest, RoundTrip) {
  EXPECT_EQ(EncodeParents({}), "");
  EXPECT_EQ(EncodeParents({1, 22, 333}), "1,22,333");
  EXPECT_THAT(*DecodeParents("1,22,333"), ElementsAre(1, 22, 333));
  EXPECT_TRUE(DecodeParents("")->empty());
  EXPECT_EQ(DecodeParents("1,,2").status().code(), absl::StatusCode::kDataLoss);
}

TEST(PageTokenTest, RoundTripAndRefusals) {
  EXPECT_EQ(*DecodePageToken(""), 0);
  EXPECT_EQ(*DecodePageToken(EncodePageToken(42)), 42);
  for (const char* bad : {"42", "after:", "after:-1", "after:x", "before:3"}) {
    absl::Status s = DecodePageToken(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(bad));
  }
  EXPECT_EQ(*NormalizePageSize(0), 100);
  EXPECT_EQ(*NormalizePageSize(1), 1);
  EXPECT_EQ(*NormalizePageSize(1000), 1000);
  EXPECT_EQ(NormalizePageSize(1001).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NormalizePageSize(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SchemaTooNewTest, NamesBothVersions) {
  absl::Status s = SchemaTooNew("/tmp/x.db", 9, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("/tmp/x.db has schema version 9"));
  EXPECT_THAT(s.message(), HasSubstr("up to 3"));
}

TEST(MicrosTest, RoundTrip) {
  const absl::Time t = absl::FromUnixMicros(-5);
  EXPECT_EQ(FromMicros(ToMicros(t)), t);
  EXPECT_EQ(ToMicros(absl::FromUnixMicros(1'234'567)), 1'234'567);
}

}  // namespace
}  // namespace store_internal
}  // namespace logn
