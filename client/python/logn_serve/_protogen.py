"""Generates the logn.v1 Python stubs into a logn_serve package directory (build time only).

Standard library only: setup.py loads this file by path before the package (and gRPC) can be
imported. The stubs go to `<package_dir>/_gen/logn/v1/` (messages `*_pb2.py` with `.pyi` type
stubs, services `*_pb2_grpc.py`), and their `from logn.v1 import ...` lines are rewritten to
`logn_serve._gen.logn.v1`, so that the package claims no top-level `logn` module.

The compiler is the system `protoc` with `grpc_python_plugin` (Debian's protobuf-compiler and
protobuf-compiler-grpc). `python3 -m grpc_tools.protoc` is the fallback when they are missing; the
one Debian bookworm ships (python3-grpc-tools 1.14) bundles protoc 3.5, which rejects the proto3
`optional` fields of logn.v1, so it only helps with a newer grpc_tools.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
from typing import List, Optional, Sequence

GENERATED_PACKAGE = "_gen"
_IMPORT = re.compile(r"^(from|import) logn\.v1\b", re.MULTILINE)


class ProtoGenError(RuntimeError):
    pass


def default_proto_dir(package_dir: str) -> str:
    """`$LOGN_PROTO_DIR`, else the repository's proto/ (client/python/logn_serve/../../../proto)."""
    env = os.environ.get("LOGN_PROTO_DIR")
    if env:
        return env
    return os.path.normpath(os.path.join(package_dir, "..", "..", "..", "proto"))


def _proto_files(proto_dir: str) -> List[str]:
    protos = sorted(glob.glob(os.path.join(proto_dir, "logn", "v1", "*.proto")))
    if not protos:
        raise ProtoGenError(
            f"no .proto files under {os.path.join(proto_dir, 'logn', 'v1')}: build logn_serve from "
            "a LogN Serve checkout (client/python next to proto/), or set LOGN_PROTO_DIR")
    return protos


def _protoc_command(proto_dir: str, out_dir: str, protos: Sequence[str]) -> List[str]:
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    includes = [f"-I{proto_dir}"]
    if protoc and plugin:
        # google/protobuf/{timestamp,duration}.proto: protoc finds them in <bindir>/../include;
        # name Debian's location explicitly too.
        if os.path.isfile("/usr/include/google/protobuf/timestamp.proto"):
            includes.append("-I/usr/include")
        return [protoc, f"--plugin=protoc-gen-grpc_python={plugin}", *includes,
                f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}", *protos]
    try:  # python3-grpc-tools / grpcio-tools, with the well-known protos it ships
        from importlib import resources
        well_known = str(resources.files("grpc_tools") / "_proto")
    except Exception:  # noqa: BLE001
        raise ProtoGenError(
            "generating the logn.v1 stubs needs protoc and grpc_python_plugin on PATH "
            "(apt-get install protobuf-compiler protobuf-compiler-grpc)") from None
    return [sys.executable, "-m", "grpc_tools.protoc", *includes, f"-I{well_known}",
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]


def _rewrite_imports(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rewritten = _IMPORT.sub(lambda m: f"{m.group(1)} logn_serve.{GENERATED_PACKAGE}.logn.v1", text)
    if rewritten != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(rewritten)


def generate(package_dir: str, proto_dir: Optional[str] = None) -> List[str]:
    """Writes the stubs of `proto_dir`/logn/v1/*.proto into `package_dir`/_gen (replacing any
    earlier ones) and returns the generated module names, e.g. ["common_pb2", ...]."""
    proto_dir = os.path.abspath(proto_dir or default_proto_dir(package_dir))
    protos = _proto_files(proto_dir)
    root = os.path.join(package_dir, GENERATED_PACKAGE)
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    command = _protoc_command(proto_dir, root, protos)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        hint = ("" if "grpc_tools.protoc" not in command else
                "\n(grpc_tools' bundled protoc may predate proto3 `optional`: install "
                "protobuf-compiler and protobuf-compiler-grpc)")
        raise ProtoGenError(f"{' '.join(command)} failed with exit code {proc.returncode}:\n"
                            f"{proc.stderr.strip()}{hint}")
    v1 = os.path.join(root, "logn", "v1")
    for directory, doc in ((root, "Generated at build time from proto/logn/v1: do not edit."),
                           (os.path.join(root, "logn"), ""), (v1, "")):
        with open(os.path.join(directory, "__init__.py"), "w", encoding="utf-8") as f:
            f.write(f'"""{doc}"""\n' if doc else "")
    modules = []
    for path in sorted(glob.glob(os.path.join(v1, "*.py")) + glob.glob(os.path.join(v1, "*.pyi"))):
        _rewrite_imports(path)
        name = os.path.splitext(os.path.basename(path))[0]
        if path.endswith(".py") and name != "__init__":
            modules.append(name)
    return modules


if __name__ == "__main__":
    # python3 logn_serve/_protogen.py [PROTO_DIR]: generate into this source tree (editable use).
    here = os.path.dirname(os.path.abspath(__file__))
    print("\n".join(generate(here, sys.argv[1] if len(sys.argv) > 1 else None)))
