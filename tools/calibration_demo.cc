// Calibration core demo on generated logits (no model needed): streams "training" RoI logits from
// a simulated long-tail-biased classifier through the exact accumulator, then compares
// none / LogA / plain BN / LogN on a class-balanced "test" stream.
//
// The simulated head mimics what the paper measures on LVIS (Fig. 2): frequent classes get
// larger logit means and spreads. It is a sanity demo of the math, not a detection benchmark:
// the detection figures come from the trained demo models (README, main command).
//
// Usage: calibration_demo [--classes N] [--seed S]
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "calibration/accumulator.h"
#include "calibration/calibrator.h"

namespace logn {
namespace {

struct World {
  LogitLayout layout;
  std::vector<double> train_count;  // images per class, LVIS-shaped
  std::vector<char> group;          // 'r', 'c', 'f'
};

World MakeWorld(int classes, absl::BitGen& gen) {
  World w;
  w.layout = {classes, BackgroundPosition::kLast};
  for (int c = 0; c < classes; ++c) {
    // Zipf-like: a quarter rare (1-10), a third common (11-100), the rest frequent.
    const double q = static_cast<double>(c) / classes;
    double n = q < 0.25 ? 1 + 9 * q / 0.25
               : q < 0.58 ? 11 + 89 * (q - 0.25) / 0.33
                          : 101 * std::pow(30.0, (q - 0.58) / 0.42);
    n = std::round(n * absl::Uniform<double>(gen, 0.9, 1.1));
    w.train_count.push_back(std::max(1.0, n));
    w.group.push_back(w.train_count.back() <= 10 ? 'r' : w.train_count.back() <= 100 ? 'c' : 'f');
  }
  return w;
}

// One RoI's logits for true class `label` (−1 = background) from a head biased towards
// frequent classes: bias and spread grow with log frequency.
void SimulateRoi(const World& w, int label, absl::BitGen& gen, float* row) {
  const int classes = w.layout.num_classes;
  for (int c = 0; c < classes; ++c) {
    const double log_n = std::log(w.train_count[c]);
    const double bias = -6.0 + 0.9 * log_n;
    const double spread = 0.6 + 0.25 * log_n;
    double x = bias + spread * absl::Gaussian<double>(gen);
    if (c == label) x += 3.0 + 0.35 * log_n;  // evidence for the true class, weaker when rare
    row[w.layout.foreground_column(c)] = static_cast<float>(x);
  }
  row[w.layout.background_column()] =
      static_cast<float>((label < 0 ? 4.0 : 0.5) + absl::Gaussian<double>(gen));
}

struct Score {
  double correct[3] = {0, 0, 0};
  double total[3] = {0, 0, 0};
};

int GroupIndex(char g) { return g == 'r' ? 0 : g == 'c' ? 1 : 2; }

int Run(int classes, uint64_t seed) {
  absl::BitGen gen(std::seed_seq{seed});
  const World w = MakeWorld(classes, gen);
  const int width = w.layout.width();

  // Training stream: 75% background RoIs, foreground labels ∝ training frequency.
  std::discrete_distribution<int> train_label(w.train_count.begin(), w.train_count.end());
  ExactAccumulator accumulator(w.layout);
  std::vector<float> batch(512 * width);
  for (int b = 0; b < 400; ++b) {
    for (int r = 0; r < 512; ++r) {
      const int label = absl::Bernoulli(gen, 0.75) ? -1 : train_label(gen);
      SimulateRoi(w, label, gen, batch.data() + r * width);
    }
    if (!accumulator.Add({batch.data(), 512, width}).ok()) return 1;
  }
  const Statistics stats = accumulator.Snapshot().value();

  std::vector<std::pair<std::string, Calibrator>> methods;
  methods.emplace_back("none", Calibrator::Identity(w.layout));
  methods.emplace_back("LogA (tau=1)", Calibrator::ForLogA(w.layout, w.train_count, {}).value());
  LogNOptions bn;
  bn.use_beta = false;
  bn.normalize_background = true;
  methods.emplace_back("plain BN (all C+1, no beta)", Calibrator::ForLogN(stats, bn).value());
  LogNOptions no_beta;
  no_beta.use_beta = false;
  methods.emplace_back("LogN without beta (mu, sigma)", Calibrator::ForLogN(stats, no_beta).value());
  methods.emplace_back("LogN (mu, sigma, beta=min)", Calibrator::ForLogN(stats, {}).value());

  // Balanced test stream: every class equally often; accuracy = argmax over foreground.
  std::vector<Score> scores(methods.size());
  std::vector<float> row(width), calibrated(width);
  for (int i = 0; i < 200 * classes; ++i) {
    const int label = i % classes;
    SimulateRoi(w, label, gen, row.data());
    for (size_t m = 0; m < methods.size(); ++m) {
      calibrated = row;
      methods[m].second.ApplyUnchecked(calibrated.data(), 1);
      int best = 0;
      for (int c = 1; c < classes; ++c) {
        if (calibrated[w.layout.foreground_column(c)] >
            calibrated[w.layout.foreground_column(best)]) {
          best = c;
        }
      }
      const int g = GroupIndex(w.group[label]);
      scores[m].total[g] += 1;
      scores[m].correct[g] += best == label;
    }
  }
  absl::PrintF("Calibration core demo: %d classes, %lld training RoIs (75%% background), exact "
               "statistics, balanced test RoIs.\n", classes,
               static_cast<long long>(stats.count));
  absl::PrintF("LogN beta = min foreground mean = %.3f\n", methods.back().second.beta());
  absl::PrintF("Top-1 over the foreground classes only: beta matters against the background, "
               "which this table cannot show,\nbut beta/sigma_c still differs per class.\n\n");
  absl::PrintF("| %-30s | %7s | %7s | %7s | %7s |\n", "method", "acc_r", "acc_c", "acc_f", "acc");
  absl::PrintF("|%s|%s|%s|%s|%s|\n", std::string(32, '-'), std::string(9, '-'),
               std::string(9, '-'), std::string(9, '-'), std::string(9, '-'));
  for (size_t m = 0; m < methods.size(); ++m) {
    const Score& s = scores[m];
    const double all = (s.correct[0] + s.correct[1] + s.correct[2]) /
                       (s.total[0] + s.total[1] + s.total[2]);
    absl::PrintF("| %-30s | %6.1f%% | %6.1f%% | %6.1f%% | %6.1f%% |\n", methods[m].first,
                 100 * s.correct[0] / s.total[0], 100 * s.correct[1] / s.total[1],
                 100 * s.correct[2] / s.total[2], 100 * all);
  }
  return 0;
}

}  // namespace
}  // namespace logn

int main(int argc, char** argv) {
  int classes = 300;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--classes" || arg == "--seed") && i + 1 < argc) {
      const long long value = std::atoll(argv[++i]);
      if (value <= 0) {
        absl::FPrintF(stderr, "%s needs a positive integer\n", arg);
        return 2;
      }
      (arg == "--classes" ? classes = static_cast<int>(value) : seed = value);
    } else {
      absl::FPrintF(stderr, "usage: calibration_demo [--classes N] [--seed S]\n");
      return 2;
    }
  }
  return logn::Run(classes, seed);
}
