// logn_server: serves TorchScript detectors with LogN calibration over gRPC: one model, or a
// repository of models and versions swapped without downtime (docs/server.md).
//
//   logn_server --model models/demo.pt --store sqlite:///var/lib/logn/stats.db
//   logn_server --model_repository /models --store sqlite:///var/lib/logn/stats.db
//
// Health (grpc.health.v1) reports NOT_SERVING while the model loads and after SIGTERM; SIGTERM
// or SIGINT drains in-flight requests for up to --drain_timeout, then the process exits 0.
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "server/core/server_core.h"
#include "server/grpc/grpc_server.h"
#include "server/grpc/metrics.h"
#include "server/grpc/metrics_http.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:8500", "gRPC address host:port (port 0: any free port)");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:8501",
          "Prometheus /metrics address host:port; empty disables it");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound ports here as 'grpc=PORT\\nmetrics=PORT\\n' once serving");
ABSL_FLAG(std::string, model, "", "TorchScript model file (or --model_repository)");
ABSL_FLAG(std::string, model_repository, "",
          "Model repository DIR/<name>/<version>/model.pt (+ model.json, optional "
          "DIR/<name>/model_config.json); replaces --model");
ABSL_FLAG(absl::Duration, repository_poll_interval, absl::Seconds(30),
          "How often the model repository is rescanned (0: only on ReloadModels)");
ABSL_FLAG(std::string, missing_statistics, "refuse",
          "What the model default calibration does on a model version without active "
          "statistics, unless its model_config.json says otherwise: refuse (FAILED_PRECONDITION), "
          "none or loga (serve with that method and say so)");
ABSL_FLAG(double, drift_sample_rate, 0.05,
          "Fraction of Detect requests whose candidate logits feed the live drift window "
          "(0: drift monitoring off)");
ABSL_FLAG(absl::Duration, drift_window, absl::Minutes(10),
          "Length of the live drift window (and of the reference's first window)");
ABSL_FLAG(int64_t, drift_window_rows, 0,
          "If > 0, the drift window holds the last this many logit rows instead of a duration");
ABSL_FLAG(absl::Duration, drift_publish_interval, absl::Seconds(10),
          "How often the drift gauges on /metrics are recomputed");
ABSL_FLAG(std::string, manifest, "", "Model manifest JSON (default: beside the model, .json)");
ABSL_FLAG(std::string, device, "cpu", "torch device: cpu, cuda, cuda:N");
ABSL_FLAG(std::string, torchvision_ops, "",
          "Shared library registering custom ops (torchvision's _C.so), loaded before the model");
ABSL_FLAG(std::string, store, "sqlite:///var/lib/logn/stats.db",
          "Statistics store URL: sqlite:///path or postgres://user:pass@host:port/db");
// Defaults measured on the demo detector (docs/performance.md, "Threads"): one thread per forward
// pass and one forward pass per core beat every other split, at concurrency 1 and 8.
ABSL_FLAG(int32_t, intra_op_threads, 1, "Threads per forward pass (0: all cores)");
ABSL_FLAG(bool, optimize_for_inference, true,
          "Freeze the model and apply torch.jit.optimize_for_inference at load, kept only when its "
          "outputs match the original's on a probe image");
ABSL_FLAG(int32_t, executor_threads, 0, "Requests processed concurrently (0: one per core)");
ABSL_FLAG(int64_t, max_queue, 64,
          "Requests waiting beyond the running ones (more: RESOURCE_EXHAUSTED); at least 1");
ABSL_FLAG(int32_t, max_message_bytes, 64 << 20, "Largest gRPC message in bytes");
ABSL_FLAG(int32_t, max_images_per_request, 32, "Images per Detect request");
ABSL_FLAG(int64_t, max_rows_per_batch, int64_t{1} << 20, "Logit rows per batch / Apply request");
ABSL_FLAG(int64_t, max_rows_per_job, int64_t{1} << 34, "Logit rows per Calibrate job");
ABSL_FLAG(int64_t, max_image_pixels, 50'000'000, "Pixels per image, checked from the header");
ABSL_FLAG(int32_t, max_batch, 1,
          "Dynamic batching: Detect requests gathered into one forward pass of up to this many "
          "images (1: off); at most --max_images_per_request");
ABSL_FLAG(int64_t, max_queue_delay_us, 2000,
          "Dynamic batching: how long the oldest request waits for others, microseconds");
ABSL_FLAG(int32_t, checkpoint_every_batches, 16,
          "Default checkpoint interval (batches) of Calibrate jobs that have a job_id; 0: never");
ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the bearer token that Calibrate, Merge and mutating store RPCs require");
ABSL_FLAG(bool, require_token_for_detect, false,
          "Also require the admin token for Detect, DetectStream and Apply");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain: serve gRPC over TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require and verify client certificates (mutual TLS)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "How long SIGTERM waits for in-flight requests");

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// TLS credentials from the --tls_* flags; null for plaintext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromFlags() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (cert.empty()) {
    if (!client_ca.empty()) return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert");
    return std::shared_ptr<grpc::ServerCredentials>();
  }
  grpc::SslServerCredentialsOptions ssl(
      client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  LOGN_ASSIGN_OR_RETURN(pair.cert_chain, ReadFile(cert, "--tls_cert"));
  LOGN_ASSIGN_OR_RETURN(pair.private_key, ReadFile(key, "--tls_key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!client_ca.empty()) {
    LOGN_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(client_ca, "--tls_client_ca"));
  }
  return grpc::SslServerCredentials(ssl);
}

// The admin token from --admin_token_file (trailing white space dropped); empty without it.
absl::StatusOr<std::string> AdminTokenFromFlags() {
  const std::string path = absl::GetFlag(FLAGS_admin_token_file);
  if (path.empty()) return std::string();
  LOGN_ASSIGN_OR_RETURN(std::string token, ReadFile(path, "--admin_token_file"));
  token = std::string(absl::StripTrailingAsciiWhitespace(token));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--admin_token_file ", path, " is empty"));
  }
  return token;
}

// The --missing_statistics policy as the default model config.
absl::StatusOr<logn::v1::ModelConfig> DefaultModelConfigFromFlags() {
  const std::string policy = absl::GetFlag(FLAGS_missing_statistics);
  logn::v1::ModelConfig config;
  if (policy == "refuse") {
    config.set_missing_statistics(logn::v1::MISSING_STATISTICS_ACTION_REFUSE);
  } else if (policy == "none" || policy == "loga") {
    config.set_missing_statistics(logn::v1::MISSING_STATISTICS_ACTION_FALLBACK);
    config.set_fallback_method(policy == "none" ? logn::v1::CALIBRATION_METHOD_NONE
                                                : logn::v1::CALIBRATION_METHOD_LOGA);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--missing_statistics must be refuse, none or loga, got '", policy, "'"));
  }
  return config;
}

absl::StatusOr<logn::ServerCoreOptions> CoreOptionsFromFlags() {
  logn::ServerCoreOptions options;
  options.model_repository = absl::GetFlag(FLAGS_model_repository);
  options.repository_poll_interval = absl::GetFlag(FLAGS_repository_poll_interval);
  LOGN_ASSIGN_OR_RETURN(options.default_model_config, DefaultModelConfigFromFlags());
  options.drift.sample_rate = absl::GetFlag(FLAGS_drift_sample_rate);
  const int64_t window_rows = absl::GetFlag(FLAGS_drift_window_rows);
  options.drift.window.rows = window_rows;
  options.drift.window.duration =
      window_rows > 0 ? absl::ZeroDuration() : absl::GetFlag(FLAGS_drift_window);
  options.runtime.model_path = absl::GetFlag(FLAGS_model);
  options.runtime.manifest_path = absl::GetFlag(FLAGS_manifest);
  options.runtime.device = absl::GetFlag(FLAGS_device);
  options.runtime.ops_library_path = absl::GetFlag(FLAGS_torchvision_ops);
  options.runtime.intra_op_threads = absl::GetFlag(FLAGS_intra_op_threads);
  options.runtime.optimize_for_inference = absl::GetFlag(FLAGS_optimize_for_inference);
  options.runtime.limits.max_images_per_call = absl::GetFlag(FLAGS_max_images_per_request);
  options.runtime.limits.image.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  options.store_url = absl::GetFlag(FLAGS_store);
  options.max_images_per_request = absl::GetFlag(FLAGS_max_images_per_request);
  options.max_rows_per_batch = absl::GetFlag(FLAGS_max_rows_per_batch);
  options.max_rows_per_job = absl::GetFlag(FLAGS_max_rows_per_job);
  options.checkpoint_every_batches = absl::GetFlag(FLAGS_checkpoint_every_batches);
  if (options.model_repository.empty() == options.runtime.model_path.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of --model (a TorchScript file) and --model_repository (a directory)");
  }
  return options;
}

// The server's options from the flags, read files included (TLS, token); not yet validated.
absl::StatusOr<logn::GrpcServerOptions> ServerOptionsFromFlags() {
  logn::GrpcServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  const int32_t executor_threads = absl::GetFlag(FLAGS_executor_threads);
  options.executor.num_threads =
      executor_threads != 0 ? executor_threads
                            : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  options.executor.max_queued = absl::GetFlag(FLAGS_max_queue);
  options.batching.max_batch_images = absl::GetFlag(FLAGS_max_batch);
  options.batching.max_queue_delay = absl::Microseconds(absl::GetFlag(FLAGS_max_queue_delay_us));
  options.batching.max_queued_requests = absl::GetFlag(FLAGS_max_queue);
  LOGN_ASSIGN_OR_RETURN(options.credentials, ServerCredentialsFromFlags());
  LOGN_ASSIGN_OR_RETURN(options.admin_token, AdminTokenFromFlags());
  options.require_token_for_detect = absl::GetFlag(FLAGS_require_token_for_detect);
  options.drift_publish_interval = absl::GetFlag(FLAGS_drift_publish_interval);
  return options;
}

// Serves `metrics` on --metrics_listen (null when that is empty); sets `port` to the bound port.
absl::StatusOr<std::unique_ptr<logn::MetricsHttpServer>> StartMetricsExposer(
    logn::ServerMetrics& metrics, int* port) {
  *port = 0;
  const std::string address = absl::GetFlag(FLAGS_metrics_listen);
  if (address.empty()) return std::unique_ptr<logn::MetricsHttpServer>();
  LOGN_ASSIGN_OR_RETURN(std::unique_ptr<logn::MetricsHttpServer> exposer,
                        logn::MetricsHttpServer::Start(address, metrics.registry()));
  *port = exposer->port();
  return exposer;
}

// Writes --port_file (if set) atomically: readers never see half a file.
void WritePortFile(int grpc_port, int metrics_port) {
  const std::string path = absl::GetFlag(FLAGS_port_file);
  if (path.empty()) return;
  {
    std::ofstream out(path + ".tmp");
    out << "grpc=" << grpc_port << "\nmetrics=" << metrics_port << "\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
}

// Blocks the stop signals before any thread starts, so only sigwait receives them.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// A forward pass allocates and frees tens of MB of tensors; by default glibc mmaps and unmaps
// each such block, and the page faults took ~9 % of the server's CPU under load (perf,
// docs/performance.md). Keep them in the heap so they are reused.
void KeepLargeBlocksInTheHeap() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// One line per hosted model version (and why a version failed).
void LogServing(logn::ServerCore& core, int grpc_port, int metrics_port) {
  std::cerr << "logn_server: serving on port " << grpc_port << ", metrics on port "
            << metrics_port << ", store " << core.store().backend() << "\n";
  absl::StatusOr<std::vector<logn::ModelVersionInfo>> versions = core.models().List("");
  if (!versions.ok()) return;
  for (const logn::ModelVersionInfo& v : *versions) {
    std::cerr << "logn_server:   model '" << v.name << "' version " << v.version << ": "
              << logn::v1::ModelVersionState_Name(v.state);
    if (v.model != nullptr) {
      std::cerr << " (sha256 " << v.model->key().sha256 << "; inference optimisation "
                << v.model->runtime().optimization_note() << ")";
    }
    if (!v.reason.empty()) std::cerr << " " << v.reason;
    std::cerr << "\n";
  }
}

// Exit codes: 2 for flags that cannot work (nothing started), 1 when serving fails to start.
int Run() {
  KeepLargeBlocksInTheHeap();
  sigset_t stop_signals = BlockStopSignals();
  const absl::StatusOr<logn::ServerCoreOptions> core_flags = CoreOptionsFromFlags();
  if (!core_flags.ok()) {
    std::cerr << "logn_server: " << core_flags.status().message() << "\n";
    return 2;
  }
  const logn::ServerCoreOptions& core_options = *core_flags;
  absl::StatusOr<logn::GrpcServerOptions> server_options = ServerOptionsFromFlags();
  absl::Status valid = server_options.status();
  // Checked before anything loads, so a bad combination fails in milliseconds.
  if (valid.ok()) valid = core_options.Validate();
  if (valid.ok()) valid = logn::GrpcServer::Validate(*server_options, &core_options);
  if (!valid.ok()) {
    std::cerr << "logn_server: " << valid.message() << "\n";
    return 2;
  }
  logn::ServerMetrics metrics;
  int metrics_port = 0;
  auto exposer = StartMetricsExposer(metrics, &metrics_port);
  if (!exposer.ok()) {
    std::cerr << "logn_server: " << exposer.status().message() << "\n";
    return 1;
  }
  // Listen first (health: NOT_SERVING), then load: probes can watch the load.
  auto server = logn::GrpcServer::Start(*server_options, &metrics);
  if (!server.ok()) {
    std::cerr << "logn_server: " << server.status() << "\n";
    return 1;
  }
  std::cerr << "logn_server: listening on port " << (*server)->port() << ", loading "
            << (core_options.model_repository.empty() ? core_options.runtime.model_path
                                                      : core_options.model_repository)
            << "\n";
  auto core = logn::ServerCore::Create(core_options);
  absl::Status serving = core.status();
  if (serving.ok()) serving = (*server)->SetCore(core->get());
  if (!serving.ok()) {
    std::cerr << "logn_server: cannot start: " << serving << "\n";
    (*server)->Shutdown(absl::ZeroDuration());
    return 1;
  }
  LogServing(**core, (*server)->port(), metrics_port);
  WritePortFile((*server)->port(), metrics_port);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "logn_server: signal " << signal_number << ", draining for up to "
            << absl::FormatDuration(absl::GetFlag(FLAGS_drain_timeout)) << "\n";
  (*server)->Shutdown(absl::GetFlag(FLAGS_drain_timeout));
  std::cerr << "logn_server: stopped\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves a detector with LogN-calibrated scores over gRPC.");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
