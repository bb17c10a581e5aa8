// Serving figures measured side by side in one process (docs/performance.md, figures 1 and 4):
//   1. Detect over gRPC on 127.0.0.1 vs ServerCore::Detect in-process, same requests, one at a
//      time: p50 of each and the overhead ratio.
//   4. Calibrate ingest of precomputed [512 x 1204] float32 batches vs a raw-bytes sink RPC
//      carrying the same bytes over the same loopback transport: bytes/s of each.
//   0. The ceiling: images/s of the model's forward pass alone (decode and preprocessing
//      included, one image per call), in-process on --ceiling_threads threads of
//      --intra_op_threads each: what serving at concurrency 8 is compared with.
// Prints one JSON object. Run by bench/serving_report.py.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "server/core/proto_convert.h"
#include "server/core/server_core.h"
#include "server/grpc/grpc_server.h"
#include "sink.grpc.pb.h"

ABSL_FLAG(std::string, model, "", "detector for figure 1 (e.g. models/demo_ce/model.pt)");
ABSL_FLAG(std::string, images, "", "directory of .png/.jpg images for figure 1");
ABSL_FLAG(int32_t, requests, 300, "Detect requests per side (after 20 warm-up requests)");
ABSL_FLAG(std::string, lvis_model, "", "a 1,203-class contract model for figure 4");
ABSL_FLAG(int32_t, batches, 200, "LogitBatch messages of 512 x 1204 per ingest run");
ABSL_FLAG(int32_t, intra_op_threads, 1, "torch threads per forward pass");
ABSL_FLAG(std::string, work_dir, "/tmp/logn_serving_bench", "stores go here");
ABSL_FLAG(int32_t, ceiling_threads, 2, "threads calling Forward for the ceiling (the server's "
          "executor threads)");
ABSL_FLAG(double, ceiling_seconds, 10, "duration of the ceiling measurement");

namespace logn {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

double P50(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

class SinkService final : public bench::ByteSink::CallbackService {
  grpc::ServerReadReactor<bench::Chunk>* Consume(grpc::CallbackServerContext*,
                                                 bench::Received* received) override {
    class Reactor : public grpc::ServerReadReactor<bench::Chunk> {
     public:
      explicit Reactor(bench::Received* r) : received_(r) { StartRead(&chunk_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        received_->set_bytes(received_->bytes() + static_cast<int64_t>(chunk_.data().size()));
        received_->set_messages(received_->messages() + 1);
        StartRead(&chunk_);
      }
      void OnDone() override { delete this; }

     private:
      bench::Received* received_;
      bench::Chunk chunk_;
    };
    return new Reactor(received);
  }
};

struct Server {
  std::unique_ptr<ServerCore> core;
  ServerMetrics metrics;
  std::unique_ptr<GrpcServer> grpc;
  std::shared_ptr<grpc::Channel> channel;
};

std::unique_ptr<Server> StartServer(const std::string& model, const std::string& name) {
  auto s = std::make_unique<Server>();
  ServerCoreOptions options;
  options.runtime.model_path = model;
  options.runtime.intra_op_threads = absl::GetFlag(FLAGS_intra_op_threads);
  const fs::path db = fs::path(absl::GetFlag(FLAGS_work_dir)) / (name + ".db");
  fs::create_directories(db.parent_path());
  fs::remove(db);
  options.store_url = "sqlite://" + db.string();
  s->core = ServerCore::Create(options).value();
  GrpcServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  server_options.executor.num_threads = 1;
  s->grpc = GrpcServer::Start(server_options, &s->metrics).value();
  if (absl::Status serving = s->grpc->SetCore(s->core.get()); !serving.ok()) {
    std::cerr << "serving_bench: " << serving << "\n";
    std::abort();
  }
  s->channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", s->grpc->port()),
                                   grpc::InsecureChannelCredentials());
  return s;
}

void CeilingFigure(const std::vector<std::string>& images, const DetectorRuntime& runtime) {
  const int threads = absl::GetFlag(FLAGS_ceiling_threads);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_ceiling_seconds));
  std::vector<int64_t> done(threads, 0);
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; absl::Now() - start < duration; i += threads) {
        const ImageSource image = ImageSource::Encoded(images[i % images.size()]);
        if (!runtime.Forward({&image, 1}).ok()) std::abort();
        ++done[t];
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  int64_t total = 0;
  for (int64_t d : done) total += d;
  std::cout << absl::StrFormat(
      "\"ceiling\":{\"threads\":%d,\"images\":%d,\"seconds\":%.3f,\"images_per_s\":%.3f},",
      threads, total, seconds, total / seconds);
}

void DetectFigure() {
  std::vector<std::string> images;
  for (const fs::directory_entry& e : fs::directory_iterator(absl::GetFlag(FLAGS_images))) {
    const std::string ext = e.path().extension().string();
    if (ext == ".png" || ext == ".jpg") images.push_back(ReadFile(e.path()));
    if (images.size() == 64) break;
  }
  std::unique_ptr<Server> s = StartServer(absl::GetFlag(FLAGS_model), "detect");
  auto stub = v1::DetectionService::NewStub(s->channel);
  auto request = [&](int i) {
    v1::DetectRequest r;
    r.add_images()->set_encoded(images[static_cast<size_t>(i) % images.size()]);
    r.add_calibrations()->set_calibration_method(v1::CALIBRATION_METHOD_NONE);
    return r;
  };
  std::vector<double> inproc, over_grpc;
  const int n = absl::GetFlag(FLAGS_requests);
  // Interleaved, so both sides see the same machine state.
  for (int i = -20; i < n; ++i) {
    const v1::DetectRequest r = request(i + 20);
    v1::DetectResponse a, b;
    absl::Time t0 = absl::Now();
    if (!s->core->Detect(r, &a).ok()) std::abort();
    absl::Time t1 = absl::Now();
    grpc::ClientContext ctx;
    if (!stub->Detect(&ctx, r, &b).ok()) std::abort();
    absl::Time t2 = absl::Now();
    if (i < 0) continue;
    inproc.push_back(absl::ToDoubleMilliseconds(t1 - t0));
    over_grpc.push_back(absl::ToDoubleMilliseconds(t2 - t1));
  }
  const double p_in = P50(inproc), p_grpc = P50(over_grpc);
  std::cout << absl::StrFormat(
      "\"detect\":{\"requests\":%d,\"inprocess_p50_ms\":%.4f,\"grpc_p50_ms\":%.4f,"
      "\"overhead\":%.4f},",
      n, p_in, p_grpc, p_grpc / p_in - 1);
  CeilingFigure(images, s->core->runtime());
}

void IngestFigure() {
  constexpr int64_t kRows = 512;
  constexpr int32_t kWidth = 1204;
  std::unique_ptr<Server> s = StartServer(absl::GetFlag(FLAGS_lvis_model), "ingest");
  if (s->core->runtime().layout().width() != kWidth) std::abort();
  grpc::ServerBuilder sink_builder;
  int sink_port = 0;
  SinkService sink;
  sink_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &sink_port);
  sink_builder.SetMaxReceiveMessageSize(64 << 20);
  sink_builder.RegisterService(&sink);
  std::unique_ptr<grpc::Server> sink_server = sink_builder.BuildAndStart();
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  auto sink_stub = bench::ByteSink::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", sink_port), grpc::InsecureChannelCredentials(), args));
  auto calibration = v1::CalibrationService::NewStub(s->channel);

  absl::BitGen gen;
  std::vector<float> values(kRows * kWidth);
  for (float& v : values) v = static_cast<float>(absl::Gaussian<double>(gen, -2.0, 1.5));
  v1::CalibrateRequest batch;
  LogitsToProto(values, kRows, kWidth, batch.mutable_logit_batch());
  bench::Chunk chunk;
  chunk.set_data(batch.logit_batch().data());
  const int k = absl::GetFlag(FLAGS_batches);
  const double bytes = static_cast<double>(k) * kRows * kWidth * 4;

  double best_calibrate = 0, best_sink = 0;
  for (int round = 0; round < 3; ++round) {  // best of 3, alternating
    {
      grpc::ClientContext ctx;
      v1::CalibrateResponse response;
      auto writer = calibration->Calibrate(&ctx, &response);
      v1::CalibrateRequest header;
      header.mutable_header()->set_source(v1::VERSION_SOURCE_LOGITS);
      const absl::Time t0 = absl::Now();
      writer->Write(header);
      for (int i = 0; i < k; ++i) writer->Write(batch);
      writer->WritesDone();
      if (!writer->Finish().ok() || response.rows_seen() != k * kRows) std::abort();
      best_calibrate = std::max(best_calibrate, bytes / absl::ToDoubleSeconds(absl::Now() - t0));
    }
    {
      grpc::ClientContext ctx;
      bench::Received received;
      auto writer = sink_stub->Consume(&ctx, &received);
      const absl::Time t0 = absl::Now();
      for (int i = 0; i < k; ++i) writer->Write(chunk);
      writer->WritesDone();
      if (!writer->Finish().ok() || received.bytes() != static_cast<int64_t>(bytes)) std::abort();
      best_sink = std::max(best_sink, bytes / absl::ToDoubleSeconds(absl::Now() - t0));
    }
  }
  std::cout << absl::StrFormat(
      "\"ingest\":{\"batch\":\"512x1204\",\"batches\":%d,\"calibrate_gb_per_s\":%.4f,"
      "\"sink_gb_per_s\":%.4f,\"ratio\":%.4f}",
      k, best_calibrate / 1e9, best_sink / 1e9, best_calibrate / best_sink);
  sink_server->Shutdown();
}

}  // namespace
}  // namespace logn

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::cout << "{";
  logn::DetectFigure();
  logn::IngestFigure();
  std::cout << "}\n";
  return 0;
}
