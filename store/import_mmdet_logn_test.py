#!/usr/bin/python3
"""Tests tools/import_mmdet_logn.py end to end: checkpoints made here with torch.save in the
official LogN mmdetection layout are converted, imported into a SQLite store with logn_stats
(so the C++ StatisticsFromJson reads them) and read back.

Usage: import_mmdet_logn_test.py CONVERTER LOGN_STATS
"""

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch

CONVERTER = None
LOGN_STATS = None
MODEL = "lvis-mask-rcnn"
SHA = hashlib.sha256(b"a torchscript file").hexdigest()


def bn_state(num_classes, seed, batches=1234):
    """The state of BatchNorm1d(C+1, affine=False) after some EMA updates, background last."""
    bn = torch.nn.BatchNorm1d(num_classes + 1, affine=False, momentum=0.1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(num_classes + 1, generator=g) * 3 - 2)
        bn.running_var.copy_(torch.rand(num_classes + 1, generator=g) * 4 + 0.01)
        bn.num_batches_tracked.fill_(batches)
    return bn.state_dict()


class ImportMmdetLognTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.store = "sqlite://" + os.path.join(self.dir, "stats.db")

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def convert_in_process(self, checkpoint, output, *extra):
        """Runs the converter's main() here (no torch start-up): for the error cases."""
        spec = importlib.util.spec_from_file_location("import_mmdet_logn", CONVERTER)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = module.main([checkpoint, "-o", output, "--model-name", MODEL, *extra])
        return subprocess.CompletedProcess([], code, "", err.getvalue())

    def convert(self, checkpoint, output, *extra, expect_ok=True):
        r = subprocess.run([sys.executable, CONVERTER, checkpoint, "-o", output,
                            "--model-name", MODEL, *extra],
                           capture_output=True, text=True)
        if expect_ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def logn_stats(self, *args, expect_ok=True):
        r = subprocess.run([LOGN_STATS, args[0], "--store", self.store, "--model", MODEL,
                            "--sha256", SHA, *args[1:]], capture_output=True, text=True)
        if expect_ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def save_single(self, name, num_classes=5, seed=1, wrap=True):
        sd = {
            "backbone.conv1.weight": torch.zeros(4, 3, 1, 1),
            "roi_head.bbox_head.fc_cls.weight": torch.zeros(num_classes + 1, 8),
        }
        for k, v in bn_state(num_classes, seed).items():
            sd["roi_head.bbox_head.bn." + k] = v
        path = self.path(name)
        torch.save({"meta": {"epoch": 24}, "state_dict": sd} if wrap else sd, path)
        return path, sd

    def test_single_stage_checkpoint_round_trips_into_the_store(self):
        ckpt, sd = self.save_single("mask_rcnn.pth", num_classes=5)
        out = self.path("stats.json")
        self.convert(ckpt, out, "--model-sha256", SHA, "--rows", "4096")
        with open(out) as f:
            stats = json.load(f)
        self.assertEqual(stats["layout"], {"num_classes": 5,
                                           "background": "BACKGROUND_POSITION_LAST"})
        self.assertEqual(stats["method"], "ACCUMULATION_METHOD_EMA")
        self.assertEqual(stats["momentum"], 0.1)
        self.assertEqual(stats["count"], "4096")
        self.assertEqual(stats["provenance"]["model_name"], MODEL)
        self.assertEqual(stats["provenance"]["model_sha256"], SHA)
        self.assertEqual(stats["provenance"]["batches_seen"], "1234")
        # float32 -> double is exact, and so is the JSON round trip.
        self.assertEqual(stats["mean"], sd["roi_head.bbox_head.bn.running_mean"].double().tolist())
        self.assertEqual(stats["variance"],
                         sd["roi_head.bbox_head.bn.running_var"].double().tolist())

        # The C++ side reads it: import, activate, read back.
        r = self.logn_stats("import", "--file", out, "--activate")
        self.assertEqual(r.stdout.strip(), "1")
        got = json.loads(self.logn_stats("get", "--version", "active").stdout)
        self.assertEqual(got["mean"], stats["mean"])
        self.assertEqual(got["variance"], stats["variance"])
        self.assertEqual(got["layout"]["num_classes"], 5)
        self.assertEqual(got["method"], "ACCUMULATION_METHOD_EMA")
        listing = self.logn_stats("list").stdout
        self.assertIn("import", listing)
        self.assertIn("imported from mask_rcnn.pth", listing)

    def test_bare_state_dict_and_model_file_hash(self):
        ckpt, sd = self.save_single("bare.pth", num_classes=3, wrap=False)
        model_file = self.path("model.pt")
        with open(model_file, "wb") as f:
            f.write(b"a torchscript file")
        out = self.path("bare.json")
        self.convert(ckpt, out, "--model-file", model_file)
        with open(out) as f:
            stats = json.load(f)
        self.assertEqual(stats["provenance"]["model_sha256"], SHA)
        self.assertEqual(len(stats["mean"]), 4)
        self.logn_stats("import", "--file", out)

    def test_background_first_moves_the_checkpoints_last_column_to_the_front(self):
        ckpt, sd = self.save_single("first.pth", num_classes=4)
        out = self.path("first.json")
        self.convert(ckpt, out, "--model-sha256", SHA, "--background", "first")
        with open(out) as f:
            stats = json.load(f)
        self.assertEqual(stats["layout"], {"num_classes": 4,
                                           "background": "BACKGROUND_POSITION_FIRST"})
        mean = sd["roi_head.bbox_head.bn.running_mean"].double().tolist()
        var = sd["roi_head.bbox_head.bn.running_var"].double().tolist()
        self.assertEqual(stats["mean"], [mean[-1]] + mean[:-1])
        self.assertEqual(stats["variance"], [var[-1]] + var[:-1])
        self.logn_stats("import", "--file", out)

    def test_cascade_gives_one_file_and_version_per_stage(self):
        sd = {}
        for stage in range(3):
            for k, v in bn_state(7, seed=10 + stage).items():
                sd[f"roi_head.bbox_head.{stage}.bn.{k}"] = v
        ckpt = self.path("cascade.pth")
        torch.save({"state_dict": sd}, ckpt)
        self.convert(ckpt, self.path("cascade.json"), "--model-sha256", SHA)
        means = []
        for stage in range(3):
            out = self.path(f"cascade.stage{stage}.json")
            with open(out) as f:
                stats = json.load(f)
            self.assertEqual(stats["mean"],
                             sd[f"roi_head.bbox_head.{stage}.bn.running_mean"].double().tolist())
            self.assertIn(f"cascade stage {stage}", stats["provenance"]["description"])
            means.append(stats["mean"])
            r = self.logn_stats("import", "--file", out)
            self.assertEqual(r.stdout.strip(), str(stage + 1))
        self.assertNotEqual(means[0], means[1])
        got = json.loads(self.logn_stats("get", "--version", "3").stdout)
        self.assertEqual(got["mean"], means[2])

        # One stage only.
        self.convert(ckpt, self.path("only.json"), "--stage", "1")
        with open(self.path("only.stage1.json")) as f:
            self.assertEqual(json.load(f)["mean"], means[1])

    def test_statistics_for_another_model_are_refused_by_the_store(self):
        ckpt, _ = self.save_single("other.pth")
        out = self.path("other.json")
        self.convert(ckpt, out, "--model-sha256", "b" * 64)
        r = self.logn_stats("import", "--file", out, expect_ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAILED_PRECONDITION", r.stderr)

    def test_bad_checkpoints_are_reported(self):
        # No LogN statistics at all.
        path = self.path("plain.pth")
        torch.save({"state_dict": {"roi_head.bbox_head.fc_cls.weight": torch.zeros(3, 3)}}, path)
        r = self.convert_in_process(path, self.path("x.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no LogN statistics", r.stderr)
        # running_var missing.
        torch.save({"roi_head.bbox_head.bn.running_mean": torch.zeros(4)}, path)
        r = self.convert_in_process(path, self.path("x.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("running_var is missing", r.stderr)
        # Lengths differ.
        torch.save({"roi_head.bbox_head.bn.running_mean": torch.zeros(4),
                    "roi_head.bbox_head.bn.running_var": torch.ones(5)}, path)
        r = self.convert_in_process(path, self.path("x.json"))
        self.assertIn("has 4 entries but", r.stderr)
        # Negative variance.
        torch.save({"roi_head.bbox_head.bn.running_mean": torch.zeros(3),
                    "roi_head.bbox_head.bn.running_var": torch.tensor([1.0, -1.0, 1.0])}, path)
        r = self.convert_in_process(path, self.path("x.json"))
        self.assertIn("negative", r.stderr)
        # Not a checkpoint.
        with open(path, "wb") as f:
            f.write(b"not a checkpoint")
        r = self.convert_in_process(path, self.path("x.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot load checkpoint", r.stderr)
        # Bad sha.
        ckpt, _ = self.save_single("ok.pth")
        r = self.convert_in_process(ckpt, self.path("x.json"), "--model-sha256", "XYZ")
        self.assertIn("64 lowercase hex", r.stderr)
        self.assertFalse(os.path.exists(self.path("x.json")))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: import_mmdet_logn_test.py CONVERTER LOGN_STATS", file=sys.stderr)
        sys.exit(2)
    CONVERTER, LOGN_STATS = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:])
