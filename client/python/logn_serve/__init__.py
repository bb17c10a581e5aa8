"""logn_serve: the Python client of LogN Serve (calibrated long-tail object detection, logn.v1).

    from logn_serve import Client

    client = Client("127.0.0.1:8500")
    client.calibrate_images("train.json", "train/", activate=True)      # statistics version 1
    for image in client.detect(["val/1.png"], calibration="logn"):
        print(image.boxes, image.scores, image.labels, image.class_names)

See docs/python-client.md. The logn.v1 messages themselves are in `logn_serve.pb`.
"""
from .client import (Calibration, Client, default_rows_per_batch, repeat_factors, to_image)
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded,
                     FailedPrecondition, Internal, InvalidArgument, LognError, NotFound,
                     OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated,
                     Unavailable, Unimplemented, Unknown)
from .types import (ApplyResult, CalibrationJob, CalibrationResult, ClassDrift, ClassInfo,
                    Detection, DriftReport, DriftScore, DriftWindow, GroupDrift, ImageDetections,
                    ModelInfo, ModelVersion, Progress, VersionInfo)

__version__ = "0.1.0"

__all__ = [
    "Client", "Calibration", "to_image", "default_rows_per_batch", "repeat_factors",
    "ApplyResult", "CalibrationJob", "CalibrationResult", "ClassInfo", "Detection",
    "ImageDetections", "ModelInfo", "Progress", "VersionInfo", "ModelVersion", "DriftReport",
    "DriftScore", "DriftWindow", "ClassDrift", "GroupDrift",
    "LognError", "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded",
    "FailedPrecondition", "Internal", "InvalidArgument", "NotFound", "OutOfRange",
    "PermissionDenied", "ResourceExhausted", "Unauthenticated", "Unavailable", "Unimplemented",
    "Unknown",
]
