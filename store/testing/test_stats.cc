#include "store/testing/test_stats.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "logn/v1/store.pb.h"
#include "store/version_proto.h"

namespace logn {
namespace store_testing {

Statistics RandomStatistics(int32_t num_classes, uint64_t seed) {
  // std::mt19937_64 with hand-rolled distributions: the same seed gives the same statistics in
  // every process (absl::BitGen salts its seeds per process; std distributions vary by library).
  std::mt19937_64 gen(seed);
  auto uniform = [&gen](double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(gen() >> 11) * 0x1.0p-53;
  };
  Statistics s;
  s.layout.num_classes = num_classes;
  s.layout.background = BackgroundPosition::kLast;
  s.count = 2 + static_cast<int64_t>(gen() % 1'000'000);
  s.mean.resize(s.layout.width());
  s.variance.resize(s.layout.width());
  for (int32_t i = 0; i < s.layout.width(); ++i) {
    s.mean[i] = uniform(-8.0, 2.0);
    s.variance[i] = uniform(0.01, 5.0);
  }
  s.method = AccumulationMethod::kExact;
  s.provenance.created_at = absl::FromUnixSeconds(1'700'000'000 + static_cast<int64_t>(seed % 1000));
  s.provenance.description = absl::StrCat("random statistics ", seed);
  s.provenance.images_seen = static_cast<int64_t>(seed % 97);
  s.provenance.batches_seen = static_cast<int64_t>(seed % 13);
  return s;
}

ModelKey UniqueModel(const std::string& prefix) {
  static std::atomic<int> counter{0};
  ModelKey key;
  key.name = absl::StrCat(prefix, "-", getpid(), "-", counter.fetch_add(1), "-",
                          absl::ToUnixNanos(absl::Now()) % 1'000'000'007);
  key.sha256 = Sha256Hex(key.name);
  return key;
}

std::string FreshSqliteUrl(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/", prefix,
                                   "-XXXXXX");
  char* dir = mkdtemp(templ.data());
  if (dir != nullptr) {
    // Removed when the process exits, stores closed by then.
    static auto* dirs = new std::vector<std::string>;
    static absl::Mutex mu;
    absl::MutexLock l(&mu);
    if (dirs->empty()) {
      std::atexit([] {
        std::error_code ignored;
        for (const std::string& d : *dirs) std::filesystem::remove_all(d, ignored);
      });
    }
    dirs->push_back(dir);
  }
  return absl::StrCat("sqlite://", dir == nullptr ? "/nonexistent" : dir, "/stats.db");
}

std::string PostgresUrl() {
  const char* url = std::getenv("LOGN_PG_URL");
  return url == nullptr ? "" : url;
}

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

RoiSamplingRecord ProposalSampling(int64_t images, int32_t num_rois, double positives,
                                   double rfs_threshold) {
  RoiSamplingRecord r;
  r.roi_source = RoiSource::kProposals;
  r.num_rois = num_rois;
  r.positive_fraction = 0.25;
  r.positive_iou = 0.5f;
  r.images = images;
  r.rois = images * num_rois;
  r.positive_rois = static_cast<int64_t>(static_cast<double>(r.rois) * positives);
  r.rfs_threshold = rfs_threshold;
  return r;
}

std::string TestProfile(const std::string& description, double alpha) {
  v1::CalibrationProfile profile;
  v1::CalibrationSetting* setting = profile.mutable_default_setting();
  setting->set_name("tuned");
  setting->set_calibration_method(v1::CALIBRATION_METHOD_LOGN);
  setting->mutable_logn()->set_mean_weight(alpha);
  profile.set_description(description);
  return CalibrationProfileToBytes(profile);
}

}  // namespace store_testing

void PrintTo(const RoiSamplingRecord& record, std::ostream* os) { *os << record.DebugString(); }

void PrintTo(const CalibrationProfileRecord& record, std::ostream* os) {
  *os << "profile of " << record.profile.size() << " bytes set at " << record.set_at;
}

}  // namespace logn
