#!/usr/bin/env python3
"""logn_serve's ModelService and DriftService methods against in-process fakes (no logn_server):
what each call sends (fields, the admin token), what it returns, and which calls are retried.

The package is copied to a temporary directory and its stubs generated there from proto/ (as
`pip install` does), so the checkout is left as it was.

    python3 python_services_test.py --source-dir REPO --work-dir DIR
"""
import argparse
import importlib.util
import os
import shutil
import sys
import unittest
from concurrent import futures

import grpc

ARGS = None
ADMIN_TOKEN = "admin-s3cret"


def load_package(source_dir, work_dir):
    """logn_serve from `source_dir`/client/python, with stubs generated into a copy."""
    target = os.path.join(work_dir, "logn_serve")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(os.path.join(source_dir, "client", "python", "logn_serve"), target)
    spec = importlib.util.spec_from_file_location(
        "logn_protogen", os.path.join(target, "_protogen.py"))
    protogen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protogen)
    protogen.generate(target, os.path.join(source_dir, "proto"))
    sys.path.insert(0, work_dir)
    import logn_serve  # noqa: E402
    return logn_serve


class Recorder:
    """Calls per method, the last request and authorization of each, and UNAVAILABLE answers
    still to give."""

    def __init__(self):
        self.calls, self.requests, self.authorization, self.unavailable = {}, {}, {}, {}

    def enter(self, method, request, context, admin):
        self.calls[method] = self.calls.get(method, 0) + 1
        self.requests[method] = request
        token = dict(context.invocation_metadata()).get("authorization", "")
        self.authorization[method] = token
        if self.unavailable.get(method, 0) > 0:
            self.unavailable[method] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        if admin and token != f"Bearer {ADMIN_TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "send the admin token")


def make_servicers(pb, recorder):
    models, drift = pb.model_service_pb2, pb.drift_service_pb2

    def status(name, version, state, **fields):
        return models.ModelVersionStatus(model_name=name, model_version=version, state=state,
                                         **fields)

    class Models(pb.model_service_pb2_grpc.ModelServiceServicer):
        def ListModels(self, request, context):
            recorder.enter("ListModels", request, context, admin=False)
            return models.ListModelsResponse(model_versions=[
                status("lvis", 1, models.MODEL_VERSION_STATE_AVAILABLE, active_version=3,
                       memory_bytes=5 << 20),
                status("lvis", 2, models.MODEL_VERSION_STATE_FAILED, reason="bad file",
                       missing_statistics=models.MISSING_STATISTICS_ACTION_FALLBACK,
                       fallback_method=pb.common_pb2.CALIBRATION_METHOD_LOGA)])

        def LoadModel(self, request, context):
            recorder.enter("LoadModel", request, context, admin=True)
            return models.LoadModelResponse(model_version_status=status(
                request.model_name, request.model_version, models.MODEL_VERSION_STATE_AVAILABLE,
                pinned=True, is_default=True))

        def UnloadModel(self, request, context):
            recorder.enter("UnloadModel", request, context, admin=True)
            return models.UnloadModelResponse(model_version_status=status(
                request.model_name, request.model_version, models.MODEL_VERSION_STATE_UNLOADING))

        def ReloadModels(self, request, context):
            recorder.enter("ReloadModels", request, context, admin=True)
            return models.ReloadModelsResponse(model_versions=[status(
                request.model_name or "lvis", 1, models.MODEL_VERSION_STATE_LOADING)])

    class Drift(pb.drift_service_pb2_grpc.DriftServiceServicer):
        def GetDrift(self, request, context):
            recorder.enter("GetDrift", request, context, admin=False)
            score = drift.DriftScore(mean_shift=0.5, log_variance_ratio=-0.25, score=0.5)
            response = drift.GetDriftResponse(
                model_name=request.model_name or "lvis", model_version=request.model_version or 2,
                state=drift.DRIFT_STATE_MONITORING, reference_version=7, overall=score,
                groups=[drift.GroupDrift(frequency=pb.model_pb2.FREQUENCY_GROUP_RARE, classes=4,
                                         drift=score)],
                classes=[drift.ClassDrift(category_id=k + 1, name=f"c{k + 1}",
                                          frequency=pb.model_pb2.FREQUENCY_GROUP_COMMON,
                                          drift=score) for k in range(request.top_k)],
                window_rows=1000, sample_rate=0.25, classes_scored=9)
            response.window_duration.seconds = 90
            response.live_window.rows_seen = 300
            response.live_window.start_at.seconds = 1796220000
            return response

        def CaptureDriftReference(self, request, context):
            recorder.enter("CaptureDriftReference", request, context, admin=True)
            if request.from_next_window:
                return drift.CaptureDriftReferenceResponse(
                    state=drift.DRIFT_STATE_COLLECTING_REFERENCE)
            return drift.CaptureDriftReferenceResponse(
                state=drift.DRIFT_STATE_MONITORING,
                statistics_version=pb.store_pb2.StatisticsVersion(
                    version=8, description=request.description,
                    source=pb.store_pb2.VERSION_SOURCE_SERVED_TRAFFIC))

        def SnapshotLiveStatistics(self, request, context):
            recorder.enter("SnapshotLiveStatistics", request, context, admin=True)
            return drift.SnapshotLiveStatisticsResponse(
                statistics_version=pb.store_pb2.StatisticsVersion(
                    version=9, description=request.description,
                    source=pb.store_pb2.VERSION_SOURCE_SERVED_TRAFFIC))

    return Models(), Drift()


class PythonServicesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.logn = load_package(ARGS.source_dir, ARGS.work_dir)
        cls.pb = cls.logn.pb

    def setUp(self):
        self.recorder = Recorder()
        models, drift = make_servicers(self.pb, self.recorder)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.pb.model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, self.server)
        self.pb.drift_service_pb2_grpc.add_DriftServiceServicer_to_server(drift, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def tearDown(self):
        self.server.stop(None)

    def client(self, token=None):
        return self.logn.Client(f"127.0.0.1:{self.port}", token=token, timeout=10)

    def test_the_clients_model_fills_requests_that_name_none(self):
        with self.logn.Client(f"127.0.0.1:{self.port}", timeout=10, model="alpha",
                              model_version=3) as client:
            client.get_drift()
            self.assertEqual(self.recorder.requests["GetDrift"].model_name, "alpha")
            self.assertEqual(self.recorder.requests["GetDrift"].model_version, 3)
            client.get_drift("beta", 1)  # a call that names its own model keeps it
            self.assertEqual(self.recorder.requests["GetDrift"].model_name, "beta")
            self.assertEqual(self.recorder.requests["GetDrift"].model_version, 1)
            client.list_models()  # ModelService: "" still means every model
            self.assertEqual(self.recorder.requests["ListModels"].model_name, "")
        with self.assertRaises(ValueError):
            self.logn.Client("127.0.0.1:1", model_version=-1)

    def test_list_models_converts_and_is_retried(self):
        self.recorder.unavailable["ListModels"] = 1
        with self.client() as client:
            versions = client.list_models("lvis")
        self.assertEqual(self.recorder.calls["ListModels"], 2)
        self.assertEqual(self.recorder.requests["ListModels"].model_name, "lvis")
        self.assertEqual([(v.model_name, v.version, v.state) for v in versions],
                         [("lvis", 1, "available"), ("lvis", 2, "failed")])
        self.assertEqual(versions[0].memory_bytes, 5 << 20)
        self.assertEqual(versions[0].active_version, 3)
        self.assertEqual(versions[0].missing_statistics, "refuse")
        self.assertEqual(versions[1].missing_statistics, "fallback")
        self.assertEqual(versions[1].fallback_method, "loga")
        self.assertEqual(versions[1].reason, "bad file")

    def test_load_model_needs_the_admin_token_and_is_never_retried(self):
        with self.client() as anonymous:
            with self.assertRaises(self.logn.Unauthenticated):
                anonymous.load_model("lvis", 3)
        with self.client(ADMIN_TOKEN) as admin:
            loaded = admin.load_model("lvis", 3)
            self.assertEqual((loaded.model_name, loaded.version, loaded.state),
                             ("lvis", 3, "available"))
            self.assertTrue(loaded.pinned)
            self.assertEqual(self.recorder.authorization["LoadModel"], f"Bearer {ADMIN_TOKEN}")
            self.recorder.unavailable["LoadModel"] = 1
            with self.assertRaises(self.logn.Unavailable):
                admin.load_model("lvis", 3)
            self.assertEqual(self.recorder.calls["LoadModel"], 3)
            self.assertEqual(admin.unload_model("lvis", 1).state, "unloading")
            reloaded = admin.reload_models("lvis", 2)
            self.assertEqual(self.recorder.requests["ReloadModels"].model_version, 2)
            self.assertEqual([v.state for v in reloaded], ["loading"])

    def test_get_drift_converts_and_is_retried(self):
        self.recorder.unavailable["GetDrift"] = 2
        with self.client() as client:
            report = client.get_drift("lvis", 1, top_k=3)
        self.assertEqual(self.recorder.calls["GetDrift"], 3)
        request = self.recorder.requests["GetDrift"]
        self.assertEqual((request.model_name, request.model_version, request.top_k),
                         ("lvis", 1, 3))
        self.assertEqual((report.model_name, report.model_version, report.state),
                         ("lvis", 1, "monitoring"))
        self.assertEqual(report.reference_version, 7)
        self.assertEqual(report.overall, self.logn.DriftScore(0.5, -0.25, 0.5))
        self.assertEqual([(g.frequency, g.classes) for g in report.groups], [("rare", 4)])
        self.assertEqual([(c.category_id, c.name, c.frequency) for c in report.classes],
                         [(1, "c1", "common"), (2, "c2", "common"), (3, "c3", "common")])
        self.assertEqual(report.window_seconds, 90)
        self.assertEqual((report.window_rows, report.sample_rate, report.classes_scored),
                         (1000, 0.25, 9))
        self.assertEqual(report.live_window.rows_seen, 300)
        self.assertIsNotNone(report.live_window.start_at)
        self.assertIsNone(report.live_window.end_at)

    def test_drift_captures_are_admin_mutations(self):
        with self.client(ADMIN_TOKEN) as admin:
            reference = admin.capture_drift_reference(description="after rollout")
            self.assertEqual((reference.version, reference.source, reference.description),
                             (8, "served_traffic", "after rollout"))
            self.assertIsNone(admin.capture_drift_reference(next_window=True))
            snapshot = admin.snapshot_live_statistics("lvis", 2, description="monday")
            self.assertEqual(snapshot.version, 9)
            request = self.recorder.requests["SnapshotLiveStatistics"]
            self.assertEqual((request.model_name, request.model_version), ("lvis", 2))
            self.recorder.unavailable["SnapshotLiveStatistics"] = 1
            with self.assertRaises(self.logn.Unavailable):
                admin.snapshot_live_statistics()
            self.assertEqual(self.recorder.calls["SnapshotLiveStatistics"], 2)
        with self.client() as anonymous:
            with self.assertRaises(self.logn.Unauthenticated):
                anonymous.capture_drift_reference()


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.work_dir, exist_ok=True)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
