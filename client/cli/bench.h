#ifndef LOGN_CLIENT_CLI_BENCH_H_
#define LOGN_CLIENT_CLI_BENCH_H_

// `logn bench`: a load generator for DetectionService.Detect in the manner of Triton's
// perf_analyzer. Closed loop (N concurrent callers, each sending its next request when the last
// one returns) or open loop (a fixed request rate, latency measured from each request's
// scheduled start so that a slow server cannot hide queueing), with a warm-up, per level:
// throughput, latency percentiles, errors by status code, and how a request's latency splits
// into the server's own queue / decode / inference / post-processing time (from the response's
// ServerTiming) and the rest (client, network, gRPC).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cli/command.h"
#include "client/lib/client.h"

namespace logn::cli {

struct BenchOptions {
  std::vector<std::string> images;  // encoded image bytes, cycled through
  std::vector<int> concurrency = {1, 4, 8, 16};
  // > 0: open loop at this many requests/s (each level's concurrency bounds requests in flight).
  double request_rate = 0;
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  int images_per_request = 1;
  v1::DetectRequest request_template;  // settings, selector, post-processing; images are added
  std::string csv_path;
  std::string json_path;
};

// One measured level.
struct BenchLevel {
  int concurrency = 0;
  double request_rate = 0;  // 0: closed loop
  int64_t requests = 0;     // completed OK in the measurement window
  int64_t images = 0;
  double seconds = 0;
  double images_per_second = 0;
  double requests_per_second = 0;
  // Latency in milliseconds: p50, p90, p95, p99, mean, max.
  double p50_ms = 0, p90_ms = 0, p95_ms = 0, p99_ms = 0, mean_ms = 0, max_ms = 0;
  // Medians over OK requests, milliseconds: the server's parts and what is left for the client.
  double server_queue_ms = 0, server_decode_ms = 0, server_inference_ms = 0,
         server_postprocess_ms = 0, client_overhead_ms = 0;
  std::map<std::string, int64_t> errors;  // status code name -> count
};

// Encoded images for a run: the dataset's file_name entries under `dir` when `dataset_path` is
// set, else every .png / .jpg / .jpeg file in `dir` (sorted); at most `max_images`.
absl::StatusOr<std::vector<std::string>> LoadBenchImages(const std::string& dir,
                                                         const std::string& dataset_path,
                                                         int max_images);

// The q-quantile (0..1) of `values` by the nearest-rank method; 0 for an empty vector. Sorts.
double Percentile(std::vector<double>& values, double q);

// Runs every level in order. Errors of individual requests are counted, not fatal.
std::vector<BenchLevel> RunBenchLevels(Client& client, const BenchOptions& options);

// The report: a table on io.out, and CSV / JSON files when asked. Exit code like the other commands.
int RunBench(Client& client, const BenchOptions& options, const Io& io);

std::string BenchCsv(const std::vector<BenchLevel>& levels);
std::string BenchJson(const std::vector<BenchLevel>& levels);

}  // namespace logn::cli

#endif  // LOGN_CLIENT_CLI_BENCH_H_
