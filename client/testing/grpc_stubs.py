"""Helpers for the Python tests and benches that call the logn.v1 RPCs through raw gRPC stubs
(the logn_serve package, client/python, is the API for users): protoc stubs compiled into a
temporary directory, packed float32 logits, tiny PNGs made with zlib only.

Needs protoc with grpc_python_plugin (protobuf-compiler, protobuf-compiler-grpc). Debian's
`python3 -m grpc_tools.protoc` cannot be used: it bundles protoc 3.5, which rejects the proto3
`optional` fields the protos use.
"""
import array
import glob
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib


def compile_protos(proto_dir: str, out_dir: str) -> None:
    protos = sorted(glob.glob(os.path.join(proto_dir, "logn", "v1", "*.proto")))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_dir}/logn/v1")
    plugin = shutil.which("grpc_python_plugin")
    protoc = shutil.which("protoc")
    if not (protoc and plugin):
        raise SystemExit("needs protoc and grpc_python_plugin on PATH "
                         "(apt install protobuf-compiler protobuf-compiler-grpc)")
    # -I/usr/include: google/protobuf/{timestamp,duration}.proto from libprotobuf-dev /
    # protobuf-compiler.
    subprocess.run([protoc, f"--plugin=protoc-gen-grpc_python={plugin}", f"-I{proto_dir}",
                    "-I/usr/include", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                    *protos], check=True)


def float32_bytes(values) -> bytes:
    """Little-endian float32, as LogitBatch.data requires."""
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def png(width: int, height: int, seed: int) -> bytes:
    """A small RGB PNG made with zlib only."""
    rng = random.Random(seed)
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter: none
        for x in range(width):
            raw += bytes(((x * 5 + rng.randrange(40)) % 256, (y * 7) % 256, (x + y) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) +
            chunk(b"IEND", b""))
