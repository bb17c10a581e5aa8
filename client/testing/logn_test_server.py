"""Starts a logn_server process on 127.0.0.1:0 for the client tests and stops it afterwards.

    with LognServer(binary, model, work_dir) as server:
        run(["logn", "health", "--server", server.address])
"""
import argparse
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest


class LognServer:
    """`store_url` defaults to a fresh SQLite file in `work_dir`; `extra_args` are appended. An
    empty `model` passes no --model (e.g. with --model_repository=DIR in `extra_args`)."""

    def __init__(self, binary: str, model: str, work_dir: str, startup_timeout: float = 60.0,
                 store_url: str = "", extra_args=()):
        self.binary = binary
        self.model = model
        self.work_dir = work_dir
        self.startup_timeout = startup_timeout
        self.store_url = store_url
        self.extra_args = list(extra_args)
        self.process = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "LognServer":
        os.makedirs(self.work_dir, exist_ok=True)
        port_file = os.path.join(self.work_dir, "port")
        store = os.path.join(self.work_dir, "stats.db")
        for path in (port_file, store):
            if os.path.exists(path):
                os.remove(path)
        store_url = self.store_url or f"sqlite://{os.path.abspath(store)}"
        if self.model and not os.path.exists(self.model):
            raise RuntimeError(f"test model {self.model} missing (run the runtime fixtures first)")
        self.log = open(os.path.join(self.work_dir, "server.log"), "w")
        self.process = subprocess.Popen(
            [self.binary, "--listen=127.0.0.1:0", "--metrics_listen=", f"--port_file={port_file}",
             *([f"--model={self.model}"] if self.model else []), f"--store={store_url}",
             "--intra_op_threads=1",
             *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"logn_server exited with {self.process.returncode}; "
                                   f"see {self.log.name}")
            if os.path.exists(port_file):
                with open(port_file) as f:
                    for line in f:
                        if line.startswith("grpc="):
                            self.port = int(line.strip()[5:])
                if self.port:
                    return self
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("logn_server did not write its port file in time")

    def kill(self) -> None:
        """SIGKILL, as a crashed replica: no drain, nothing flushed."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def run_unittests(flags, set_args) -> int:
    """Parses the required `flags` (e.g. "--server-binary"), hands the namespace to `set_args`,
    then runs the calling script's unittest cases (other arguments go to unittest)."""
    parser = argparse.ArgumentParser()
    for flag in flags:
        parser.add_argument(flag, required=True)
    args, rest = parser.parse_known_args()
    set_args(args)
    program = unittest.main(module="__main__", argv=[sys.argv[0], *rest], exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_random_npy(path: str, rows: int, width: int, seed: int, mean=0.0, std=2.0) -> None:
    """A rows x width float32 .npy of Gaussian values (header by hand: no numpy needed)."""
    rng = random.Random(seed)
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {width}), }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{rows * width}f", *(rng.gauss(mean, std) for _ in range(rows * width))))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need one up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
