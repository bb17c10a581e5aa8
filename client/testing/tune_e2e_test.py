#!/usr/bin/python3
"""End-to-end test of `logn tune` and calibration profiles against a real logn_server.

    tune_e2e_test.py --logn BIN --server-binary BIN --model M.pt --data DIR --work-dir DIR

DIR (--data) is a tiny tools/longtail_data dataset. The tests share one server and run in name
order: calibrate, tune (checked against `logn compare` over the same images and against its own
report), --apply, then the profile as Detect, GetModelInfo and export / import see it.
"""
import argparse
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logn_test_server import LognServer  # noqa: E402

ARGS = None
METRICS = ["AP", "AP50", "AP75", "APr", "APc", "APf"]


def logn(*argv, expect=0):
    """Runs `logn ARGV`, asserts the exit code, returns (stdout, stderr)."""
    proc = subprocess.run([ARGS.logn, *map(str, argv)], capture_output=True, text=True, timeout=300)
    if proc.returncode != expect:
        raise AssertionError(f"logn {' '.join(map(str, argv))}: exit {proc.returncode} != {expect}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout, proc.stderr


class TuneEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(ARGS.work_dir, exist_ok=True)
        cls.server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(ARGS.work_dir, "server"))
        cls.server.__enter__()
        cls.addr = cls.server.address
        cls.val = os.path.join(ARGS.data, "val.json")
        cls.val_dir = os.path.join(ARGS.data, "val")
        cls.report_path = os.path.join(ARGS.work_dir, "tune.json")
        cls.heatmap_path = os.path.join(ARGS.work_dir, "tune.svg")

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def path(self, name):
        return os.path.join(ARGS.work_dir, name)

    def report(self):
        with open(self.report_path) as f:
            return json.load(f)

    def test_00_tune_needs_statistics(self):
        _, err = logn("tune", "--server", self.addr, "--gt", self.val, "--images", self.val_dir,
                      expect=1)
        self.assertIn("NOT_FOUND", err)
        self.assertIn("no statistics", err)

    def test_10_calibrate(self):
        logn("calibrate", "--server", self.addr, "--dataset", os.path.join(ARGS.data, "train.json"),
             "--images", os.path.join(ARGS.data, "train"), "--activate")

    def test_20_tune_reports_every_setting_on_both_parts(self):
        out, err = logn("tune", "--server", self.addr, "--gt", self.val, "--images", self.val_dir,
                        "--seeds", "0,1,2", "--report", self.report_path, "--heatmap",
                        self.heatmap_path)
        self.assertIn("held-out images", out)
        self.assertRegex(err, r"evaluate .* settings 132/132")  # the progress line
        report = self.report()
        self.assertEqual(report["statistics_version"], 1)
        self.assertEqual(report["seeds"], [0, 1, 2])
        with open(self.val) as f:
            num_images = len(json.load(f)["images"])
        settings = report["settings"]
        # none + 5 beta choices x 25 (alpha, gamma) - 1 + BN + 6 LogA (the contract model has
        # a background and instance counts).
        self.assertEqual(len(settings), 1 + 5 * 25 - 1 + 1 + 6)
        for s, split in enumerate(report["splits"]):
            self.assertEqual(split["tuning_images"] + split["heldout_images"], num_images)
            # The choice is the best tuning-part AP; ties go to the earliest setting.
            best = max(range(len(settings)), key=lambda j: (settings[j]["tuning"][s]["AP"], -j))
            self.assertEqual(split["chosen"], settings[best]["setting"])
            self.assertEqual(split["chosen_heldout"], settings[best]["heldout"][s])
        with open(self.heatmap_path) as f:
            svg = f.read()
        self.assertTrue(svg.startswith("<svg"))
        self.assertEqual(svg.count("<rect"), 50)  # 5 x 5 cells, AP and APr

    def test_21_tune_post_processes_as_the_server_does(self):
        # The same settings through Detect: `logn compare` over all images must give exactly
        # the numbers tune computed locally from the raw candidates.
        out, _ = logn("compare", "--server", self.addr, "--gt", self.val, "--images", self.val_dir,
                      "--json")
        rows = {row["setting"]: row for row in json.loads(out)["settings"]}
        tuned = {s["setting"]: s for s in self.report()["settings"]}
        pairs = {"none": "none", "logn": "logn(a=1,g=1,beta=min_fg_mean)", "bn": "bn",
                 "loga": "loga(tau=1)", "t2:mu": "logn(a=1,g=0,beta=off)",
                 "t3:max_fg_mean": "logn(a=1,g=1,beta=max_fg_mean)"}
        for compare_name, tune_name in pairs.items():
            for key in METRICS:
                self.assertEqual(rows[compare_name][key], tuned[tune_name]["all_images"][key],
                                 (compare_name, key))

    def test_30_apply_sets_the_default_that_detect_info_and_compare_use(self):
        out, _ = logn("tune", "--server", self.addr, "--gt", self.val, "--images", self.val_dir,
                      "--seeds", "0,1,2", "--objective", "apr", "--report", self.report_path,
                      "--apply")
        report = self.report()
        chosen = report["splits"][0]["chosen"]
        self.assertIn("default calibration of version 1 set to " + chosen, out)
        out, _ = logn("stats", "show", "1", "--server", self.addr, "--json")
        profile = json.loads(out)["statistics_version"]["calibration_profile"]
        self.assertEqual(profile["default_setting"]["name"], chosen)
        self.assertEqual(profile["tuning"]["objective"], "apr")
        self.assertEqual(profile["tuning"]["split_seeds"], ["0", "1", "2"])
        names = [f["setting_name"] for f in profile["tuning"]["heldout"]]
        self.assertEqual(names, ["tuned", "none", "loga", "logn"])
        # The procedure's held-out APr: each seed's own choice on its own held-out part.
        tuned_apr = [split["chosen_heldout"]["APr"] for split in report["splits"]]
        self.assertAlmostEqual(profile["tuning"]["heldout"][0]["apr_mean"],
                               sum(tuned_apr) / len(tuned_apr), places=12)
        self.assertIn("set_at", profile)
        out, _ = logn("info", "--server", self.addr, "--json")
        info = json.loads(out)
        self.assertEqual(info["default_calibration"]["name"], chosen)
        self.assertEqual(info["default_calibration_version"], "1")
        # A request naming no setting now gets the profile: compare's "default" row equals the
        # chosen setting's numbers over all images.
        out, _ = logn("compare", "--server", self.addr, "--gt", self.val, "--images", self.val_dir,
                      "--json")
        rows = {row["setting"]: row for row in json.loads(out)["settings"]}
        chosen_row = next(s for s in report["settings"] if s["setting"] == chosen)
        for key in METRICS:
            self.assertEqual(rows["default"][key], chosen_row["all_images"][key], key)

    def test_40_the_profile_travels_with_export_and_import(self):
        exported = self.path("v1.json")
        logn("stats", "export", "1", "--server", self.addr, "--out", exported)
        with open(exported) as f:
            self.assertIn("calibration_profile", json.load(f))
        out, _ = logn("stats", "import", exported, "--server", self.addr, "--json")
        imported = json.loads(out)  # the new version itself
        self.assertEqual(imported["version"], "2")
        out, _ = logn("stats", "show", "1", "--server", self.addr, "--json")
        original = json.loads(out)["statistics_version"]["calibration_profile"]
        self.assertEqual(imported["calibration_profile"]["default_setting"],
                         original["default_setting"])
        self.assertEqual(imported["calibration_profile"]["tuning"], original["tuning"])

    def test_50_a_profile_set_and_cleared_by_hand(self):
        out, _ = logn("stats", "profile", "active", "--setting", "logn(a=1,g=0,beta=off)",
                      "--server", self.addr)
        self.assertIn("version 1: default calibration: logn(a=1,g=0,beta=off)", out)
        out, _ = logn("stats", "show", "1", "--server", self.addr)
        self.assertIn("default calibration: logn(a=1,g=0,beta=off)", out)
        self.assertIn("set by hand", out)
        _, err = logn("stats", "profile", "1", "--setting", "logn(a=2)", "--server", self.addr,
                      expect=2)
        self.assertIn("unknown setting", err)
        logn("stats", "profile", "1", "--server", self.addr, expect=2)  # neither flag
        out, _ = logn("stats", "profile", "1", "--clear", "--server", self.addr)
        self.assertIn("default calibration: LogN (built in)", out)
        out, _ = logn("info", "--server", self.addr, "--json")
        info = json.loads(out)
        self.assertEqual(info["default_calibration_version"], "0")  # the built-in LogN
        self.assertEqual(info["default_calibration"]["name"], "default")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--logn", required=True)
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
