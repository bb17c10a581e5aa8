#ifndef LOGN_CLIENT_CLI_TUNE_H_
#define LOGN_CLIENT_CLI_TUNE_H_

// The engine of `logn tune`: every candidate calibration setting post-processed locally from one
// forward pass per image (the raw candidates Detect returns with include_raw_candidates) and
// evaluated with the LVIS protocol on a tuning part and a held-out part of the images, for
// several splits. The setting is chosen on the tuning part only; the held-out part, which took no
// part in the choice, is what the figures report. No RPC here: the command fetches the inputs.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "calibration/calibrator.h"
#include "calibration/layout.h"
#include "calibration/statistics.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/lvis_eval.h"
#include "server/runtime/postprocess.h"

namespace logn::cli {

// One image's candidates as the model returned them (original-image pixels).
struct CachedImage {
  int64_t image_id = 0;
  int64_t num_candidates = 0;
  bool class_specific = false;
  std::vector<float> boxes;   // N*4 or N*C*4, xyxy
  std::vector<float> logits;  // N*(C+1), the model's layout
};

// One candidate setting: a name (stable, used in reports) and the spec.
struct TuneSetting {
  std::string name;
  CalibrationSpec spec;
};

// The grid, in a fixed order (ties in the objective go to the earlier setting, so "none" wins a
// tie): none; the LogN family over α, γ ∈ {0, .25, .5, .75, 1} with β off and with each β policy
// of the paper's Table 3 that adapts to the statistics (min / avg / max foreground μ, and the
// background μ when `has_background`); plain BN inference; LogA τ ∈ {.25, .5, .75, 1, 1.25, 1.5}
// when `has_class_counts`. α = γ = 0 without β duplicates none and is left out.
std::vector<TuneSetting> TuningGrid(bool has_background, bool has_class_counts);

// Whether an image is held out (not used to choose) under split `seed`: a SplitMix64 hash of the
// image id and the seed mapped to [0, 1), compared with the fraction. Deterministic, independent
// of the image order, about `holdout_fraction` of the images.
bool IsHeldOut(int64_t image_id, uint64_t seed, double holdout_fraction);

enum class TuneObjective {
  kAp,         // AP
  kApRare,     // APr
  kGroupMean,  // (APr + APc + APf) / 3
};
// "ap", "apr", "group-mean".
absl::StatusOr<TuneObjective> ParseTuneObjective(absl::string_view text);
absl::string_view TuneObjectiveName(TuneObjective objective);
// The objective's value; a metric that is -1 (nothing to average) counts as 0.
double ObjectiveValue(TuneObjective objective, const LvisEvalResult& result);

struct TuneInput {
  const LvisDataset* ground_truth = nullptr;  // the images' annotations (every image of it)
  std::vector<CachedImage> images;            // images of the ground truth
  LogitLayout layout;
  std::vector<int64_t> category_ids;  // per foreground class, the manifest's order
  const Statistics* statistics = nullptr;  // the statistics version tuned (LogN settings)
  std::vector<double> class_counts;        // LogA; empty: no LogA setting
  PostprocessOptions postprocess;
  LvisEvalOptions eval;
  // Extra reference rows evaluated like the grid but never chosen (e.g. full LogN with another
  // statistics version): their name, spec and statistics.
  struct Reference {
    std::string name;
    CalibrationSpec spec;
    const Statistics* statistics = nullptr;
  };
  std::vector<Reference> references;
};

struct TuningOptions {
  TuneObjective objective = TuneObjective::kAp;
  double holdout_fraction = 0.5;  // in (0, 1)
  std::vector<uint64_t> seeds = {0, 1, 2};
  int threads = 2;
  // Called from worker threads, serialised, after each setting: (settings done, total).
  std::function<void(int, int)> progress;
};

// One setting's metrics: on every image, and per seed on the tuning and held-out parts.
struct SettingScores {
  TuneSetting setting;
  bool reference_only = false;  // a TuneInput::Reference: never chosen
  LvisEvalResult all_images;
  std::vector<LvisEvalResult> tuning;   // per seed
  std::vector<LvisEvalResult> heldout;  // per seed
};

struct TuneResult {
  std::vector<SettingScores> settings;  // the grid in order, then the references
  std::vector<int> chosen;              // per seed: index into settings (the grid's best)
  std::vector<int64_t> tuning_images;   // per seed
  std::vector<int64_t> heldout_images;  // per seed
  // Indices of the reference settings every report shows (-1 when not in the grid).
  int none_index = -1;
  int loga_index = -1;  // τ = 1
  int logn_index = -1;  // α = γ = 1, β = min foreground μ: the paper's LogN
};

// Runs the grid. INVALID_ARGUMENT for a holdout fraction outside (0, 1), no seeds, an image the
// ground truth does not have, candidates that do not match the layout, or a split whose tuning
// or held-out part is empty.
absl::StatusOr<TuneResult> RunTuning(const TuneInput& input, const TuningOptions& options);

// Mean and spread (max − min) of a metric over the seeds.
struct MeanSpread {
  double mean = 0;
  double spread = 0;
};
MeanSpread HeldOutMeanSpread(const std::vector<LvisEvalResult>& heldout,
                             double (*metric)(const LvisEvalResult&));

// One row of the held-out table: per seed, the held-out result it stands for.
struct HeldOutRow {
  std::string label;
  bool reference_only = false;
  std::vector<LvisEvalResult> heldout;
};
// The rows every report shows: "tuned" (per seed, that seed's own choice on its own held-out
// part: the procedure "tune, then serve"), "none", "loga" (τ = 1), "logn", then the references
// under their names.
std::vector<HeldOutRow> HeldOutRows(const TuneResult& result);

// The report as JSON: options, per seed the choice and the parts' sizes, every setting's
// metrics (all images, tuning and held-out mean over seeds), the references.
std::string TuneReportJson(const TuneResult& result, const TuningOptions& options,
                           absl::string_view model_name, int64_t statistics_version);
// A readable table: per seed the chosen setting; then held-out mean ± spread of AP, AP50, AP75,
// APr, APc, APf for the tuned choice, none, LogA, LogN and the references.
std::string TuneReportText(const TuneResult& result, const TuningOptions& options);
// An SVG heat map of held-out AP and APr (mean over seeds) over α (rows) × γ (columns) with the
// β policy of the first seed's choice (β off when it is not a LogN-family setting).
std::string TuneHeatMapSvg(const TuneResult& result, const TuningOptions& options);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_TUNE_H_
