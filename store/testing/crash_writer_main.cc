// store_crash_writer URL MODEL_NAME NUM_CLASSES SEED_BASE
//
// The victim of store_crash_test: Puts versions of MODEL_NAME in a loop (every fifth one is
// also activated) until killed, and after each Put that returned OK writes "<version> <seed>\n"
// to stdout, unbuffered, so the parent knows which writes the store acknowledged. Each version's
// statistics are RandomStatistics(NUM_CLASSES, seed) with seed = SEED_BASE + i, and its job id is
// the seed, so the parent can check every surviving version is complete.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "store/stats_store.h"
#include "store/testing/test_stats.h"

int main(int argc, char** argv) {
  int32_t classes = 0;
  uint64_t seed_base = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[3], &classes) || !absl::SimpleAtoi(argv[4], &seed_base)) {
    std::cerr << "usage: store_crash_writer URL MODEL_NAME NUM_CLASSES SEED_BASE\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<logn::StatsStore>> store = logn::OpenStatsStore(argv[1]);
  if (!store.ok()) {
    std::cerr << "open: " << store.status() << "\n";
    return 1;
  }
  const logn::ModelKey model{argv[2], logn::Sha256Hex(argv[2])};
  for (uint64_t i = 0;; ++i) {
    const uint64_t seed = seed_base + i;
    logn::NewVersion v;
    v.model = model;
    v.statistics = logn::store_testing::RandomStatistics(classes, seed);
    v.job_id = absl::StrCat(seed);
    v.description = "crash test";
    absl::StatusOr<logn::VersionRecord> r = (*store)->Put(v);
    if (!r.ok()) {
      std::cerr << "put: " << r.status() << "\n";
      return 1;
    }
    const std::string line = absl::StrCat(r->info.version, " ", seed, "\n");
    if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return 1;
    }
    if (r->info.version % 5 == 0) {
      absl::Status s = (*store)->Activate(model, r->info.version).status();
      if (!s.ok()) {
        std::cerr << "activate: " << s << "\n";
        return 1;
      }
    }
  }
}
