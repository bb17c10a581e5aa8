// store_bench: latency of the statistics store, both backends.
//
// For each backend, fills a fresh store with LOGN_BENCH_VERSIONS (default 10,000) versions of a
// model with 1,203 classes + background (1,204 logits per row, as LVIS), timing every Put; then
// times Get of random versions straight from the store (cold: a database read + checksum +
// decode), the same through StatsCache once warm (cached: the Detect hot path), and List of a
// 100-version page at a random offset. Reports p50 / p99 per operation as benchmark counters and
// a markdown table at the end.
//
// PostgreSQL: LOGN_PG_URL if set; otherwise a throwaway server is started with
// store/testing/pg_server.sh (port LOGN_BENCH_PG_PORT, default 54337) and stopped at exit.
// Set LOGN_BENCH_SKIP_PG=1 to bench SQLite only.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "store/stats_cache.h"
#include "store/stats_store.h"
#include "store/testing/test_stats.h"

namespace logn {
namespace {

constexpr int32_t kClasses = 1203;  // + background = 1,204 logits

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoll(v) : fallback;
}

struct Backend {
  std::string name;
  std::string url;
  std::unique_ptr<StatsStore> store;
  ModelKey model;
  std::vector<double> put_us;  // every Put of the fill
  bool ready = false;
  bool failed = false;
};

std::map<std::string, Backend>& Backends() {
  static auto* backends = new std::map<std::string, Backend>;
  return *backends;
}

// (backend, operation) -> {p50, p99} in microseconds, for the closing table.
std::map<std::pair<std::string, std::string>, std::pair<double, double>>& Results() {
  static auto* results = new std::map<std::pair<std::string, std::string>, std::pair<double, double>>;
  return *results;
}

std::string g_pg_dir;
std::string g_pg_port;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

void Report(benchmark::State& state, const std::string& backend, const std::string& op,
            const std::vector<double>& us) {
  const double p50 = Percentile(us, 0.50), p99 = Percentile(us, 0.99);
  state.counters["p50_us"] = p50;
  state.counters["p99_us"] = p99;
  state.counters["samples"] = static_cast<double>(us.size());
  Results()[{backend, op}] = {p50, p99};
}

Backend* Prepare(const std::string& name, benchmark::State& state) {
  Backend& b = Backends()[name];
  if (b.ready) return &b;
  if (b.failed) {
    state.SkipWithError("set-up failed earlier");
    return nullptr;
  }
  b.failed = true;  // until the set-up below completes
  b.name = name;
  if (name == "sqlite") {
    b.url = store_testing::FreshSqliteUrl("store-bench");
  } else {
    b.url = store_testing::PostgresUrl();
    if (b.url.empty()) {
      char templ[] = "/tmp/store-bench-pg-XXXXXX";
      const char* tmp = mkdtemp(templ);
      // pg_server.sh runs the server as the `postgres` user when we are root: it must be able
      // to reach the directory.
      chmod(tmp, 0755);
      g_pg_dir = absl::StrCat(tmp, "/pg");
      g_pg_port = absl::StrCat(EnvInt("LOGN_BENCH_PG_PORT", 54337));
      const std::string cmd =
          absl::StrCat(LOGN_PG_SERVER_SCRIPT, " start ", g_pg_dir, " ", g_pg_port, " >&2");
      if (std::system(cmd.c_str()) != 0) {
        state.SkipWithError("cannot start PostgreSQL (pg_server.sh failed)");
        return nullptr;
      }
      std::ifstream in(g_pg_dir + "/url");
      std::getline(in, b.url);
    }
  }
  absl::StatusOr<std::unique_ptr<StatsStore>> store = OpenStatsStore(b.url);
  if (!store.ok()) {
    state.SkipWithError(store.status().ToString().c_str());
    return nullptr;
  }
  b.store = *std::move(store);
  b.model = store_testing::UniqueModel("bench-lvis");
  const int64_t n = EnvInt("LOGN_BENCH_VERSIONS", 10'000);
  // 64 distinct snapshots reused round-robin: generating 10,000 would dominate the set-up.
  std::vector<Statistics> snapshots;
  for (int i = 0; i < 64; ++i) snapshots.push_back(store_testing::RandomStatistics(kClasses, i));
  b.put_us.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    NewVersion v{b.model, snapshots[i % snapshots.size()]};
    v.job_id = absl::StrCat("bench-", i);
    v.description = "store_bench";
    const absl::Time start = absl::Now();
    absl::StatusOr<VersionRecord> r = b.store->Put(v);
    b.put_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return nullptr;
    }
  }
  if (!b.store->Activate(b.model, n).ok()) {
    state.SkipWithError("activate failed");
    return nullptr;
  }
  b.ready = true;
  b.failed = false;
  return &b;
}

void BM_Put(benchmark::State& state, const std::string& backend) {
  Backend* b = nullptr;
  for (auto _ : state) {
    b = Prepare(backend, state);
    if (b == nullptr) return;
  }
  Report(state, backend, "Put (fill of N versions)", b->put_us);
}

void BM_GetCold(benchmark::State& state, const std::string& backend) {
  Backend* b = Prepare(backend, state);
  if (b == nullptr) return;
  std::mt19937_64 rng(1);
  const int64_t n = static_cast<int64_t>(b->put_us.size());
  std::vector<double> us;
  for (auto _ : state) {
    const int64_t v = 1 + static_cast<int64_t>(rng() % n);
    const absl::Time start = absl::Now();
    absl::StatusOr<VersionRecord> r = b->store->Get(b->model, VersionSelector::Number(v));
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    benchmark::DoNotOptimize(r);
  }
  Report(state, backend, "Get, cold (store read)", us);
}

void BM_GetCached(benchmark::State& state, const std::string& backend) {
  Backend* b = Prepare(backend, state);
  if (b == nullptr) return;
  StatsCache cache(b->store.get(), {});
  if (!cache.GetActive(b->model).ok()) {
    state.SkipWithError("warm-up failed");
    return;
  }
  std::vector<double> us;
  for (auto _ : state) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<const CachedVersion>> r = cache.GetActive(b->model);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    benchmark::DoNotOptimize(r);
  }
  // Only the warm-up may read a version from the store: otherwise this did not time the hot
  // path.
  if (cache.counters().loads != 1) {
    state.SkipWithError("a cached Get read its version from the store");
    return;
  }
  Report(state, backend, "Get active, cached (StatsCache hit)", us);
}

void BM_List(benchmark::State& state, const std::string& backend) {
  Backend* b = Prepare(backend, state);
  if (b == nullptr) return;
  std::mt19937_64 rng(2);
  const int64_t n = static_cast<int64_t>(b->put_us.size());
  std::vector<double> us;
  for (auto _ : state) {
    const int64_t after = static_cast<int64_t>(rng() % std::max<int64_t>(1, n - 100));
    const std::string token = after == 0 ? "" : absl::StrCat("after:", after);
    const absl::Time start = absl::Now();
    absl::StatusOr<VersionPage> page = b->store->List(b->model, token, 100);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!page.ok()) state.SkipWithError(page.status().ToString().c_str());
    benchmark::DoNotOptimize(page);
  }
  Report(state, backend, "List, page of 100", us);
}

void RegisterAll() {
  std::vector<std::string> backends = {"sqlite"};
  if (EnvInt("LOGN_BENCH_SKIP_PG", 0) == 0) backends.push_back("postgres");
  for (const std::string& b : backends) {
    benchmark::RegisterBenchmark(("BM_Put/" + b).c_str(), BM_Put, b)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_GetCold/" + b).c_str(), BM_GetCold, b)
        ->Iterations(2000)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_GetCached/" + b).c_str(), BM_GetCached, b)
        ->Iterations(1'000'000)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_List/" + b).c_str(), BM_List, b)
        ->Iterations(2000)
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace logn

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  logn::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::printf("\n| backend | operation | p50 | p99 |\n|---|---|---:|---:|\n");
  for (const auto& [key, value] : logn::Results()) {
    auto fmt = [](double us) {
      return us >= 1000 ? absl::StrFormat("%.2f ms", us / 1000) : absl::StrFormat("%.2f µs", us);
    };
    std::printf("| %s | %s | %s | %s |\n", key.first.c_str(), key.second.c_str(),
                fmt(value.first).c_str(), fmt(value.second).c_str());
  }
  // The SQLite file is ~200 MB at 10,000 versions: remove it with its temporary directory.
  std::string sqlite_url;
  auto it = logn::Backends().find("sqlite");
  if (it != logn::Backends().end()) sqlite_url = it->second.url;
  logn::Backends().clear();  // close connections before the server goes away
  std::error_code ignored;
  if (absl::StartsWith(sqlite_url, "sqlite://")) {
    std::filesystem::remove_all(
        std::filesystem::path(sqlite_url.substr(std::string("sqlite://").size())).parent_path(),
        ignored);
  }
  if (!logn::g_pg_dir.empty()) {
    const std::string cmd = absl::StrCat(LOGN_PG_SERVER_SCRIPT, " stop ", logn::g_pg_dir, " ",
                                         logn::g_pg_port, " >&2");
    (void)std::system(cmd.c_str());
    std::filesystem::remove_all(std::filesystem::path(logn::g_pg_dir).parent_path(), ignored);
  }
  return 0;
}
