#!/usr/bin/env python3
"""CTest deploy_stage_runtime: what the Dockerfile's runtime stage gets, run outside a container.

Runs scripts/install-runtime-deps (a no-op when the packages are there) and scripts/stage-runtime
BUILD_DIR DEST, checks the staged tree (the binaries, every models/NAME/ with model.pt and
model.json, and lib/: the binaries' library closure with the BLAS scripts/select-blas chose, glibc
left out), then starts the staged logn_server on the staged demo_ce model with only DEST/lib in
front of the loader (LD_LIBRARY_PATH, as the image's ld.so.conf entry), waits until the staged
`logn health` reports SERVING, runs one Detect, and checks every shared library the server has
mapped: each must come from DEST/lib or be glibc's, which the base image has. So the closure the
image copies is complete, including what LibTorch opens at run time. Then SIGTERM and exit 0.
Also checks that stage-runtime refuses a build tree without the binaries, and that --base-status
leaves out the libraries of the base image's packages (at the same version) and only those.
"""
import argparse
import filecmp
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

ARCH_LIB = "/usr/lib/x86_64-linux-gnu"
# Libraries the staged lib/ must hold: LibTorch, and the BLAS behind it.
REQUIRED_LIBS = {"libtorch_cpu.so.1.13", "libc10.so.1.13", "libblas.so.3", "liblapack.so.3",
                 "libopenblas.so.0", "libgrpc++.so.1.51", "libprotobuf.so.32", "libpqxx-6.4.so",
                 "libsqlite3.so.0"}
GLIBC_LIBS = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"}


def expected_files(repo):
    files = {"bin/logn_server", "bin/logn"}
    for name in sorted(os.listdir(os.path.join(repo, "models"))):
        model_dir = os.path.join(repo, "models", name)
        if all(os.path.isfile(os.path.join(model_dir, f)) for f in ("model.pt", "model.json")):
            files |= {f"models/{name}/model.pt", f"models/{name}/model.json"}
    return files


def write_png(path, size=160):
    """A grey gradient PNG, without PIL."""
    rows = b"".join(b"\x00" + bytes((x + y) % 256 for x in range(size) for _ in range(3))
                    for y in range(size))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0,
                                                                      0)) +
                chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def glibc_files():
    out = subprocess.run(["dpkg", "-L", "libc6"], text=True, capture_output=True, check=True)
    return {os.path.realpath(p) for p in out.stdout.split() if ".so" in p}


def mapped_libraries(pid):
    libs = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                libs.add(parts[5].strip())
    return libs


def installed_version(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], text=True,
                         capture_output=True)
    return out.stdout.strip() if out.returncode == 0 else None


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

    repo = os.path.dirname(os.path.dirname(os.path.abspath(args.stage_runtime)))
    expected = expected_files(repo)
    stage = os.path.join(args.work_dir, "stage")
    out = run([args.stage_runtime, args.build_dir, stage])
    if out.returncode != 0:
        fail(f"stage-runtime exited {out.returncode}:\n{out.stdout}{out.stderr}")
    print(out.stdout.strip())
    staged = {os.path.relpath(os.path.join(root, f), stage)
              for root, _, files in os.walk(stage) for f in files}
    libs = {p[4:] for p in staged if p.startswith("lib/")}
    staged -= {"lib/" + p for p in libs}
    if staged != expected:
        fail(f"staged files differ: extra {sorted(staged - expected)}, "
             f"missing {sorted(expected - staged)}")
    for name, built in (("logn_server", args.server_binary), ("logn", args.cli_binary)):
        path = os.path.join(stage, "bin", name)
        if not os.access(path, os.X_OK) or not filecmp.cmp(path, built, shallow=False):
            fail(f"{path} is not an executable copy of {built}")
    print(f"ok: staged exactly {sorted(expected)}")
    if not REQUIRED_LIBS <= libs:
        fail(f"lib/ lacks {sorted(REQUIRED_LIBS - libs)}")
    if libs & GLIBC_LIBS:
        fail(f"lib/ should leave glibc to the base image, has {sorted(libs & GLIBC_LIBS)}")
    blas_dir = os.path.dirname(os.path.realpath(os.path.join(ARCH_LIB, "libblas.so.3")))
    for name in ("libblas.so.3", "liblapack.so.3", "libopenblas.so.0"):
        chosen = os.path.realpath(os.path.join(blas_dir, name))
        if not filecmp.cmp(os.path.join(stage, "lib", name), chosen, shallow=False):
            fail(f"lib/{name} is not {chosen}, the BLAS scripts/select-blas chose")
    size = sum(os.path.getsize(os.path.join(stage, "lib", f)) for f in libs)
    print(f"ok: lib/ holds {len(libs)} libraries ({size / 1e6:.0f} MB), LibTorch, gRPC, the stores' "
          f"clients and the BLAS from {blas_dir}, no glibc")

    server_bin = os.path.join(stage, "bin", "logn_server")
    cli = os.path.join(stage, "bin", "logn")
    port_file = os.path.join(args.work_dir, "port")
    log_path = os.path.join(args.work_dir, "server.log")
    image = os.path.join(args.work_dir, "gradient.png")
    write_png(image)
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(stage, "lib"))
    cmd = [server_bin, "--listen=127.0.0.1:0", "--metrics_listen=", f"--port_file={port_file}",
           f"--model={os.path.join(stage, 'models', 'demo_ce', 'model.pt')}",
           f"--store=sqlite://{os.path.join(os.path.abspath(args.work_dir), 'stats.db')}",
           "--intra_op_threads=1"]
    print("$ " + " ".join(cmd), flush=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
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
                                     text=True, capture_output=True, env=env)
                status = (out.stdout + out.stderr).strip()
                if out.returncode == 0 and status == "SERVING":
                    break
            time.sleep(0.2)
        else:
            fail(f"no SERVING within {args.timeout:g}s (port {port or 'not written'}, last "
                 f"health: {status!r}):\n{open(log_path).read()}")
        print(f"ok: staged logn health --server 127.0.0.1:{port}: {status}")

        out = run([cli, "detect", "--server", f"127.0.0.1:{port}", "--method", "none", image],
                  env=env)
        if out.returncode != 0 or "detections" not in out.stdout:
            fail(f"staged logn detect failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        print(f"ok: staged logn detect: {out.stdout.strip().splitlines()[0]}")
        staged_lib = os.path.realpath(os.path.join(stage, "lib"))
        glibc = glibc_files()
        mapped = mapped_libraries(server.pid)
        foreign = sorted(p for p in mapped if not p.startswith(staged_lib + "/")
                         and os.path.realpath(p) not in glibc)
        if foreign:
            fail(f"the staged server mapped libraries from neither lib/ nor glibc: {foreign}")
        from_stage = [p for p in mapped if p.startswith(staged_lib + "/")]
        if os.path.join(staged_lib, "libopenblas.so.0") not in mapped:
            fail("the staged server did not map lib/libopenblas.so.0 (the chosen BLAS)")
        print(f"ok: the server mapped {len(from_stage)} libraries from lib/ (the chosen BLAS "
              f"among them) and {len(mapped) - len(from_stage)} of glibc, nothing else")

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
    shutil.rmtree(os.path.join(stage, "lib"))  # ~500 MB; the checks above are done with it

    # --base-status: a base image with libstdc++6 at this machine's version and zlib1g at another
    # one. libstdc++ is left to the base; zlib is copied (the base's would be a different build).
    versions = {p: installed_version(p) for p in ("libstdc++6", "zlib1g")}
    if all(versions.values()):
        status = os.path.join(args.work_dir, "base-status")
        with open(status, "w") as f:
            f.write(f"Package: libstdc++6\nStatus: install ok installed\n"
                    f"Version: {versions['libstdc++6']}\n\n"
                    "Package: zlib1g\nStatus: install ok installed\nVersion: 0:0-older\n")
        stage2 = os.path.join(args.work_dir, "stage-base")
        out = run([args.stage_runtime, "--base-status", status, args.build_dir, stage2])
        if out.returncode != 0:
            fail(f"stage-runtime --base-status exited {out.returncode}:\n{out.stdout}{out.stderr}")
        libs2 = set(os.listdir(os.path.join(stage2, "lib")))
        if "libstdc++.so.6" in libs2 or "libz.so.1" not in libs2 or \
                libs2 != libs - {"libstdc++.so.6"}:
            fail(f"--base-status: expected lib/ less libstdc++.so.6 only, got extra "
                 f"{sorted(libs2 - libs)}, missing {sorted(libs - libs2)}")
        shutil.rmtree(stage2)
        print("ok: --base-status leaves out libstdc++ (the base's version) and keeps zlib (another "
              "version in the base)")
    print("deploy_stage_runtime: passed")


if __name__ == "__main__":
    main()
