#include "store/stats_store.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "logn/v1/store.pb.h"
#include "store/testing/test_stats.h"
#include "store/version_proto.h"

// The contract of StatsStore, run on every backend this build has (SQLite; PostgreSQL with
// LOGN_WITH_POSTGRES). Backend specifics: sqlite_backend_test.cc, postgres_backend_test.cc.

namespace logn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using store_testing::ProposalSampling;
using store_testing::RandomStatistics;
using store_testing::TestProfile;
using store_testing::UniqueModel;

// How each backend's store is found. Sqlite: a fresh file per test. Postgres: the server the
// CTest fixture started (env LOGN_PG_URL); models are unique per test, so tests may share it.
struct Sqlite {
  static absl::StatusOr<std::string> Url() { return store_testing::FreshSqliteUrl("store-test"); }
};
struct Postgres {
  static absl::StatusOr<std::string> Url() {
    std::string url = store_testing::PostgresUrl();
    if (url.empty()) return absl::UnavailableError("LOGN_PG_URL is not set");
    return url;
  }
};

class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, Sqlite> ? "Sqlite" : "Postgres";
  }
};

template <typename Backend>
class StatsStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> url = Backend::Url();
    absl::StatusOr<std::unique_ptr<StatsStore>> store =
        url.ok() ? OpenStatsStore(*url) : absl::StatusOr<std::unique_ptr<StatsStore>>(url.status());
    if (!store.ok()) {
      // Outside CI a missing PostgreSQL is a skip; in CI the server must be there.
      if (!store_testing::InCi() && std::is_same_v<Backend, Postgres>) {
        GTEST_SKIP() << "no PostgreSQL server: " << store.status();
      }
      FAIL() << "cannot open the store: " << store.status();
    }
    url_ = *url;
    store_ = *std::move(store);
    model_ = UniqueModel("m");
  }

  // Another store instance on the same database, as another replica would open it.
  std::unique_ptr<StatsStore> OpenAnother() {
    absl::StatusOr<std::unique_ptr<StatsStore>> s = OpenStatsStore(url_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  NewVersion Version(uint64_t seed, int32_t classes = 7) {
    NewVersion v;
    v.model = model_;
    v.statistics = RandomStatistics(classes, seed);
    v.job_id = absl::StrCat("job-", seed);
    v.description = absl::StrCat("version from seed ", seed);
    v.source = VersionSource::kLogits;
    return v;
  }

  int64_t PutOk(uint64_t seed) {
    absl::StatusOr<VersionRecord> r = store_->Put(Version(seed));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->info.version : -1;
  }

  std::string url_;
  std::unique_ptr<StatsStore> store_;
  ModelKey model_;
};

#if LOGN_WITH_POSTGRES
using Backends = ::testing::Types<Sqlite, Postgres>;
#else
using Backends = ::testing::Types<Sqlite>;
#endif
TYPED_TEST_SUITE(StatsStoreTest, Backends, BackendNames);

TYPED_TEST(StatsStoreTest, PutNumbersFromOneAndGetReturnsEverything) {
  NewVersion v = this->Version(11);
  v.statistics.method = AccumulationMethod::kEma;
  v.statistics.momentum = 0.125;
  v.source = VersionSource::kImages;
  v.created_at = absl::FromUnixMicros(1'750'000'000'123'456);
  absl::StatusOr<VersionRecord> put = this->store_->Put(v);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.version, 1);

  absl::StatusOr<VersionRecord> got = this->store_->Get(this->model_, VersionSelector::Number(1));
  ASSERT_TRUE(got.ok()) << got.status();
  const VersionInfo& info = got->info;
  EXPECT_EQ(info.model, this->model_);
  EXPECT_EQ(info.version, 1);
  EXPECT_EQ(info.created_at, v.created_at);
  EXPECT_EQ(info.job_id, "job-11");
  EXPECT_EQ(info.description, "version from seed 11");
  EXPECT_EQ(info.source, VersionSource::kImages);
  EXPECT_EQ(info.rows_seen, v.statistics.count);
  EXPECT_EQ(info.images_seen, v.statistics.provenance.images_seen);
  EXPECT_EQ(info.method, AccumulationMethod::kEma);
  EXPECT_EQ(info.momentum, 0.125);
  EXPECT_FALSE(info.partial);
  EXPECT_TRUE(info.parent_versions.empty());
  // Doubles survive bit for bit.
  EXPECT_EQ(got->statistics.mean, v.statistics.mean);
  EXPECT_EQ(got->statistics.variance, v.statistics.variance);
  EXPECT_EQ(got->statistics.layout, v.statistics.layout);
  EXPECT_EQ(got->statistics.count, v.statistics.count);
  // Provenance is stamped with the model key.
  EXPECT_EQ(got->statistics.provenance.model_name, this->model_.name);
  EXPECT_EQ(got->statistics.provenance.model_sha256, this->model_.sha256);
  EXPECT_EQ(info.payload_sha256, Sha256Hex(StatisticsToBinary(got->statistics)));
  EXPECT_EQ(put->info.payload_sha256, info.payload_sha256);
  EXPECT_EQ(put->info.created_at, info.created_at);

  EXPECT_EQ(this->PutOk(12), 2);
  EXPECT_EQ(this->PutOk(13), 3);
}

TYPED_TEST(StatsStoreTest, CreatedAtDefaultsToNow) {
  const absl::Time before = absl::Now() - absl::Seconds(1);
  absl::StatusOr<VersionRecord> put = this->store_->Put(this->Version(1));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_GE(put->info.created_at, before);
  EXPECT_LE(put->info.created_at, absl::Now() + absl::Seconds(1));
}

TYPED_TEST(StatsStoreTest, NumbersArePerModelAndNeverReused) {
  EXPECT_EQ(this->PutOk(1), 1);
  EXPECT_EQ(this->PutOk(2), 2);
  ASSERT_TRUE(this->store_->Delete(this->model_, 2).ok());
  EXPECT_EQ(this->PutOk(3), 3);

  NewVersion other = this->Version(4);
  other.model = UniqueModel("other");
  absl::StatusOr<VersionRecord> r = this->store_->Put(other);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->info.version, 1);

  absl::StatusOr<std::vector<ModelKey>> models = this->store_->Models();
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_NE(std::find(models->begin(), models->end(), this->model_), models->end());
  EXPECT_NE(std::find(models->begin(), models->end(), other.model), models->end());
}

TYPED_TEST(StatsStoreTest, StatisticsForAnotherModelAreRefused) {
  NewVersion v = this->Version(1);
  v.statistics.provenance.model_sha256 = std::string(64, 'a');
  absl::Status s = this->store_->Put(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr(std::string(64, 'a')));

  v = this->Version(1);
  v.statistics.provenance.model_name = "some-other-model";
  s = this->store_->Put(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;

  // Same name, another file: a different model key, so the first model still has no versions.
  ASSERT_EQ(this->PutOk(2), 1);
  v = this->Version(3, /*classes=*/9);
  s = this->store_->Put(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("layout"));

  v = this->Version(3);
  v.statistics.layout.background = BackgroundPosition::kFirst;
  s = this->store_->Put(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

TYPED_TEST(StatsStoreTest, MalformedInputIsInvalidArgument) {
  NewVersion v = this->Version(1);
  v.statistics.mean.pop_back();
  EXPECT_EQ(this->store_->Put(v).status().code(), absl::StatusCode::kInvalidArgument);

  v = this->Version(1);
  v.model.sha256 = "ABC";
  EXPECT_EQ(this->store_->Put(v).status().code(), absl::StatusCode::kInvalidArgument);
  v.model.sha256 = std::string(64, 'A');  // uppercase is not the canonical form
  EXPECT_EQ(this->store_->Put(v).status().code(), absl::StatusCode::kInvalidArgument);

  v = this->Version(1);
  v.source = VersionSource::kMerge;  // a merge without parents
  EXPECT_EQ(this->store_->Put(v).status().code(), absl::StatusCode::kInvalidArgument);

  ASSERT_EQ(this->PutOk(2), 1);
  EXPECT_EQ(this->store_->SetAlias(this->model_, "Bad Alias", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->SetAlias(this->model_, "123", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(-4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->List(this->model_, "garbage", 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->List(this->model_, "", 1001).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->List(this->model_, "", -1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(StatsStoreTest, UnknownThingsAreNotFoundWithClearMessages) {
  absl::Status s = this->store_->Get(this->model_, VersionSelector::Number(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr(this->model_.name));
  EXPECT_EQ(this->store_->List(this->model_, "", 10).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Aliases(this->model_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Activate(this->model_, 1).status().code(), absl::StatusCode::kNotFound);

  ASSERT_EQ(this->PutOk(1), 1);
  s = this->store_->Get(this->model_, VersionSelector::Number(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("version 5"));
  s = this->store_->Get(this->model_, VersionSelector::Active()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("'active'"));
  EXPECT_EQ(this->store_->Resolve(this->model_, VersionSelector::Number(5)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Activate(this->model_, 5).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Delete(this->model_, 5).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->RemoveAlias(this->model_, "canary").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Rollback(this->model_).status().code(), absl::StatusCode::kNotFound);
}

TYPED_TEST(StatsStoreTest, AliasesActivateAndRollback) {
  for (int i = 1; i <= 4; ++i) ASSERT_EQ(this->PutOk(i), i);
  StatsStore& store = *this->store_;
  EXPECT_EQ(store.Activate(this->model_, 1).value(), 0);  // 0: a new alias
  EXPECT_EQ(store.Activate(this->model_, 2).value(), 1);  // the previous target
  EXPECT_EQ(store.Activate(this->model_, 2).value(), 2);  // no-op: not a history entry
  EXPECT_EQ(store.SetAlias(this->model_, "canary", 3).value(), 0);
  EXPECT_EQ(*store.Resolve(this->model_, VersionSelector::Active()), 2);

  absl::StatusOr<VersionRecord> active = store.Get(this->model_, VersionSelector::Active());
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ(active->info.version, 2);
  EXPECT_EQ(active->info.job_id, "job-2");

  absl::StatusOr<std::vector<AliasInfo>> aliases = store.Aliases(this->model_);
  ASSERT_TRUE(aliases.ok()) << aliases.status();
  ASSERT_EQ(aliases->size(), 2u);
  EXPECT_EQ((*aliases)[0].alias, "active");
  EXPECT_EQ((*aliases)[0].version, 2);
  EXPECT_EQ((*aliases)[1].alias, "canary");
  EXPECT_EQ((*aliases)[1].version, 3);

  // Rollback walks back through the history of "active", never touching "canary".
  absl::StatusOr<int64_t> back = store.Rollback(this->model_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, 1);
  EXPECT_EQ(*store.Resolve(this->model_, VersionSelector::Active()), 1);
  absl::Status s = store.Rollback(this->model_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(*store.Resolve(this->model_, VersionSelector::Alias("canary")), 3);

  ASSERT_TRUE(store.Activate(this->model_, 4).ok());
  EXPECT_EQ(*store.Rollback(this->model_), 1);

  // A rollback target that was deleted meanwhile is refused.
  ASSERT_TRUE(store.Activate(this->model_, 2).ok());
  ASSERT_TRUE(store.Activate(this->model_, 4).ok());
  ASSERT_TRUE(store.Delete(this->model_, 2).ok());
  s = store.Rollback(this->model_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("deleted"));
  EXPECT_EQ(*store.Resolve(this->model_, VersionSelector::Active()), 4);

  ASSERT_TRUE(store.RemoveAlias(this->model_, "canary").ok());
  EXPECT_EQ(store.Resolve(this->model_, VersionSelector::Alias("canary")).status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST(StatsStoreTest, DeleteIsRefusedWhileAnAliasPointsAtTheVersion) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_EQ(this->PutOk(2), 2);
  ASSERT_TRUE(this->store_->SetAlias(this->model_, "canary", 1).ok());
  ASSERT_TRUE(this->store_->Activate(this->model_, 1).ok());
  absl::Status s = this->store_->Delete(this->model_, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("active, canary"));
  EXPECT_TRUE(this->store_->Get(this->model_, VersionSelector::Number(1)).ok());

  ASSERT_TRUE(this->store_->Activate(this->model_, 2).ok());
  ASSERT_TRUE(this->store_->SetAlias(this->model_, "canary", 2).ok());
  ASSERT_TRUE(this->store_->Delete(this->model_, 1).ok());
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(1)).status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST(StatsStoreTest, PartialVersionsCannotBeAliased) {
  NewVersion v = this->Version(1);
  v.partial = true;
  absl::StatusOr<VersionRecord> r = this->store_->Put(v);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->info.partial);
  absl::Status s = this->store_->Activate(this->model_, r->info.version).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("partial"));
  EXPECT_EQ(this->store_->SetAlias(this->model_, "canary", r->info.version).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<VersionRecord> got =
      this->store_->Get(this->model_, VersionSelector::Number(r->info.version));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->info.partial);
}

TYPED_TEST(StatsStoreTest, ServedTrafficIsAliasedOnlyWhenAskedFor) {
  NewVersion v = this->Version(1);
  v.source = VersionSource::kServedTraffic;
  absl::StatusOr<VersionRecord> r = this->store_->Put(v);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->info.source, VersionSource::kServedTraffic);
  const absl::Status refused = this->store_->Activate(this->model_, r->info.version).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("allow_served_traffic"));
  absl::StatusOr<int64_t> allowed = this->store_->SetAlias(this->model_, "drift-ref",
                                                           r->info.version,
                                                           /*allow_served_traffic=*/true);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(*allowed, 0);
}

TYPED_TEST(StatsStoreTest, MergeRecordsExistingParents) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_EQ(this->PutOk(2), 2);
  NewVersion merge = this->Version(3);
  merge.source = VersionSource::kMerge;
  merge.parent_versions = {2, 1, 2};
  absl::StatusOr<VersionRecord> r = this->store_->Put(merge);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<VersionRecord> got =
      this->store_->Get(this->model_, VersionSelector::Number(r->info.version));
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(got->info.parent_versions, ElementsAre(1, 2));
  EXPECT_EQ(got->info.source, VersionSource::kMerge);

  merge.parent_versions = {1, 99};
  absl::Status s = this->store_->Put(merge).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("99"));
}

TYPED_TEST(StatsStoreTest, SamplingRecordsRoundTripThroughPutGetAndList) {
  NewVersion sampled = this->Version(21);
  sampled.source = VersionSource::kImages;
  sampled.sampling = ProposalSampling(500, 512, 0.08, 0.001);
  sampled.sampling->rois = 243'520;  // fewer than 512 per image: small images
  sampled.sampling->positive_rois = 19'482;
  sampled.sampling->positive_iou = 0.7f;
  sampled.sampling->positive_fraction = 0.1;
  absl::StatusOr<VersionRecord> put = this->store_->Put(sampled);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.sampling, sampled.sampling);
  // Without a record (e.g. logits from a client that says nothing): none is stored.
  ASSERT_EQ(this->PutOk(22), 2);
  NewVersion logits = this->Version(23);
  logits.sampling = RoiSamplingRecord{};
  logits.sampling->roi_source = RoiSource::kLogits;
  logits.sampling->rois = logits.statistics.count;
  ASSERT_TRUE(this->store_->Put(logits).ok());

  std::unique_ptr<StatsStore> replica = this->OpenAnother();
  ASSERT_NE(replica, nullptr);
  absl::StatusOr<VersionRecord> got = replica->Get(this->model_, VersionSelector::Number(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.sampling, sampled.sampling);  // doubles and the float bit for bit
  got = replica->Get(this->model_, VersionSelector::Number(2));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.sampling, std::nullopt);
  absl::StatusOr<VersionPage> page = replica->List(this->model_, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 3u);
  EXPECT_EQ(page->versions[0].sampling, sampled.sampling);
  EXPECT_EQ(page->versions[1].sampling, std::nullopt);
  EXPECT_EQ(page->versions[2].sampling, logits.sampling);
  // The filters still apply with the records joined in.
  VersionFilter images;
  images.source = VersionSource::kImages;
  page = replica->List(this->model_, "", 0, images);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 1u);
  EXPECT_EQ(page->versions[0].sampling, sampled.sampling);

  // A record goes with its version; the number is never reused, so neither is the record.
  ASSERT_TRUE(this->store_->Delete(this->model_, 1).ok());
  absl::StatusOr<VersionRecord> next = this->store_->Put(this->Version(24));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->info.version, 4);
  EXPECT_EQ(next->info.sampling, std::nullopt);
}

TYPED_TEST(StatsStoreTest, MalformedSamplingRecordsAreInvalidArgument) {
  auto put = [this](const std::function<void(RoiSamplingRecord&)>& edit) {
    NewVersion v = this->Version(31);
    v.sampling = ProposalSampling(10);
    edit(*v.sampling);
    return this->store_->Put(v).status();
  };
  const absl::Status unnamed =
      put([](RoiSamplingRecord& r) { r.roi_source = RoiSource::kUnspecified; });
  EXPECT_EQ(unnamed.code(), absl::StatusCode::kInvalidArgument) << unnamed;
  EXPECT_THAT(unnamed.message(), HasSubstr("leave the record unset"));
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.roi_source = static_cast<RoiSource>(42); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.images = -1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.positive_rois = r.rois + 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.positive_fraction = NAN; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.positive_iou = 1.5f; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.rfs_threshold = INFINITY; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put([](RoiSamplingRecord& r) { r.rfs_threshold = -0.5; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(put([](RoiSamplingRecord&) {}).ok());  // nothing half-refused before it
  EXPECT_EQ(this->store_->List(this->model_, "", 0)->versions.size(), 1u);
}

TYPED_TEST(StatsStoreTest, AMergesSamplingIsDerivedFromItsParents) {
  auto put = [this](uint64_t seed, std::optional<RoiSamplingRecord> sampling) {
    NewVersion v = this->Version(seed);
    v.source = VersionSource::kImages;
    v.partial = true;
    v.sampling = sampling;
    absl::StatusOr<VersionRecord> r = this->store_->Put(v);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->info.version : -1;
  };
  auto merge = [this](std::vector<int64_t> parents) {
    NewVersion v = this->Version(99);
    v.source = VersionSource::kMerge;
    v.parent_versions = std::move(parents);
    v.sampling = ProposalSampling(1);  // ignored: a merge's record is its parents'
    v.sampling->roi_source = RoiSource::kUnspecified;
    absl::StatusOr<VersionRecord> r = this->store_->Put(v);
    EXPECT_TRUE(r.ok()) << r.status();
    absl::StatusOr<VersionRecord> got =
        this->store_->Get(this->model_, VersionSelector::Number(r.ok() ? r->info.version : 0));
    EXPECT_TRUE(got.ok()) << got.status();
    if (r.ok() && got.ok()) EXPECT_EQ(r->info.sampling, got->info.sampling) << "Put returns it";
    return got.ok() ? got->info.sampling : std::nullopt;
  };
  // Shards of one job: the same sampler and threshold, counts add up.
  const int64_t a = put(1, ProposalSampling(100, 512, 0.08, 0.001));
  const int64_t b = put(2, ProposalSampling(60, 512, 0.10, 0.001));
  std::optional<RoiSamplingRecord> ab = merge({a, b});
  ASSERT_TRUE(ab.has_value());
  RoiSamplingRecord expected = ProposalSampling(160, 512, 0, 0.001);
  expected.positive_rois = ProposalSampling(100, 512, 0.08).positive_rois +
                           ProposalSampling(60, 512, 0.10).positive_rois;
  EXPECT_EQ(*ab, expected);

  // Another source, RoIs per image and threshold: mixed, and the disagreeing parameters are 0.
  RoiSamplingRecord candidates = ProposalSampling(40, 256, 0.5, 0.0);
  candidates.roi_source = RoiSource::kCandidates;
  const int64_t c = put(3, candidates);
  std::optional<RoiSamplingRecord> abc = merge({a, b, c});
  ASSERT_TRUE(abc.has_value());
  EXPECT_EQ(abc->roi_source, RoiSource::kMixed);
  EXPECT_EQ(abc->num_rois, 0);
  EXPECT_EQ(abc->positive_fraction, 0.25);  // every parent asked for 25 %
  EXPECT_EQ(abc->positive_iou, 0.5f);
  EXPECT_EQ(abc->rfs_threshold, 0.0);
  EXPECT_EQ(abc->images, 200);
  EXPECT_EQ(abc->rois, 160 * 512 + 40 * 256);
  EXPECT_EQ(abc->positive_rois, expected.positive_rois + candidates.positive_rois);

  // A parent stored without a record: how the merged rows were sampled is unknown.
  const int64_t unknown = put(4, std::nullopt);
  EXPECT_EQ(merge({a, unknown}), std::nullopt);
}

TYPED_TEST(StatsStoreTest, ImportsWithoutARecordAreMarkedImported) {
  NewVersion imported = this->Version(41);
  imported.source = VersionSource::kImport;
  absl::StatusOr<VersionRecord> r = this->store_->Put(imported);
  ASSERT_TRUE(r.ok()) << r.status();
  RoiSamplingRecord marked;
  marked.roi_source = RoiSource::kImported;
  EXPECT_EQ(r->info.sampling, marked);
  // A record that came with the statistics (an export of this or another store) is kept.
  imported.sampling = ProposalSampling(7);
  r = this->store_->Put(imported);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<VersionRecord> got =
      this->store_->Get(this->model_, VersionSelector::Number(r->info.version));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.sampling, ProposalSampling(7));
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(1))->info.sampling, marked);
}

TYPED_TEST(StatsStoreTest, CheckpointsKeepTheirSamplingTally) {
  JobCheckpoint cp;
  cp.model = this->model_;
  cp.job_id = "tally";
  cp.batches = 4;
  cp.images_seen = 40;
  cp.source = VersionSource::kImages;
  cp.statistics = RandomStatistics(7, 51);
  cp.sampling = ProposalSampling(40, 512, 0.08, 0.001);
  ASSERT_TRUE(this->store_->PutCheckpoint(cp).ok());
  absl::StatusOr<JobCheckpoint> got = this->OpenAnother()->GetCheckpoint(this->model_, "tally");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->sampling, cp.sampling);
  // Replaced by a checkpoint without one: none.
  cp.sampling.reset();
  cp.batches = 8;
  ASSERT_TRUE(this->store_->PutCheckpoint(cp).ok());
  got = this->store_->GetCheckpoint(this->model_, "tally");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->batches, 8);
  EXPECT_EQ(got->sampling, std::nullopt);
  cp.sampling = ProposalSampling(1);
  cp.sampling->positive_rois = -3;
  const absl::Status bad = this->store_->PutCheckpoint(cp);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_THAT(bad.message(), HasSubstr("tally"));
}

TYPED_TEST(StatsStoreTest, CheckpointsAreReplacedReadByAnotherReplicaAndClearedByCommit) {
  JobCheckpoint cp;
  cp.model = this->model_;
  cp.job_id = "shard-0";
  cp.batches = 16;
  cp.images_seen = 128;
  cp.source = VersionSource::kImages;
  cp.statistics = RandomStatistics(7, 11);
  // The model's first write may be a checkpoint: no version exists yet.
  ASSERT_TRUE(this->store_->PutCheckpoint(cp).ok());
  cp.batches = 32;
  cp.statistics = RandomStatistics(7, 12);
  ASSERT_TRUE(this->store_->PutCheckpoint(cp).ok());

  std::unique_ptr<StatsStore> replica = this->OpenAnother();
  ASSERT_NE(replica, nullptr);
  absl::StatusOr<JobCheckpoint> got = replica->GetCheckpoint(this->model_, "shard-0");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->batches, 32);
  EXPECT_EQ(got->images_seen, 128);
  EXPECT_EQ(got->source, VersionSource::kImages);
  EXPECT_EQ(got->statistics.mean, cp.statistics.mean);
  EXPECT_EQ(got->statistics.variance, cp.statistics.variance);
  EXPECT_EQ(got->statistics.count, cp.statistics.count);
  EXPECT_GT(got->updated_at, absl::Now() - absl::Minutes(5));

  // Another job's checkpoint is untouched by this job's commit.
  JobCheckpoint other = cp;
  other.job_id = "shard-1";
  ASSERT_TRUE(this->store_->PutCheckpoint(other).ok());
  NewVersion v = this->Version(13);
  v.job_id = "shard-0";
  v.clear_job_checkpoint = true;
  ASSERT_TRUE(this->store_->Put(v).ok());
  absl::Status gone = this->store_->GetCheckpoint(this->model_, "shard-0").status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
  EXPECT_THAT(gone.message(), HasSubstr("shard-0"));
  EXPECT_TRUE(this->store_->GetCheckpoint(this->model_, "shard-1").ok());

  EXPECT_TRUE(this->store_->DeleteCheckpoint(this->model_, "shard-1").ok());
  EXPECT_EQ(this->store_->DeleteCheckpoint(this->model_, "shard-1").code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST(StatsStoreTest, BadCheckpointsAreRefused) {
  ASSERT_EQ(this->PutOk(1), 1);  // fixes the model's layout at 7 classes
  JobCheckpoint cp;
  cp.model = this->model_;
  cp.job_id = "j";
  cp.batches = 1;
  cp.statistics = RandomStatistics(9, 1);
  EXPECT_EQ(this->store_->PutCheckpoint(cp).code(), absl::StatusCode::kFailedPrecondition);
  cp.statistics = RandomStatistics(7, 1);
  cp.job_id = "";
  EXPECT_EQ(this->store_->PutCheckpoint(cp).code(), absl::StatusCode::kInvalidArgument);
  cp.job_id = "j";
  cp.batches = 0;
  EXPECT_EQ(this->store_->PutCheckpoint(cp).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->GetCheckpoint(UniqueModel("never"), "j").status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST(StatsStoreTest, ListPaginatesInOrder) {
  for (int i = 1; i <= 25; ++i) ASSERT_EQ(this->PutOk(i), i);
  ASSERT_TRUE(this->store_->Delete(this->model_, 7).ok());
  std::vector<int64_t> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<VersionPage> page = this->store_->List(this->model_, token, 10);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const VersionInfo& v : page->versions) {
      seen.push_back(v.version);
      EXPECT_EQ(v.job_id, absl::StrCat("job-", v.version));
      EXPECT_EQ(v.payload_sha256.size(), 64u);
    }
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 24u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 7), 0);

  absl::StatusOr<VersionPage> all = this->store_->List(this->model_, "", 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->versions.size(), 24u);
  EXPECT_TRUE(all->next_page_token.empty());
}

// The filter is applied by the database: pages hold only matches, and page tokens continue
// through the matches.
TYPED_TEST(StatsStoreTest, ListFiltersByJobSourceAndPartial) {
  for (int i = 1; i <= 12; ++i) {
    NewVersion v = this->Version(i);
    v.job_id = i % 3 == 0 ? "sharded" : absl::StrCat("job-", i);
    v.partial = i % 3 == 0 && i != 12;  // 12: the merged result of the shards 3, 6, 9
    v.source = i % 2 == 0 ? VersionSource::kImages : VersionSource::kLogits;
    ASSERT_TRUE(this->store_->Put(v).ok());
  }
  NewVersion untagged = this->Version(13);
  untagged.job_id = "";
  ASSERT_TRUE(this->store_->Put(untagged).ok());

  int pages = 0;
  auto versions = [&](const VersionFilter& filter, int32_t page_size) {
    std::vector<int64_t> seen;
    std::string token;
    pages = 0;
    do {
      absl::StatusOr<VersionPage> page = this->store_->List(this->model_, token, page_size, filter);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      ++pages;
      for (const VersionInfo& v : page->versions) seen.push_back(v.version);
      token = page->next_page_token;
    } while (!token.empty());
    return seen;
  };
  VersionFilter by_job;
  by_job.job_id = "sharded";
  EXPECT_THAT(versions(by_job, 2), ElementsAre(3, 6, 9, 12));
  EXPECT_EQ(pages, 2);
  VersionFilter partial;
  partial.partial = true;
  EXPECT_THAT(versions(partial, 2), ElementsAre(3, 6, 9));
  VersionFilter merged = by_job;
  merged.partial = false;
  EXPECT_THAT(versions(merged, 0), ElementsAre(12));
  VersionFilter images;
  images.source = VersionSource::kImages;
  EXPECT_THAT(versions(images, 4), ElementsAre(2, 4, 6, 8, 10, 12));
  images.partial = false;
  EXPECT_THAT(versions(images, 4), ElementsAre(2, 4, 8, 10, 12));
  VersionFilter no_job;
  no_job.job_id = "";
  EXPECT_THAT(versions(no_job, 0), ElementsAre(13));
  VersionFilter unknown_job;
  unknown_job.job_id = "never";
  EXPECT_TRUE(versions(unknown_job, 10).empty());
  EXPECT_EQ(pages, 1);
  EXPECT_EQ(versions(VersionFilter{}, 5).size(), 13u);
}

TYPED_TEST(StatsStoreTest, DataSurvivesReopening) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_TRUE(this->store_->Activate(this->model_, 1).ok());
  this->store_.reset();
  std::unique_ptr<StatsStore> reopened = this->OpenAnother();
  ASSERT_NE(reopened, nullptr);
  absl::StatusOr<VersionRecord> got = reopened->Get(this->model_, VersionSelector::Active());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.version, 1);
  EXPECT_EQ(got->statistics.mean, RandomStatistics(7, 1).mean);
}

TYPED_TEST(StatsStoreTest, ConcurrentWritersNeverCollide) {
  ASSERT_EQ(this->PutOk(0), 1);
  std::unique_ptr<StatsStore> other = this->OpenAnother();
  ASSERT_NE(other, nullptr);
  constexpr int kPerThread = 8;
  std::vector<std::thread> threads;
  std::vector<std::vector<int64_t>> got(4);
  for (int t = 0; t < 4; ++t) {
    StatsStore* store = t % 2 == 0 ? this->store_.get() : other.get();
    threads.emplace_back([this, store, t, &got] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<VersionRecord> r = store->Put(this->Version(100 * t + i));
        EXPECT_TRUE(r.ok()) << r.status();
        if (r.ok()) got[t].push_back(r->info.version);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<int64_t> all;
  for (const auto& g : got) all.insert(g.begin(), g.end());
  EXPECT_EQ(all.size(), 4u * kPerThread);
  EXPECT_EQ(*all.begin(), 2);
  EXPECT_EQ(*all.rbegin(), 1 + 4 * kPerThread);
}

// The 1-second requirement: an alias change made through one store instance (another
// replica) is visible to this one within a second, through AliasGeneration().
TYPED_TEST(StatsStoreTest, AliasChangeByAnotherReplicaIsSeenWithinOneSecond) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_EQ(this->PutOk(2), 2);
  ASSERT_TRUE(this->store_->Activate(this->model_, 1).ok());
  std::unique_ptr<StatsStore> replica = this->OpenAnother();
  ASSERT_NE(replica, nullptr);
  // Let the replica's watcher settle (connect / take its first reading).
  absl::SleepFor(absl::Milliseconds(500));
  const uint64_t before = replica->AliasGeneration();

  const absl::Time changed_at = absl::Now();
  ASSERT_TRUE(this->store_->Activate(this->model_, 2).ok());
  absl::Duration seen_after = absl::InfiniteDuration();
  while (absl::Now() - changed_at < absl::Seconds(3)) {
    if (replica->AliasGeneration() != before) {
      seen_after = absl::Now() - changed_at;
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_LT(seen_after, absl::Seconds(1)) << "replica saw the alias change after " << seen_after;
  EXPECT_EQ(*replica->Resolve(this->model_, VersionSelector::Active()), 2);
  ::testing::Test::RecordProperty("alias_propagation_ms",
                                  std::to_string(absl::ToInt64Milliseconds(seen_after)));
}

// ---- Calibration profiles: the one part of a version that can be set, replaced and cleared ----

TYPED_TEST(StatsStoreTest, CalibrationProfileIsSetReplacedAndCleared) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_EQ(this->PutOk(2), 2);
  ASSERT_TRUE(this->store_->SetAlias(this->model_, "canary", 2).ok());
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(1))->calibration_profile,
            std::nullopt);

  const std::string first = TestProfile("first");
  const absl::Time before = absl::Now() - absl::Milliseconds(1);
  absl::StatusOr<VersionInfo> set =
      this->store_->SetCalibrationProfile(this->model_, VersionSelector::Number(1), first);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->version, 1);
  ASSERT_TRUE(set->calibration_profile.has_value());
  EXPECT_EQ(set->calibration_profile->profile, first);
  EXPECT_GE(set->calibration_profile->set_at, before);
  EXPECT_LE(set->calibration_profile->set_at, absl::Now());
  // What the call returns is what every read returns, in every instance.
  std::unique_ptr<StatsStore> replica = this->OpenAnother();
  ASSERT_NE(replica, nullptr);
  absl::StatusOr<VersionRecord> got = replica->Get(this->model_, VersionSelector::Number(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->info.calibration_profile, set->calibration_profile);
  EXPECT_EQ(replica->GetInfo(this->model_, VersionSelector::Number(1))->calibration_profile,
            set->calibration_profile);
  absl::StatusOr<VersionPage> page = replica->List(this->model_, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 2u);
  EXPECT_EQ(page->versions[0].calibration_profile, set->calibration_profile);
  EXPECT_EQ(page->versions[1].calibration_profile, std::nullopt);
  EXPECT_EQ(got->info.payload_sha256, page->versions[0].payload_sha256) << "the rest unchanged";

  // By alias; replacing sets a new time.
  absl::SleepFor(absl::Milliseconds(2));
  const std::string second = TestProfile("second", 0.25);
  absl::StatusOr<VersionInfo> by_alias =
      this->store_->SetCalibrationProfile(this->model_, VersionSelector::Alias("canary"), first);
  ASSERT_TRUE(by_alias.ok()) << by_alias.status();
  EXPECT_EQ(by_alias->version, 2);
  absl::StatusOr<VersionInfo> replaced =
      this->store_->SetCalibrationProfile(this->model_, VersionSelector::Number(1), second);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->calibration_profile->profile, second);
  EXPECT_GT(replaced->calibration_profile->set_at, set->calibration_profile->set_at);
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(1))->calibration_profile,
            replaced->calibration_profile);

  // Cleared; clearing again is a no-op. Version 2 keeps its own.
  absl::StatusOr<VersionInfo> cleared =
      this->store_->SetCalibrationProfile(this->model_, VersionSelector::Number(1), std::nullopt);
  ASSERT_TRUE(cleared.ok()) << cleared.status();
  EXPECT_EQ(cleared->calibration_profile, std::nullopt);
  EXPECT_EQ(cleared->job_id, "job-1");
  // Nothing changed, so nothing is published: the generation stays (checked where no other
  // writer shares the database, once the watcher has seen the changes above).
  const bool alone = std::is_same_v<TypeParam, Sqlite>;
  if (alone) absl::SleepFor(absl::Milliseconds(500));
  const uint64_t generation = this->store_->AliasGeneration();
  ASSERT_TRUE(this->store_
                  ->SetCalibrationProfile(this->model_, VersionSelector::Number(1), std::nullopt)
                  .ok());
  if (alone) absl::SleepFor(absl::Milliseconds(300));
  if (alone) EXPECT_EQ(this->store_->AliasGeneration(), generation) << "nothing changed";
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(1))->info.calibration_profile,
            std::nullopt);
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(2))
                ->info.calibration_profile->profile,
            first);
  // An empty profile (every field default) is a profile, not none.
  absl::StatusOr<VersionInfo> empty =
      this->store_->SetCalibrationProfile(this->model_, VersionSelector::Number(1), "");
  ASSERT_TRUE(empty.ok()) << empty.status();
  ASSERT_TRUE(this->store_->GetInfo(this->model_, VersionSelector::Number(1))
                  ->calibration_profile.has_value());
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(1))
                ->calibration_profile->profile,
            "");
}

TYPED_TEST(StatsStoreTest, CalibrationProfileRefusals) {
  ASSERT_EQ(this->PutOk(1), 1);
  NewVersion shard = this->Version(2);
  shard.partial = true;
  ASSERT_TRUE(this->store_->Put(shard).ok());
  auto set = [this](const ModelKey& model, VersionSelector selector,
                    std::optional<std::string> profile) {
    return this->store_->SetCalibrationProfile(model, selector, std::move(profile)).status();
  };
  const std::string profile = TestProfile("p");
  absl::Status s = set(UniqueModel("never"), VersionSelector::Number(1), profile);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  s = set(this->model_, VersionSelector::Number(9), profile);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("no version 9"));
  s = set(this->model_, VersionSelector::Alias("canary"), std::nullopt);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("canary"));
  EXPECT_EQ(set(this->model_, VersionSelector::Alias("Bad!"), profile).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(set(ModelKey{"m", "not-hex"}, VersionSelector::Number(1), profile).code(),
            absl::StatusCode::kInvalidArgument);
  // One shard of a job never serves: it gets no default setting, set or cleared.
  for (const std::optional<std::string>& p : {std::optional<std::string>(profile),
                                              std::optional<std::string>()}) {
    s = set(this->model_, VersionSelector::Number(2), p);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("partial"));
  }
  // Size: 64 KiB at most.
  v1::CalibrationProfile big;
  big.set_description(std::string(kMaxCalibrationProfileBytes - 4, 'x'));
  const std::string at_limit = CalibrationProfileToBytes(big);
  ASSERT_EQ(at_limit.size(), kMaxCalibrationProfileBytes);
  EXPECT_TRUE(set(this->model_, VersionSelector::Number(1), at_limit).ok());
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(1))
                ->calibration_profile->profile,
            at_limit);
  big.set_description(std::string(kMaxCalibrationProfileBytes - 3, 'x'));
  s = set(this->model_, VersionSelector::Number(1), CalibrationProfileToBytes(big));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("65537 bytes; the limit is 65536"));
  // Not a logn.v1.CalibrationProfile at all.
  s = set(this->model_, VersionSelector::Number(1), std::string("\xff\xff\xff", 3));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("CalibrationProfile"));
  // Nothing refused changed anything.
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(1))
                ->calibration_profile->profile,
            at_limit);
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(2))->calibration_profile,
            std::nullopt);
}

TYPED_TEST(StatsStoreTest, PutStoresAProfileWithTheSameRules) {
  NewVersion v = this->Version(1);
  v.source = VersionSource::kImport;
  v.created_at = absl::FromUnixMicros(1'700'000'000'000'000);  // the file's: not the profile's
  v.calibration_profile = TestProfile("imported");
  const absl::Time before = absl::Now() - absl::Milliseconds(1);
  absl::StatusOr<VersionRecord> put = this->store_->Put(v);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->info.calibration_profile.has_value());
  EXPECT_EQ(put->info.calibration_profile->profile, *v.calibration_profile);
  EXPECT_GE(put->info.calibration_profile->set_at, before);
  EXPECT_EQ(this->store_->Get(this->model_, VersionSelector::Number(1))->info.calibration_profile,
            put->info.calibration_profile);

  NewVersion partial = this->Version(2);
  partial.partial = true;
  partial.calibration_profile = TestProfile("shard");
  EXPECT_EQ(this->store_->Put(partial).status().code(), absl::StatusCode::kFailedPrecondition);
  NewVersion bad = this->Version(3);
  bad.calibration_profile = std::string("\xff", 1);
  EXPECT_EQ(this->store_->Put(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.calibration_profile = std::string(kMaxCalibrationProfileBytes + 1, '\0');
  EXPECT_EQ(this->store_->Put(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->List(this->model_, "", 0)->versions.size(), 1u);
}

TYPED_TEST(StatsStoreTest, DeletingAVersionDeletesItsProfileAndMergesInheritNone) {
  ASSERT_EQ(this->PutOk(1), 1);
  ASSERT_EQ(this->PutOk(2), 2);
  ASSERT_EQ(this->PutOk(3), 3);
  for (int64_t v : {1, 2, 3}) {
    ASSERT_TRUE(this->store_
                    ->SetCalibrationProfile(this->model_, VersionSelector::Number(v),
                                            TestProfile(absl::StrCat("v", v)))
                    .ok());
  }
  NewVersion merge = this->Version(4);
  merge.source = VersionSource::kMerge;
  merge.parent_versions = {1, 2};
  absl::StatusOr<VersionRecord> merged = this->store_->Put(merge);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->info.calibration_profile, std::nullopt)
      << "a profile is chosen for one set of statistics";
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(4))->calibration_profile,
            std::nullopt);

  ASSERT_TRUE(this->store_->Delete(this->model_, 3).ok());
  EXPECT_EQ(this->store_->GetInfo(this->model_, VersionSelector::Number(3)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_
                ->SetCalibrationProfile(this->model_, VersionSelector::Number(3), std::nullopt)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<VersionPage> page = this->store_->List(this->model_, "", 0);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->versions.size(), 3u);
  EXPECT_EQ(page->versions[0].calibration_profile->profile, TestProfile("v1"));
  EXPECT_EQ(page->versions[1].calibration_profile->profile, TestProfile("v2"));
  EXPECT_EQ(page->versions[2].calibration_profile, std::nullopt);
}

// A profile change is a metadata change: the generation moves at once in this instance and
// within a second in another (so every process's StatsCache re-reads the version).
TYPED_TEST(StatsStoreTest, ProfileChangesMoveTheGenerationHereAndInOtherReplicas) {
  ASSERT_EQ(this->PutOk(1), 1);
  std::unique_ptr<StatsStore> replica = this->OpenAnother();
  ASSERT_NE(replica, nullptr);
  absl::SleepFor(absl::Milliseconds(500));  // the replica's watcher settles
  auto moves = [&](std::optional<std::string> profile) {
    const uint64_t here = this->store_->AliasGeneration();
    const uint64_t there = replica->AliasGeneration();
    EXPECT_TRUE(this->store_
                    ->SetCalibrationProfile(this->model_, VersionSelector::Number(1),
                                            std::move(profile))
                    .ok());
    EXPECT_GT(this->store_->AliasGeneration(), here);
    const absl::Time deadline = absl::Now() + absl::Seconds(1);
    while (replica->AliasGeneration() == there && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_GT(replica->AliasGeneration(), there);
  };
  moves(TestProfile("set"));
  moves(TestProfile("replaced"));
  moves(std::nullopt);
  EXPECT_EQ(replica->GetInfo(this->model_, VersionSelector::Number(1))->calibration_profile,
            std::nullopt);
}

TEST(VersionSelectorTest, Parses) {
  EXPECT_EQ(VersionSelector::Parse("7")->version, 7);
  EXPECT_EQ(VersionSelector::Parse("canary")->alias, "canary");
  for (const char* bad : {"", "0", "-3", "7x", "Canary", "a b"}) {
    EXPECT_EQ(VersionSelector::Parse(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace logn
