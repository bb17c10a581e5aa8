#!/usr/bin/python3
"""Faults: the server killed mid-write, its database gone, its disk full. Nothing committed is
lost, nothing half-written appears, and the server keeps (or goes back to) serving.

    faults_test.py --server-binary B --logn L --model M --data DIR --pg-script S --work-dir W
"""
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client", "testing"))
from logn_test_server import LognServer, free_port, run_unittests, write_random_npy  # noqa: E402

ARGS = None
ROWS = 400
WIDTH = 6  # the contract model: 5 classes + background
KILLS_PER_BACKEND = 6


def in_ci() -> bool:
    return os.environ.get("CI") == "true"



def logn(*argv, timeout=60):
    return subprocess.run([ARGS.logn, *argv], capture_output=True, text=True, timeout=timeout)


class FaultsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.abspath(ARGS.work_dir)
        shutil.rmtree(cls.dir, ignore_errors=True)
        os.makedirs(cls.dir)
        cls.logits = os.path.join(cls.dir, "logits.npy")
        write_random_npy(cls.logits, ROWS, WIDTH, 1)
        cls.pg_dir, cls.pg_port = os.path.join(cls.dir, "pg"), free_port()
        subprocess.run([ARGS.pg_script, "start", cls.pg_dir, str(cls.pg_port)], check=True)
        url_file = os.path.join(cls.pg_dir, "url")
        cls.pg_url = ""
        if os.path.exists(url_file):
            with open(url_file) as f:
                cls.pg_url = f.read().strip()

    @classmethod
    def tearDownClass(cls):
        subprocess.run([ARGS.pg_script, "stop", cls.pg_dir, str(cls.pg_port)], check=False)

    def pg(self, command: str) -> None:
        subprocess.run([ARGS.pg_script, command, self.pg_dir, str(self.pg_port)], check=True)

    def server(self, name: str, store_url: str) -> LognServer:
        return LognServer(ARGS.server_binary, ARGS.model, os.path.join(self.dir, name),
                          store_url=store_url)

    def calibrate(self, server: LognServer, *extra):
        return logn("calibrate", "--server", server.address, "--logits", self.logits,
                    "--batch-rows", "40", "--json", *extra)

    def check_store(self, server: LognServer, committed: set, targets: set) -> None:
        """Every committed version is there, whole and verified; `active` is a real target."""
        r = logn("stats", "list", "--server", server.address, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        versions = [json.loads(v) if isinstance(v, str) else v for v in json.loads(r.stdout)]
        numbers = [int(v["version"]) for v in versions]
        self.assertEqual(numbers, sorted(numbers))
        self.assertTrue(committed <= set(numbers), f"lost {committed - set(numbers)}")
        for v in versions:
            self.assertEqual(int(v["rows_seen"]), ROWS, f"version {v['version']} is partial")
            shown = logn("stats", "show", str(v["version"]), "--statistics", "--server",
                         server.address, "--json")  # verifies the payload checksum
            self.assertEqual(shown.returncode, 0, shown.stderr)
        active = logn("stats", "show", "active", "--server", server.address, "--json")
        if active.returncode == 0:
            version = int(json.loads(active.stdout)["statistics_version"]["version"])
            self.assertIn(version, targets | set(numbers))
            self.assertIn(version, numbers)
        else:
            self.assertIn("NOT_FOUND", active.stderr)  # never activated yet

    def kill_during_writes(self, name: str, store_url: str) -> None:
        committed, targets = set(), set()
        for kill in range(KILLS_PER_BACKEND):
            server = self.server(name, store_url).__enter__()
            stop = threading.Event()

            def calibrations():
                while not stop.is_set():
                    r = self.calibrate(server, "--activate")
                    if r.returncode == 0:
                        v = int(json.loads(r.stdout)["statistics_version"]["version"])
                        committed.add(v)
                        targets.add(v)

            def alias_switches():
                while not stop.is_set():
                    if committed:
                        v = random.choice(sorted(committed))
                        targets.add(v)
                        logn("stats", "activate", str(v), "--server", server.address)

            threads = [threading.Thread(target=calibrations), threading.Thread(target=alias_switches)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.3, 1.2))
            server.kill()
            stop.set()
            for t in threads:
                t.join()
            server.__exit__(None, None, None)
            with self.server(name, store_url) as restarted:
                self.check_store(restarted, committed, targets)
        self.assertGreater(len(committed), 0)
        print(f"  {name}: {KILLS_PER_BACKEND} SIGKILLs, {len(committed)} committed versions intact")

    def test_sigkill_during_commits_and_alias_switches_sqlite(self):
        self.kill_during_writes("kill_sqlite", f"sqlite://{self.dir}/kill.db")

    def test_sigkill_during_commits_and_alias_switches_postgres(self):
        if not self.pg_url:
            self.skipTest("no PostgreSQL (outside CI)")
        self.kill_during_writes("kill_pg", self.pg_url)

    def test_postgres_outage_keeps_detect_serving_and_recovers(self):
        if not self.pg_url:
            self.skipTest("no PostgreSQL (outside CI)")
        image = os.path.join(ARGS.data, "val", sorted(os.listdir(os.path.join(ARGS.data, "val")))[0])
        with self.server("outage", self.pg_url) as server:
            r = self.calibrate(server, "--activate")
            self.assertEqual(r.returncode, 0, r.stderr)
            version = json.loads(r.stdout)["statistics_version"]["version"]
            self.assertEqual(logn("detect", "--server", server.address, image).returncode, 0)
            self.pg("halt")
            try:
                time.sleep(0.5)  # the listen thread notices and invalidates cached aliases
                for _ in range(5):
                    r = logn("detect", "--json", "--server", server.address, image)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn(f'"version":{version}', r.stdout)
                for argv in (["stats", "list"], ["stats", "activate", version]):
                    r = logn(*argv, "--server", server.address, "--retries", "1")
                    self.assertEqual(r.returncode, 1, r.stdout)
                    self.assertIn("UNAVAILABLE", r.stderr)
                r = self.calibrate(server)
                self.assertEqual(r.returncode, 1)
                self.assertIn("UNAVAILABLE", r.stderr)
                health = logn("health", "--server", server.address)
                self.assertEqual(health.returncode, 0, health.stdout)
            finally:
                self.pg("resume")
            deadline = time.monotonic() + 20
            while logn("stats", "list", "--server", server.address).returncode != 0:
                self.assertLess(time.monotonic(), deadline, "the store did not come back")
                time.sleep(0.2)
            r = self.calibrate(server, "--activate")
            self.assertEqual(r.returncode, 0, r.stderr)
            new_version = json.loads(r.stdout)["statistics_version"]["version"]
            r = logn("detect", "--json", "--server", server.address, image)
            self.assertIn(f'"version":{new_version}', r.stdout)

    def test_sqlite_on_a_full_disk_is_resource_exhausted_then_recovers(self):
        disk = os.path.join(self.dir, "small_disk")
        os.makedirs(disk)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            if in_ci():
                self.fail(f"cannot mount a tmpfs (needs root): {mounted.stderr}")
            self.skipTest(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        try:
            self.full_disk(disk)
        finally:
            subprocess.run(["umount", "-l", disk], check=False)

    def full_disk(self, disk: str) -> None:
        image = os.path.join(ARGS.data, "val", sorted(os.listdir(os.path.join(ARGS.data, "val")))[0])
        with self.server("full_disk", f"sqlite://{disk}/stats.db") as server:
            r = self.calibrate(server, "--activate")
            self.assertEqual(r.returncode, 0, r.stderr)
            committed = {int(json.loads(r.stdout)["statistics_version"]["version"])}
            filler = os.path.join(disk, "filler")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096) > 0:
                    pass
            except OSError:  # ENOSPC: the disk is full
                pass
            finally:
                os.close(fd)
            exhausted = None
            for _ in range(200):  # SQLite reuses free WAL pages first, then needs new ones
                r = self.calibrate(server)
                if r.returncode == 0:
                    committed.add(int(json.loads(r.stdout)["statistics_version"]["version"]))
                    continue
                exhausted = r
                break
            self.assertIsNotNone(exhausted, "the full disk never refused a write")
            self.assertIn("RESOURCE_EXHAUSTED", exhausted.stderr)
            self.assertEqual(logn("health", "--server", server.address).returncode, 0)
            self.assertEqual(logn("detect", "--server", server.address, image).returncode, 0)
            os.remove(filler)
            r = self.calibrate(server)
            self.assertEqual(r.returncode, 0, r.stderr)
            committed.add(int(json.loads(r.stdout)["statistics_version"]["version"]))
            self.check_store(server, committed, committed)
        # The file survives a restart intact.
        with self.server("full_disk", f"sqlite://{disk}/stats.db") as server:
            self.check_store(server, committed, committed)


def set_args(args) -> None:
    global ARGS
    ARGS = args


if __name__ == "__main__":
    sys.exit(run_unittests(("--server-binary", "--logn", "--model", "--data", "--pg-script", "--work-dir"), set_args))
