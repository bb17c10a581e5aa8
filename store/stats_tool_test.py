#!/usr/bin/env python3
"""logn_stats end to end on a fresh SQLite store: import, list with filters, aliases (set and
remove), models, dropping a checkpoint, usage errors.

    stats_tool_test.py /path/to/logn_stats
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

LOGN_STATS = sys.argv.pop(1) if len(sys.argv) > 1 else "logn_stats"
MODEL = "tool-test-model"
SHA = hashlib.sha256(MODEL.encode()).hexdigest()

STATISTICS = {
    "layout": {"num_classes": 3, "background": "BACKGROUND_POSITION_LAST"},
    "count": "100",
    "mean": [-5.0, -2.0, 1.0, 4.0],
    "variance": [0.5, 1.5, 2.5, 3.5],
    "method": "ACCUMULATION_METHOD_EXACT",
    "momentum": 0,
}


class StatsToolTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.store = "sqlite://" + os.path.join(self.tmp.name, "stats.db")
        self.file = os.path.join(self.tmp.name, "stats.json")
        with open(self.file, "w") as f:
            json.dump(STATISTICS, f)

    def tearDown(self):
        self.tmp.cleanup()

    def run_tool(self, command, *args, model=True, code=0):
        argv = [LOGN_STATS, command, "--store", self.store]
        if model:
            argv += ["--model", MODEL, "--sha256", SHA]
        r = subprocess.run(argv + list(args), capture_output=True, text=True)
        self.assertEqual(r.returncode, code, r.stderr)
        return r

    def lines(self, command, *args):
        return self.run_tool(command, *args).stdout.splitlines()

    def test_import_list_filters_aliases_models(self):
        for expected in ("1", "2"):
            self.assertEqual(self.lines("import", "--file", self.file), [expected])
        self.assertEqual(self.lines("import", "--file", self.file, "--activate"), ["3"])

        self.assertEqual(len(self.lines("list")), 3)
        self.assertEqual(len(self.lines("list", "--source", "import")), 3)
        self.assertEqual(self.lines("list", "--source", "merge"), [])
        self.assertEqual(self.lines("list", "--partial", "true"), [])
        self.assertEqual(len(self.lines("list", "--partial", "false", "--job", "")), 3)
        self.assertEqual(self.lines("list", "--job", "no-such-job"), [])
        self.run_tool("list", "--partial", "maybe", code=1)
        self.run_tool("list", "--source", "rumour", code=1)

        self.assertEqual(self.lines("alias", "--alias", "canary", "--version", "1"),
                         ["previous\t0"])
        self.assertEqual(self.lines("aliases"), ["active\t3", "canary\t1"])
        self.run_tool("delete", "--version", "1", code=1)  # canary points at it
        self.run_tool("unalias", "--alias", "canary")
        self.assertEqual(self.lines("aliases"), ["active\t3"])
        r = self.run_tool("unalias", "--alias", "canary", code=1)
        self.assertIn("NOT_FOUND", r.stderr)
        self.run_tool("delete", "--version", "1")
        self.assertEqual([l.split("\t")[0] for l in self.lines("list")], ["2", "3"])

        self.assertEqual(self.run_tool("models", model=False).stdout.splitlines(),
                         [MODEL + "\t" + SHA])

    def test_drop_checkpoint_of_an_unknown_job_is_not_found(self):
        self.run_tool("import", "--file", self.file)
        r = self.run_tool("drop-checkpoint", "--job", "never-ran", code=1)
        self.assertIn("no checkpoint for job 'never-ran'", r.stderr)
        self.run_tool("drop-checkpoint", code=1)  # --job is required

    def test_usage_errors(self):
        self.run_tool("frobnicate", code=2)
        self.run_tool("list", "stray", code=2)
        self.run_tool("list", "--model", model=False, code=2)


if __name__ == "__main__":
    unittest.main()
