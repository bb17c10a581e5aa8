#include "client/cli/bench.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/cli/errors.h"
#include "client/eval/lvis_dataset.h"
#include "google/protobuf/util/time_util.h"

namespace logn::cli {
namespace {

// What one finished request contributes to its level.
struct Sample {
  double latency_ms = 0;
  int images = 0;
  v1::ServerTiming timing;
};

struct LevelRecorder {
  absl::Mutex mu;
  std::vector<Sample> ok ABSL_GUARDED_BY(mu);
  std::map<std::string, int64_t> errors ABSL_GUARDED_BY(mu);
};

double Milliseconds(const google::protobuf::Duration& d) {
  return static_cast<double>(google::protobuf::util::TimeUtil::DurationToNanoseconds(d)) / 1e6;
}

double Median(std::vector<Sample>& samples, double (*field)(const Sample&)) {
  std::vector<double> values;
  values.reserve(samples.size());
  for (const Sample& s : samples) values.push_back(field(s));
  return Percentile(values, 0.5);
}

BenchLevel Summarize(int concurrency, double rate, double seconds, std::vector<Sample> ok,
                     std::map<std::string, int64_t> errors) {
  BenchLevel level;
  level.concurrency = concurrency;
  level.request_rate = rate;
  level.seconds = seconds;
  level.requests = static_cast<int64_t>(ok.size());
  level.errors = std::move(errors);
  std::vector<double> latencies;
  double sum = 0;
  for (const Sample& s : ok) {
    latencies.push_back(s.latency_ms);
    level.images += s.images;
    sum += s.latency_ms;
  }
  level.images_per_second = seconds > 0 ? level.images / seconds : 0;
  level.requests_per_second = seconds > 0 ? level.requests / seconds : 0;
  level.mean_ms = ok.empty() ? 0 : sum / static_cast<double>(ok.size());
  level.p50_ms = Percentile(latencies, 0.50);
  level.p90_ms = Percentile(latencies, 0.90);
  level.p95_ms = Percentile(latencies, 0.95);
  level.p99_ms = Percentile(latencies, 0.99);
  level.max_ms = latencies.empty() ? 0 : latencies.back();
  level.server_queue_ms =
      Median(ok, [](const Sample& s) { return Milliseconds(s.timing.queue_duration()); });
  level.server_decode_ms =
      Median(ok, [](const Sample& s) { return Milliseconds(s.timing.decode_duration()); });
  level.server_inference_ms =
      Median(ok, [](const Sample& s) { return Milliseconds(s.timing.inference_duration()); });
  level.server_postprocess_ms =
      Median(ok, [](const Sample& s) { return Milliseconds(s.timing.postprocess_duration()); });
  level.client_overhead_ms = Median(ok, [](const Sample& s) {
    const v1::ServerTiming& t = s.timing;
    return s.latency_ms -
           (Milliseconds(t.queue_duration()) + Milliseconds(t.decode_duration()) +
            Milliseconds(t.inference_duration()) + Milliseconds(t.postprocess_duration()));
  });
  return level;
}

BenchLevel RunLevel(Client& client, const BenchOptions& options, int concurrency) {
  const int per_request = std::max(1, options.images_per_request);
  std::atomic<int64_t> next_image{0};
  std::atomic<int64_t> next_slot{0};
  const absl::Time start = absl::Now();
  const absl::Time measure_from = start + options.warmup;
  const absl::Time end = measure_from + options.duration;
  LevelRecorder recorder;

  auto worker = [&]() {
    while (true) {
      // Open loop: request k is due at start + k / rate, and its latency counts from then.
      absl::Time due = absl::Now();
      if (options.request_rate > 0) {
        const int64_t k = next_slot.fetch_add(1);
        due = start + absl::Seconds(static_cast<double>(k) / options.request_rate);
        if (due >= end) return;
        const absl::Duration wait = due - absl::Now();
        if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
      } else if (due >= end) {
        return;
      }
      v1::DetectRequest request = options.request_template;
      for (int i = 0; i < per_request; ++i) {
        const int64_t n = next_image.fetch_add(1);
        request.add_images()->set_encoded(
            options.images[static_cast<size_t>(n) % options.images.size()]);
      }
      absl::StatusOr<v1::DetectResponse> response = client.Detect(request);
      const absl::Time done = absl::Now();
      if (due < measure_from || done > end) continue;  // warm-up, or past the window
      absl::MutexLock l(&recorder.mu);
      if (response.ok()) {
        recorder.ok.push_back(
            Sample{absl::ToDoubleMilliseconds(done - due), per_request, response->timing()});
      } else {
        ++recorder.errors[absl::StatusCodeToString(response.status().code())];
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  absl::MutexLock l(&recorder.mu);
  return Summarize(concurrency, options.request_rate, absl::ToDoubleSeconds(options.duration),
                   std::move(recorder.ok), std::move(recorder.errors));
}

std::string ErrorsText(const std::map<std::string, int64_t>& errors) {
  if (errors.empty()) return "-";
  std::vector<std::string> parts;
  for (const auto& [code, n] : errors) parts.push_back(absl::StrCat(code, "=", n));
  return absl::StrJoin(parts, ",");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> LoadBenchImages(const std::string& dir,
                                                         const std::string& dataset_path,
                                                         int max_images) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  if (!dataset_path.empty()) {
    absl::StatusOr<LvisDataset> dataset = ReadLvisDataset(dataset_path);
    if (!dataset.ok()) return dataset.status();
    for (const LvisImage& image : dataset->images) {
      paths.push_back((fs::path(dir) / image.file_name).string());
    }
  } else {
    std::error_code error;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, error)) {
      const std::string ext = absl::AsciiStrToLower(e.path().extension().string());
      if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg")) {
        paths.push_back(e.path().string());
      }
    }
    if (error) return absl::NotFoundError(absl::StrCat(dir, ": ", error.message()));
    std::sort(paths.begin(), paths.end());
  }
  if (paths.empty()) return absl::InvalidArgumentError(absl::StrCat("no images in ", dir));
  if (static_cast<int>(paths.size()) > max_images) paths.resize(static_cast<size_t>(max_images));
  std::vector<std::string> images;
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> bytes = ReadFileToString(path);
    if (!bytes.ok()) return bytes.status();
    images.push_back(*std::move(bytes));
  }
  return images;
}

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least q of the values at or below it.
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(index, values.size() - 1)];
}

std::vector<BenchLevel> RunBenchLevels(Client& client, const BenchOptions& options) {
  std::vector<BenchLevel> levels;
  for (int c : options.concurrency) levels.push_back(RunLevel(client, options, c));
  return levels;
}

std::string BenchCsv(const std::vector<BenchLevel>& levels) {
  std::string out =
      "concurrency,request_rate,requests,images,seconds,images_per_second,requests_per_second,"
      "p50_ms,p90_ms,p95_ms,p99_ms,mean_ms,max_ms,server_queue_ms,server_decode_ms,"
      "server_inference_ms,server_postprocess_ms,client_overhead_ms,errors\n";
  for (const BenchLevel& l : levels) {
    absl::StrAppendFormat(&out, "%d,%g,%d,%d,%g,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,"
                          "%.3f,%.3f,%.3f,%s\n",
                          l.concurrency, l.request_rate, l.requests, l.images, l.seconds,
                          l.images_per_second, l.requests_per_second, l.p50_ms, l.p90_ms,
                          l.p95_ms, l.p99_ms, l.mean_ms, l.max_ms, l.server_queue_ms,
                          l.server_decode_ms, l.server_inference_ms, l.server_postprocess_ms,
                          l.client_overhead_ms, ErrorsText(l.errors));
  }
  return out;
}

std::string BenchJson(const std::vector<BenchLevel>& levels) {
  std::vector<std::string> items;
  for (const BenchLevel& l : levels) {
    std::vector<std::string> errors;
    for (const auto& [code, n] : l.errors) errors.push_back(absl::StrFormat("\"%s\":%d", code, n));
    items.push_back(absl::StrFormat(
        "{\"concurrency\":%d,\"request_rate\":%g,\"requests\":%d,\"images\":%d,\"seconds\":%g,"
        "\"images_per_second\":%.4f,\"requests_per_second\":%.4f,\"latency_ms\":{\"p50\":%.4f,"
        "\"p90\":%.4f,\"p95\":%.4f,\"p99\":%.4f,\"mean\":%.4f,\"max\":%.4f},\"server_ms\":{"
        "\"queue\":%.4f,\"decode\":%.4f,\"inference\":%.4f,\"postprocess\":%.4f},"
        "\"client_overhead_ms\":%.4f,\"errors\":{%s}}",
        l.concurrency, l.request_rate, l.requests, l.images, l.seconds, l.images_per_second,
        l.requests_per_second, l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.mean_ms, l.max_ms,
        l.server_queue_ms, l.server_decode_ms, l.server_inference_ms, l.server_postprocess_ms,
        l.client_overhead_ms, absl::StrJoin(errors, ",")));
  }
  return absl::StrCat("[", absl::StrJoin(items, ","), "]\n");
}

int RunBench(Client& client, const BenchOptions& options, const Io& io) {
  if (options.images.empty()) {
    return ReportError(io, "bench", absl::InvalidArgumentError("no images to send"));
  }
  *io.out << absl::StrFormat(
      "%5s %8s %9s %9s %9s %9s %9s | %8s %8s %8s %8s %8s | %s\n", "conc", "requests", "images/s",
      "p50 ms", "p90 ms", "p95 ms", "p99 ms", "queue", "decode", "infer", "post", "client",
      "errors");
  std::vector<BenchLevel> levels;
  for (int c : options.concurrency) {
    BenchOptions one = options;
    one.concurrency = {c};
    levels.push_back(RunBenchLevels(client, one)[0]);
    const BenchLevel& l = levels.back();
    *io.out << absl::StrFormat(
        "%5d %8d %9.2f %9.2f %9.2f %9.2f %9.2f | %8.2f %8.2f %8.2f %8.2f %8.2f | %s\n",
        l.concurrency, l.requests, l.images_per_second, l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms,
        l.server_queue_ms, l.server_decode_ms, l.server_inference_ms, l.server_postprocess_ms,
        l.client_overhead_ms, ErrorsText(l.errors));
    io.out->flush();
  }
  for (const auto& [path, content] : {std::pair<std::string, std::string>{options.csv_path,
                                                                          BenchCsv(levels)},
                                      {options.json_path, BenchJson(levels)}}) {
    if (path.empty()) continue;
    std::ofstream out(path);
    out << content;
    if (!out) {
      return ReportError(io, "bench",
                         absl::PermissionDeniedError(absl::StrCat("cannot write ", path)));
    }
  }
  int64_t failed = 0;
  for (const BenchLevel& l : levels) {
    for (const auto& [code, n] : l.errors) failed += n;
  }
  return failed == 0 ? kExitOk : kExitError;
}

}  // namespace logn::cli
