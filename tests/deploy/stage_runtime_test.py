#!/usr/bin/env python3
"""CTest deploy_stage_runtime: what the Dockerfile's runtime stage gets, run outside a container.

Runs scripts/install-runtime-deps (a no-op when the packages are there) and scripts/stage-runtime
BUILD_DIR DEST, checks the staged tree, starts the staged logn_server on the staged demo_ce model,
waits until the staged `logn health` reports SERVING, then SIGTERMs it and expects exit 0. Also
checks that stage-runtime refuses a build tree without the binaries.
"""
import argparse
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time

EXPECTED = {"bin/logn_server", "bin/logn", "models/demo_ce/model.pt", "models/demo_ce/model.json",
            "models/demo_logn/model.pt", "models/demo_logn/model.json"}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd, **kwargs):
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--install-runtime-deps", required=True)
    parser.add_argument("--stage-runtime", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--server-binary", required=True, help="the built logn_server")
    parser.add_argument("--cli-binary", required=True, help="the built logn")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    out = run([args.install_runtime_deps])
    if out.returncode != 0:
        fail(f"install-runtime-deps exited {out.returncode}:\n{out.stdout}{out.stderr}")
    print(out.stdout.strip())

    shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(args.work_dir)
    empty_build = os.path.join(args.work_dir, "empty-build")
    os.makedirs(empty_build)
    out = run([args.stage_runtime, empty_build, os.path.join(args.work_dir, "unused")])
    if out.returncode == 0 or "logn_server is missing" not in out.stderr:
        fail(f"stage-runtime should refuse a build tree without logn_server (exit "
             f"{out.returncode}):\n{out.stderr}")
    print(f"ok: stage-runtime refuses a tree without binaries: {out.stderr.strip()}")

    stage = os.path.join(args.work_dir, "stage")
    out = run([args.stage_runtime, args.build_dir, stage])
    if out.returncode != 0:
        fail(f"stage-runtime exited {out.returncode}:\n{out.stdout}{out.stderr}")
    print(out.stdout.strip())
    staged = {os.path.relpath(os.path.join(root, f), stage)
              for root, _, files in os.walk(stage) for f in files}
    if staged != EXPECTED:
        fail(f"staged files differ: extra {sorted(staged - EXPECTED)}, "
             f"missing {sorted(EXPECTED - staged)}")
    for name, built in (("logn_server", args.server_binary), ("logn", args.cli_binary)):
        path = os.path.join(stage, "bin", name)
        if not os.access(path, os.X_OK) or not filecmp.cmp(path, built, shallow=False):
            fail(f"{path} is not an executable copy of {built}")
    print(f"ok: staged exactly {sorted(EXPECTED)}")

    server_bin = os.path.join(stage, "bin", "logn_server")
    cli = os.path.join(stage, "bin", "logn")
    port_file = os.path.join(args.work_dir, "port")
    log_path = os.path.join(args.work_dir, "server.log")
    cmd = [server_bin, "--listen=127.0.0.1:0", "--metrics_listen=", f"--port_file={port_file}",
           f"--model={os.path.join(stage, 'models', 'demo_ce', 'model.pt')}",
           f"--store=sqlite://{os.path.join(os.path.abspath(args.work_dir), 'stats.db')}",
           "--intra_op_threads=1"]
    print("$ " + " ".join(cmd), flush=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + args.timeout
        port = 0
        status = ""
        while time.monotonic() < deadline:
            if server.poll() is not None:
                fail(f"logn_server exited {server.returncode} while starting:\n"
                     f"{open(log_path).read()}")
            if not port and os.path.exists(port_file):
                with open(port_file) as f:
                    for line in f:
                        if line.startswith("grpc="):
                            port = int(line.strip()[5:])
            if port:
                out = subprocess.run([cli, "health", "--server", f"127.0.0.1:{port}",
                                      "--deadline", "3", "--retries", "1"],
                                     text=True, capture_output=True)
                status = (out.stdout + out.stderr).strip()
                if out.returncode == 0 and status == "SERVING":
                    break
            time.sleep(0.2)
        else:
            fail(f"no SERVING within {args.timeout:g}s (port {port or 'not written'}, last "
                 f"health: {status!r}):\n{open(log_path).read()}")
        print(f"ok: staged logn health --server 127.0.0.1:{port}: {status}")

        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            fail("logn_server did not exit within 40 s of SIGTERM")
        if code != 0:
            fail(f"logn_server exited {code} after SIGTERM:\n{open(log_path).read()}")
        print("ok: SIGTERM -> exit 0")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print("deploy_stage_runtime: passed")


if __name__ == "__main__":
    main()
