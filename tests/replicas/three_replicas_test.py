#!/usr/bin/python3
"""Three logn_server replicas on loopback sharing one PostgreSQL statistics store.

Checks, with the real `logn` CLI:
  1. a training set calibrated as 3 shards (one per replica, concurrently) and merged equals a
     single-process pass over it (<= 1e-9 relative);
  2. a replica killed with SIGKILL mid-shard, its job resumed on another replica from the
     store's checkpoint, gives the shard's uninterrupted result, rows counted exactly once;
  3. an alias activated through one replica takes effect for Detect on the others within 1 s.

    three_replicas_test.py --server-binary B --logn L --model M --data DIR --pg-script S
                           --work-dir W
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client", "testing"))
from logn_test_server import LognServer, free_port  # noqa: E402

TOLERANCE = 1e-9
SHARDS = 3
CHECKPOINT_EVERY = 2
# The resumed shard's image at this position (0-based within the shard) is a FIFO, so the CLI
# blocks before sending it: the replica is killed at a known point, after a known checkpoint.
BLOCK_AT = 6



class Cli:
    def __init__(self, binary: str):
        self.binary = binary

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"logn {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
        return p

    def json(self, *args) -> dict:
        return json.loads(self.run(*args, "--json").stdout)

    def statistics(self, server: str, version: int) -> dict:
        got = self.json("stats", "show", str(version), "--statistics", "--server", server)
        return got["statistics_version"]["statistics"]


def relative_difference(a: list, b: list) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    return worst


def assert_same_statistics(what: str, got: dict, want: dict) -> None:
    if int(got["count"]) != int(want["count"]):
        raise AssertionError(f"{what}: {got['count']} rows, want {want['count']}")
    for field in ("mean", "variance"):
        diff = relative_difference(got[field], want[field])
        print(f"  {what}: {field} max relative difference {diff:.3g}")
        if diff > TOLERANCE:
            raise AssertionError(f"{what}: {field} differs by {diff:.3g} > {TOLERANCE}")


def calibrate_args(server: str, data: str, images: str, *extra) -> list:
    return ["calibrate", "--server", server, "--dataset", os.path.join(data, "train.json"),
            "--images", images, "--batch-images", "1", *extra]


def shard_file_names(data: str, shard: int) -> list:
    with open(os.path.join(data, "train.json")) as f:
        images = json.load(f)["images"]
    begin, end = len(images) * shard // SHARDS, len(images) * (shard + 1) // SHARDS
    return [im["file_name"] for im in images[begin:end]]


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--server-binary", "--logn", "--model", "--data", "--pg-script", "--work-dir"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    cli = Cli(args.logn)
    work = os.path.abspath(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    pg_dir, pg_port = os.path.join(work, "pg"), free_port()
    subprocess.run([args.pg_script, "start", pg_dir, str(pg_port)], check=True)
    try:
        url_file = os.path.join(pg_dir, "url")
        if not os.path.exists(url_file):
            print("SKIP: no PostgreSQL server (outside CI)")
            return 0
        with open(url_file) as f:
            url = f.read().strip()
        return run(cli, args, work, url)
    finally:
        subprocess.run([args.pg_script, "stop", pg_dir, str(pg_port)], check=False)


def run(cli: Cli, args, work: str, url: str) -> int:
    train_images = os.path.join(args.data, "train")
    servers = [LognServer(args.server_binary, args.model, os.path.join(work, f"replica{i}"),
                          store_url=url, extra_args=[f"--checkpoint_every_batches={CHECKPOINT_EVERY}"])
               for i in range(SHARDS)]
    for s in servers:
        s.__enter__()
    try:
        a, b, c = (s.address for s in servers)

        print("1. three shards merged == one pass")
        single = cli.json(*calibrate_args(a, args.data, train_images, "--job-id", "single"))
        reference = cli.statistics(b, single["statistics_version"]["version"])
        results = [None] * SHARDS

        def shard(i: int) -> None:
            results[i] = cli.json(*calibrate_args(
                servers[i].address, args.data, train_images, "--shard", f"{i}/{SHARDS}",
                "--partial", "--job-id", f"shard-{i}"))

        threads = [threading.Thread(target=shard, args=(i,)) for i in range(SHARDS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shard_versions = [int(r["statistics_version"]["version"]) for r in results]
        if sum(int(r["rows_seen"]) for r in results) != int(single["rows_seen"]):
            raise AssertionError("the shards' rows do not add up to the single pass's")
        merged = cli.json("stats", "merge", *map(str, shard_versions), "--server", b)
        if sorted(int(v) for v in merged["parent_versions"]) != sorted(shard_versions):
            raise AssertionError(f"merge provenance {merged['parent_versions']} != {shard_versions}")
        assert_same_statistics("merged shards vs one pass", cli.statistics(c, merged["version"]),
                               reference)
        refused = cli.run("stats", "activate", str(shard_versions[0]), "--server", a, check=False)
        if refused.returncode != 1 or "FAILED_PRECONDITION" not in refused.stderr:
            raise AssertionError(f"a partial version was activatable: {refused.stderr}")

        print("2. a replica killed mid-shard, the job resumed on another")
        names = shard_file_names(args.data, 1)
        paced = os.path.join(work, "paced_images")
        os.makedirs(paced)
        for i, name in enumerate(names):
            target = os.path.join(paced, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if i == BLOCK_AT:
                os.mkfifo(target)
            else:
                os.symlink(os.path.join(os.path.abspath(train_images), name), target)
        job = ["--shard", f"1/{SHARDS}", "--partial", "--job-id", "resumed-1"]
        victim = subprocess.Popen([cli.binary, *calibrate_args(c, args.data, paced, *job)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        checkpointed = 0
        while checkpointed < BLOCK_AT and time.monotonic() < deadline:
            p = cli.run("stats", "job", "resumed-1", "--server", a, "--json", check=False)
            if p.returncode == 0:
                checkpointed = int(json.loads(p.stdout)["batches_seen"])
            time.sleep(0.05)
        if checkpointed != BLOCK_AT:
            raise AssertionError(f"checkpoint stuck at {checkpointed}, expected {BLOCK_AT}")
        servers[2].kill()
        # Unblock the CLI: its next write meets the dead replica.
        with open(os.path.join(paced, names[BLOCK_AT]), "wb") as fifo:
            with open(os.path.join(train_images, names[BLOCK_AT]), "rb") as image:
                fifo.write(image.read())
        _, victim_err = victim.communicate(timeout=60)
        if victim.returncode != 1:
            raise AssertionError(f"the CLI did not fail when its replica died: {victim_err}")
        resumed_run = cli.run(*calibrate_args(a, args.data, train_images, *job, "--resume",
                                              "--json"))
        if f"after batch {BLOCK_AT}" not in resumed_run.stderr:
            raise AssertionError(f"the job did not resume from its checkpoint: {resumed_run.stderr}")
        resumed = json.loads(resumed_run.stdout)
        uninterrupted = results[1]
        for field in ("rows_seen", "images_seen", "batches_seen"):
            if int(resumed[field]) != int(uninterrupted[field]):
                raise AssertionError(f"resumed job has {resumed[field]} {field}, the "
                                     f"uninterrupted shard {uninterrupted[field]}")
        assert_same_statistics(
            "resumed shard vs uninterrupted shard",
            cli.statistics(a, resumed["statistics_version"]["version"]),
            cli.statistics(a, uninterrupted["statistics_version"]["version"]))
        gone = cli.run("stats", "job", "resumed-1", "--server", b, check=False)
        if gone.returncode != 1 or "NOT_FOUND" not in gone.stderr:
            raise AssertionError("the committed job's checkpoint was not cleared")

        print("3. an alias activated through one replica, seen by the others within 1 s")
        servers[2].__enter__()  # the killed replica restarts
        c = servers[2].address
        image = os.path.join(train_images, names[0])
        for version in (single["statistics_version"]["version"], merged["version"]):
            cli.run("stats", "activate", str(version), "--server", a)
            activated = time.monotonic()
            for other in (b, c):
                while True:
                    out = cli.run("detect", "--json", "--server", other, image).stdout
                    seen = json.loads(out.splitlines()[0])["version"]
                    elapsed = time.monotonic() - activated
                    if int(seen) == int(version):
                        break
                    if elapsed > 1.0:
                        raise AssertionError(f"{other} still serves version {seen} {elapsed:.2f} "
                                             f"s after version {version} was activated")
                    time.sleep(0.02)
                print(f"  version {version} served by {other} {elapsed * 1000:.0f} ms after "
                      "activation")
        print("three replicas: all checks passed")
        return 0
    finally:
        for s in servers:
            s.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
