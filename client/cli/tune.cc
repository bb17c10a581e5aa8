#include "client/cli/tune.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"

namespace logn::cli {
namespace {

constexpr double kGridSteps[] = {0.0, 0.25, 0.5, 0.75, 1.0};
constexpr double kLogATaus[] = {0.25, 0.5, 0.75, 1.0, 1.25, 1.5};

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mix.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string FamilyName(double alpha, double gamma, const char* beta) {
  return absl::StrFormat("logn(a=%g,g=%g,beta=%s)", alpha, gamma, beta);
}

double Ap(const LvisEvalResult& r) { return r.ap; }
double Ap50(const LvisEvalResult& r) { return r.ap50; }
double Ap75(const LvisEvalResult& r) { return r.ap75; }
double ApRare(const LvisEvalResult& r) { return r.ap_rare; }
double ApCommon(const LvisEvalResult& r) { return r.ap_common; }
double ApFrequent(const LvisEvalResult& r) { return r.ap_frequent; }

// The setting's detections on every image, as the LVIS evaluator takes them.
absl::StatusOr<std::vector<LvisDetection>> DetectionsOf(const TuneInput& input,
                                                        const Calibrator& calibrator) {
  std::vector<LvisDetection> out;
  for (const CachedImage& image : input.images) {
    const CandidatesView view{image.num_candidates, image.class_specific, image.boxes,
                              image.logits};
    LOGN_ASSIGN_OR_RETURN(std::vector<Detection> detections,
                          Postprocess(calibrator, view, input.postprocess));
    for (const Detection& d : detections) {
      // Width and height in float, as `logn detect` / `logn compare` compute them from the
      // response's float box: the same numbers reach the evaluator.
      out.push_back(LvisDetection{image.image_id, input.category_ids[d.label],
                                  BoxXywh{d.box[0], d.box[1], d.box[2] - d.box[0],
                                          d.box[3] - d.box[1]},
                                  d.score});
    }
  }
  return out;
}

struct Split {
  absl::flat_hash_set<int64_t> tuning;
  absl::flat_hash_set<int64_t> heldout;
};

absl::Status ValidateInput(const TuneInput& input, const TuningOptions& options) {
  if (!(options.holdout_fraction > 0 && options.holdout_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the held-out fraction must be in (0, 1), got ", options.holdout_fraction));
  }
  if (options.seeds.empty()) return absl::InvalidArgumentError("tuning needs at least one seed");
  if (input.ground_truth == nullptr || input.images.empty()) {
    return absl::InvalidArgumentError("tuning needs images with ground truth");
  }
  if (static_cast<int32_t>(input.category_ids.size()) != input.layout.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.category_ids.size(), " category ids for ", input.layout.num_classes, " classes"));
  }
  absl::flat_hash_set<int64_t> known;
  for (const LvisImage& image : input.ground_truth->images) known.insert(image.id);
  const int64_t width = input.layout.width();
  for (const CachedImage& image : input.images) {
    if (!known.contains(image.image_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image ", image.image_id, " is not in the ground truth"));
    }
    const int64_t box_floats =
        image.num_candidates * 4 * (image.class_specific ? input.layout.num_classes : 1);
    if (static_cast<int64_t>(image.logits.size()) != image.num_candidates * width ||
        static_cast<int64_t>(image.boxes.size()) != box_floats) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", image.image_id, ": candidates do not match the model's layout"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<TuneSetting> TuningGrid(bool has_background, bool has_class_counts) {
  std::vector<TuneSetting> grid;
  grid.push_back({"none", CalibrationSpec{CalibrationMethod::kNone, {}, {}}});
  struct Beta {
    const char* name;
    bool on;
    BetaPolicy policy;
  };
  std::vector<Beta> betas = {{"off", false, BetaPolicy::kMinForegroundMean},
                             {"min_fg_mean", true, BetaPolicy::kMinForegroundMean},
                             {"avg_fg_mean", true, BetaPolicy::kAvgForegroundMean},
                             {"max_fg_mean", true, BetaPolicy::kMaxForegroundMean}};
  if (has_background) betas.push_back({"background_mean", true, BetaPolicy::kBackgroundMean});
  for (const Beta& beta : betas) {
    for (double alpha : kGridSteps) {
      for (double gamma : kGridSteps) {
        if (alpha == 0 && gamma == 0 && !beta.on) continue;  // = none
        CalibrationSpec spec;
        spec.method = CalibrationMethod::kLogN;
        spec.logn.mean_weight = alpha;
        spec.logn.std_exponent = gamma;
        spec.logn.use_beta = beta.on;
        spec.logn.beta_policy = beta.policy;
        grid.push_back({FamilyName(alpha, gamma, beta.name), spec});
      }
    }
  }
  if (has_background) {
    CalibrationSpec bn;
    bn.method = CalibrationMethod::kLogN;
    bn.logn.use_beta = false;
    bn.logn.normalize_background = true;
    grid.push_back({"bn", bn});
  }
  if (has_class_counts) {
    for (double tau : kLogATaus) {
      CalibrationSpec loga;
      loga.method = CalibrationMethod::kLogA;
      loga.loga.tau = tau;
      grid.push_back({absl::StrFormat("loga(tau=%g)", tau), loga});
    }
  }
  return grid;
}

bool IsHeldOut(int64_t image_id, uint64_t seed, double holdout_fraction) {
  const uint64_t h = Mix64(Mix64(seed + 0x9E3779B97F4A7C15ULL) ^ static_cast<uint64_t>(image_id));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < holdout_fraction;
}

absl::StatusOr<TuneObjective> ParseTuneObjective(absl::string_view text) {
  if (text == "ap") return TuneObjective::kAp;
  if (text == "apr") return TuneObjective::kApRare;
  if (text == "group-mean") return TuneObjective::kGroupMean;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown objective '", text, "': expected ap, apr or group-mean"));
}

absl::string_view TuneObjectiveName(TuneObjective objective) {
  switch (objective) {
    case TuneObjective::kAp: return "ap";
    case TuneObjective::kApRare: return "apr";
    case TuneObjective::kGroupMean: return "group-mean";
  }
  return "unknown";
}

double ObjectiveValue(TuneObjective objective, const LvisEvalResult& r) {
  const auto valid = [](double v) { return v < 0 ? 0.0 : v; };
  switch (objective) {
    case TuneObjective::kAp: return valid(r.ap);
    case TuneObjective::kApRare: return valid(r.ap_rare);
    case TuneObjective::kGroupMean:
      return (valid(r.ap_rare) + valid(r.ap_common) + valid(r.ap_frequent)) / 3;
  }
  return 0;
}

namespace {

// Per seed, the tuning and held-out image ids, with their sizes recorded in `result`.
absl::StatusOr<std::vector<Split>> MakeSplits(const TuneInput& input,
                                              const TuningOptions& options, TuneResult* result) {
  std::vector<Split> splits(options.seeds.size());
  for (size_t s = 0; s < options.seeds.size(); ++s) {
    for (const CachedImage& image : input.images) {
      (IsHeldOut(image.image_id, options.seeds[s], options.holdout_fraction) ? splits[s].heldout
                                                                            : splits[s].tuning)
          .insert(image.image_id);
    }
    if (splits[s].tuning.empty() || splits[s].heldout.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "split seed ", options.seeds[s], " leaves an empty part of ", input.images.size(),
          " images: use more images or another held-out fraction"));
    }
    result->tuning_images.push_back(static_cast<int64_t>(splits[s].tuning.size()));
    result->heldout_images.push_back(static_cast<int64_t>(splits[s].heldout.size()));
  }
  return splits;
}

struct Job {
  TuneSetting setting;
  const Statistics* statistics;
  bool reference_only;
};

// One setting: post-processed on every image, matched once, summarised on every part.
absl::StatusOr<SettingScores> Score(const TuneInput& input, const Job& job,
                                    const std::vector<Split>& splits) {
  LOGN_ASSIGN_OR_RETURN(const Calibrator calibrator,
                        MakeCalibrator(job.setting.spec, input.layout, job.statistics,
                                       input.class_counts));
  LOGN_ASSIGN_OR_RETURN(const std::vector<LvisDetection> detections,
                        DetectionsOf(input, calibrator));
  LOGN_ASSIGN_OR_RETURN(const LvisEvaluation evaluation,
                        LvisEvaluation::Create(*input.ground_truth, detections, input.eval));
  SettingScores scores;
  scores.setting = job.setting;
  scores.reference_only = job.reference_only;
  scores.all_images = evaluation.Summarise();
  for (const Split& split : splits) {
    scores.tuning.push_back(evaluation.Summarise(&split.tuning));
    scores.heldout.push_back(evaluation.Summarise(&split.heldout));
  }
  return scores;
}

// Every job on `threads` threads; the first error wins.
absl::StatusOr<std::vector<SettingScores>> ScoreAll(const TuneInput& input,
                                                    const std::vector<Job>& jobs,
                                                    const std::vector<Split>& splits,
                                                    const TuningOptions& options) {
  std::vector<SettingScores> scores(jobs.size());
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  int done = 0;
  auto work = [&] {
    for (size_t j = next++; j < jobs.size(); j = next++) {
      absl::StatusOr<SettingScores> scored = Score(input, jobs[j], splits);
      absl::MutexLock lock(&mu);
      if (scored.ok()) {
        scores[j] = *std::move(scored);
      } else if (first_error.ok()) {
        first_error = absl::Status(scored.status().code(), absl::StrCat(
            jobs[j].setting.name, ": ", scored.status().message()));
      }
      ++done;
      if (options.progress) options.progress(done, static_cast<int>(jobs.size()));
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < std::max(1, options.threads); ++t) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
  LOGN_RETURN_IF_ERROR(first_error);
  return scores;
}

}  // namespace

absl::StatusOr<TuneResult> RunTuning(const TuneInput& input, const TuningOptions& options) {
  LOGN_RETURN_IF_ERROR(ValidateInput(input, options));
  TuneResult result;
  LOGN_ASSIGN_OR_RETURN(const std::vector<Split> splits, MakeSplits(input, options, &result));
  std::vector<Job> jobs;
  for (TuneSetting& setting :
       TuningGrid(input.layout.has_background(), !input.class_counts.empty())) {
    if (setting.spec.method == CalibrationMethod::kLogN && input.statistics == nullptr) continue;
    jobs.push_back({std::move(setting), input.statistics, false});
  }
  for (const TuneInput::Reference& reference : input.references) {
    jobs.push_back({{reference.name, reference.spec}, reference.statistics, true});
  }
  LOGN_ASSIGN_OR_RETURN(result.settings, ScoreAll(input, jobs, splits, options));

  // The choice: per seed, the best tuning-part objective; ties go to the earlier setting.
  for (size_t s = 0; s < splits.size(); ++s) {
    int best = -1;
    for (size_t j = 0; j < result.settings.size(); ++j) {
      if (result.settings[j].reference_only) continue;
      if (best < 0 || ObjectiveValue(options.objective, result.settings[j].tuning[s]) >
                          ObjectiveValue(options.objective, result.settings[best].tuning[s])) {
        best = static_cast<int>(j);
      }
    }
    result.chosen.push_back(best);
  }
  for (size_t j = 0; j < result.settings.size(); ++j) {
    const std::string& name = result.settings[j].setting.name;
    if (name == "none") result.none_index = static_cast<int>(j);
    if (name == "loga(tau=1)") result.loga_index = static_cast<int>(j);
    if (name == FamilyName(1, 1, "min_fg_mean")) result.logn_index = static_cast<int>(j);
  }
  return result;
}

MeanSpread HeldOutMeanSpread(const std::vector<LvisEvalResult>& heldout,
                             double (*metric)(const LvisEvalResult&)) {
  MeanSpread out;
  if (heldout.empty()) return out;
  double lo = metric(heldout[0]), hi = lo, sum = 0;
  for (const LvisEvalResult& r : heldout) {
    const double v = metric(r);
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  out.mean = sum / static_cast<double>(heldout.size());
  out.spread = hi - lo;
  return out;
}

std::vector<HeldOutRow> HeldOutRows(const TuneResult& result) {
  std::vector<HeldOutRow> rows;
  HeldOutRow tuned{"tuned", false, {}};
  for (size_t s = 0; s < result.chosen.size(); ++s) {
    tuned.heldout.push_back(result.settings[result.chosen[s]].heldout[s]);
  }
  rows.push_back(std::move(tuned));
  auto add = [&](const std::string& label, int index) {
    if (index < 0) return;
    const SettingScores& scores = result.settings[index];
    rows.push_back(HeldOutRow{label, scores.reference_only, scores.heldout});
  };
  add("none", result.none_index);
  add("loga", result.loga_index);
  add("logn", result.logn_index);
  for (size_t j = 0; j < result.settings.size(); ++j) {
    if (result.settings[j].reference_only) add(result.settings[j].setting.name, j);
  }
  return rows;
}

namespace {

struct Metric {
  const char* name;
  double (*get)(const LvisEvalResult&);
};
constexpr Metric kMetrics[] = {{"AP", &Ap},       {"AP50", &Ap50},     {"AP75", &Ap75},
                               {"APr", &ApRare}, {"APc", &ApCommon}, {"APf", &ApFrequent}};

std::string MetricsJson(const LvisEvalResult& r) {
  return absl::StrFormat(
      "{\"AP\":%.17g,\"AP50\":%.17g,\"AP75\":%.17g,\"APr\":%.17g,\"APc\":%.17g,\"APf\":%.17g}",
      r.ap, r.ap50, r.ap75, r.ap_rare, r.ap_common, r.ap_frequent);
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

}  // namespace

std::string TuneReportJson(const TuneResult& result, const TuningOptions& options,
                           absl::string_view model_name, int64_t statistics_version) {
  std::vector<std::string> seeds, splits, settings, heldout;
  for (size_t s = 0; s < options.seeds.size(); ++s) {
    seeds.push_back(absl::StrCat(options.seeds[s]));
    const SettingScores& chosen = result.settings[result.chosen[s]];
    splits.push_back(absl::StrCat(
        "{\"seed\":", options.seeds[s], ",\"tuning_images\":", result.tuning_images[s],
        ",\"heldout_images\":", result.heldout_images[s], ",\"chosen\":",
        Quoted(chosen.setting.name), ",\"chosen_tuning\":", MetricsJson(chosen.tuning[s]),
        ",\"chosen_heldout\":", MetricsJson(chosen.heldout[s]), "}"));
  }
  for (const SettingScores& scores : result.settings) {
    std::vector<std::string> tuning, held;
    for (const LvisEvalResult& r : scores.tuning) tuning.push_back(MetricsJson(r));
    for (const LvisEvalResult& r : scores.heldout) held.push_back(MetricsJson(r));
    const LogNOptions& o = scores.setting.spec.logn;
    std::string params;
    if (scores.setting.spec.method == CalibrationMethod::kLogN) {
      params = absl::StrFormat(
          ",\"alpha\":%g,\"gamma\":%g,\"beta\":%s,\"normalize_background\":%s", o.mean_weight,
          o.std_exponent,
          Quoted(o.use_beta ? BetaPolicyName(o.beta_policy) : absl::string_view("off")),
          o.normalize_background ? "true" : "false");
    } else if (scores.setting.spec.method == CalibrationMethod::kLogA) {
      params = absl::StrFormat(",\"tau\":%g", scores.setting.spec.loga.tau);
    }
    settings.push_back(absl::StrCat(
        "{\"setting\":", Quoted(scores.setting.name), ",\"method\":",
        Quoted(CalibrationMethodName(scores.setting.spec.method)), params,
        ",\"reference_only\":", scores.reference_only ? "true" : "false",
        ",\"all_images\":", MetricsJson(scores.all_images), ",\"tuning\":[",
        absl::StrJoin(tuning, ","), "],\"heldout\":[", absl::StrJoin(held, ","), "]}"));
  }
  for (const HeldOutRow& row : HeldOutRows(result)) {
    std::vector<std::string> metrics;
    for (const Metric& m : kMetrics) {
      const MeanSpread ms = HeldOutMeanSpread(row.heldout, m.get);
      metrics.push_back(
          absl::StrFormat("\"%s\":{\"mean\":%.17g,\"spread\":%.17g}", m.name, ms.mean, ms.spread));
    }
    heldout.push_back(absl::StrCat("{\"setting\":", Quoted(row.label), ",",
                                   absl::StrJoin(metrics, ","), "}"));
  }
  return absl::StrCat(
      "{\"model\":", Quoted(model_name), ",\"statistics_version\":", statistics_version,
      ",\"objective\":", Quoted(TuneObjectiveName(options.objective)),
      ",\"holdout_fraction\":", absl::StrFormat("%.17g", options.holdout_fraction),
      ",\"seeds\":[", absl::StrJoin(seeds, ","), "],\"splits\":[", absl::StrJoin(splits, ","),
      "],\"heldout\":[", absl::StrJoin(heldout, ","), "],\"settings\":[",
      absl::StrJoin(settings, ","), "]}");
}

std::string TuneReportText(const TuneResult& result, const TuningOptions& options) {
  std::string out;
  absl::StrAppendFormat(&out, "objective %s; %d settings; %d splits\n",
                        TuneObjectiveName(options.objective), result.settings.size(),
                        options.seeds.size());
  for (size_t s = 0; s < options.seeds.size(); ++s) {
    const SettingScores& chosen = result.settings[result.chosen[s]];
    absl::StrAppendFormat(
        &out, "  seed %d: %d tuning / %d held-out images; chose %s (tuning %s %.3f)\n",
        options.seeds[s], result.tuning_images[s], result.heldout_images[s],
        chosen.setting.name, TuneObjectiveName(options.objective),
        ObjectiveValue(options.objective, chosen.tuning[s]));
  }
  absl::StrAppendFormat(&out, "\nheld-out images (mean ± spread over %d splits, AP in %%)\n",
                        options.seeds.size());
  absl::StrAppendFormat(&out, "%-28s", "setting");
  for (const Metric& m : kMetrics) absl::StrAppendFormat(&out, " %12s", m.name);
  out += "\n";
  for (const HeldOutRow& row : HeldOutRows(result)) {
    absl::StrAppendFormat(&out, "%-28s", row.label);
    for (const Metric& m : kMetrics) {
      const MeanSpread ms = HeldOutMeanSpread(row.heldout, m.get);
      if (ms.mean < 0) {
        absl::StrAppendFormat(&out, " %12s", "-");  // nothing to average (no such class)
      } else {
        absl::StrAppendFormat(&out, " %6.1f ± %3.1f", 100 * ms.mean, 100 * ms.spread);
      }
    }
    out += "\n";
  }
  return out;
}

std::string TuneHeatMapSvg(const TuneResult& result, const TuningOptions& options) {
  // The β of the first seed's choice (off for none / LogA / BN).
  std::string beta = "off";
  const TuneSetting& first = result.settings[result.chosen[0]].setting;
  if (first.spec.method == CalibrationMethod::kLogN && first.spec.logn.use_beta &&
      !first.spec.logn.normalize_background) {
    beta = std::string(BetaPolicyName(first.spec.logn.beta_policy));
  }
  absl::flat_hash_map<std::string, const SettingScores*> by_name;
  for (const SettingScores& scores : result.settings) by_name[scores.setting.name] = &scores;
  const int cell = 56, left = 70, top = 60, panel = 5 * cell + 110;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<text x=\"10\" y=\"20\" font-size=\"14\">held-out %s (mean of %d splits), "
      "x&#770; = (x &#8722; &#945;&#183;&#956; + &#946;) / (&#963;&#178; + &#949;)^(&#947;/2), "
      "&#946;: %s; objective %s</text>\n",
      left + 2 * panel, top + 5 * cell + 50, "AP / APr", options.seeds.size(), beta,
      TuneObjectiveName(options.objective));
  const Metric panels[] = {kMetrics[0], kMetrics[3]};
  for (int p = 0; p < 2; ++p) {
    const int x0 = left + p * panel;
    double lo = 1, hi = 0;
    std::vector<double> values;
    for (double alpha : kGridSteps) {
      for (double gamma : kGridSteps) {
        const std::string name =
            alpha == 0 && gamma == 0 && beta == "off" ? "none" : FamilyName(alpha, gamma, beta.c_str());
        const auto it = by_name.find(name);
        const double v =
            it == by_name.end() ? -1 : HeldOutMeanSpread(it->second->heldout, panels[p].get).mean;
        values.push_back(v);
        if (v >= 0) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
    }
    absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" font-size=\"13\">%s</text>\n",
                          x0 + 2 * cell, top - 20, panels[p].name);
    for (int a = 0; a < 5; ++a) {
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">&#945;=%g</text>\n",
                            x0 - 6, top + a * cell + cell / 2 + 4, kGridSteps[a]);
      for (int g = 0; g < 5; ++g) {
        const double v = values[a * 5 + g];
        const double t = hi > lo && v >= 0 ? (v - lo) / (hi - lo) : 0;
        // Dark blue (worst) to yellow (best).
        const int r = static_cast<int>(30 + 225 * t), gr = static_cast<int>(40 + 190 * t),
                  b = static_cast<int>(120 - 90 * t);
        absl::StrAppendFormat(
            &svg,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"/>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n",
            x0 + g * cell, top + a * cell, cell - 2, cell - 2, r, gr, b, x0 + g * cell + cell / 2,
            top + a * cell + cell / 2 + 4, t > 0.5 ? "black" : "white",
            v < 0 ? "-" : absl::StrFormat("%.1f", 100 * v));
      }
    }
    for (int g = 0; g < 5; ++g) {
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">&#947;=%g</text>\n",
                            x0 + g * cell + cell / 2, top + 5 * cell + 16, kGridSteps[g]);
    }
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace logn::cli
