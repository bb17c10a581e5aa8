#!/usr/bin/python3
"""Runs a command against a fresh logn_server: `{server}` in the command becomes its address.

    run_with_server.py --server-binary B --model M --work-dir D -- CMD [ARGS...]

Exits with the command's exit code (1 if the server cannot start).
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logn_test_server import LognServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    with LognServer(args.server_binary, args.model, args.work_dir) as server:
        command = [c.replace("{server}", server.address) for c in command]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
