// logn eval: LVIS bbox evaluation of a results file; local, the same output as logn_eval_main.

#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/lvis_eval.h"

namespace logn::cli {

namespace {

EvalOptions ParseEvalOptions(const Args& args) {
  EvalOptions o;
  o.gt_path = args.Required("--gt");
  o.dt_path = args.Required("--dt");
  o.per_class = args.Has("--per-class");
  o.json = args.Has("--json");
  return o;
}

int RunEval(const EvalOptions& options, const Io& io) {
  absl::StatusOr<LvisDataset> gt = ReadLvisDataset(options.gt_path);
  if (!gt.ok()) return ReportError(io, "eval", gt.status());
  absl::StatusOr<std::vector<LvisDetection>> dt = ReadLvisResults(options.dt_path);
  if (!dt.ok()) return ReportError(io, "eval", dt.status());
  absl::StatusOr<LvisEvalResult> result = EvaluateLvis(*gt, *dt);
  if (!result.ok()) return ReportError(io, "eval", result.status());
  if (options.json) {
    *io.out << LvisEvalResultToJson(*result, options.per_class) << "\n";
  } else {
    *io.out << FormatLvisEvalResult(*result, options.per_class);
  }
  return kExitOk;
}

}  // namespace

Command EvalCommand() {
  return {"eval",
          "LVIS bbox evaluation of a results file",
          R"(usage: logn eval --gt GT.json --dt RESULTS.json [--per-class] [--json]

LVIS bbox evaluation (lvis-api protocol: IoU 0.50:0.05:0.95, 101 recall points, at most
300 detections per image, federated neg/not-exhaustive rules; see docs/evaluation.md).

  --gt PATH      LVIS-format ground truth
  --dt PATH      results: JSON array of {image_id, category_id, bbox [x,y,w,h], score}
  --per-class    also print the AP of every category
  --json         print one JSON object instead of the text summary
)",
          FlagSpec{{"--gt", "--dt"}, {"--per-class", "--json"}, /*connects=*/false},
          ParseInto(&ParseEvalOptions),
          RunLocally(&RunEval)};
}

}  // namespace logn::cli
