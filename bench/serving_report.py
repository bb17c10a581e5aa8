#!/usr/bin/python3
"""The serving figures of docs/performance.md, each side by side in one run:

  1. Detect over gRPC (loopback) vs in-process, p50 at concurrency 1      (serving_bench)
  2. dynamic batching on vs off at concurrency 1, 4, 8, 16               (logn bench x 2 servers)
  3. the Python baseline (bench/python_baseline) vs logn_server at 8       (logn bench x 2)
  4. Calibrate ingest of [512 x 1204] batches vs a raw-bytes sink RPC      (serving_bench)
  5. the calibration kernels vs memcpy                                    (calibration_bench)
  6. server RSS at rest, under load, per in-flight request                (/proc/PID/status)
  7. the ceiling: serving at concurrency 8 vs the in-process forward pass's images/s with the
     same threads                                                         (serving_bench)

    serving_report.py --build build --images out/demo/full/data-full/val [--duration 10]

Needs the demo data (./scripts/demo generates it) and a built tree. Prints markdown tables and
writes the raw numbers to --out (JSON).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "client", "testing"))
from logn_test_server import LognServer, rss_mb  # noqa: E402

PYTHON = "/usr/bin/python3"


def bench(args, address: str, levels: str, name: str) -> list:
    out = os.path.join(args.work, f"bench_{name}.json")
    subprocess.run([os.path.join(args.build, "client/cli/logn"), "bench", "--server", address,
                    "--images", args.images, "--method", "none", "--concurrency", levels,
                    "--warmup", str(args.warmup), "--duration", str(args.duration),
                    "--json", out], check=True, stdout=sys.stderr)
    with open(out) as f:
        return json.load(f)


def logn_server(args, name: str, extra) -> LognServer:
    return LognServer(os.path.join(args.build, "server/grpc/logn_server"), args.model,
                      os.path.join(args.work, name),
                      extra_args=["--executor_threads=2", "--max_queue=256", *extra])


class RssSampler:
    """Peak RSS of a process while a block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def __enter__(self):
        def sample():
            while not self.stop.is_set():
                self.peak = max(self.peak, rss_mb(self.pid))
                time.sleep(0.05)
        self.thread = threading.Thread(target=sample)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--build", default="build")
    p.add_argument("--images", required=True)
    p.add_argument("--model", default=os.path.join(REPO, "models/demo_ce/model.pt"))
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--work", default="/tmp/logn_serving_report")
    p.add_argument("--out", default="")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    results = {}

    # 1 and 4.
    models = os.path.join(args.build, "bench/serving_models")
    subprocess.run([PYTHON, os.path.join(REPO, "tools/make_contract_models.py"), "--out-dir",
                    models], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([os.path.join(args.build, "bench/serving_bench"), f"--model={args.model}",
                          f"--images={args.images}", f"--lvis_model={models}/contract_lvis.pt",
                          f"--work_dir={args.work}"], check=True, capture_output=True, text=True)
    results.update(json.loads(out.stdout))

    # 2, 3 and 6: batching off, then on (with the RSS figures), then the Python peer.
    with logn_server(args, "unbatched", []) as server:
        results["unbatched"] = bench(args, server.address, "1,4,8,16", "unbatched")
    with logn_server(args, "batched", [f"--max_batch={args.max_batch}",
                                       "--max_queue_delay_us=5000"]) as server:
        rest = rss_mb(server.process.pid)
        with RssSampler(server.process.pid) as sampler:
            results["batched"] = bench(args, server.address, "1,4,8,16", "batched")
        results["memory"] = {"rest_mb": rest, "load_peak_mb": sampler.peak,
                             "per_in_flight_mb": (sampler.peak - rest) / 16}
    # The Python peer as written (torch's default threads = the cores) and tuned (1 thread per
    # forward, since its gRPC pool runs 8 forwards at once).
    for name, threads in (("python", "2"), ("python_1_thread", "1")):
        port_file = os.path.join(args.work, f"{name}.port")
        if os.path.exists(port_file):
            os.remove(port_file)
        peer = subprocess.Popen([PYTHON, os.path.join(HERE, "python_baseline/server.py"),
                                 "--model", args.model, "--port-file", port_file, "--threads",
                                 threads, "--workers", "8"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(port_file):
                if peer.poll() is not None:
                    raise SystemExit("the Python baseline did not start")
                time.sleep(0.1)
            with open(port_file) as f:
                address = "127.0.0.1:" + f.read().strip().split("=")[1]
            results[name] = bench(args, address, "8", name)
        finally:
            peer.terminate()
            peer.wait()

    # 5: the kernels on the cache-resident shape.
    out = subprocess.run([os.path.join(args.build, "bench/calibration_bench"),
                          "--benchmark_filter=/512/", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True)
    results["kernels"] = {b["name"]: b.get("bytes_per_second", 0) / 1e9
                          for b in json.loads(out.stdout)["benchmarks"]}

    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print_tables(results)
    return 0


def level(levels, c):
    return next(l for l in levels if l["concurrency"] == c)


def print_tables(r) -> None:
    d = r["detect"]
    print("\n1. Detect over gRPC vs in-process (concurrency 1, p50)")
    print("| in-process ms | gRPC loopback ms | overhead (target <= 5%) |\n|---|---|---|")
    print(f"| {d['inprocess_p50_ms']:.2f} | {d['grpc_p50_ms']:.2f} | {100 * d['overhead']:+.1f}% |")
    print("\n2. Dynamic batching off vs on (images/s; p50 / p99 ms)")
    print("| concurrency | off images/s | on images/s | on / off (target >= 1.5 at 8) | off p50 / p99 | on p50 / p99 |")
    print("|---|---|---|---|---|---|")
    for c in (1, 4, 8, 16):
        off, on = level(r["unbatched"], c), level(r["batched"], c)
        print(f"| {c} | {off['images_per_second']:.1f} | {on['images_per_second']:.1f} | "
              f"{on['images_per_second'] / off['images_per_second']:.2f} | "
              f"{off['latency_ms']['p50']:.0f} / {off['latency_ms']['p99']:.0f} | "
              f"{on['latency_ms']['p50']:.0f} / {on['latency_ms']['p99']:.0f} |")
    py = level(r["python"], 8)
    print("\n3. Python baseline vs logn_server (concurrency 8)")
    print("| server | images/s | p50 ms | p99 ms | images/s vs Python as written (target >= 2) | p99 vs it (target <= 0.5) |")
    print("|---|---|---|---|---|---|")
    rows = [("Python, torch threads = cores (as written)", py),
            ("Python, 1 torch thread per forward (tuned)", level(r["python_1_thread"], 8)),
            ("logn_server, batching off", level(r["unbatched"], 8)),
            ("logn_server, batching on", level(r["batched"], 8))]
    for name, l in rows:
        print(f"| {name} | {l['images_per_second']:.1f} | {l['latency_ms']['p50']:.0f} | "
              f"{l['latency_ms']['p99']:.0f} | {l['images_per_second'] / py['images_per_second']:.2f} | "
              f"{l['latency_ms']['p99'] / py['latency_ms']['p99']:.2f} |")
    i = r["ingest"]
    print("\n4. Calibrate ingest vs a raw-bytes sink ([512 x 1204] float32 batches)")
    print("| Calibrate GB/s | sink GB/s | ratio (target >= 0.5) |\n|---|---|---|")
    print(f"| {i['calibrate_gb_per_s']:.2f} | {i['sink_gb_per_s']:.2f} | {i['ratio']:.2f} |")
    print("\n5. Calibration kernels ([512 x 1204], GB/s)")
    for name, gbs in r["kernels"].items():
        print(f"| {name} | {gbs:.2f} |")
    m = r["memory"]
    print("\n6. logn_server RSS")
    print("| at rest MB | peak under load (c = 16) MB | per in-flight request MB |\n|---|---|---|")
    print(f"| {m['rest_mb']:.0f} | {m['load_peak_mb']:.0f} | {m['per_in_flight_mb']:.1f} |")
    c = r["ceiling"]
    off8, on8 = level(r["unbatched"], 8), level(r["batched"], 8)
    print("\n7. Ceiling: serving at concurrency 8 vs the in-process forward pass (same threads)")
    print("| in-process forward images/s (%d threads) | serving off images/s | fraction (target >= 0.9) "
          "| serving on images/s | fraction |\n|---|---|---|---|---|" % c["threads"])
    print(f"| {c['images_per_s']:.1f} | {off8['images_per_second']:.1f} | "
          f"{off8['images_per_second'] / c['images_per_s']:.2f} | {on8['images_per_second']:.1f} | "
          f"{on8['images_per_second'] / c['images_per_s']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
