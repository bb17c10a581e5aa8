#!/usr/bin/python3
"""LogN Serve from Python: compiles the logn.v1 protos and calls every kind of RPC once.

    example.py --server HOST:PORT [--proto-dir DIR]

Needs Debian's python3-grpcio and python3-protobuf, and protoc with grpc_python_plugin
(protobuf-compiler, protobuf-compiler-grpc). The stubs are generated into a temporary directory
on every run, so nothing generated is checked in. (Debian's `python3 -m grpc_tools.protoc` cannot
be used: it bundles protoc 3.5, which rejects the proto3 `optional` fields our protos use.)

Steps: GetModelInfo, Calibrate (random logits as a job with an id, activated on commit),
ListVersions (with filters), the job's resume check, Detect (a generated PNG, raw and
LogN-calibrated) and the same request over DetectStream, Apply.
Exits non-zero if any call fails or returns something inconsistent.
"""
import argparse
import array
import glob
import importlib
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def compile_protos(proto_dir: str, out_dir: str) -> None:
    protos = sorted(glob.glob(os.path.join(proto_dir, "logn", "v1", "*.proto")))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_dir}/logn/v1")
    plugin = shutil.which("grpc_python_plugin")
    protoc = shutil.which("protoc")
    if not (protoc and plugin):
        raise SystemExit("needs protoc and grpc_python_plugin on PATH "
                         "(apt install protobuf-compiler protobuf-compiler-grpc)")
    # -I/usr/include: google/protobuf/{timestamp,duration}.proto from libprotobuf-dev /
    # protobuf-compiler.
    subprocess.run([protoc, f"--plugin=protoc-gen-grpc_python={plugin}", f"-I{proto_dir}",
                    "-I/usr/include", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                    *protos], check=True)


def float32_bytes(values) -> bytes:
    """Little-endian float32, as LogitBatch.data requires."""
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def floats_from(data: bytes):
    a = array.array("f")
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def png(width: int, height: int, seed: int) -> bytes:
    """A small RGB PNG made with zlib only."""
    rng = random.Random(seed)
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter: none
        for x in range(width):
            raw += bytes(((x * 5 + rng.randrange(40)) % 256, (y * 7) % 256, (x + y) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) +
            chunk(b"IEND", b""))


# Calibration jobs, the same steps as the C++ client's client/lib/calibration_jobs.h.

def version_of_job(stats, stats_stub, job_id: str, timeout: float) -> int:
    """The version job `job_id` committed as, 0 if none (FindVersionByJobId): one ListVersions
    call with the server-side `job_id` filter (the first match is the job's earliest version)."""
    import grpc
    try:
        page = stats_stub.ListVersions(stats.ListVersionsRequest(job_id=job_id, page_size=1),
                                       timeout=timeout)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:  # the model has no version yet
            return 0
        raise
    return page.statistics_versions[0].version if page.statistics_versions else 0


def prepare_resume(calibration, calibration_stub, stats, stats_stub, header,
                   timeout: float) -> int:
    """PrepareResume: the batch job `header.job_id` continues after. With a checkpoint, sets the
    header's resume fields; without one, 0 (start over). Raises ValueError for a job that already
    committed a version: it must not be committed twice."""
    import grpc
    try:
        job = calibration_stub.GetCalibrationJob(
            calibration.GetCalibrationJobRequest(job_id=header.job_id), timeout=timeout).job
        header.resume = True
        header.resume_from_batch = job.batches_seen
        return job.batches_seen
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
    committed = version_of_job(stats, stats_stub, header.job_id, timeout)
    if committed:
        raise ValueError(f"job '{header.job_id}' already committed as version {committed}; "
                         "nothing to resume")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="logn_server address, host:port")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR,
                        help="directory holding logn/v1/*.proto (default: the repository's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-call deadline, seconds")
    args = parser.parse_args()

    import grpc  # python3-grpcio

    with tempfile.TemporaryDirectory(prefix="logn_py_") as gen:
        compile_protos(args.proto_dir, gen)
        sys.path.insert(0, gen)
        common = importlib.import_module("logn.v1.common_pb2")
        store = importlib.import_module("logn.v1.store_pb2")
        detection = importlib.import_module("logn.v1.detection_service_pb2")
        detection_grpc = importlib.import_module("logn.v1.detection_service_pb2_grpc")
        calibration = importlib.import_module("logn.v1.calibration_service_pb2")
        calibration_grpc = importlib.import_module("logn.v1.calibration_service_pb2_grpc")
        stats = importlib.import_module("logn.v1.stats_service_pb2")
        stats_grpc = importlib.import_module("logn.v1.stats_service_pb2_grpc")

        channel = grpc.insecure_channel(args.server)
        detect_stub = detection_grpc.DetectionServiceStub(channel)
        calibration_stub = calibration_grpc.CalibrationServiceStub(channel)
        stats_stub = stats_grpc.StatsStoreServiceStub(channel)
        t = args.timeout

        # 1. The served model.
        info = detect_stub.GetModelInfo(detection.GetModelInfoRequest(), timeout=t)
        classes = len(info.manifest.classes)
        width = classes + 1
        print(f"model {info.manifest.name}: {classes} classes, sha256 {info.model_sha256[:12]}..., "
              f"active version {info.active_version}")

        # 2. Calibrate from random logits: a header, then batches; the server commits on close.
        # A job id makes the job resumable (the server checkpoints it) and findable afterwards.
        rng = random.Random(0)
        rows_per_batch, batches = 200, 3
        header = calibration.CalibrateHeader(
            source=store.VERSION_SOURCE_LOGITS, activate=True,
            description="client/python/example.py",
            job_id=f"python-example-{os.getpid()}-{int(time.time())}")
        assert prepare_resume(calibration, calibration_stub, stats, stats_stub, header, t) == 0, \
            "a new job starts from the beginning"

        def requests():
            yield calibration.CalibrateRequest(header=header)
            for _ in range(batches):
                values = [rng.gauss(3.0 if j == 0 else -2.0 - 0.5 * j, 1.0)
                          for _ in range(rows_per_batch) for j in range(width)]
                yield calibration.CalibrateRequest(logit_batch=common.LogitBatch(
                    rows=rows_per_batch, width=width, data=float32_bytes(values)))

        committed = calibration_stub.Calibrate(requests(), timeout=t)
        version = committed.statistics_version.version
        print(f"calibrated version {version}: {committed.rows_seen} rows in "
              f"{committed.batches_seen} batches")
        assert committed.rows_seen == rows_per_batch * batches, committed
        assert "active" in committed.statistics_version.aliases, committed.statistics_version

        # 3. The store's versions: every one, then (filtered by the server) the complete
        # versions computed from logits.
        listed = stats_stub.ListVersions(stats.ListVersionsRequest(), timeout=t)
        print("versions:", ", ".join(f"{v.version}{'(' + ','.join(v.aliases) + ')' if v.aliases else ''}"
                                     for v in listed.statistics_versions))
        assert version in [v.version for v in listed.statistics_versions]
        from_logits = stats_stub.ListVersions(stats.ListVersionsRequest(
            source=store.VERSION_SOURCE_LOGITS, partial=False), timeout=t)
        assert version in [v.version for v in from_logits.statistics_versions]
        assert all(v.source == store.VERSION_SOURCE_LOGITS and not v.partial
                   for v in from_logits.statistics_versions), from_logits

        # 3b. The job committed: found by its id, and resuming it is refused (what
        # `logn calibrate --job-id ID --resume` does after a dropped connection).
        assert version_of_job(stats, stats_stub, header.job_id, t) == version
        try:
            prepare_resume(calibration, calibration_stub, stats, stats_stub, header, t)
            raise AssertionError("resuming a committed job must be refused")
        except ValueError as refused:
            print(f"job {header.job_id}: {refused}")

        # 4. Detect on a generated image, raw and LogN-calibrated, from one forward pass.
        request = detection.DetectRequest(
            images=[common.Image(encoded=png(64, 48, 1), image_id="generated.png")],
            calibrations=[
                common.CalibrationSetting(name="raw",
                                          calibration_method=common.CALIBRATION_METHOD_NONE),
                common.CalibrationSetting(name="logn",
                                          calibration_method=common.CALIBRATION_METHOD_LOGN)],
            postprocess=detection.PostprocessOptions(score_threshold=0.0, max_detections=5))
        detected = detect_stub.Detect(request, timeout=t)
        assert detected.version == version, detected.version
        for result in detected.results:
            dets = result.image_detections[0].detections
            top = ", ".join(f"class {d.category_id} {d.score:.3f}" for d in dets[:3])
            print(f"detect [{result.setting.name}]: {len(dets)} detections; top: {top}")
        print(f"server time: {detected.timing.inference_duration.ToNanoseconds() / 1e6:.1f} ms "
              "inference")

        # 4b. The same request over DetectStream: each message wraps one DetectRequest, each
        # answer one DetectResponse, in order.
        streamed = list(detect_stub.DetectStream(
            iter([detection.DetectStreamRequest(request=request)] * 2), timeout=t))
        assert len(streamed) == 2, streamed
        for answer in streamed:
            assert answer.response.version == version, answer
            assert [r.setting.name for r in answer.response.results] == ["raw", "logn"], answer
        print(f"detect stream: {len(streamed)} responses")

        # 5. Apply the new statistics to logits computed elsewhere.
        logits = [rng.gauss(0.0, 2.0) for _ in range(4 * width)]
        applied = calibration_stub.Apply(calibration.ApplyRequest(
            calibration=common.CalibrationSetting(
                calibration_method=common.CALIBRATION_METHOD_LOGN),
            logits=common.LogitBatch(rows=4, width=width, data=float32_bytes(logits)),
            include_scores=True), timeout=t)
        scores = floats_from(applied.scores.data)
        assert applied.version == version
        assert len(scores) == 4 * width
        for r in range(4):
            row_sum = sum(scores[r * width:(r + 1) * width])
            assert abs(row_sum - 1.0) < 1e-4, row_sum
        print(f"apply: {applied.logits.rows} rows calibrated with version {applied.version}; "
              f"scores of row 0: {[round(s, 4) for s in scores[:width]]}")
        channel.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
