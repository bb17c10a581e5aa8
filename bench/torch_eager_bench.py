#!/usr/bin/python3
"""PyTorch eager equivalents of the calibration kernels, one thread, for calibration_bench.

Same shapes and bytes as bench/calibration_bench.cc; prints bytes/s per operation:
  apply   Algorithm 1's step 3 as written: (logit - running_mean) / sqrt(running_var + eps)
  exact   torch.var_mean over the batch in float64 (what an exact accumulator must compute)
  ema     Algorithm 1's step 1: per-batch mean/var in float32, then the EMA update
  memcpy  dst.copy_(src), torch's own copy of the same bytes

Run: /usr/bin/python3 bench/torch_eager_bench.py [--json]
"""
import json
import sys
import time

import torch

WIDTH = 1204


def measure(fn, nbytes, min_time=0.5):
    fn()  # warm-up
    iterations, start = 0, time.perf_counter()
    while True:
        fn()
        iterations += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and iterations >= 3:
            return nbytes * iterations / elapsed


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {}
    for rows in (512, 100000):
        x = torch.randn(rows, WIDTH) * 2 - 4
        nbytes = x.numel() * 4
        mean = torch.randn(WIDTH) - 4
        var = torch.rand(WIDTH) + 0.5
        running_mean = torch.zeros(WIDTH)
        running_var = torch.ones(WIDTH)
        dst = torch.empty_like(x)

        def apply():
            return (x - mean) / torch.sqrt(var + 1e-5)

        def exact():
            return torch.var_mean(x.double(), dim=0)

        def ema():
            m, v = x.mean(dim=0), x.var(dim=0)
            running_mean.mul_(1 - 5e-5).add_(m, alpha=5e-5)
            running_var.mul_(1 - 5e-5).add_(v, alpha=5e-5)

        for name, fn in (("memcpy", lambda: dst.copy_(x)), ("apply", apply), ("exact", exact),
                         ("ema", ema)):
            results["%s/%d" % (name, rows)] = measure(fn, nbytes)
    if "--json" in sys.argv:
        print(json.dumps(results))
    else:
        print("torch %s, 1 thread" % torch.__version__)
        for key, value in results.items():
            print("%-14s %8.3f GB/s" % (key, value / 1e9))


if __name__ == "__main__":
    main()
