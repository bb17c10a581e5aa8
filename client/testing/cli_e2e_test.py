#!/usr/bin/python3
"""End-to-end tests of the `logn` CLI against a real logn_server process on 127.0.0.1:0.

    cli_e2e_test.py --logn BIN --server-binary BIN --model M.pt --data DIR --work-dir DIR

DIR (--data) is a tiny tools/longtail_data dataset (train.json, val.json, train/, val/). The tests
share one server and run in name order: the store's versions accumulate as they go.
"""
import argparse
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import unittest
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logn_test_server import LognServer  # noqa: E402

ARGS = None


def logn(*argv, expect=0):
    """Runs `logn ARGV`, asserts the exit code, returns (stdout, stderr)."""
    proc = subprocess.run([ARGS.logn, *map(str, argv)], capture_output=True, text=True, timeout=300)
    if proc.returncode != expect:
        raise AssertionError(f"logn {' '.join(map(str, argv))}: exit {proc.returncode} != {expect}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout, proc.stderr


def detect_tables(text):
    """The tables of `logn detect`'s output, without the line above them that names the model
    version that served (printed by servers that report it)."""
    if re.match(r"model (\S+ )?version \d+", text):
        text = text.split("\n", 1)[1]
    return text.split("\n\n")


def read_png(path):
    """Decodes an 8-bit, non-interlaced PNG (grey, RGB or RGBA) with zlib alone, checking every
    chunk's CRC: returns (width, height, channels, rows), rows a list of bytes objects."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise AssertionError(f"{path}: bad CRC in {kind}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 6: 4}[color]
    if depth != 8 or interlace:
        raise AssertionError(f"{path}: unsupported PNG (depth {depth}, interlace {interlace})")
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytes(width * channels)
    if len(raw) != height * (stride + 1):
        raise AssertionError(f"{path}: {len(raw)} bytes of pixel data for {width}x{height}")
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


class CliEndToEnd(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        os.makedirs(ARGS.work_dir, exist_ok=True)
        cls.server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(ARGS.work_dir, "server"))
        cls.server.__enter__()
        cls.addr = cls.server.address
        cls.width = None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def path(self, name):
        return os.path.join(ARGS.work_dir, name)

    def version_info(self, selector):
        out, _ = logn("stats", "show", selector, "--server", self.addr, "--json")
        return json.loads(out)["statistics_version"]

    def stats_of(self, version):
        out, _ = logn("stats", "show", version, "--server", self.addr, "--json", "--statistics")
        s = json.loads(out)["statistics_version"]["statistics"]
        return np.array(s["mean"], dtype=np.float64), np.array(s["variance"], dtype=np.float64)

    def random_logits(self, rows, seed):
        rng = np.random.default_rng(seed)
        width = self.model_width()
        shift = np.array([3.0] + [-2.0 - 0.3 * j for j in range(1, width)])
        return (rng.normal(size=(rows, width)) * 1.5 + shift).astype(np.float32)

    def model_width(self):
        # The contract model: 5 foreground classes + background.
        return 6

    # ----- arguments -----

    def test_00_help_on_every_command(self):
        out, _ = logn("--help")
        self.assertIn("usage: logn COMMAND", out)
        for command in ["detect", "calibrate", "apply", "stats", "eval", "compare", "health",
                        "bench", "info", "tune"]:
            out, _ = logn(command, "--help")
            self.assertTrue(out.startswith(f"usage: logn {command}"), out)

    def test_01_bad_arguments_exit_2_with_one_line(self):
        cases = [
            (["frobnicate"], "unknown command"),
            (["detect", "x.png"], "--server is required"),
            (["detect", "--server", self.addr], "no IMAGE"),
            (["detect", "--server", self.addr, "--method", "bogus", "a.png"], "--method"),
            (["detect", "--server", self.addr, "--score-threshold", "abc", "a.png"], "--score-threshold"),
            (["calibrate", "--server", self.addr], "exactly one of --dataset or --logits"),
            (["calibrate", "--server", self.addr, "--dataset", "t.json"], "--images"),
            (["calibrate", "--server", self.addr, "--logits", "x.f32"], "--width"),
            (["calibrate", "--server", self.addr, "--logits", "x.npy", "--ema", "0"], "--ema"),
            (["apply", "--server", self.addr, "--logits", "x.npy"], "--out is required"),
            (["stats", "--server", self.addr], "missing ACTION"),
            (["stats", "show", "--server", self.addr], "VERSION|ALIAS"),
            (["stats", "activate", "abc", "--server", self.addr], "positive integer"),
            (["stats", "export", "1", "--format", "xml", "--server", self.addr], "--format"),
            (["stats", "import", "v.json", "--format", "json", "--server", self.addr],
             "takes no --format"),
            (["stats", "list", "--source", "shard", "--server", self.addr], "--source"),
            (["stats", "list", "--partial", "--complete", "--server", self.addr], "exclusive"),
            (["calibrate", "--server", self.addr, "--logits", "x.npy", "--shard", "3/3"], "--shard"),
            (["calibrate", "--server", self.addr, "--logits", "x.npy", "--resume"], "--job-id"),
            (["calibrate", "--server", self.addr, "--logits", "x.npy", "--partial", "--activate"],
             "--partial"),
            (["stats", "merge", "1", "--server", self.addr], "two or more"),
            (["stats", "job", "--server", self.addr], "JOB_ID"),
            (["eval", "--gt", "g.json"], "--dt is required"),
            (["health", "--server", self.addr, "--bogus"], "unknown flag --bogus"),
            (["health", "--server", self.addr, "--deadline"], "needs a value"),
            (["compare", "--server", self.addr, "--gt", "v.json"], "--images is required"),
            (["detect", "--server", self.addr, "--top", "-1", "a.png"], "--top"),
            (["detect", "--server", self.addr, "--draw-scale", "2", "a.png"],
             "--draw-scale only applies with --draw"),
            (["detect", "--server", self.addr, "--draw", "d", "--draw-scale", "x", "a.png"],
             "--draw-scale"),
            (["detect", "--server", self.addr, "--json", "--lvis-results", "r.json", "a.png"],
             "exclusive"),
            (["detect", "--server", self.addr, "--method", "none,bogus", "a.png"], "--method"),
            (["detect", "--server", self.addr, "--method", "none,logn", "--lvis-results", "r.json",
              "a.png"], "single --method"),
            (["info", "--server", self.addr, "--json", "--classes"], "exclusive"),
        ]
        for argv, reason in cases:
            with self.subTest(argv=argv):
                _, err = logn(*argv, expect=2)
                self.assertIn(reason, err)
                self.assertEqual(err.count("\n"), 1, err)

    def test_02_health_is_serving(self):
        out, _ = logn("health", "--server", self.addr)
        self.assertEqual(out.strip(), "SERVING")

    def test_02_info_describes_the_model(self):
        out, _ = logn("info", "--server", self.addr, "--json")
        info = json.loads(out)
        self.assertEqual(info["manifest"]["name"], "contract_agnostic")
        self.assertEqual(len(info["manifest"]["classes"]), 5)
        self.assertRegex(info["model_sha256"], "^[0-9a-f]{64}$")
        self.assertEqual(info["device"], "cpu")
        _, err = logn("info", "extra", "--server", self.addr, expect=2)
        self.assertIn("unexpected argument", err)
        # By default a summary for people: one "label  value" line each, classes by group.
        text, _ = logn("info", "--server", self.addr)
        labels = [line[:21].strip() for line in text.splitlines() if not line.startswith(" ")]
        for label in ["model", "sha256", "device", "classes", "layout", "input",
                      "active statistics", "default calibration"]:
            self.assertIn(label, labels, text)
        self.assertIn("contract_agnostic", text)
        self.assertIn(info["model_sha256"], text)
        groups = {"FREQUENCY_GROUP_RARE": "rare", "FREQUENCY_GROUP_COMMON": "common",
                  "FREQUENCY_GROUP_FREQUENT": "frequent"}
        for c in info["manifest"]["classes"]:
            group_line = next(line for line in text.splitlines()
                              if line.startswith(f"  {groups.get(c['frequency'], 'no group')} "))
            self.assertIn(c["name"], group_line)
        self.assertIn("none active", text)  # no statistics yet
        self.assertIn("built-in LogN", text)
        # --classes: one row per class.
        table, _ = logn("info", "--server", self.addr, "--classes")
        rows = table.splitlines()
        self.assertEqual(rows[0].split(), ["id", "group", "images", "instances", "name"])
        self.assertEqual([r.split()[-1] for r in rows[1:]],
                         [c["name"] for c in info["manifest"]["classes"]])

    def test_03_server_errors_exit_1_with_code_name(self):
        # No statistics yet: LogN (the default) has nothing to use.
        image = os.path.join(ARGS.data, "val", sorted(os.listdir(os.path.join(ARGS.data, "val")))[0])
        _, err = logn("detect", "--server", self.addr, image, expect=1)
        self.assertTrue(err.startswith("logn detect: FAILED_PRECONDITION: "), err)
        self.assertIn("no active LogN statistics", err)
        _, err = logn("stats", "show", "999", "--server", self.addr, expect=1)
        self.assertTrue(err.startswith("logn stats show: NOT_FOUND: "), err)
        _, err = logn("stats", "rollback", "--server", self.addr, expect=1)
        self.assertTrue(err.startswith("logn stats rollback: FAILED_PRECONDITION: "), err)
        # Nothing listening: UNAVAILABLE after the retries.
        _, err = logn("health", "--server", "127.0.0.1:1", "--retries", "1", expect=1)
        self.assertIn("UNAVAILABLE", err)

    # ----- calibrate -----

    def test_10_calibrate_from_dataset_sends_images_with_ground_truth(self):
        train = os.path.join(ARGS.data, "train.json")
        with open(train) as f:
            dataset = json.load(f)
        out, err = logn("calibrate", "--server", self.addr, "--dataset", train, "--images",
                        os.path.join(ARGS.data, "train"), "--batch-images", "10", "--activate",
                        "--description", "tiny train")
        self.assertRegex(out, r"committed version 1: \d+ rows, %d images, 4 batches" %
                         len(dataset["images"]))
        self.assertIn("images/s", err)  # the final progress line (stderr is not a terminal)
        self.assertIn("ETA", err)
        info = self.version_info("active")
        self.assertEqual(info["version"], "1")
        self.assertEqual(int(info["images_seen"]), len(dataset["images"]))
        self.assertEqual(info["source"], "VERSION_SOURCE_IMAGES")
        self.assertEqual(info["description"], "tiny train")
        rows_with_gt = int(info["rows_seen"])
        self.assertGreater(rows_with_gt, 0)
        # The ground truth really travels: without it the server uses the model's own candidates
        # instead of sampling RoIs around the boxes, and sees a different number of rows.
        dataset["annotations"] = []
        for image in dataset["images"]:
            image["not_exhaustive_category_ids"] = []
        no_gt = self.path("train_no_gt.json")
        with open(no_gt, "w") as f:
            json.dump(dataset, f)
        out, _ = logn("calibrate", "--server", self.addr, "--dataset", no_gt, "--images",
                      os.path.join(ARGS.data, "train"), "--json")
        rows_without_gt = int(json.loads(out)["rows_seen"])
        self.assertGreater(rows_without_gt, 0)
        self.assertNotEqual(rows_without_gt, rows_with_gt)

    def test_11_calibrate_from_npy_and_raw_match_numpy(self):
        logits = self.random_logits(1500, seed=5)
        npy = self.path("train_logits.npy")
        np.save(npy, logits)
        out, err = logn("calibrate", "--server", self.addr, "--logits", npy, "--batch-rows", "400",
                        "--json", "--progress-interval", "0")
        response = json.loads(out)
        self.assertEqual(int(response["rows_seen"]), 1500)
        self.assertEqual(int(response["batches_seen"]), 4)
        self.assertGreaterEqual(err.count("rows/s"), 4)  # a plain line per batch + the final one
        version = response["statistics_version"]["version"]
        mean, var = self.stats_of(version)
        x = logits.astype(np.float64)
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(var, x.var(axis=0, ddof=1), rtol=1e-9)

        raw = self.path("train_logits.f32")
        logits.tofile(raw)
        out, _ = logn("calibrate", "--server", self.addr, "--logits", raw, "--width", "6", "--json",
                      "--batch-rows", "400")
        raw_version = json.loads(out)["statistics_version"]["version"]
        raw_mean, raw_var = self.stats_of(raw_version)
        np.testing.assert_array_equal(raw_mean, mean)
        np.testing.assert_array_equal(raw_var, var)

        out, _ = logn("calibrate", "--server", self.addr, "--logits", raw, "--width", "6", "--ema",
                      "0.5", "--ema-init", version, "--json")
        ema = json.loads(out)["statistics_version"]
        self.assertEqual(ema["method"], "ACCUMULATION_METHOD_EMA")
        self.assertAlmostEqual(ema["momentum"], 0.5)

        # A width that does not match the model: the server's INVALID_ARGUMENT, exit 1.
        logits[:, :5].copy().tofile(raw)
        _, err = logn("calibrate", "--server", self.addr, "--logits", raw, "--width", "5", expect=1)
        self.assertIn("INVALID_ARGUMENT", err)
        self.__class__.logits_version = version

    def test_13_logits_in_shards_merge_to_one_pass_and_resume_refuses_a_committed_job(self):
        logits = self.random_logits(1001, seed=9)
        npy = self.path("sharded_logits.npy")
        np.save(npy, logits)
        versions, rows = [], 0
        for i in range(3):
            out, _ = logn("calibrate", "--server", self.addr, "--logits", npy, "--shard", f"{i}/3",
                          "--partial", "--batch-rows", "100", "--job-id", f"e2e-shard-{i}",
                          "--json")
            response = json.loads(out)
            self.assertTrue(response["statistics_version"]["partial"])
            versions.append(response["statistics_version"]["version"])
            rows += int(response["rows_seen"])
        self.assertEqual(rows, 1001)
        out, _ = logn("stats", "merge", *versions, "--server", self.addr, "--json")
        merged = json.loads(out)
        self.assertEqual(merged["source"], "VERSION_SOURCE_MERGE")
        mean, var = self.stats_of(merged["version"])
        x = logits.astype(np.float64)
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var, x.var(axis=0, ddof=1), rtol=1e-9)
        # The server filters the list: by job id, partial or complete, source.
        def listed(*filters):
            out, _ = logn("stats", "list", *filters, "--server", self.addr, "--json")
            return [v["version"] for v in json.loads(out)]
        self.assertEqual(listed("--job-id", "e2e-shard-1"), [versions[1]])
        self.assertEqual(listed("--partial"), versions)
        self.assertEqual(listed("--complete", "--source", "merge"), [merged["version"]])
        without_job = listed("--job-id", "")
        self.assertIn(merged["version"], without_job)
        self.assertFalse(set(versions) & set(without_job))
        text, _ = logn("stats", "list", "--partial", "--source", "logits", "--server", self.addr)
        self.assertEqual(len(text.strip().splitlines()), 1 + len(versions))
        # The job committed (and its checkpoint went with it): resuming it again is refused.
        _, err = logn("calibrate", "--server", self.addr, "--logits", npy, "--shard", "0/3",
                      "--partial", "--batch-rows", "100", "--job-id", "e2e-shard-0", "--resume",
                      expect=1)
        self.assertIn("FAILED_PRECONDITION", err)
        self.assertIn("already committed", err)
        _, err = logn("stats", "job", "e2e-shard-0", "--server", self.addr, expect=1)
        self.assertIn("NOT_FOUND", err)

    def test_12_progress_is_a_bar_on_a_terminal(self):
        npy = self.path("pty_logits.npy")
        np.save(npy, self.random_logits(300, seed=12))
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(ARGS.logn, [ARGS.logn, "calibrate", "--server", self.addr, "--logits", npy,
                                 "--batch-rows", "100"])
        output = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, output)
        text = output.decode()
        self.assertIn("\r", text)
        self.assertIn("[########################]", text)  # the full bar at the end
        self.assertIn("rows 300/300", text)
        self.assertIn("rows/s", text)
        self.assertIn("committed version", text)

    # ----- apply -----

    def test_20_apply_none_is_identity_and_logn_follows_the_formula(self):
        logits = self.random_logits(50, seed=9)
        npy = self.path("apply_in.npy")
        np.save(npy, logits)
        out_none = self.path("apply_none.npy")
        logn("apply", "--server", self.addr, "--logits", npy, "--out", out_none, "--method", "none")
        np.testing.assert_array_equal(np.load(out_none), logits)

        version = self.logits_version
        out_logn = self.path("apply_logn.f32")
        scores = self.path("apply_scores.npy")
        raw = self.path("apply_in.f32")
        logits.tofile(raw)
        out, _ = logn("apply", "--server", self.addr, "--logits", raw, "--width", "6", "--out",
                      out_logn, "--scores-out", scores, "--version", version, "--batch-rows", "16")
        self.assertIn(f"statistics version {version}", out)
        calibrated = np.fromfile(out_logn, dtype=np.float32).reshape(50, 6)
        mean, var = self.stats_of(version)
        # Background (first) untouched; foreground (x - mu + beta) / sqrt(var + eps) with one beta.
        np.testing.assert_array_equal(calibrated[:, 0], logits[:, 0])
        beta = calibrated[:, 1:] * np.sqrt(var[1:] + 1e-5) - logits[:, 1:] + mean[1:]
        self.assertLess(np.ptp(beta), 1e-3, beta)
        p = np.load(scores)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)

    # ----- stats -----

    def test_30_stats_lifecycle(self):
        out, _ = logn("stats", "list", "--server", self.addr, "--json")
        versions = json.loads(out)
        numbers = [int(v["version"]) for v in versions]
        self.assertEqual(numbers, sorted(numbers))
        self.assertGreaterEqual(len(numbers), 4)
        text, _ = logn("stats", "list", "--server", self.addr)
        self.assertTrue(text.startswith("version"))
        self.assertEqual(len(text.strip().splitlines()), len(numbers) + 1)

        out, _ = logn("stats", "alias", "canary", "2", "--server", self.addr)
        self.assertIn("canary -> 2", out)
        self.assertEqual(self.version_info("canary")["version"], "2")
        out, _ = logn("stats", "activate", "2", "--server", self.addr)
        self.assertIn("active -> 2 (was 1)", out)
        out, _ = logn("stats", "rollback", "--server", self.addr)
        self.assertIn("active -> 1", out)
        _, err = logn("stats", "delete", "2", "--server", self.addr, expect=1)
        self.assertIn("FAILED_PRECONDITION", err)

        exported = self.path("v2.json")
        logn("stats", "export", "canary", "--out", exported, "--format", "json", "--server", self.addr)
        with open(exported) as f:
            self.assertIn("logn.statistics_version.v1", f.read())
        binary, _ = subprocess.run([ARGS.logn, "stats", "export", "2", "--format", "binary",
                                    "--server", self.addr], capture_output=True).stdout, None
        self.assertGreater(len(binary), 0)
        out, _ = logn("stats", "import", exported, "--description", "re-imported", "--json",
                      "--server", self.addr)
        imported = json.loads(out)
        self.assertEqual(imported["source"], "VERSION_SOURCE_IMPORT")
        self.assertEqual(imported["payload_sha256"], self.version_info("2")["payload_sha256"])
        new = imported["version"]
        out, _ = logn("stats", "delete", new, "--server", self.addr)
        self.assertIn(f"deleted version {new}", out)
        _, err = logn("stats", "show", new, "--server", self.addr, expect=1)
        self.assertIn("NOT_FOUND", err)

    # ----- detect, eval, compare, bench -----

    def test_45_bench_reports_every_level(self):
        report = self.path("bench.json")
        csv = self.path("bench.csv")
        out, _ = logn("bench", "--server", self.addr, "--images", os.path.join(ARGS.data, "val"),
                      "--method", "none", "--concurrency", "1,2", "--warmup", "0.2",
                      "--duration", "1", "--json", report, "--csv", csv)
        self.assertIn("images/s", out)
        with open(report) as f:
            levels = json.load(f)
        self.assertEqual([l["concurrency"] for l in levels], [1, 2])
        for level in levels:
            self.assertGreater(level["requests"], 0)
            self.assertEqual(level["errors"], {})
            self.assertGreaterEqual(level["latency_ms"]["p99"], level["latency_ms"]["p50"])
            self.assertGreater(level["server_ms"]["inference"], 0)
        with open(csv) as f:
            self.assertEqual(len(f.read().splitlines()), 3)
        _, err = logn("bench", "--server", self.addr, "--images", os.path.join(ARGS.data, "val"),
                      "--concurrency", "0", expect=2)
        self.assertIn("--concurrency", err)


    def test_40_detect_json_lines_and_lvis_results_feed_eval(self):
        val_dir = os.path.join(ARGS.data, "val")
        images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:5]]
        out, _ = logn("detect", "--server", self.addr, "--method", "none", "--max-detections", "7",
                      "--batch", "2", "--json", *images)
        lines = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([line["image"] for line in lines], images)
        for line in lines:
            self.assertEqual(line["setting"], "none")
            self.assertLessEqual(len(line["detections"]), 7)
            scores = [d["score"] for d in line["detections"]]
            self.assertEqual(scores, sorted(scores, reverse=True))
        # Over one DetectStream: the same lines, in the same order.
        streamed, _ = logn("detect", "--server", self.addr, "--method", "none",
                           "--max-detections", "7", "--batch", "2", "--stream", "--json", *images)
        self.assertEqual(streamed, out)
        _, err = logn("detect", "--server", self.addr, "--stream", images[0],
                      self.path("no_such.png"), expect=1)
        self.assertIn("no_such.png", err)
        out, _ = logn("detect", "--server", self.addr, "--alias", "canary", "--json", images[0])
        self.assertEqual(json.loads(out)["version"], 2)

        val = os.path.join(ARGS.data, "val.json")
        with open(val) as f:
            ids = {im["file_name"]: im["id"] for im in json.load(f)["images"]}
        results = self.path("detect_results.json")
        logn("detect", "--server", self.addr, "--method", "none", "--lvis-results", results,
             "--gt", val, *images)
        with open(results) as f:
            dets = json.load(f)
        self.assertTrue({d["image_id"] for d in dets} <= {ids[os.path.basename(i)] for i in images})
        out, _ = logn("eval", "--gt", val, "--dt", results, "--json", "--per-class")
        self.assertIn("AP", json.loads(out))
        # `logn eval` is logn_eval_main's logic: byte-identical output, text and JSON.
        for extra in (["--json", "--per-class"], ["--per-class"]):
            ours, _ = logn("eval", "--gt", val, "--dt", results, *extra)
            theirs = subprocess.run([ARGS.eval_main, "--gt", val, "--dt", results, *extra],
                                    capture_output=True, text=True, check=True).stdout
            self.assertEqual(ours, theirs)
        _, err = logn("eval", "--gt", val, "--dt", self.path("missing.json"), expect=1)
        self.assertIn("NOT_FOUND", err)

    def class_names(self):
        out, _ = logn("info", "--server", self.addr, "--json")
        return {c["id"]: c["name"] for c in json.loads(out)["manifest"]["classes"]}

    def test_42_detect_prints_tables_with_class_names(self):
        val_dir = os.path.join(ARGS.data, "val")
        images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:3]]
        names = self.class_names()
        out, _ = logn("detect", "--server", self.addr, "--method", "none", "--json", *images)
        dets = {line["image"]: line["detections"] for line in map(json.loads, out.splitlines())}
        for top, stream in ((None, []), ("3", ["--stream"]), ("0", [])):
            flags = ["--top", top] if top else []
            text, _ = logn("detect", "--server", self.addr, "--method", "none", *flags, *stream,
                           *images)
            tables = detect_tables(text)
            self.assertEqual(len(tables), len(images), text)
            for image, table in zip(images, tables):
                lines = table.splitlines()
                n = len(dets[image])
                self.assertTrue(lines[0].startswith(f"{image}: {n} detection"), lines[0])
                self.assertIn("(setting none)", lines[0])
                if n == 0:
                    continue
                self.assertEqual(lines[1].split(), ["rank", "class", "group", "score", "x1", "y1",
                                                    "x2", "y2"])
                shown = min(n, int(top or 10)) if top != "0" else n
                rows = lines[2:2 + shown]
                for rank, (row, d) in enumerate(zip(rows, dets[image]), 1):
                    cells = row.split()
                    self.assertEqual(cells[0], str(rank))
                    self.assertEqual(cells[1], names[d["category_id"]])  # a name, not an id
                    self.assertIn(cells[2], ["r", "c", "f"])
                    self.assertAlmostEqual(float(cells[3]), d["score"], delta=6e-4)
                    for got, want in zip(cells[4:], d["box"]):
                        self.assertAlmostEqual(float(got), want, delta=0.051)
                if shown < n:
                    self.assertIn(f"({n - shown} more", lines[2 + shown])
                else:
                    self.assertEqual(len(lines), 2 + n)
        # Several settings from one forward pass: one table (or JSON line) each, image by image.
        text, _ = logn("detect", "--server", self.addr, "--method", "none,logn", *images[:2])
        headers = [t.splitlines()[0] for t in detect_tables(text)]
        self.assertEqual([h.split(":")[0] for h in headers], [images[0]] * 2 + [images[1]] * 2)
        self.assertIn("(setting none)", headers[0])
        self.assertIn("(setting logn, statistics version 1)", headers[1])
        out, _ = logn("detect", "--server", self.addr, "--method", "none,logn", "--json",
                      *images[:2])
        lines = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([(l["image"], l["setting"]) for l in lines],
                         [(images[0], "none"), (images[0], "logn"), (images[1], "none"),
                          (images[1], "logn")])
        self.assertEqual(lines[0]["detections"], dets[images[0]])

    def test_43_detect_draws_pictures(self):
        val_dir = os.path.join(ARGS.data, "val")
        images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:3]]
        out, _ = logn("detect", "--server", self.addr, "--method", "none", "--json", *images)
        counts = {line["image"]: len(line["detections"]) for line in map(json.loads,
                                                                         out.splitlines())}
        draw = self.path("drawn")
        _, err = logn("detect", "--server", self.addr, "--method", "none", "--draw", draw,
                      "--draw-scale", "1", "--top", "5", *images)
        self.assertIn(f"drew {len(images)} images in {draw}", err)
        for image in images:
            stem = os.path.splitext(os.path.basename(image))[0]
            w, h, channels, rows = read_png(os.path.join(draw, stem + ".png"))
            w0, h0, channels0, rows0 = read_png(image)
            self.assertEqual((w, h, channels), (w0, h0, 3))
            changed = sum(1 for y in range(h) for x in range(w)
                          if rows[y][3 * x:3 * x + 3] != rows0[y][channels0 * x:channels0 * x + 3])
            if counts[image] > 0:
                self.assertGreater(changed, 0, f"{image}: nothing drawn")
            self.assertLess(changed, w * h, f"{image}: the picture is gone")
            if counts[image] == 0:
                self.assertEqual(changed, 0)
        # Auto scale enlarges small images by an integer factor; several settings, one file each.
        _, err = logn("detect", "--server", self.addr, "--method", "none,logn", "--draw", draw,
                      "--json", images[0])
        self.assertIn("drew 2 images", err)
        stem = os.path.splitext(os.path.basename(images[0]))[0]
        w0, h0, _, _ = read_png(images[0])
        factor = max(1, min(8, -(-480 // max(w0, h0))))
        for setting in ("none", "logn"):
            w, h, _, _ = read_png(os.path.join(draw, f"{stem}.{setting}.png"))
            self.assertEqual((w, h), (w0 * factor, h0 * factor))
        _, err = logn("detect", "--server", self.addr, "--draw", os.path.join(images[0], "x"),
                      images[0], expect=1)
        self.assertIn("cannot create", err)

    def test_41_compare_runs_every_setting_and_matches_detect_plus_eval(self):
        val = os.path.join(ARGS.data, "val.json")
        val_dir = os.path.join(ARGS.data, "val")
        table_path = self.path("compare.json")
        out, _ = logn("compare", "--server", self.addr, "--gt", val, "--images", val_dir, "--json",
                      "--out", table_path)
        table = json.loads(out)
        with open(table_path) as f:
            self.assertEqual(json.load(f), table)
        names = [row["setting"] for row in table["settings"]]
        self.assertEqual(names, ["none", "loga", "bn", "logn", "default", "t2:-", "t2:mu",
                                 "t2:sigma", "t2:beta", "t2:mu+sigma+beta", "t3:const-4", "t3:const-12",
                                 "t3:background_mean", "t3:max_fg_mean", "t3:avg_fg_mean",
                                 "t3:min_fg_mean"])
        rows = {row["setting"]: row for row in table["settings"]}
        self.assertEqual(table["statistics_version"], 1)
        # Same settings, same numbers: full LogN twice, and min_fg_mean is the default policy.
        for key in ["AP", "AP50", "AP75", "APr", "APc", "APf"]:
            self.assertEqual(rows["logn"][key], rows["t2:mu+sigma+beta"][key])
            # No calibration profile yet: the model's default is LogN.
            self.assertEqual(rows["default"][key], rows["logn"][key])
            self.assertEqual(rows["logn"][key], rows["t3:min_fg_mean"][key])
        # The "none" row equals detect --method none over the same images, evaluated by `logn eval`.
        with open(val) as f:
            images = [os.path.join(val_dir, im["file_name"]) for im in json.load(f)["images"]]
        results = self.path("none_results.json")
        logn("detect", "--server", self.addr, "--method", "none", "--lvis-results", results, "--gt",
             val, *images)
        out, _ = logn("eval", "--gt", val, "--dt", results, "--json")
        evaluated = json.loads(out)
        for key in ["AP", "AP50", "AP75", "APr", "APc", "APf"]:
            self.assertEqual(rows["none"][key], evaluated[key], key)
        text, _ = logn("compare", "--server", self.addr, "--gt", val, "--images", val_dir)
        header = text.splitlines()[1].split()
        self.assertEqual(header, ["setting", "AP", "AP50", "AP75", "APr", "APc", "APf"])
        self.assertEqual(len(text.strip().splitlines()), 2 + len(names))


class ModelsAndDriftEndToEnd(unittest.TestCase):
    """`logn models`, `logn drift`, --model-version and served-traffic versions against real
    servers: one model with every request sampled for drift, and a two-version repository."""

    def path(self, name):
        return os.path.join(ARGS.work_dir, "models_drift", name)

    def images(self, n):
        val_dir = os.path.join(ARGS.data, "val")
        return [os.path.join(val_dir, name) for name in sorted(os.listdir(val_dir))[:n]]

    def test_drift_snapshot_reference_and_served_traffic_versions(self):
        with LognServer(ARGS.server_binary, ARGS.model, self.path("drift"),
                        extra_args=["--drift_sample_rate=1"]) as server:
            addr = ["--server", server.address]
            logn("detect", *addr, "--method", "none", "--json", *self.images(3))
            drift = json.loads(logn("drift", *addr, "--json")[0])
            self.assertIn(drift["state"], ["DRIFT_STATE_COLLECTING_REFERENCE",
                                           "DRIFT_STATE_MONITORING"])
            self.assertGreater(int(drift["live_window"]["rows_seen"]), 0)
            out, _ = logn("drift", "snapshot", *addr, "--description", "e2e snapshot")
            self.assertTrue(out.startswith("version  created"), out)
            self.assertIn("served traffic:", out)
            snapshot = out.splitlines()[1].split()[0]
            _, err = logn("stats", "activate", snapshot, *addr, expect=1)
            self.assertIn("FAILED_PRECONDITION", err)
            out, _ = logn("stats", "activate", snapshot, "--allow-served-traffic", *addr)
            self.assertEqual(out, f"active -> {snapshot} (was 0)\n")
            listed = json.loads(logn("stats", "list", "--source", "served", *addr, "--json")[0])
            self.assertIn(snapshot, [v["version"] for v in listed])
            out, _ = logn("drift", "reference", *addr, "--description", "e2e reference")
            self.assertTrue(out.startswith("drift reference: statistics version "), out)
            reference = int(out.split()[4])
            drift = json.loads(logn("drift", *addr, "--json", "--top-k", "2")[0])
            self.assertEqual(drift["state"], "DRIFT_STATE_MONITORING")
            self.assertEqual(int(drift["reference_version"]), reference)
            self.assertLessEqual(len(drift["classes"]), 2)
            out, _ = logn("drift", *addr, "--watch", "0.1", "--watch-count", "2")
            reports = out.split("\n\nat ")
            self.assertEqual(len(reports), 2, out)
            self.assertIn(": drift monitoring\n", reports[1])

    def test_repository_versions_load_unload_and_model_version(self):
        repo = self.path("repository")
        name = os.path.splitext(os.path.basename(ARGS.model))[0]
        for version in ("1", "2"):
            os.makedirs(os.path.join(repo, name, version), exist_ok=True)
            shutil.copy(ARGS.model, os.path.join(repo, name, version, "model.pt"))
            shutil.copy(os.path.splitext(ARGS.model)[0] + ".json",
                        os.path.join(repo, name, version, "model.json"))
        with LognServer(ARGS.server_binary, "", self.path("repository_server"),
                        extra_args=[f"--model_repository={repo}"]) as server:
            addr = ["--server", server.address]
            listed = json.loads(logn("models", *addr, "--json")[0])["model_versions"]
            self.assertEqual([(m["model_name"], int(m["model_version"])) for m in listed],
                             [(name, 2)], "the default policy loads the newest version")
            self.assertTrue(listed[0]["is_default"])
            out, _ = logn("models", "load", name, "1", *addr)
            self.assertRegex(out.splitlines()[1], rf"^{name}\s+1\s+available\s")
            table, _ = logn("models", *addr)
            rows = [line.split() for line in table.splitlines()[2:]]
            self.assertEqual([(r[0], r[1], r[2]) for r in rows],
                             [(name, "1", "available"), (name, "2", "available")])
            self.assertEqual(rows[1][3], "*")
            image = self.images(1)
            for version in (1, 2):
                line = json.loads(logn("detect", *addr, "--model-version", version, "--method",
                                       "none", "--json", *image)[0])
                self.assertEqual(line["model_version"], version)
                info = json.loads(logn("info", *addr, "--model", name, "--model-version",
                                       version, "--json")[0])
                self.assertEqual(int(info["model_version"]), version)
            text, _ = logn("detect", *addr, "--method", "none", "--top", "1", *image)
            self.assertTrue(text.startswith(f"model {name} version 2\n"), text)
            out, _ = logn("models", "unload", name, "1", *addr)
            self.assertIn(" unloading ", out)
            _, err = logn("models", "load", name, "9", *addr, expect=1)
            self.assertIn("logn models load: ", err)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--logn", required=True)
    parser.add_argument("--eval-main", required=True)
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
