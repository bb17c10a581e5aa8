#!/usr/bin/python3
"""Soak test, on demand (not part of CTest): `logn bench` at concurrency 16 for 10 minutes
against one logn_server, with Calibrate jobs and alias switches running the whole time.

    /usr/bin/python3 tests/soak/soak.py --build build --images out/demo/full/data-full/val \\
        [--minutes 10] [--model models/demo_ce/model.pt]

Passes when: no request failed (any status), every Calibrate and alias switch succeeded, RSS
grew less than 5 % from the first minute after warm-up to the last minute, and every committed
version is intact at the end (its payload checksum verifies and it has all its rows). Prints
the figures recorded in the README.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "testing"))
from logn_test_server import LognServer, rss_mb, write_random_npy  # noqa: E402

ROWS = 2000


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--build", default="build")
    p.add_argument("--images", required=True)
    p.add_argument("--model", default=os.path.join(HERE, "..", "..", "models/demo_ce/model.pt"))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=60, help="seconds before RSS is compared")
    p.add_argument("--work", default="/tmp/logn_soak")
    args = p.parse_args()
    logn = os.path.join(args.build, "client/cli/logn")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    with open(os.path.splitext(args.model)[0] + ".json") as f:
        width = len(json.load(f)["classes"]) + 1
    logits = [os.path.join(args.work, f"logits{i}.npy") for i in range(3)]
    for i, path in enumerate(logits):
        write_random_npy(path, ROWS, width, i, mean=-2, std=1.5)

    def run(*argv):
        return subprocess.run([logn, *argv], capture_output=True, text=True, timeout=120)

    server = LognServer(os.path.join(args.build, "server/grpc/logn_server"), args.model,
                        os.path.join(args.work, "server"),
                        extra_args=["--executor_threads=2", "--max_queue=256"])
    with server:
        first = run("calibrate", "--server", server.address, "--logits", logits[0], "--activate",
                    "--json")
        assert first.returncode == 0, first.stderr
        committed = [int(json.loads(first.stdout)["statistics_version"]["version"])]
        failures, switches, calibrations = [], 0, 0
        samples = []  # (seconds since start, RSS MB)
        stop = threading.Event()
        start = time.monotonic()

        def writers():
            nonlocal switches, calibrations
            last_calibration = time.monotonic()
            while not stop.is_set():
                if time.monotonic() - last_calibration > 5:
                    r = run("calibrate", "--server", server.address, "--logits",
                            random.choice(logits), "--json")
                    if r.returncode == 0:
                        committed.append(
                            int(json.loads(r.stdout)["statistics_version"]["version"]))
                        calibrations += 1
                    else:
                        failures.append(("calibrate", r.stderr.strip()))
                    last_calibration = time.monotonic()
                r = run("stats", "activate", str(random.choice(committed)), "--server",
                        server.address)
                if r.returncode == 0:
                    switches += 1
                else:
                    failures.append(("activate", r.stderr.strip()))
                stop.wait(1.0)

        def sampler():
            while not stop.is_set():
                samples.append((time.monotonic() - start, rss_mb(server.process.pid)))
                stop.wait(5.0)

        threads = [threading.Thread(target=writers), threading.Thread(target=sampler)]
        for t in threads:
            t.start()
        report = os.path.join(args.work, "bench.json")
        bench = subprocess.run([logn, "bench", "--server", server.address, "--images", args.images,
                                "--method", "logn", "--concurrency", str(args.concurrency),
                                "--warmup", "5", "--duration", str(args.minutes * 60),
                                "--json", report], capture_output=True, text=True)
        stop.set()
        for t in threads:
            t.join()
        with open(report) as f:
            level = json.load(f)[0]
        broken = []
        for v in committed:
            r = run("stats", "show", str(v), "--statistics", "--server", server.address, "--json")
            if (r.returncode != 0 or
                    int(json.loads(r.stdout)["statistics_version"]["rows_seen"]) != ROWS):
                broken.append(v)

    after_warmup = [m for t, m in samples if args.warmup <= t < args.warmup + 60]
    last_minute = [m for t, m in samples if t >= samples[-1][0] - 60]
    base = sum(after_warmup) / max(1, len(after_warmup))
    end = sum(last_minute) / max(1, len(last_minute))
    growth = (end - base) / base if base else 0.0
    print(f"soak: {args.minutes:g} min at concurrency {args.concurrency}: {level['requests']} "
          f"Detect requests, {level['images_per_second']:.1f} images/s, p50 "
          f"{level['latency_ms']['p50']:.0f} ms, p99 {level['latency_ms']['p99']:.0f} ms, errors "
          f"{level['errors'] or 'none'}")
    print(f"soak: {calibrations} Calibrate jobs and {switches} alias switches alongside, "
          f"{len(failures)} failed; {len(committed)} versions committed, {len(broken)} broken")
    print(f"soak: RSS {base:.0f} MB in the minute after warm-up, {end:.0f} MB in the last "
          f"minute ({100 * growth:+.1f} %), peak {max(m for _, m in samples):.0f} MB")
    ok = bench.returncode == 0 and not level["errors"] and not failures and not broken and growth < 0.05
    for what, err in failures[:5]:
        print(f"soak: {what} failed: {err}")
    print("soak: PASSED" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
