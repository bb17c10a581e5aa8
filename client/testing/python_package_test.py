#!/usr/bin/python3
"""The logn_serve Python package (client/python), installed with pip into a temporary venv and run
against real logn_server processes on 127.0.0.1:0, checked against the `logn` CLI.

    python_package_test.py --source-dir REPO --logn BIN --server-binary BIN --model M.pt
                           --data DIR --work-dir DIR

First (with /usr/bin/python3): `python3 -m venv --system-site-packages` in a temporary directory
and `pip install --no-build-isolation --no-index client/python` into it (offline; the stubs are
generated from proto/ by the package's build step), checking that the source tree is left as it
was. Then the tests below run in the venv's python, which imports the installed package (never the
source tree). DIR (--data) is the tiny tools/longtail_data dataset. The tests share one server and
run in name order: the store's versions accumulate as they go.
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logn_test_server import LognServer  # noqa: E402

ARGS = None
TOKEN = "py-token-81c4e0d2"
PATH_FLAGS = ("--source-dir", "--logn", "--server-binary", "--model", "--data", "--work-dir")


def build_leftovers(root):
    """What a build writes in a source tree (build/, *.egg-info, generated stubs, bytecode),
    found under `root` (relative paths)."""
    out = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.relpath(os.path.join(directory, name), root)
            if (path.split(os.sep)[0] in ("build", "dist") or ".egg-info" in path or
                    "_gen" in path.split(os.sep) or "__pycache__" in path or
                    name.endswith((".pyc", ".whl"))):
                out.add(path)
    return out


def install_into_venv(source_dir, venv):
    """Creates the venv and pip-installs client/python into it; returns the venv's python."""
    package_dir = os.path.join(source_dir, "client", "python")
    before = build_leftovers(package_dir)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
                   check=True)
    python = os.path.join(venv, "bin", "python")
    # The system pip, run by the venv's interpreter, installs into the venv. Offline: no index, no
    # build isolation (Debian's setuptools builds it); the dependencies (grpcio, protobuf, numpy)
    # must be satisfied by Debian's packages.
    # Hermetic: no pip configuration (files or PIP_* variables, e.g. extra find-links).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("LOGN_PROTO_DIR", None)
    proc = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                           "--no-cache-dir", package_dir], cwd=venv, env=env,
                          capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-2000:])
    if proc.returncode != 0:
        raise SystemExit(f"pip install {package_dir} failed ({proc.returncode}):\n{proc.stderr}")
    added = build_leftovers(package_dir) - before
    if added:
        raise SystemExit(f"pip install wrote into the source tree: {sorted(added)}")
    return python


def outer_main(argv):
    """Installs the package, then runs this file's tests with the venv's python."""
    with tempfile.TemporaryDirectory(prefix="logn_serve_venv_") as tmp:
        venv = os.path.join(tmp, "venv")
        python = install_into_venv(ARGS.source_dir, venv)
        os.makedirs(ARGS.work_dir, exist_ok=True)
        return subprocess.run([python, os.path.abspath(__file__), *argv, "--venv", venv],
                              cwd=ARGS.work_dir).returncode


# ----- helpers of the tests (run in the venv) -----

def logn(*argv, expect=0):
    proc = subprocess.run([ARGS.logn, *map(str, argv)], capture_output=True, text=True, timeout=300)
    if proc.returncode != expect:
        raise AssertionError(f"logn {' '.join(map(str, argv))}: exit {proc.returncode} != {expect}"
                             f"\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout, proc.stderr


_JSON_FLAGS = {}


def json_flag(command):
    """["--json"] when `logn COMMAND` prints JSON only with --json (newer CLIs print tables by
    default), else []."""
    if command not in _JSON_FLAGS:
        out, _ = logn(command, "--help")
        _JSON_FLAGS[command] = ["--json"] if "--json" in out else []
    return _JSON_FLAGS[command]


def png_bytes(pixels) -> bytes:
    """An 8-bit RGB PNG of an HxWx3 uint8 array (zlib only)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def openssl(*argv, cwd):
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True)


def make_server_certificate(d: str) -> None:
    """ca.pem, and server.pem/server.key for 127.0.0.1 signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=logn-py-test-ca", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=logn-py-test-server", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)


class PythonPackage(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        import logn_serve
        cls.ls = logn_serve
        cls.dir = os.path.abspath(ARGS.work_dir)
        os.makedirs(cls.dir, exist_ok=True)
        cls.server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(cls.dir, "server"))
        cls.server.__enter__()
        cls.addr = cls.server.address
        cls.client = logn_serve.Client(cls.addr)
        val = os.path.join(ARGS.data, "val")
        cls.val_images = [os.path.join(val, n) for n in sorted(os.listdir(val))[:5]]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.__exit__(None, None, None)

    def path(self, name):
        return os.path.join(self.dir, name)

    def random_logits(self, rows, seed):
        import numpy as np
        rng = np.random.default_rng(seed)
        width = self.client.model_info().width
        shift = np.array([3.0] + [-2.0 - 0.3 * j for j in range(1, width)])
        return (rng.normal(size=(rows, width)) * 1.5 + shift).astype(np.float32)

    def version_count(self):
        try:
            return len(self.client.list_versions())
        except self.ls.NotFound:
            return 0

    # ----- the installed package -----

    def test_00_the_installed_package_is_imported_with_generated_stubs(self):
        venv = os.path.realpath(ARGS.venv)
        package = os.path.dirname(os.path.realpath(self.ls.__file__))
        self.assertTrue(package.startswith(venv + os.sep), package)
        protos = sorted(os.path.splitext(n)[0] for n in
                        os.listdir(os.path.join(ARGS.source_dir, "proto", "logn", "v1"))
                        if n.endswith(".proto"))
        stubs = os.path.join(package, "_gen", "logn", "v1")
        for name in protos:
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                self.assertTrue(os.path.isfile(os.path.join(stubs, name + suffix)), name + suffix)
            self.assertTrue(hasattr(self.ls.pb, name + "_pb2"), name)
        # The stubs import each other inside the package: no top-level `logn` module.
        with open(os.path.join(stubs, "detection_service_pb2.py")) as f:
            text = f.read()
        self.assertIn("from logn_serve._gen.logn.v1 import common_pb2", text)
        self.assertNotIn("\nfrom logn.v1 import", text)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(package), "logn")))
        # Nothing generated in the checkout either.
        self.assertFalse(os.path.exists(os.path.join(ARGS.source_dir, "client", "python",
                                                     "logn_serve", "_gen")))

    def test_01_model_info(self):
        info = self.client.model_info()
        self.assertEqual(info.name, "contract_agnostic")
        self.assertEqual(info.num_classes, 5)
        self.assertEqual(info.width, 6)
        self.assertRegex(info.sha256, "^[0-9a-f]{64}$")
        self.assertEqual(info.device, "cpu")
        self.assertEqual(info.active_version, 0)
        out, _ = logn("info", "--server", self.addr, *json_flag("info"))
        cli = json.loads(out)["manifest"]["classes"]
        self.assertEqual([(c.id, c.name) for c in info.classes],
                         [(int(c["id"]), c["name"]) for c in cli])

    def test_02_errors_carry_the_status_and_the_servers_message(self):
        ls = self.ls
        # No statistics yet: LogN has nothing to use.
        with self.assertRaises(ls.FailedPrecondition) as caught:
            self.client.detect(self.val_images[0], calibration="logn")
        self.assertIn("no active LogN statistics", caught.exception.message)
        self.assertEqual(caught.exception.method, "Detect")
        self.assertTrue(str(caught.exception).startswith("Detect: FAILED_PRECONDITION: "))
        # Unknown version: NOT_FOUND, also a LookupError.
        with self.assertRaises(ls.NotFound) as caught:
            self.client.get_version(999)
        self.assertIsInstance(caught.exception, LookupError)
        self.assertEqual(caught.exception.code.name, "NOT_FOUND")
        _, err = logn("stats", "show", "999", "--server", self.addr, expect=1)
        self.assertEqual(err.strip(), f"logn stats show: NOT_FOUND: {caught.exception.message}")
        with self.assertRaises(ls.FailedPrecondition):
            self.client.rollback()
        # A corrupt image: INVALID_ARGUMENT with exactly the message the CLI prints.
        bad = self.path("corrupt.png")
        with open(self.val_images[0], "rb") as f:
            data = f.read()
        with open(bad, "wb") as f:
            f.write(data[:16] + b"\x00" * 64)
        with self.assertRaises(ls.InvalidArgument) as caught:
            self.client.detect([bad], calibration="none")
        self.assertIsInstance(caught.exception, ValueError)
        _, err = logn("detect", "--server", self.addr, "--method", "none", bad, expect=1)
        self.assertEqual(err.strip(), f"logn detect: INVALID_ARGUMENT: {caught.exception.message}")
        with self.assertRaises(ls.InvalidArgument) as caught:
            self.client.detect([b"not an image"], calibration="none")
        self.assertTrue(caught.exception.message)
        # Wrong arrays are refused before any call.
        import numpy as np
        with self.assertRaises(TypeError):
            self.client.detect([np.zeros((8, 8, 3), np.float32)])
        with self.assertRaises(ValueError):
            self.client.detect([np.zeros((8, 8, 4), np.uint8)])
        # Nothing listening: UNAVAILABLE after the retries.
        with ls.Client("127.0.0.1:1", retries=2, timeout=5) as nowhere:
            with self.assertRaises(ls.Unavailable):
                nowhere.model_info()

    # ----- calibration -----

    def test_10_calibrate_images_sends_what_the_cli_sends(self):
        """A few dataset images with their ground truth: the statistics equal `logn calibrate`'s
        on the same images and batch size (RoI sampling is seeded by the image bytes)."""
        with open(os.path.join(ARGS.data, "train.json")) as f:
            full = json.load(f)
        images = full["images"][:7]
        ids = {im["id"] for im in images}
        subset = dict(full, images=images,
                      annotations=[a for a in full["annotations"] if a["image_id"] in ids])
        self.assertGreater(len(subset["annotations"]), 0)
        dataset = self.path("train_subset.json")
        with open(dataset, "w") as f:
            json.dump(subset, f)
        train_dir = os.path.join(ARGS.data, "train")

        seen = []
        result = self.client.calibrate_images(dataset, train_dir, batch_images=3, activate=True,
                                              description="python subset", progress=seen.append)
        self.assertEqual(result.images_seen, 7)
        self.assertEqual(result.batches_seen, 3)
        self.assertGreater(result.rows_seen, 0)
        self.assertEqual(result.version.source, "images")
        self.assertEqual(result.version.description, "python subset")
        self.assertIn("active", result.version.aliases)
        self.assertEqual([p.done for p in seen], [3, 6, 7, 7])
        self.assertTrue(all(p.unit == "images" and p.total == 7 for p in seen))
        self.assertTrue(seen[-1].finished)
        self.assertEqual(seen[-1].rows, result.rows_seen)

        out, _ = logn("calibrate", "--server", self.addr, "--dataset", dataset, "--images",
                      train_dir, "--batch-images", "3", "--json")
        cli = json.loads(out)
        self.assertEqual(int(cli["rows_seen"]), result.rows_seen)
        self.assertEqual(int(cli["batches_seen"]), result.batches_seen)
        import numpy as np
        ours = self.client.get_version(result.version.version, statistics=True)
        theirs = self.client.get_version(int(cli["statistics_version"]["version"]), statistics=True)
        self.assertEqual(ours.mean.shape, (6,))
        np.testing.assert_array_equal(ours.mean, theirs.mean)
        np.testing.assert_array_equal(ours.variance, theirs.variance)
        # The parsed dict works too, with the images' ground truth really sent: without it the
        # server samples the model's own candidates and sees another number of rows.
        no_gt = dict(subset, annotations=[])
        other = self.client.calibrate_images(no_gt, train_dir, progress=False)
        self.assertNotEqual(other.rows_seen, result.rows_seen)
        self.__class__.images_version = result.version.version

    def test_11_calibrate_logits_from_an_array_and_from_an_iterable(self):
        import numpy as np
        logits = self.random_logits(1500, seed=5)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            result = self.client.calibrate_logits(logits, batch_rows=400, job_id="py-logits",
                                                  progress_interval=0)
        self.assertEqual(result.rows_seen, 1500)
        self.assertEqual(result.batches_seen, 4)
        self.assertEqual(result.version.source, "logits")
        self.assertEqual(result.version.job_id, "py-logits")
        lines = stderr.getvalue().splitlines()
        self.assertGreaterEqual(len(lines), 4, lines)  # a line per batch and the final one
        self.assertIn("1500/1500 rows (100%)", lines[-1])
        self.assertIn("rows/s", lines[-1])
        self.assertIn("committed 1500 rows", lines[-1])
        stats = self.client.get_version(result.version.version, statistics=True)
        x = logits.astype(np.float64)
        np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stats.variance, x.var(axis=0, ddof=1), rtol=1e-9)
        # An iterable of arrays (a generator, as from a data loader): one batch each.
        chunks = (logits[i:i + 500] for i in range(0, 1500, 500))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            streamed = self.client.calibrate_logits(chunks, progress=False)
        self.assertEqual(stderr.getvalue(), "")
        self.assertEqual((streamed.rows_seen, streamed.batches_seen), (1500, 3))
        again = self.client.get_version(streamed.version.version, statistics=True)
        np.testing.assert_allclose(again.mean, stats.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(again.variance, stats.variance, rtol=1e-12)
        # The same rows through the CLI, from a .npy file and the same batch size.
        npy = self.path("logits.npy")
        np.save(npy, logits)
        out, _ = logn("calibrate", "--server", self.addr, "--logits", npy, "--batch-rows", "400",
                      "--json")
        cli = self.client.get_version(int(json.loads(out)["statistics_version"]["version"]),
                                      statistics=True)
        np.testing.assert_array_equal(cli.mean, stats.mean)
        np.testing.assert_array_equal(cli.variance, stats.variance)
        # Resuming the committed job is refused, as `logn calibrate --resume` refuses it.
        self.assertEqual(self.client.find_version_by_job_id("py-logits"), result.version.version)
        with self.assertRaises(self.ls.FailedPrecondition) as caught:
            self.client.calibrate_logits(logits, job_id="py-logits", resume=True)
        self.assertIn("already committed", caught.exception.message)
        self.__class__.logits_version = result.version.version

    def test_12_a_failed_calibration_commits_nothing(self):
        import numpy as np
        before = self.version_count()
        # The server refuses a batch of the wrong width: its message, nothing committed.
        with self.assertRaises(self.ls.InvalidArgument) as caught:
            self.client.calibrate_logits(np.zeros((10, 5), np.float32), progress=False)
        self.assertIn("width", caught.exception.message)
        self.assertEqual(caught.exception.method, "Calibrate")

        # The caller's iterable fails half way: the stream is cancelled (not half-closed, which
        # would commit), and the caller's exception comes back.
        def failing():
            yield self.random_logits(100, seed=1)
            yield self.random_logits(100, seed=2)
            raise RuntimeError("data loader broke")
        with self.assertRaisesRegex(RuntimeError, "data loader broke"):
            self.client.calibrate_logits(failing(), progress=False)
        # A missing image file of a dataset: the same.
        missing = {"images": [{"id": 1, "file_name": "nope.png"}], "annotations": []}
        with self.assertRaises(FileNotFoundError):
            self.client.calibrate_images(missing, ARGS.data, progress=False)
        self.assertEqual(self.version_count(), before)

    def test_13_progress_is_one_rewritten_line_on_a_terminal(self):
        import pty
        script = ("import numpy as np, logn_serve\n"
                  f"c = logn_serve.Client({self.addr!r})\n"
                  "c.calibrate_logits(np.ones((300, 6), np.float32) + np.arange(300)[:, None],"
                  " batch_rows=100)\n")
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, "-c", script])
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
        self.assertTrue(text.startswith("\rcalibrate: "), text)
        self.assertEqual(text.count("\n"), 1, text)  # only the final line ends one
        self.assertIn("300/300 rows (100%)", text)
        self.assertIn("committed 300 rows", text)

    # ----- detection -----

    def test_20_detect_returns_what_logn_detect_prints(self):
        import numpy as np
        images = self.val_images
        info = self.client.model_info(refresh=True)
        self.assertEqual(info.active_version, self.images_version)
        names = info.class_names()
        for method in ("none", "logn"):
            with self.subTest(method=method):
                out, _ = logn("detect", "--server", self.addr, "--method", method,
                              "--max-detections", "7", "--batch", "2", *json_flag("detect"),
                              *images)
                cli = [json.loads(line) for line in out.splitlines()]
                ours = self.client.detect(images, calibration=method, max_detections=7,
                                          batch_size=2)
                self.assertEqual([r.image_id for r in ours], images)
                self.assertEqual([line["image"] for line in cli], images)
                for line, result in zip(cli, ours):
                    self.assertEqual(result.setting, method)
                    self.assertEqual(result.version, line["version"])
                    self.assertEqual(len(result), len(line["detections"]))
                    self.assertEqual(result.boxes.shape, (len(result), 4))
                    self.assertEqual(result.scores.dtype, np.float32)
                    if not line["detections"]:
                        continue
                    self.assertEqual(result.labels.tolist(),
                                     [d["category_id"] for d in line["detections"]])
                    self.assertEqual(result.class_names,
                                     [names[d["category_id"]] for d in line["detections"]])
                    np.testing.assert_allclose(result.scores,
                                               [d["score"] for d in line["detections"]],
                                               rtol=1e-5)
                    np.testing.assert_allclose(result.boxes,
                                               [d["box"] for d in line["detections"]], atol=0.006)
                    self.assertEqual(result[0].class_name, names[result[0].category_id])
        self.assertGreater(sum(len(r) for r in ours), 0, "no detections to compare")
        self.assertEqual(ours[0].version, self.images_version)

    def test_21_raw_pixels_streams_and_settings_agree(self):
        import numpy as np
        rng = np.random.default_rng(3)
        y, x = np.mgrid[0:96, 0:128]
        pixels = np.stack([(x * 2 + y) % 256, (y * 3) % 256, rng.integers(0, 256, x.shape)],
                          axis=-1).astype(np.uint8)
        encoded = png_bytes(pixels)
        as_png, as_raw, as_batch = (
            self.client.detect(encoded, "none", score_threshold=0.0),
            self.client.detect([pixels], "none", score_threshold=0.0),
            self.client.detect(np.stack([pixels, pixels]), "none", score_threshold=0.0))
        self.assertEqual(len(as_png), 1)
        self.assertEqual(len(as_batch), 2)
        self.assertGreater(len(as_png[0]), 0)
        for other in (as_raw[0], as_batch[0], as_batch[1]):
            np.testing.assert_array_equal(other.scores, as_png[0].scores)
            np.testing.assert_array_equal(other.boxes, as_png[0].boxes)
            np.testing.assert_array_equal(other.labels, as_png[0].labels)
        self.assertEqual([r.image_id for r in as_batch], ["0", "1"])
        # Grey (HxW) is accepted too.
        self.assertEqual(len(self.client.detect(pixels[:, :, 0], "none")), 1)

        # Several settings from one forward pass; each equals its own detect().
        both = self.client.detect_settings(self.val_images[:3], ["none", "logn"],
                                           include_uncalibrated_score=True)
        self.assertEqual(list(both), ["none", "logn"])
        for name in ("none", "logn"):
            alone = self.client.detect(self.val_images[:3], name, include_uncalibrated_score=True)
            for a, b in zip(both[name], alone):
                np.testing.assert_array_equal(a.scores, b.scores)
                np.testing.assert_array_equal(a.boxes, b.boxes)
        raw = both["none"][0]
        if len(raw):
            np.testing.assert_allclose(raw.uncalibrated_scores, raw.scores, rtol=1e-6)

        # detect_stream: the same results, from a generator, over one DetectStream.
        unary = self.client.detect(self.val_images, "logn", batch_size=2)
        streamed = list(self.client.detect_stream(iter(self.val_images), "logn", batch_size=2))
        self.assertEqual([r.image_id for r in streamed], self.val_images)
        for a, b in zip(streamed, unary):
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.boxes, b.boxes)
        with self.assertRaises(FileNotFoundError):
            list(self.client.detect_stream([self.val_images[0], self.path("no_such.png")]))

    def test_22_apply(self):
        import numpy as np
        logits = self.random_logits(20, seed=9)
        none = self.client.apply(logits, "none")
        np.testing.assert_array_equal(none.logits, logits)
        applied = self.client.apply(logits, "logn", statistics=self.logits_version)
        self.assertEqual(applied.version, self.logits_version)
        stats = self.client.get_version(self.logits_version, statistics=True)
        np.testing.assert_array_equal(applied.logits[:, 0], logits[:, 0])  # background first
        beta = applied.logits[:, 1:] * np.sqrt(stats.variance[1:] + 1e-5) - logits[:, 1:] + \
            stats.mean[1:]
        self.assertLess(np.ptp(beta), 1e-3)
        np.testing.assert_allclose(applied.scores.sum(axis=1), 1.0, rtol=1e-5)

    # ----- the store -----

    def test_30_store_round_trip(self):
        ls, client = self.ls, self.client
        versions = client.list_versions()
        numbers = [v.version for v in versions]
        self.assertEqual(numbers, sorted(numbers))
        self.assertGreaterEqual(len(numbers), 4)
        out, _ = logn("stats", "list", "--server", self.addr, "--json")
        self.assertEqual(numbers, [int(v["version"]) for v in json.loads(out)])
        self.assertEqual([v.version for v in client.list_versions(job_id="py-logits")],
                         [self.logits_version])
        self.assertTrue(all(v.source == "logits" for v in client.list_versions(source="logits")))
        self.assertEqual([v.version for v in client.list_versions(page_size=1)], numbers)

        target = self.logits_version
        self.assertEqual(client.set_alias("canary", target), 0)
        self.assertEqual(client.get_version("canary").version, target)
        self.assertIn("canary", client.get_version(target).aliases)
        self.assertEqual(client.activate(target), self.images_version)
        self.assertEqual(client.get_version().version, target)
        self.assertEqual(client.rollback(), self.images_version)
        with self.assertRaises(ls.FailedPrecondition):
            client.delete_version(target)  # "canary" points at it

        exported = client.export_version("canary", format="json")
        self.assertIn(b"logn.statistics_version.v1", exported)
        binary = client.export_version(target, format="binary")
        self.assertGreater(len(binary), 0)
        original = client.get_version(target, statistics=True)
        imported = client.import_version(exported, description="re-imported")
        self.assertEqual(imported.source, "import")
        self.assertEqual(imported.description, "re-imported")
        self.assertEqual(imported.payload_sha256, original.payload_sha256)
        binary_file = self.path("exported.binpb")
        with open(binary_file, "wb") as f:
            f.write(binary)
        from_file = client.import_version(binary_file)
        self.assertEqual(from_file.payload_sha256, original.payload_sha256)
        copy = client.get_version(imported.version, statistics=True)
        import numpy as np
        np.testing.assert_array_equal(copy.mean, original.mean)
        np.testing.assert_array_equal(copy.variance, original.variance)
        for version in (imported.version, from_file.version):
            client.delete_version(version)
            with self.assertRaises(ls.NotFound):
                client.get_version(version)
        with self.assertRaises(ValueError):
            client.export_version(target, format="xml")

    def test_40_the_example_runs_on_the_installed_package(self):
        proc = subprocess.run([sys.executable,
                               os.path.join(ARGS.source_dir, "client", "python", "example.py"),
                               "--server", self.addr], capture_output=True, text=True,
                              timeout=120, cwd=self.dir)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(proc.stdout.rstrip().endswith("ok"), proc.stdout)
        self.assertNotIn("not installed", proc.stdout)


class TokenAndTls(unittest.TestCase):
    """A server with TLS and an admin token: mutations need the token, sent as the C++ client
    sends it; reads and Detect do not."""

    @classmethod
    def setUpClass(cls):
        import logn_serve
        cls.ls = logn_serve
        cls.dir = os.path.join(os.path.abspath(ARGS.work_dir), "tls")
        shutil.rmtree(cls.dir, ignore_errors=True)
        os.makedirs(cls.dir)
        make_server_certificate(cls.dir)
        token_file = os.path.join(cls.dir, "admin-token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        cls.server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(cls.dir, "server"),
                                extra_args=[f"--tls_cert={cls.dir}/server.pem",
                                            f"--tls_key={cls.dir}/server.key",
                                            f"--admin_token_file={token_file}"])
        cls.server.__enter__()
        with open(os.path.join(cls.dir, "ca.pem"), "rb") as f:
            cls.ca = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def client(self, token=None, tls=True):
        return self.ls.Client(self.server.address, token=token,
                              tls=self.ca if tls is True else tls, retries=1, timeout=20)

    def test_mutations_need_the_token(self):
        import numpy as np
        logits = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
        with self.client() as anonymous:
            with self.assertRaises(self.ls.Unauthenticated) as caught:
                anonymous.calibrate_logits(logits, progress=False)
            self.assertEqual(caught.exception.code.name, "UNAUTHENTICATED")
            with self.assertRaises(self.ls.Unauthenticated):
                anonymous.rollback()
        with self.client(token=TOKEN + "x") as wrong:
            with self.assertRaises(self.ls.PermissionDenied) as caught:
                wrong.calibrate_logits(logits, progress=False)
            self.assertNotIn(TOKEN, str(caught.exception))
        with self.client(token=TOKEN) as admin:
            result = admin.calibrate_logits(logits, activate=True, progress=False)
            self.assertEqual(result.rows_seen, 50)
            self.assertEqual(admin.set_alias("canary", result.version.version), 0)
        # Reads and Detect are open; the CA also works as a file path.
        with self.client(tls=os.path.join(self.dir, "ca.pem")) as reader:
            self.assertEqual([v.version for v in reader.list_versions()],
                             [result.version.version])
            detected = reader.detect(os.path.join(ARGS.data, "val",
                                                  sorted(os.listdir(os.path.join(ARGS.data,
                                                                                 "val")))[0]))
            self.assertEqual(detected[0].version, result.version.version)

    def test_plaintext_to_a_tls_server_is_unavailable(self):
        with self.client(tls=None) as plain:
            with self.assertRaises(self.ls.Unavailable):
                plain.model_info()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for flag in PATH_FLAGS:
        parser.add_argument(flag, required=True)
    parser.add_argument("--venv", help="(internal) the venv the package is installed in")
    ARGS, rest = parser.parse_known_args()
    ARGS.source_dir = os.path.abspath(ARGS.source_dir)
    ARGS.work_dir = os.path.abspath(ARGS.work_dir)
    if not ARGS.venv:
        absolute = [os.path.abspath(getattr(ARGS, f[2:].replace("-", "_"))) for f in PATH_FLAGS]
        return outer_main([x for pair in zip(PATH_FLAGS, absolute) for x in pair] + rest)
    program = unittest.main(argv=[sys.argv[0], "-v", *rest], exit=False)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
