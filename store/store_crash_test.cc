// Crash safety: a child process writes versions in a loop and is SIGKILLed at random moments,
// many times. After each kill the store, reopened, must hold only complete versions whose
// checksums verify, numbered without holes, including every version whose Put returned OK.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "calibration/statistics_codec.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "store/stats_store.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

constexpr int32_t kClasses = 50;

struct Child {
  pid_t pid = -1;
  int fd = -1;  // read end of the child's stdout
  std::string buffer;
};

Child Spawn(const std::string& url, const std::string& model, uint64_t seed_base) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const std::string classes = absl::StrCat(kClasses);
  const std::string seed = absl::StrCat(seed_base);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(LOGN_CRASH_WRITER, LOGN_CRASH_WRITER, url.c_str(), model.c_str(), classes.c_str(),
          seed.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  return Child{pid, fds[0], ""};
}

// Reads what the child has written; waits up to `timeout` for something. False on EOF.
bool Pump(Child& child, absl::Duration timeout) {
  pollfd p{child.fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return true;
  char buf[4096];
  const ssize_t n = read(child.fd, buf, sizeof(buf));
  if (n <= 0) return false;
  child.buffer.append(buf, static_cast<size_t>(n));
  return true;
}

int CountLines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// version -> seed of every Put the child reported as OK.
std::map<int64_t, uint64_t> Parse(const std::string& output) {
  std::map<int64_t, uint64_t> acked;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    int64_t version = 0;
    uint64_t seed = 0;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &version) &&
        absl::SimpleAtoi(parts[1], &seed)) {
      acked[version] = seed;
    } else {
      ADD_FAILURE() << "unexpected child output line '" << line << "'";
    }
  }
  return acked;
}

void RunCrashLoop(const std::string& url, int kills) {
  const ModelKey model = store_testing::UniqueModel("crash");
  std::mt19937_64 rng(std::random_device{}());
  std::map<int64_t, uint64_t> acked_all;
  int64_t verified_up_to = 0;
  int killed_mid_write = 0;
  for (int round = 0; round < kills; ++round) {
    Child child = Spawn(url, model.name, 1'000'000ull * (round + 1));
    ASSERT_GT(child.pid, 0);
    // Let it acknowledge 0..3 writes, then kill it 0..8 ms later: mid-write most of the time.
    const int wait_acks = static_cast<int>(rng() % 4);
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    bool open = true;
    while (open && CountLines(child.buffer) < wait_acks && absl::Now() < give_up) {
      open = Pump(child, absl::Milliseconds(5));
    }
    absl::SleepFor(absl::Microseconds(static_cast<int64_t>(rng() % 8000)));
    kill(child.pid, SIGKILL);
    int wstatus = 0;
    waitpid(child.pid, &wstatus, 0);
    while (Pump(child, absl::Milliseconds(100))) {
    }
    close(child.fd);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "the writer exited by itself (status " << wstatus
                                      << ") in round " << round;
    std::map<int64_t, uint64_t> acked = Parse(child.buffer);
    if (!acked.empty()) ++killed_mid_write;
    acked_all.insert(acked.begin(), acked.end());

    absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(url);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<VersionInfo> versions;
    if (!acked_all.empty() || verified_up_to > 0) {
      std::string token;
      do {
        absl::StatusOr<VersionPage> page = (*store)->List(model, token, 1000);
        ASSERT_TRUE(page.ok()) << page.status();
        versions.insert(versions.end(), page->versions.begin(), page->versions.end());
        token = page->next_page_token;
      } while (!token.empty());
    }
    // Numbered 1..n without holes.
    for (size_t i = 0; i < versions.size(); ++i) {
      ASSERT_EQ(versions[i].version, static_cast<int64_t>(i) + 1) << "hole in round " << round;
    }
    const int64_t n = static_cast<int64_t>(versions.size());
    // Every acknowledged write is there, with the seed it was written with.
    for (const auto& [version, seed] : acked_all) {
      ASSERT_LE(version, n) << "acknowledged version " << version << " lost in round " << round;
      EXPECT_EQ(versions[version - 1].job_id, absl::StrCat(seed));
    }
    // Every version (acknowledged or not) is complete: checksum verifies (Get checks it) and the
    // snapshot is exactly what the writer built from its seed.
    for (int64_t v = verified_up_to + 1; v <= n; ++v) {
      absl::StatusOr<VersionRecord> r = (*store)->Get(model, VersionSelector::Number(v));
      ASSERT_TRUE(r.ok()) << "version " << v << " in round " << round << ": " << r.status();
      uint64_t seed = 0;
      ASSERT_TRUE(absl::SimpleAtoi(r->info.job_id, &seed));
      Statistics expected = store_testing::RandomStatistics(kClasses, seed);
      EXPECT_EQ(r->statistics.mean, expected.mean);
      EXPECT_EQ(r->statistics.variance, expected.variance);
      EXPECT_EQ(r->info.payload_sha256,
                Sha256Hex(StatisticsToBinary(r->statistics)));
    }
    verified_up_to = n;
    // The active alias, if set, points at a version that exists.
    absl::StatusOr<int64_t> active = (*store)->Resolve(model, VersionSelector::Active());
    if (active.ok()) {
      EXPECT_GE(*active, 1);
      EXPECT_LE(*active, n);
    } else if (n > 0) {
      EXPECT_TRUE(absl::IsNotFound(active.status())) << active.status();
    }
  }
  EXPECT_GT(killed_mid_write, kills / 2) << "too few rounds killed the writer mid-stream";
  EXPECT_FALSE(acked_all.empty());
  ::testing::Test::RecordProperty("versions_written", static_cast<int>(verified_up_to));
}

TEST(StoreCrashTest, SqliteSurvivesSigkill) {
  RunCrashLoop(store_testing::FreshSqliteUrl("crash-test"), 60);
}

#if LOGN_WITH_POSTGRES
TEST(StoreCrashTest, PostgresSurvivesSigkill) {
  const std::string url = store_testing::PostgresUrl();
  if (url.empty()) {
    if (store_testing::InCi()) FAIL() << "LOGN_PG_URL is not set in CI";
    GTEST_SKIP() << "LOGN_PG_URL is not set";
  }
  absl::StatusOr<std::unique_ptr<StatsStore>> probe = OpenStatsStore(url);
  if (!probe.ok()) {
    if (store_testing::InCi()) FAIL() << "no PostgreSQL in CI: " << probe.status();
    GTEST_SKIP() << "no PostgreSQL server: " << probe.status();
  }
  probe->reset();
  RunCrashLoop(url, 30);
}
#endif

}  // namespace
}  // namespace logn
