"""The generated logn.v1 message and service modules (built from proto/ when the package is
built), for fields the typed API does not surface:

    from logn_serve import pb
    common = pb.common_pb2
    setting = common.CalibrationSetting(calibration_method=common.CALIBRATION_METHOD_LOGN)

Every `logn/v1/X.proto` is `pb.X_pb2` (messages) and, for services, `pb.X_pb2_grpc` (stubs).
"""
import importlib
import os

_V1 = "logn_serve._gen.logn.v1"
_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gen", "logn", "v1")

if not os.path.isdir(_DIR):
    raise ImportError(
        "logn_serve: the generated logn.v1 stubs are missing (logn_serve/_gen). Install the "
        "package (pip install --no-build-isolation client/python), which generates them from "
        "proto/, or run `python3 client/python/logn_serve/_protogen.py` in a checkout.")

__all__ = []
for _file in sorted(os.listdir(_DIR)):
    _name, _ext = os.path.splitext(_file)
    if _ext == ".py" and _name.endswith(("_pb2", "_pb2_grpc")):
        globals()[_name] = importlib.import_module(f"{_V1}.{_name}")
        __all__.append(_name)

# The modules the client uses, named for type checkers and readers.
common_pb2 = importlib.import_module(f"{_V1}.common_pb2")
model_pb2 = importlib.import_module(f"{_V1}.model_pb2")
statistics_pb2 = importlib.import_module(f"{_V1}.statistics_pb2")
store_pb2 = importlib.import_module(f"{_V1}.store_pb2")
detection_service_pb2 = importlib.import_module(f"{_V1}.detection_service_pb2")
detection_service_pb2_grpc = importlib.import_module(f"{_V1}.detection_service_pb2_grpc")
calibration_service_pb2 = importlib.import_module(f"{_V1}.calibration_service_pb2")
calibration_service_pb2_grpc = importlib.import_module(f"{_V1}.calibration_service_pb2_grpc")
stats_service_pb2 = importlib.import_module(f"{_V1}.stats_service_pb2")
stats_service_pb2_grpc = importlib.import_module(f"{_V1}.stats_service_pb2_grpc")
model_service_pb2 = importlib.import_module(f"{_V1}.model_service_pb2")
model_service_pb2_grpc = importlib.import_module(f"{_V1}.model_service_pb2_grpc")
drift_service_pb2 = importlib.import_module(f"{_V1}.drift_service_pb2")
drift_service_pb2_grpc = importlib.import_module(f"{_V1}.drift_service_pb2_grpc")
