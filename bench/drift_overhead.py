#!/usr/bin/python3
"""The cost of live drift monitoring (docs/drift.md), as ratios measured in one run.

    bench/drift_overhead.py --build build --images DIR [--rounds 6] [--duration 10]

Starts two logn_server processes on the same model, one with drift monitoring off
(--drift_sample_rate=0) and one at --sample-rate (the default, 0.05), and runs `logn bench`
against them in alternation, round after round, at concurrency 1 and 8 (only one server is
loaded at a time). Reports, per server, the median over rounds of Detect p50 at concurrency 1
and of images/s at concurrency 8, and the ratios on / off: the budget is p50 within +2 % and
images/s within -2 %.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(binary, model, work, sample_rate):
    port_file = os.path.join(work, f"port_{sample_rate}")
    log = open(os.path.join(work, f"server_{sample_rate}.log"), "w")
    proc = subprocess.Popen(
        [binary, "--listen=127.0.0.1:0", "--metrics_listen=", f"--port_file={port_file}",
         f"--model={model}", f"--store=sqlite://{work}/stats_{sample_rate}.db",
         f"--drift_sample_rate={sample_rate}"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                for line in f:
                    if line.startswith("grpc="):
                        return proc, f"127.0.0.1:{line.strip()[5:]}"
        if proc.poll() is not None:
            raise SystemExit(f"logn_server exited; see {log.name}")
        time.sleep(0.1)
    raise SystemExit("logn_server did not start")


def bench(logn, address, images, duration, work):
    out = os.path.join(work, "bench.json")
    subprocess.run([logn, "bench", "--server", address, "--images", images, "--method", "none",
                    "--concurrency", "1,8", "--duration", str(duration), "--json", out],
                   check=True, capture_output=True)
    with open(out) as f:
        rows = {r["concurrency"]: r for r in json.load(f)}
    return rows[1]["latency_ms"]["p50"], rows[8]["images_per_second"]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--model", default=os.path.join(ROOT, "models", "demo_ce", "model.pt"))
    p.add_argument("--images", required=True)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--sample-rate", type=float, default=0.05)
    args = p.parse_args()
    binary = os.path.join(args.build, "server", "grpc", "logn_server")
    logn = os.path.join(args.build, "client", "cli", "logn")
    work = tempfile.mkdtemp(prefix="logn_drift_overhead_")
    servers = {rate: start_server(binary, args.model, work, rate)
               for rate in (0.0, args.sample_rate)}
    results = {rate: {"p50": [], "ips": []} for rate in servers}
    try:
        for r in range(args.rounds):
            # Alternate which goes first, so a trend in the machine's load hits both alike.
            order = list(servers) if r % 2 == 0 else list(reversed(list(servers)))
            for rate in order:
                p50, ips = bench(logn, servers[rate][1], args.images, args.duration, work)
                results[rate]["p50"].append(p50)
                results[rate]["ips"].append(ips)
                print(f"round {r + 1} sample rate {rate:g}: c=1 p50 {p50:.2f} ms, "
                      f"c=8 {ips:.1f} images/s", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    off, on = results[0.0], results[args.sample_rate]
    p50_off, p50_on = statistics.median(off["p50"]), statistics.median(on["p50"])
    ips_off, ips_on = statistics.median(off["ips"]), statistics.median(on["ips"])
    print(f"\nmedians over {args.rounds} rounds of {args.duration:g} s:")
    print(f"  c=1 p50: off {p50_off:.2f} ms, on ({args.sample_rate:g}) {p50_on:.2f} ms, "
          f"ratio {p50_on / p50_off:.3f} (budget <= 1.02)")
    print(f"  c=8 images/s: off {ips_off:.1f}, on {ips_on:.1f}, ratio {ips_on / ips_off:.3f} "
          f"(budget >= 0.98)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
