// logn bench: the command line of the Detect load generator in client/cli/bench.h.

#include "client/cli/bench.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"

namespace logn::cli {
namespace {

// --concurrency 1,4,8,16.
void ParseConcurrency(const Args& args, std::vector<int>* levels) {
  if (!args.Has("--concurrency")) return;
  levels->clear();
  for (absl::string_view part : absl::StrSplit(args.Get("--concurrency"), ',')) {
    int c = 0;
    if (!absl::SimpleAtoi(part, &c) || c < 1 || c > 1024) {
      args.Fail("--concurrency takes a list of 1..1024, e.g. 1,4,8,16");
      return;
    }
    levels->push_back(c);
  }
}

BenchCommandOptions ParseBenchOptions(const Args& args) {
  BenchCommandOptions o;
  o.images_dir = args.Required("--images");
  o.dataset_path = args.Get("--dataset");
  o.max_images = static_cast<int>(args.Int("--max-images", 256, 1, 1 << 20));
  BenchOptions& b = o.bench;
  ParseConcurrency(args, &b.concurrency);
  b.request_rate = args.Double("--rate", 0, 0, 1e6);
  b.warmup = absl::Seconds(args.Double("--warmup", 2, 0, 3600));
  b.duration = absl::Seconds(args.Double("--duration", 10, 0.1, 86400));
  b.images_per_request = static_cast<int>(args.Int("--batch", 1, 1, 1024));
  b.csv_path = args.Get("--csv");
  b.json_path = args.Get("--json");
  SetModel(ReadModel(args), &b.request_template);
  SetSelector(ReadSelector(args), &b.request_template);
  *b.request_template.add_calibrations() = ReadMethod(args);
  *b.request_template.mutable_postprocess() = ReadPostprocess(args);
  return o;
}

int RunBenchCommand(Client& client, const BenchCommandOptions& options, const Io& io) {
  absl::StatusOr<std::vector<std::string>> images =
      LoadBenchImages(options.images_dir, options.dataset_path, options.max_images);
  if (!images.ok()) return ReportError(io, "bench", images.status());
  BenchOptions bench = options.bench;
  bench.images = *std::move(images);
  return RunBench(client, bench, io);
}

}  // namespace

Command BenchCommand() {
  return {"bench",
          "load-test Detect: throughput, latency percentiles, server/client split",
          absl::StrCat(
              R"(usage: logn bench --server ADDR --images DIR [--dataset FILE.json] [flags]

Load-tests Detect (like Triton's perf_analyzer): per concurrency level, a warm-up,
then DURATION of closed-loop requests (or --rate requests/s, open loop); reports
images/s, latency p50/p90/p95/p99, errors by status and the server's own queue /
decode / inference / post-processing time against the rest (client overhead).
  --images DIR           images to cycle through (every .png/.jpg, or the dataset's)
  --dataset FILE         LVIS/COCO JSON naming the files in DIR
  --max-images N         images loaded into memory (default 256)
  --concurrency LIST     levels, e.g. 1,4,8,16 (default)
  --rate R               open loop at R requests/s (concurrency caps those in flight)
  --warmup S             seconds per level before measuring (default 2)
  --duration S           seconds measured per level (default 10)
  --batch N              images per request (default 1)
  --csv FILE, --json FILE  also write the report
)",
              ModelGroup().help, SelectorGroup().help, MethodGroup().help, PostprocessGroup().help,
              "\n", ConnectionGroup().help),
          FlagSpec{{"--images", "--dataset", "--max-images", "--concurrency", "--rate", "--warmup",
                    "--duration", "--batch", "--csv", "--json"},
                   {}}
              .Add({&ModelGroup(), &SelectorGroup(), &MethodGroup(), &PostprocessGroup()}),
          ParseInto(&ParseBenchOptions),
          RunWithClient(&RunBenchCommand)};
}

}  // namespace logn::cli
