#!/usr/bin/python3
"""Runs calibration_bench and torch_eager_bench.py back to back and prints the README table.

Run: /usr/bin/python3 bench/calibration_report.py build/bench/calibration_bench
Ratios compare figures from the same run on the same machine: C++ kernel / memcpy of the same
bytes (C++ memcpy), and C++ kernel / the PyTorch eager equivalent (one thread).
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"apply": 0.7, "exact": 0.5}  # × memcpy, from the issue


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/bench/calibration_bench"
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=0.5",
                          "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    cpp = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name, rows = b["run_name"].split("/")[:2]
        cpp[(name, int(rows))] = b["bytes_per_second"]
    torch_out = subprocess.run([sys.executable, os.path.join(HERE, "torch_eager_bench.py"),
                                "--json"], check=True, capture_output=True, text=True).stdout
    torch = {tuple([k.split("/")[0], int(k.split("/")[1])]): v
             for k, v in json.loads(torch_out).items()}

    print("| kernel | shape | C++ GB/s | memcpy GB/s | × memcpy (target) | PyTorch eager GB/s | × PyTorch (target 3) |")
    print("|---|---|---|---|---|---|---|")
    for kernel, bm in (("LogN apply", "apply"), ("exact accumulation", "exact"),
                       ("EMA accumulation", "ema")):
        cpp_name = {"apply": "BM_LogNApply", "exact": "BM_ExactAccumulate",
                    "ema": "BM_EmaAccumulate"}[bm]
        for rows in (512, 100000):
            mine = cpp[(cpp_name, rows)]
            memcpy = cpp[("BM_Memcpy", rows)]
            eager = torch[(bm, rows)]
            target = TARGETS.get(bm)
            print("| %s | [%d, 1204] | %.2f | %.2f | %.2f%s | %.2f | %.1f |" % (
                kernel, rows, mine / 1e9, memcpy / 1e9, mine / memcpy,
                " (≥ %.1f)" % target if target else "", eager / 1e9, mine / eager))


if __name__ == "__main__":
    main()
