// logn_eval_main: LVIS bbox evaluation of a results file against LVIS-format ground truth.
// Becomes the `logn eval` subcommand; the argument syntax is already the CLI's.
//
//   logn_eval_main --gt val.json --dt results.json [--per-class] [--json]
//
// Exit codes: 0 success, 1 unreadable or invalid input files, 2 bad arguments.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "client/eval/lvis_dataset.h"
#include "client/eval/lvis_eval.h"

namespace {

constexpr char kUsage[] =
    "usage: logn eval --gt GT.json --dt RESULTS.json [--per-class] [--json]\n"
    "\n"
    "LVIS bbox evaluation (lvis-api protocol: IoU 0.50:0.05:0.95, 101 recall points, at most\n"
    "300 detections per image, federated neg/not-exhaustive rules; see docs/evaluation.md).\n"
    "\n"
    "  --gt PATH      LVIS-format ground truth (images with neg_category_ids and\n"
    "                 not_exhaustive_category_ids, annotations, categories with frequency)\n"
    "  --dt PATH      results: JSON array of {image_id, category_id, bbox [x,y,w,h], score}\n"
    "  --per-class    also print the AP of every category\n"
    "  --json         print one JSON object instead of the text summary\n"
    "  --help         this text\n"
    "\n"
    "Exit codes: 0 ok, 1 unreadable/invalid files, 2 bad arguments.\n";

int BadArgs(const std::string& reason) {
  std::cerr << "logn eval: " << reason << " (see --help)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string gt_path, dt_path;
  bool per_class = false, json = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    auto value = [&](absl::string_view name, std::string* out) -> int {
      // Accepts "--name VALUE" and "--name=VALUE"; 1 consumed, 0 not this flag, -1 missing value.
      if (arg == name) {
        if (i + 1 >= argc) return -1;
        *out = argv[++i];
        return 1;
      }
      if (absl::StartsWith(arg, absl::StrCat(name, "="))) {
        *out = std::string(arg.substr(name.size() + 1));
        return 1;
      }
      return 0;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--per-class") {
      per_class = true;
      continue;
    }
    if (arg == "--json") {
      json = true;
      continue;
    }
    int got = value("--gt", &gt_path);
    if (got == 0) got = value("--dt", &dt_path);
    if (got == 1) continue;
    if (got == -1) return BadArgs(std::string(arg) + " needs a value");
    return BadArgs("unknown argument '" + std::string(arg) + "'");
  }
  if (gt_path.empty()) return BadArgs("--gt is required");
  if (dt_path.empty()) return BadArgs("--dt is required");

  absl::StatusOr<logn::LvisDataset> gt = logn::ReadLvisDataset(gt_path);
  if (!gt.ok()) {
    std::cerr << "logn eval: ground truth: " << gt.status() << "\n";
    return 1;
  }
  absl::StatusOr<std::vector<logn::LvisDetection>> dt = logn::ReadLvisResults(dt_path);
  if (!dt.ok()) {
    std::cerr << "logn eval: results: " << dt.status() << "\n";
    return 1;
  }
  absl::StatusOr<logn::LvisEvalResult> result = logn::EvaluateLvis(*gt, *dt);
  if (!result.ok()) {
    std::cerr << "logn eval: " << result.status() << "\n";
    return 1;
  }
  if (json) {
    std::cout << logn::LvisEvalResultToJson(*result, per_class) << "\n";
  } else {
    std::cout << logn::FormatLvisEvalResult(*result, per_class);
  }
  return 0;
}
