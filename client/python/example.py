#!/usr/bin/python3
"""LogN Serve from Python, with the logn_serve package: calls every kind of RPC once.

    example.py --server HOST:PORT [--token TOKEN] [--proto-dir DIR]

Install the package first (client/python/README.md):

    python3 -m venv --system-site-packages ~/logn-venv
    ~/logn-venv/bin/python -m pip install --no-build-isolation --no-index client/python
    ~/logn-venv/bin/python client/python/example.py --server 127.0.0.1:8500

Without an installed package the script builds one from this checkout into a temporary directory
(the stubs from --proto-dir, default the repository's proto/), so it also runs straight from a
clone with /usr/bin/python3.

Steps: model_info, calibrate_logits (random logits as a job with an id, activated on commit),
list_versions (with filters), the job's resume check, detect_settings (a generated image, raw and
LogN-calibrated, from one forward pass), the same over detect_stream, apply.
Exits non-zero if any call fails or returns something inconsistent.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def import_logn_serve(proto_dir: str, scratch: str):
    """The installed logn_serve, else one built from client/python/logn_serve into `scratch`
    (the same stub generation as `pip install`, nothing written to the checkout)."""
    # The script's own directory holds the package's source (without stubs): never import that.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    try:
        import logn_serve
        return logn_serve
    except ImportError:
        for name in [m for m in sys.modules if m == "logn_serve" or m.startswith("logn_serve.")]:
            del sys.modules[name]
    sys.dont_write_bytecode = True
    package = os.path.join(scratch, "logn_serve")
    shutil.copytree(os.path.join(HERE, "logn_serve"), package,
                    ignore=shutil.ignore_patterns("_gen", "__pycache__"))
    sys.path.insert(0, package)
    import _protogen  # noqa: E402  (standard library only)
    sys.path.remove(package)
    _protogen.generate(package, proto_dir)
    sys.path.insert(0, scratch)
    import logn_serve
    print(f"logn_serve is not installed: using {HERE}/logn_serve with stubs from {proto_dir}")
    return logn_serve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="logn_server address, host:port")
    parser.add_argument("--token", default=os.environ.get("LOGN_TOKEN"),
                        help="admin token (default $LOGN_TOKEN)")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR,
                        help="logn/v1/*.proto, when the package is not installed "
                             "(default: the repository's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-call deadline, seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logn_py_") as scratch:
        logn_serve = import_logn_serve(args.proto_dir, scratch)
        import numpy as np

        with logn_serve.Client(args.server, token=args.token, timeout=args.timeout) as client:
            # 1. The served model.
            info = client.model_info()
            print(f"model {info.name}: {info.num_classes} classes, sha256 {info.sha256[:12]}..., "
                  f"active version {info.active_version}")

            # 2. Calibrate from random logits, [rows, C+1] in the model's layout, as three
            # batches from a generator. A job id makes the job resumable (the server checkpoints
            # it) and findable afterwards.
            rng = np.random.default_rng(0)
            shift = np.array([3.0] + [-2.0 - 0.5 * j for j in range(1, info.width)])
            batches = [(rng.normal(size=(200, info.width)) + shift).astype(np.float32)
                       for _ in range(3)]
            job_id = f"python-example-{os.getpid()}-{int(time.time())}"
            committed = client.calibrate_logits(iter(batches), total_rows=600, activate=True,
                                                description="client/python/example.py",
                                                job_id=job_id)
            version = committed.version.version
            print(f"calibrated version {version}: {committed.rows_seen} rows in "
                  f"{committed.batches_seen} batches")
            assert committed.rows_seen == 600, committed
            assert "active" in committed.version.aliases, committed.version

            # 3. The store's versions: every one, then (filtered by the server) the complete
            # versions computed from logits.
            listed = client.list_versions()
            print("versions:", ", ".join(
                f"{v.version}{'(' + ','.join(v.aliases) + ')' if v.aliases else ''}"
                for v in listed))
            assert version in [v.version for v in listed]
            from_logits = client.list_versions(source="logits", partial=False)
            assert version in [v.version for v in from_logits]
            assert all(v.source == "logits" and not v.partial for v in from_logits), from_logits

            # 3b. The job committed: found by its id, and resuming it is refused (what
            # `logn calibrate --job-id ID --resume` does after a dropped connection).
            assert client.find_version_by_job_id(job_id) == version
            try:
                client.calibrate_logits(iter(batches), job_id=job_id, resume=True)
                raise AssertionError("resuming a committed job must be refused")
            except logn_serve.FailedPrecondition as refused:
                print(f"job {job_id}: {refused.message}")

            # 4. Detect on a generated image (raw RGB pixels), raw and LogN-calibrated, from one
            # forward pass.
            y, x = np.mgrid[0:48, 0:64]
            image = np.stack([(x * 5 + rng.integers(0, 40, x.shape)) % 256, (y * 7) % 256,
                              (x + y) % 256], axis=-1).astype(np.uint8)
            results = client.detect_settings([image], ["none", "logn"], score_threshold=0.0,
                                             max_detections=5)
            for name, (detections,) in results.items():
                assert detections.version in (0, version), detections
                top = ", ".join(f"{d.class_name} {d.score:.3f}" for d in detections[:3])
                print(f"detect [{name}]: {len(detections)} detections; top: {top}; "
                      f"boxes {detections.boxes.shape}")
            assert results["logn"][0].version == version

            # 4b. The same over one DetectStream: images go as the generator yields them.
            streamed = list(client.detect_stream((image for _ in range(2)), "logn",
                                                 score_threshold=0.0, max_detections=5))
            assert len(streamed) == 2, streamed
            for answer in streamed:
                np.testing.assert_array_equal(answer.scores, results["logn"][0].scores)
            print(f"detect stream: {len(streamed)} images")

            # 5. Apply the new statistics to logits computed elsewhere.
            logits = rng.normal(0.0, 2.0, size=(4, info.width)).astype(np.float32)
            applied = client.apply(logits, "logn")
            assert applied.version == version
            assert applied.scores is not None and applied.scores.shape == (4, info.width)
            np.testing.assert_allclose(applied.scores.sum(axis=1), 1.0, atol=1e-4)
            row0 = [round(float(s), 4) for s in applied.scores[0]]
            print(f"apply: {applied.logits.shape[0]} rows calibrated with version "
                  f"{applied.version}; scores of row 0: {row0}")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
