#!/usr/bin/env python3
"""/metrics starts under every BLAS that Debian can put behind libblas.so.3 (issue 16).

For each alternative (the reference BLAS, OpenBLAS pthread / openmp / serial, BLIS pthread /
openmp / serial) the real logn_server is started with the loader pointed at that build's folder
(LD_LIBRARY_PATH: the machine's alternatives are never changed), and the test checks in
/proc/PID/maps that the process really mapped that libblas.so.3, then scrapes /metrics over HTTP.
Before the libmicrohttpd exposer, the threaded OpenBLAS builds made the endpoint fail to start
next to LibTorch (static TLS > civetweb's 100 KiB thread stacks). Every alternative is required:
scripts/install-deps installs them all.
"""
import argparse
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "testing"))
from logn_test_server import LognServer  # noqa: E402

LIBDIR = "/usr/lib/x86_64-linux-gnu"
ALTERNATIVES = ["blas", "openblas-pthread", "openblas-openmp", "openblas-serial",
                "blis-pthread", "blis-openmp", "blis-serial"]


def metrics_port(work_dir):
    with open(os.path.join(work_dir, "port")) as f:
        for line in f:
            if line.startswith("metrics="):
                return int(line.split("=", 1)[1])
    raise AssertionError("port file names no metrics port")


def mapped_blas(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sorted({line.split()[-1] for line in f if "libblas.so" in line})


def check(alternative, args):
    folder = os.path.join(LIBDIR, alternative)
    if not os.path.exists(os.path.join(folder, "libblas.so.3")):
        raise AssertionError(f"{folder}/libblas.so.3 missing: run ./scripts/install-deps")
    work_dir = os.path.join(args.work_dir, alternative)
    os.environ["LD_LIBRARY_PATH"] = folder
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with LognServer(args.server_binary, args.model, work_dir,
                        extra_args=["--metrics_listen=127.0.0.1:0"]) as server:
            blas = mapped_blas(server.process.pid)
            real = [os.path.realpath(p) for p in blas]
            assert any(p.startswith(os.path.realpath(folder)) for p in real), \
                f"{alternative}: the server mapped {blas}, not {folder}/libblas.so.3"
            url = f"http://127.0.0.1:{metrics_port(work_dir)}/metrics"
            body = ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "logn_build_info" not in body:
                body = urllib.request.urlopen(url, timeout=5).read().decode()
            assert "logn_build_info" in body, f"{alternative}: /metrics served no logn_build_info"
            print(f"ok: {alternative}: /metrics served {len(body)} bytes with {real[0]} mapped")
    finally:
        del os.environ["LD_LIBRARY_PATH"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args()
    failed = []
    for alternative in ALTERNATIVES:
        try:
            check(alternative, args)
        except Exception as e:  # report every alternative, then fail
            print(f"FAIL: {alternative}: {e}")
            failed.append(alternative)
    print(f"{len(ALTERNATIVES) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
