#!/usr/bin/python3
"""Every row of docs/errors.md: a bad input sent to a real logn_server over 127.0.0.1, the exact
status code it must get, and the server still serving afterwards (a health check and a good
Detect after each case).

    bad_input_test.py --server-binary B --model M --proto-dir P --work-dir W
"""
import json
import os
import shutil
import struct
import sys
import tempfile
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "testing"))
from logn_test_server import LognServer, run_unittests  # noqa: E402
from grpc_stubs import compile_protos, float32_bytes, png  # noqa: E402

import grpc  # noqa: E402

ARGS = None
TOKEN = "bad-input-test-token"
MAX_MESSAGE_BYTES = 1 << 20
MAX_ROWS = 1000
MAX_PIXELS = 1_000_000
WIDTH = 6  # the contract model: 5 classes + background


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by one row of pixels at most."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + 3 * min(width, 16)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) +
            chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 claiming width x height and an SOS (where header parsing stops),
    with no scan data: the header reads, the image does not decode."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return (b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof +
            b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\xff\xd9")


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.abspath(ARGS.work_dir)
        shutil.rmtree(cls.dir, ignore_errors=True)
        os.makedirs(cls.dir)
        stubs = tempfile.mkdtemp(prefix="logn_stubs_", dir=cls.dir)
        compile_protos(ARGS.proto_dir, stubs)
        sys.path.insert(0, stubs)
        global cal, det, st, common, store
        from logn.v1 import calibration_service_pb2 as cal, calibration_service_pb2_grpc  # noqa
        from logn.v1 import detection_service_pb2 as det, detection_service_pb2_grpc  # noqa
        from logn.v1 import stats_service_pb2 as st, stats_service_pb2_grpc  # noqa
        from logn.v1 import common_pb2 as common  # noqa
        from logn.v1 import store_pb2 as store  # noqa
        token_file = os.path.join(cls.dir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        cls.server = LognServer(ARGS.server_binary, ARGS.model, os.path.join(cls.dir, "server"),
                                extra_args=[f"--max_message_bytes={MAX_MESSAGE_BYTES}",
                                            f"--max_rows_per_batch={MAX_ROWS}",
                                            f"--max_image_pixels={MAX_PIXELS}",
                                            f"--admin_token_file={token_file}"])
        cls.server.__enter__()
        cls.channel = grpc.insecure_channel(cls.server.address, options=[
            ("grpc.max_send_message_length", 8 * MAX_MESSAGE_BYTES)])
        cls.detection = detection_service_pb2_grpc.DetectionServiceStub(cls.channel)
        cls.calibration = calibration_service_pb2_grpc.CalibrationServiceStub(cls.channel)
        cls.stats = stats_service_pb2_grpc.StatsStoreServiceStub(cls.channel)
        # Two versions, the first active, so that LogN Detect and the store cases have targets.
        for activate in (True, False):
            cls.calibration.Calibrate(iter([cls.header(activate), cls.logits(200)]),
                                      metadata=cls.admin())

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.__exit__(None, None, None)

    @staticmethod
    def admin():
        return [("authorization", f"Bearer {TOKEN}")]

    @staticmethod
    def header(activate=False):
        r = cal.CalibrateRequest()
        r.header.source = store.VERSION_SOURCE_LOGITS
        r.header.activate = activate
        return r

    @staticmethod
    def logits(rows, width=WIDTH, values=None):
        r = cal.CalibrateRequest()
        r.logit_batch.rows = rows
        r.logit_batch.width = width
        r.logit_batch.data = float32_bytes(values if values is not None else
                                           [(i % 7) - 3.0 for i in range(rows * width)])
        return r

    def expect(self, code, call, *args, substring="", **kwargs):
        with self.assertRaises(grpc.RpcError) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        self.assertIn(substring, caught.exception.details())
        self.assert_still_serving()
        return caught.exception.details()

    def assert_still_serving(self):
        request = det.DetectRequest()
        request.images.add(encoded=png(32, 24, 1))
        response = self.detection.Detect(request, timeout=30)
        self.assertEqual(response.version, 1)

    def calibrate(self, *messages, metadata=None):
        return self.calibration.Calibrate(iter(messages), metadata=metadata or self.admin(),
                                          timeout=30)

    def detect_image(self, encoded):
        request = det.DetectRequest()
        request.images.add(encoded=encoded)
        return self.detection.Detect(request, timeout=30)

    # One test per row of docs/errors.md, in its order.

    def test_nan_and_inf_logits(self):
        for bad in (float("nan"), float("inf"), float("-inf")):
            values = [0.5] * (4 * WIDTH)
            values[2 * WIDTH + 3] = bad
            details = self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, self.header(),
                                  self.logits(4, values=values))
            self.assertIn("row 2, column 3", details)
            apply = cal.ApplyRequest()
            apply.logits.CopyFrom(self.logits(4, values=values).logit_batch)
            self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibration.Apply, apply)

    def test_wrong_width(self):
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, self.header(),
                    self.logits(3, width=WIDTH + 1), substring="width")

    def test_zero_rows(self):
        empty = cal.CalibrateRequest()
        empty.logit_batch.rows = 0
        empty.logit_batch.width = WIDTH
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, self.header(), empty)

    def test_rows_over_the_limit(self):
        self.expect(grpc.StatusCode.RESOURCE_EXHAUSTED, self.calibrate, self.header(),
                    self.logits(MAX_ROWS + 1), substring="limit")

    def test_corrupt_images(self):
        good_png = png(40, 30, 2)
        for name, data in (("png", good_png[:8] + b"\x00" * 40 + good_png[48:]),
                           ("jpeg", b"\xff\xd8\xff\xe0" + b"garbage" * 30)):
            with self.subTest(name):
                self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, data)

    def test_truncated_images(self):
        good_png = png(40, 30, 3)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, good_png[: len(good_png) // 2])
        jpeg = jpeg_header(40, 30)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, jpeg[:-2])

    def test_zero_by_zero_headers(self):
        for data in (png_header(0, 0), jpeg_header(0, 0)):
            self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, data)

    def test_huge_headers_are_refused_before_decoding(self):
        # PNG can claim 100000 x 100000; libjpeg-turbo reads at most 65500 x 65500. The image
        # is unservable as sent (INVALID_ARGUMENT, not retryable), found from the header alone.
        for data in (png_header(100000, 100000), jpeg_header(60000, 60000)):
            self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, data,
                        substring="limit")
        # Within the side limit, over --max_image_pixels.
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.detect_image, png_header(2000, 1000),
                    substring=f"over the limit of {MAX_PIXELS}")

    def test_statistics_of_another_model(self):
        # A bare statistics JSON (as tools/import_mmdet_logn.py writes) computed for another
        # model file; an exported version edited the same way is DATA_LOSS (its checksum).
        exported = self.stats.ExportVersion(st.ExportVersionRequest(
            selector=common.StatisticsSelector(version=1)))
        statistics = json.loads(exported.content)["statistics"]
        statistics["provenance"]["model_sha256"] = "0" * 64
        self.expect(grpc.StatusCode.FAILED_PRECONDITION, self.stats.ImportVersion,
                    st.ImportVersionRequest(content=json.dumps(statistics).encode()),
                    metadata=self.admin(), substring="another model")

    def test_unknown_version_or_alias(self):
        for selector in (common.StatisticsSelector(version=999),
                         common.StatisticsSelector(alias="nonesuch")):
            self.expect(grpc.StatusCode.NOT_FOUND, self.stats.GetVersion,
                        st.GetVersionRequest(selector=selector))
            request = det.DetectRequest(selector=selector)
            request.images.add(encoded=png(20, 20, 4))
            self.expect(grpc.StatusCode.NOT_FOUND, self.detection.Detect, request)

    def test_enum_values_a_field_does_not_take(self):
        bad_source = self.header()
        bad_source.header.source = store.VERSION_SOURCE_MERGE
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, bad_source, self.logits(3),
                    substring="VERSION_SOURCE_LOGITS or VERSION_SOURCE_IMAGES")
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.stats.ListVersions,
                    st.ListVersionsRequest(source=store.VERSION_SOURCE_UNSPECIFIED),
                    substring="source must be")
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.stats.GetVersion,
                    st.GetVersionRequest(view=7), substring="view must be")

    def test_deleting_the_active_version(self):
        self.expect(grpc.StatusCode.FAILED_PRECONDITION, self.stats.DeleteVersion,
                    st.DeleteVersionRequest(version=1), metadata=self.admin(),
                    substring="active")

    def test_message_over_the_size_limit(self):
        request = det.DetectRequest()
        request.images.add(encoded=b"\x89PNG" + os.urandom(MAX_MESSAGE_BYTES + 1024))
        self.expect(grpc.StatusCode.RESOURCE_EXHAUSTED, self.detection.Detect, request)

    def test_expired_deadline(self):
        request = det.DetectRequest()
        request.images.add(encoded=png(64, 48, 5))
        self.expect(grpc.StatusCode.DEADLINE_EXCEEDED, self.detection.Detect, request,
                    timeout=0.000001)

    def test_missing_or_wrong_token(self):
        self.expect(grpc.StatusCode.UNAUTHENTICATED, self.calibrate, self.header(),
                    self.logits(4), metadata=[("x-other", "1")])
        self.expect(grpc.StatusCode.PERMISSION_DENIED, self.stats.Activate,
                    st.ActivateRequest(version=2), metadata=[("authorization", "Bearer nope")])

    def test_empty_stream_and_batch_before_header(self):
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, substring="empty")
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, self.calibrate, self.logits(3),
                    substring="CalibrateHeader")


def set_args(args) -> None:
    global ARGS
    ARGS = args


if __name__ == "__main__":
    sys.exit(run_unittests(("--server-binary", "--model", "--proto-dir", "--work-dir"), set_args))
