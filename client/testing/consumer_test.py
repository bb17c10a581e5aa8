#!/usr/bin/python3
"""The installed client package works for a project outside the tree: installs component
"client" of the build into a temporary prefix, configures and builds
client/examples/consumer against it, and runs the program against a live logn_server.

    consumer_test.py --build-dir B --source-dir S --server-binary BIN --model M.pt --work-dir D
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logn_test_server import LognServer  # noqa: E402


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--cmake", default="cmake")
    args = parser.parse_args()

    shutil.rmtree(args.work_dir, ignore_errors=True)
    prefix = os.path.join(args.work_dir, "prefix")
    consumer_build = os.path.join(args.work_dir, "consumer-build")
    try:
        run([args.cmake, "--install", args.build_dir, "--prefix", prefix, "--component", "client"])
        for must in ["include/client/lib/client.h", "include/logn/v1/detection_service.grpc.pb.h",
                     "lib/cmake/LognClient/LognClientConfig.cmake", "lib/liblogn_client.a",
                     "lib/liblogn_proto.a", "lib/liblogn_grpc_proto.a",
                     "share/logn/proto/logn/v1/common.proto"]:
            if not os.path.exists(os.path.join(prefix, must)):
                print(f"missing from the install: {must}")
                return 1
        # Nothing from the source or build tree may leak into the installed package.
        with open(os.path.join(prefix, "lib/cmake/LognClient/LognClientTargets.cmake")) as f:
            targets = f.read()
        for tree in (os.path.abspath(args.source_dir), os.path.abspath(args.build_dir)):
            if tree in targets:
                print(f"LognClientTargets.cmake refers to {tree}")
                return 1
        source = os.path.join(args.source_dir, "client", "examples", "consumer")
        run([args.cmake, "-S", source, "-B", consumer_build, "-G", "Ninja",
             "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={prefix}"])
        run([args.cmake, "--build", consumer_build])
    except subprocess.CalledProcessError as e:
        print(e.stdout, e.stderr)
        return 1
    program = os.path.join(consumer_build, "logn_model_info")
    with LognServer(args.server_binary, args.model, os.path.join(args.work_dir, "server")) as server:
        proc = subprocess.run([program, server.address], capture_output=True, text=True)
    print(proc.stdout, proc.stderr)
    if proc.returncode != 0:
        return 1
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    if lines.get("classes") != "5" or len(lines.get("sha256", "")) != 64:
        print("unexpected model info")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
