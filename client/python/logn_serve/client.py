"""The LogN Serve client: one gRPC channel, every logn.v1 call as a typed method.

    from logn_serve import Client

    with Client("127.0.0.1:8500", token=None) as client:
        for image in client.detect(["a.jpg", "b.png"], calibration="logn"):
            print(image.image_id, image.boxes, image.scores, image.class_names)

Calls follow the C++ client (client/lib/client.h): the token goes as `authorization: Bearer
<token>` metadata on every call; idempotent calls (GetModelInfo, Detect, Apply, GetCalibrationJob,
ListVersions, GetVersion, ExportVersion, SetCalibrationProfile, ListModels, GetDrift) are retried
on UNAVAILABLE with
exponential backoff (100 ms, x2, at most 5 s, +-20 % jitter); other calls and streams never are.
Every failure raises a logn_serve.LognError subclass carrying the gRPC status.
"""
import collections
import json
import math
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import grpc
import numpy as np

from . import errors, pb
from ._progress import ProgressArg, Reporter
from .types import (ApplyResult, CalibrationJob, CalibrationResult, Detection, DriftReport,
                    ImageDetections, ModelInfo, ModelVersion, VersionInfo, float32_array)

_common = pb.common_pb2
_store = pb.store_pb2
_det = pb.detection_service_pb2
_cal = pb.calibration_service_pb2
_stats = pb.stats_service_pb2
_models = pb.model_service_pb2
_drift = pb.drift_service_pb2

PathLike = Union[str, "os.PathLike[str]"]
# An image: a JPEG/PNG file path, its bytes, an HxWx3 (RGB) or HxW / HxWx1 (grey) uint8 array
# (anything with __array__, e.g. a PIL image), or a logn.v1 Image message.
ImageLike = Union[PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
# Which statistics: None (the alias "active"), a version number, or an alias name.
StatisticsRef = Union[None, int, str]
TlsArg = Union[None, bool, bytes, str, grpc.ChannelCredentials]


@dataclass
class Calibration:
    """A calibration setting (logn.v1.CalibrationSetting) by keyword.

    method: "logn", "none", "loga", or "default" (the statistics version's calibration profile,
    else LogN). LogN's switches and parameters default to the paper's full method when None;
    tau is LogA's temperature.
    """
    method: str = "logn"
    name: Optional[str] = None
    use_mean: Optional[bool] = None
    use_std: Optional[bool] = None
    use_beta: Optional[bool] = None
    # "min_foreground_mean" (default), "avg_foreground_mean", "max_foreground_mean",
    # "background_mean" or "constant" (with beta_constant).
    beta_policy: Optional[str] = None
    beta_constant: float = 0.0
    epsilon: Optional[float] = None
    official_formula: bool = False
    normalize_background: bool = False
    mean_weight: Optional[float] = None
    std_exponent: Optional[float] = None
    tau: Optional[float] = None

    _METHODS = {"none": _common.CALIBRATION_METHOD_NONE, "logn": _common.CALIBRATION_METHOD_LOGN,
                "loga": _common.CALIBRATION_METHOD_LOGA,
                "default": _common.CALIBRATION_METHOD_MODEL_DEFAULT}

    def to_proto(self) -> Any:
        method = self.method.lower()
        if method not in self._METHODS:
            raise ValueError(f"calibration method must be one of {sorted(self._METHODS)}, "
                             f"got {self.method!r}")
        setting = _common.CalibrationSetting(name=self.name if self.name is not None else method,
                                             calibration_method=self._METHODS[method])
        logn = setting.logn
        for key in ("use_mean", "use_std", "use_beta", "epsilon", "mean_weight", "std_exponent"):
            value = getattr(self, key)
            if value is not None:
                setattr(logn, key, value)
        if self.beta_policy is not None:
            logn.beta_policy = _common.BetaPolicy.Value("BETA_POLICY_" + self.beta_policy.upper())
        logn.beta_constant = self.beta_constant
        logn.official_formula = self.official_formula
        logn.normalize_background = self.normalize_background
        if self.tau is not None:
            setting.loga.tau = self.tau
        return setting


CalibrationArg = Union[None, str, Calibration, Any]


def _setting(calibration: CalibrationArg) -> Any:
    if isinstance(calibration, str):
        return Calibration(method=calibration).to_proto()
    if isinstance(calibration, Calibration):
        return calibration.to_proto()
    if isinstance(calibration, _common.CalibrationSetting):
        return calibration
    raise TypeError("calibration must be None, a method name ('logn', 'none', 'loga', 'default'), "
                    f"a logn_serve.Calibration or a CalibrationSetting, got {type(calibration)}")


def _selector(statistics: StatisticsRef) -> Any:
    """None: "active"; an int (or a string of digits): that version; other strings: an alias."""
    selector = _common.StatisticsSelector()
    if statistics is None:
        return selector
    if isinstance(statistics, bool):
        raise TypeError("statistics must be a version number or an alias")
    if isinstance(statistics, (int, np.integer)) or (isinstance(statistics, str)
                                                     and statistics.isdigit()):
        selector.version = int(statistics)
    elif isinstance(statistics, str):
        selector.alias = statistics
    else:
        raise TypeError(f"statistics must be a version number or an alias, got {statistics!r}")
    return selector


def _version_number(version: Union[int, str]) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)):
        raise TypeError(f"version must be a number, got {version!r}")
    if isinstance(version, str) and not version.isdigit():
        raise ValueError(f"version must be a number, got {version!r}")
    return int(version)


def _is_single_image(images: Any) -> bool:
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, _common.Image)):
        return True
    return isinstance(images, np.ndarray) and images.ndim in (2, 3)


def to_image(image: ImageLike, image_id: Optional[str] = None, index: int = 0) -> Any:
    """One image as a logn.v1 Image: files and bytes are sent encoded (the server decodes JPEG and
    PNG), arrays as RawImage pixels. The image id is the path, else `image_id`, else the index."""
    if isinstance(image, _common.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return _common.Image(encoded=f.read(), image_id=image_id or os.fspath(image))
    ident = image_id if image_id is not None else str(index)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _common.Image(encoded=bytes(image), image_id=ident)
    if not isinstance(image, np.ndarray):
        if not (hasattr(image, "__array__") or hasattr(image, "__array_interface__")):
            raise TypeError("an image must be a file path, encoded bytes, a uint8 HxWx3 array or "
                            f"a logn.v1 Image, got {type(image).__name__}")
        image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255 pixels), got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image arrays must be HxWx3 (RGB) or HxW (grey), got {image.shape}")
    height, width, channels = image.shape
    raw = _common.RawImage(height=height, width=width, channels=channels,
                           data=np.ascontiguousarray(image).tobytes())
    return _common.Image(raw=raw, image_id=ident)


def _logit_batch(logits: Any, weights: Any = None) -> Any:
    array = np.ascontiguousarray(np.asarray(logits), dtype="<f4")
    if array.ndim != 2:
        raise ValueError(f"logits must be a 2-D [rows, width] array, got shape {array.shape}")
    batch = _common.LogitBatch(rows=array.shape[0], width=array.shape[1], data=array.tobytes())
    if weights is not None:
        batch.row_weights.extend(float(w) for w in np.asarray(weights, dtype=np.float64).ravel())
    return batch


def default_rows_per_batch(width: int) -> int:
    """About 4 MiB of float32 per LogitBatch, as the C++ client (DefaultRowsPerBatch)."""
    return max(1, (4 << 20) // (4 * max(1, width)))


def repeat_factors(dataset: Mapping[str, Any], threshold: float) -> Dict[int, float]:
    """LVIS repeat-factor sampling: r(c) = max(1, sqrt(t / f(c))) with f(c) the fraction of images
    containing c; an image's factor is the largest of its categories' (1 without any). The same
    as the C++ client's RepeatFactors (client/eval/repeat_factors.cc)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"repeat-factor threshold must be in (0, 1], got {threshold}")
    images = dataset.get("images") or []
    if not images:
        raise ValueError("repeat factors need a dataset with images")
    categories_of: Dict[int, set] = collections.defaultdict(set)
    for a in dataset.get("annotations") or []:
        categories_of[int(a["image_id"])].add(int(a["category_id"]))
    images_with: Dict[int, int] = collections.Counter()
    for categories in categories_of.values():
        for c in categories:
            images_with[c] += 1
    factors = {}
    for image in images:
        r = 1.0
        for c in categories_of.get(int(image["id"]), ()):
            r = max(r, math.sqrt(threshold / (images_with[c] / len(images))))
        factors[int(image["id"])] = r
    return factors


class _StreamFailure:
    """An exception raised while producing a client stream's messages: the call is cancelled
    (never half-closed, so the server commits nothing) and the exception re-raised."""

    def __init__(self) -> None:
        self.error: Optional[BaseException] = None
        self._call: Any = None
        self._ready = threading.Event()

    def set_call(self, call: Any) -> None:
        self._call = call
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._ready.wait(30)
        if self._call is not None:
            self._call.cancel()


class Client:
    """A connection to one logn_server (or a load balancer in front of several).

    target: gRPC target, e.g. "127.0.0.1:8500" or "dns:///logn.internal:443".
    token: the admin token, sent as `authorization: Bearer <token>` on every call (needed by
        Calibrate, Merge, the store's mutations, LoadModel / UnloadModel / ReloadModels and the
        drift captures when the server has --admin_token_file).
    tls: None/False plaintext; True TLS with gRPC's default roots; PEM root certificates (bytes,
        or a str: PEM text or a file path); or any grpc.ChannelCredentials (e.g. for mutual TLS:
        grpc.ssl_channel_credentials(root, private_key, cert_chain)).
    tls_server_name: the name checked against the server certificate (IP targets, tests).
    timeout: seconds per attempt of a unary call; stream_timeout: of a whole stream (None: none).
    retries: attempts of idempotent calls on UNAVAILABLE (1: no retry).
    channel: use this grpc.Channel instead of creating one (target is then only a label).
    model, model_version: the model (and model version; 0: its newest available) every request
        that names none is for — a server with a model repository hosts several. ModelService
        calls (list_models, load_model, ...) name their model themselves and are left alone.
    """

    def __init__(self, target: str, token: Optional[str] = None, tls: TlsArg = None, *,
                 tls_server_name: Optional[str] = None, timeout: float = 30.0,
                 stream_timeout: Optional[float] = None, retries: int = 4,
                 max_message_bytes: int = 64 << 20, channel: Optional[grpc.Channel] = None,
                 channel_options: Sequence[Tuple[str, Any]] = (), model: str = "",
                 model_version: int = 0) -> None:
        if not target and channel is None:
            raise ValueError("target is empty")
        if timeout <= 0 or (stream_timeout is not None and stream_timeout <= 0):
            raise ValueError("timeouts must be > 0")
        if retries < 1:
            raise ValueError("retries must be >= 1")
        if model_version < 0:
            raise ValueError("model_version must be >= 0 (0: the newest available)")
        self.model = model
        self.model_version = model_version
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.retries = retries
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes), *channel_options]
        if channel is not None:
            self._channel = channel
        elif tls is None or tls is False:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self._channel = grpc.secure_channel(target, self._credentials(tls), options=options)
        self._detection = pb.detection_service_pb2_grpc.DetectionServiceStub(self._channel)
        self._calibration = pb.calibration_service_pb2_grpc.CalibrationServiceStub(self._channel)
        self._stats = pb.stats_service_pb2_grpc.StatsStoreServiceStub(self._channel)
        self._models = pb.model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._drift = pb.drift_service_pb2_grpc.DriftServiceStub(self._channel)
        self._model_info: Optional[ModelInfo] = None
        self._lock = threading.Lock()
        self._random = random.Random()

    @staticmethod
    def _credentials(tls: TlsArg) -> grpc.ChannelCredentials:
        if isinstance(tls, grpc.ChannelCredentials):
            return tls
        if tls is True:
            return grpc.ssl_channel_credentials()
        if isinstance(tls, (bytes, bytearray)):
            return grpc.ssl_channel_credentials(root_certificates=bytes(tls))
        if isinstance(tls, (str, os.PathLike)):
            text = os.fspath(tls)
            if text.lstrip().startswith("-----BEGIN"):
                return grpc.ssl_channel_credentials(root_certificates=text.encode())
            with open(text, "rb") as f:
                return grpc.ssl_channel_credentials(root_certificates=f.read())
        raise TypeError("tls must be None, True, PEM root certificates (bytes, text or a file "
                        f"path) or grpc.ChannelCredentials, got {type(tls).__name__}")

    # ----- plumbing -----

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    def _backoff(self, attempt: int) -> float:
        base = min(0.1 * 2.0 ** max(0, attempt - 2), 5.0)
        return base * self._random.uniform(0.8, 1.2)

    def _for_model(self, request: Any) -> Any:
        """Fills in the client's model and model version where `request` names none."""
        fields = request.DESCRIPTOR.fields_by_name
        if ("model_name" not in fields or
                request.DESCRIPTOR.file.name == "logn/v1/model_service.proto"):
            return request
        if not request.model_name:
            request.model_name = self.model
        if "model_version" in fields and request.model_version == 0:
            request.model_version = self.model_version
        return request

    def _unary(self, name: str, rpc: Callable[..., Any], request: Any, idempotent: bool) -> Any:
        request = self._for_model(request)
        attempts = self.retries if idempotent else 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(self._backoff(attempt))
            try:
                return rpc(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                error = errors.from_rpc_error(e, name)
                if error.code != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                    raise error from None
        raise AssertionError("unreachable")

    # ----- DetectionService -----

    def model_info(self, refresh: bool = False) -> ModelInfo:
        """GetModelInfo (cached; refresh=True asks again, e.g. for the current active version)."""
        with self._lock:
            cached = self._model_info
        if cached is not None and not refresh:
            return cached
        response = self._unary("GetModelInfo", self._detection.GetModelInfo,
                               _det.GetModelInfoRequest(), idempotent=True)
        info = ModelInfo.from_proto(response)
        with self._lock:
            self._model_info = info
        return info

    def _class_names(self) -> Dict[int, str]:
        return self.model_info().class_names()

    def _detect_request(self, images: Sequence[Any], settings: Sequence[Any],
                        statistics: StatisticsRef, postprocess: Any, request_id: str) -> Any:
        request = _det.DetectRequest(images=images, postprocess=postprocess,
                                     request_id=request_id)
        # No statistics named: no selector at all (the server's "active"), as the CLI sends it.
        if statistics is not None:
            request.selector.CopyFrom(_selector(statistics))
        request.calibrations.extend(settings)
        return self._for_model(request)

    @staticmethod
    def _postprocess(score_threshold: Optional[float], nms_iou: Optional[float],
                     max_detections: Optional[int], include_uncalibrated_score: bool) -> Any:
        p = _det.PostprocessOptions(include_uncalibrated_score=include_uncalibrated_score)
        if score_threshold is not None:
            p.score_threshold = score_threshold
        if nms_iou is not None:
            p.nms_iou = nms_iou
        if max_detections is not None:
            p.max_detections = max_detections
        return p

    @staticmethod
    def _images(images: Any, image_ids: Optional[Sequence[str]]) -> Iterator[Any]:
        if _is_single_image(images):
            images = [images]
        for i, image in enumerate(images):
            yield to_image(image, image_ids[i] if image_ids is not None else None, i)

    def _convert(self, response: Any, names: Dict[int, str]) -> List[List[ImageDetections]]:
        """Per setting, per image."""
        out = []
        for result in response.results:
            setting = result.setting.name or _common.CalibrationMethod.Name(
                result.setting.calibration_method)[len("CALIBRATION_METHOD_"):].lower()
            out.append([ImageDetections(
                image_id=image.image_id, setting=setting, version=response.version,
                detections=[Detection(
                    box=(d.box.x1, d.box.y1, d.box.x2, d.box.y2), category_id=d.category_id,
                    class_name=names.get(d.category_id, ""), score=d.score,
                    uncalibrated_score=(d.uncalibrated_score if d.HasField("uncalibrated_score")
                                        else None)) for d in image.detections])
                for image in result.image_detections])
        return out

    def detect_settings(self, images: Union[ImageLike, Iterable[ImageLike]],
                        calibrations: Sequence[CalibrationArg],
                        statistics: StatisticsRef = None, *,
                        score_threshold: Optional[float] = None, nms_iou: Optional[float] = None,
                        max_detections: Optional[int] = None,
                        include_uncalibrated_score: bool = False, batch_size: int = 4,
                        image_ids: Optional[Sequence[str]] = None
                        ) -> Dict[str, List[ImageDetections]]:
        """Detect with several calibration settings computed from one forward pass per image:
        {setting name: per image ImageDetections}. Names default to the method ("none", "logn",
        ...) and must be distinct."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        settings = [_setting(c) for c in calibrations]
        if not settings:
            raise ValueError("calibrations is empty (use detect() for the model's default)")
        names = [s.name for s in settings]
        if len(set(names)) != len(names):
            raise ValueError(f"calibration setting names must be distinct, got {names}; "
                             "name them with Calibration(name=...)")
        return self._detect(images, settings, statistics, self._postprocess(
            score_threshold, nms_iou, max_detections, include_uncalibrated_score),
            batch_size, image_ids)

    def detect(self, images: Union[ImageLike, Iterable[ImageLike]],
               calibration: CalibrationArg = None, statistics: StatisticsRef = None, *,
               score_threshold: Optional[float] = None, nms_iou: Optional[float] = None,
               max_detections: Optional[int] = None, include_uncalibrated_score: bool = False,
               batch_size: int = 4, image_ids: Optional[Sequence[str]] = None
               ) -> List[ImageDetections]:
        """Detects objects: one ImageDetections per image, in order.

        images: a list of images (file paths, encoded JPEG/PNG bytes, uint8 HxWx3 RGB or HxW grey
            arrays), an [N, H, W, 3] uint8 array, or a single image (the result is then a list of
            one). Files are sent as they are; arrays as raw pixels.
        calibration: None (the statistics version's profile, else LogN), "logn", "none", "loga",
            "default", a Calibration or a logn.v1 CalibrationSetting.
        statistics: the statistics LogN uses: None ("active"), a version number or an alias.
        score_threshold, nms_iou, max_detections: post-processing (server defaults: 1e-4, 0.5,
            300); include_uncalibrated_score adds Detection.uncalibrated_score.
        batch_size: images per Detect request.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        settings = [] if calibration is None else [_setting(calibration)]
        results = self._detect(images, settings, statistics, self._postprocess(
            score_threshold, nms_iou, max_detections, include_uncalibrated_score),
            batch_size, image_ids)
        return next(iter(results.values())) if results else []

    def _detect(self, images: Any, settings: List[Any], statistics: StatisticsRef,
                postprocess: Any, batch_size: int, image_ids: Optional[Sequence[str]]
                ) -> Dict[str, List[ImageDetections]]:
        names = self._class_names()
        per_setting: List[List[ImageDetections]] = [[] for _ in range(max(1, len(settings)))]
        pending: List[Any] = []
        done = 0

        def flush() -> None:
            nonlocal done
            request = self._detect_request(pending, settings, statistics, postprocess,
                                           request_id=str(done))
            response = self._unary("Detect", self._detection.Detect, request, idempotent=True)
            for i, images_of_setting in enumerate(self._convert(response, names)):
                per_setting[i].extend(images_of_setting)
            done += len(pending)
            pending.clear()

        for image in self._images(images, image_ids):
            pending.append(image)
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
        if not settings:  # the server's default: named as the response names it
            return {per_setting[0][0].setting if per_setting[0] else "": per_setting[0]}
        return {s.name: per_setting[i] for i, s in enumerate(settings)}

    def detect_stream(self, images: Iterable[ImageLike], calibration: CalibrationArg = None,
                      statistics: StatisticsRef = None, *,
                      score_threshold: Optional[float] = None, nms_iou: Optional[float] = None,
                      max_detections: Optional[int] = None,
                      include_uncalibrated_score: bool = False, batch_size: int = 4
                      ) -> Iterator[ImageDetections]:
        """detect() over one DetectStream: images are read lazily from the iterable (a generator
        over a large directory is fine), requests are flow-controlled, and each image's
        ImageDetections is yielded as soon as its response arrives, in order. Stopping the
        iteration early cancels the stream."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        settings = [] if calibration is None else [_setting(calibration)]
        postprocess = self._postprocess(score_threshold, nms_iou, max_detections,
                                        include_uncalibrated_score)
        names = self._class_names()
        failure = _StreamFailure()

        def requests() -> Iterator[Any]:
            try:
                pending, sent = [], 0
                for image in self._images(images, None):
                    pending.append(image)
                    if len(pending) == batch_size:
                        yield _det.DetectStreamRequest(request=self._detect_request(
                            pending, settings, statistics, postprocess, str(sent)))
                        sent += len(pending)
                        pending = []
                if pending:
                    yield _det.DetectStreamRequest(request=self._detect_request(
                        pending, settings, statistics, postprocess, str(sent)))
            except Exception as e:  # noqa: BLE001 - re-raised by the reading side
                failure.fail(e)

        call = self._detection.DetectStream(requests(), timeout=self.stream_timeout,
                                            metadata=self._metadata)
        failure.set_call(call)
        try:
            for message in call:
                for per_setting in self._convert(message.response, names):
                    yield from per_setting
        except grpc.RpcError as e:
            if failure.error is not None:
                raise failure.error from None
            raise errors.from_rpc_error(e, "DetectStream") from None
        finally:
            call.cancel()
        if failure.error is not None:
            raise failure.error

    # ----- CalibrationService -----

    def _header(self, source: int, *, activate: bool, description: str, job_id: str,
                partial: bool, checkpoint_every: Optional[int], ema: Optional[float],
                ema_init: StatisticsRef, ema_from_prior: bool) -> Any:
        if partial and activate:
            raise ValueError("partial versions cannot be activated")
        header = _cal.CalibrateHeader(source=source, description=description, activate=activate,
                                      job_id=job_id, partial=partial)
        if checkpoint_every is not None:
            if not job_id:
                raise ValueError("checkpoint_every needs a job_id")
            # 0 means never here (as `logn calibrate --checkpoint-every 0`); the server's
            # default is what omitting it gets.
            header.checkpoint_every_batches = -1 if checkpoint_every == 0 else checkpoint_every
        if ema is not None:
            header.ema.momentum = ema
            if ema_init is not None:
                header.ema.init.CopyFrom(_selector(ema_init))
            header.ema.from_prior = ema_from_prior
        else:
            if ema_init is not None or ema_from_prior:
                raise ValueError("ema_init and ema_from_prior only apply with ema=MOMENTUM")
            header.exact.SetInParent()
        return self._for_model(header)

    def _prepare_resume(self, header: Any) -> int:
        """The batch a resumed job continues from (PrepareResume in client/lib)."""
        if not header.job_id:
            raise ValueError("resuming a calibration job needs its job_id")
        try:
            job = self.calibration_job(header.job_id)
        except errors.NotFound:
            committed = self.find_version_by_job_id(header.job_id)
            if committed:
                raise errors.FailedPrecondition(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"job '{header.job_id}' already committed as version {committed}; "
                    "nothing to resume", method="Calibrate") from None
            return 0
        header.resume = True
        header.resume_from_batch = job.batches_seen
        return job.batches_seen

    def _calibrate(self, header: Any, batches: Iterator[Tuple[Any, int]],
                   reporter: Reporter, first_batch: int) -> CalibrationResult:
        """One Calibrate stream: the header, then (request, items done after it) pairs."""
        failure = _StreamFailure()

        def requests() -> Iterator[Any]:
            yield _cal.CalibrateRequest(header=header)
            try:
                count = first_batch
                for request, done in batches:
                    yield request
                    count += 1  # resumed here: gRPC took the batch
                    reporter.update(done, count)
            except Exception as e:  # noqa: BLE001 - re-raised below, after cancelling
                failure.fail(e)

        call = self._calibration.Calibrate.future(requests(), timeout=self.stream_timeout,
                                                  metadata=self._metadata)
        failure.set_call(call)
        try:
            response = call.result()
        except KeyboardInterrupt:
            call.cancel()
            raise
        except (grpc.RpcError, grpc.FutureCancelledError) as e:
            if failure.error is not None:
                raise failure.error from None
            if isinstance(e, grpc.RpcError):
                raise errors.from_rpc_error(e, "Calibrate") from None
            raise errors.Cancelled(grpc.StatusCode.CANCELLED, "Calibrate cancelled",
                                   method="Calibrate") from None
        if failure.error is not None:  # pragma: no cover - a cancelled call has no response
            raise failure.error
        reporter.finish(response.rows_seen, response.images_seen, response.batches_seen)
        return CalibrationResult.from_proto(response)

    def calibrate_images(self, dataset_json: Union[PathLike, Mapping[str, Any]],
                         image_dir: PathLike, *, activate: bool = False, description: str = "",
                         job_id: str = "", batch_images: int = 8, partial: bool = False,
                         checkpoint_every: Optional[int] = None, resume: bool = False,
                         rfs_threshold: Optional[float] = None, num_rois: Optional[int] = None,
                         positive_fraction: Optional[float] = None,
                         positive_iou: Optional[float] = None, roi_source: Optional[str] = None,
                         ema: Optional[float] = None, ema_init: StatisticsRef = None,
                         ema_from_prior: bool = False, progress: ProgressArg = True,
                         progress_interval: float = 2.0) -> CalibrationResult:
        """Streams a training set's images with their ground truth through Calibrate (the server
        samples RoIs as the detector was trained) and commits one new statistics version; the
        same messages as `logn calibrate --dataset ... --images ...`.

        dataset_json: an LVIS/COCO annotations file (or the parsed dict): images
            ({id, file_name or coco_url}) in file order, annotations ({image_id, category_id,
            bbox: [x, y, w, h]}).
        image_dir: the directory holding the images' file_name entries.
        batch_images: images per ImageBatch message. activate: point "active" at the new
            version. job_id (+ checkpoint_every batches, 0 never) makes the job resumable:
            resume=True continues it from its last checkpoint (same input and batch_images).
        rfs_threshold: weigh each image by its repeat factor (LVIS: 0.001).
        num_rois, positive_fraction, positive_iou, roi_source ("proposals" | "candidates"):
            the RoI sampler (server defaults 512, 0.25, 0.5, proposals when the model has them).
        ema (momentum), ema_init (version/alias) or ema_from_prior: EMA instead of exact.
        progress: True prints a progress line on stderr, False nothing, a callable gets a
            Progress after every batch (from gRPC's sending thread) and at the end.
        """
        if batch_images < 1:
            raise ValueError("batch_images must be >= 1")
        if isinstance(dataset_json, Mapping):
            dataset = dataset_json
        else:
            with open(dataset_json, encoding="utf-8") as f:
                dataset = json.load(f)
        images = list(dataset.get("images") or [])
        if not images:
            raise ValueError("the dataset has no images")
        annotations: Dict[int, List[Mapping[str, Any]]] = collections.defaultdict(list)
        for a in dataset.get("annotations") or []:
            annotations[int(a["image_id"])].append(a)
        factors = repeat_factors(dataset, rfs_threshold) if rfs_threshold else {}

        header = self._header(_store.VERSION_SOURCE_IMAGES, activate=activate,
                              description=description, job_id=job_id, partial=partial,
                              checkpoint_every=checkpoint_every, ema=ema, ema_init=ema_init,
                              ema_from_prior=ema_from_prior)
        sampler = header.sampler
        if num_rois is not None:
            sampler.num_rois = num_rois
        if positive_fraction is not None:
            sampler.positive_fraction = positive_fraction
        if positive_iou is not None:
            sampler.positive_iou = positive_iou
        if roi_source is not None:
            if roi_source not in ("proposals", "candidates"):
                raise ValueError("roi_source must be 'proposals' or 'candidates', "
                                 f"got {roi_source!r}")
            setattr(sampler, "from", _store.RoiSource.Value("ROI_SOURCE_" + roi_source.upper()))
        if rfs_threshold:
            header.rfs_threshold = rfs_threshold
        first_batch = self._prepare_resume(header) if resume else 0
        begin = first_batch * batch_images
        if begin >= len(images) and images:
            raise errors.FailedPrecondition(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job '{job_id}' checkpointed after batch {first_batch}, past the end of this "
                "input: is it the same input and batch size?", method="Calibrate")

        def batches() -> Iterator[Tuple[Any, int]]:
            for start in range(begin, len(images), batch_images):
                batch = _cal.ImageBatch()
                for image in images[start:start + batch_images]:
                    name = image.get("file_name") or os.path.basename(image.get("coco_url") or "")
                    if not name:
                        raise ValueError(f"dataset image {image.get('id')} has no file_name")
                    annotated = batch.annotated_images.add()
                    with open(os.path.join(image_dir, name), "rb") as f:
                        annotated.image.encoded = f.read()
                    image_id = int(image["id"])
                    annotated.image.image_id = str(image_id)
                    if image_id in factors:
                        annotated.weight = factors[image_id]
                    truth = annotated.ground_truth
                    for a in annotations.get(image_id, ()):
                        x, y, w, h = (float(v) for v in a["bbox"])
                        truth.boxes.add(x1=x, y1=y, x2=x + w, y2=y + h)
                        truth.category_ids.append(int(a["category_id"]))
                yield (_cal.CalibrateRequest(image_batch=batch),
                       min(len(images), start + batch_images))

        reporter = Reporter(progress, "images", len(images), interval=progress_interval)
        reporter.done = begin
        return self._calibrate(header, batches(), reporter, first_batch)

    def calibrate_logits(self, logits: Union[np.ndarray, Iterable[Any]], *,
                         batch_rows: Optional[int] = None, total_rows: Optional[int] = None,
                         activate: bool = False, description: str = "", job_id: str = "",
                         partial: bool = False, checkpoint_every: Optional[int] = None,
                         resume: bool = False, rfs_threshold: float = 0.0,
                         ema: Optional[float] = None, ema_init: StatisticsRef = None,
                         ema_from_prior: bool = False, progress: ProgressArg = True,
                         progress_interval: float = 2.0) -> CalibrationResult:
        """Streams logits computed elsewhere (the detector's RoI head outputs, [rows, C+1]
        float32 in the model's layout) through Calibrate and commits one new version.

        logits: one 2-D array, sent in batches of batch_rows rows (default ~4 MiB each); or an
            iterable (e.g. a generator over a data loader) of 2-D arrays, each one LogitBatch,
            or of (array, row_weights) pairs. Anything numpy converts (torch CPU tensors too).
        total_rows: for the progress ETA with an iterable.
        rfs_threshold: recorded with the version when the row weights are repeat factors.
        Other arguments: see calibrate_images.
        """
        header = self._header(_store.VERSION_SOURCE_LOGITS, activate=activate,
                              description=description, job_id=job_id, partial=partial,
                              checkpoint_every=checkpoint_every, ema=ema, ema_init=ema_init,
                              ema_from_prior=ema_from_prior)
        if rfs_threshold:
            header.rfs_threshold = rfs_threshold
        first_batch = self._prepare_resume(header) if resume else 0
        if isinstance(logits, np.ndarray) or hasattr(logits, "shape"):
            array = np.asarray(logits)
            if array.ndim != 2:
                raise ValueError(f"logits must be a 2-D [rows, width] array, got {array.shape}")
            per_batch = batch_rows or default_rows_per_batch(array.shape[1])
            total_rows = array.shape[0]
            items: Iterable[Any] = (array[i:i + per_batch]
                                    for i in range(0, array.shape[0], per_batch))
        else:
            if batch_rows is not None:
                raise ValueError("batch_rows applies to one array; an iterable's arrays are the "
                                 "batches")
            items = logits

        def batches() -> Iterator[Tuple[Any, int]]:
            rows = 0
            for index, item in enumerate(items):
                weights = None
                if isinstance(item, tuple):
                    item, weights = item
                if index < first_batch:  # already in the resumed job's checkpoint
                    rows += len(item)
                    continue
                batch = _logit_batch(item, weights)
                rows += batch.rows
                yield _cal.CalibrateRequest(logit_batch=batch), rows

        reporter = Reporter(progress, "rows", total_rows, interval=progress_interval)
        return self._calibrate(header, batches(), reporter, first_batch)

    def calibration_job(self, job_id: str) -> CalibrationJob:
        """A resumable job's last checkpoint (NotFound when it has none or committed)."""
        response = self._unary("GetCalibrationJob", self._calibration.GetCalibrationJob,
                               _cal.GetCalibrationJobRequest(job_id=job_id), idempotent=True)
        return CalibrationJob.from_proto(response.job)

    def find_version_by_job_id(self, job_id: str) -> int:
        """The version job `job_id` committed as (its earliest), 0 if none."""
        try:
            page = self._unary("ListVersions", self._stats.ListVersions,
                               _stats.ListVersionsRequest(job_id=job_id, page_size=1),
                               idempotent=True)
        except errors.NotFound:  # the model has no version yet
            return 0
        return page.statistics_versions[0].version if page.statistics_versions else 0

    def apply(self, logits: Any, calibration: CalibrationArg = "logn",
              statistics: StatisticsRef = None, include_scores: bool = True) -> ApplyResult:
        """Calibrates [rows, C+1] logits computed elsewhere with stored statistics; returns them
        (float32) with their softmax scores."""
        request = _cal.ApplyRequest(selector=_selector(statistics),
                                    calibration=_setting(calibration or "logn"),
                                    logits=_logit_batch(logits), include_scores=include_scores)
        r = self._unary("Apply", self._calibration.Apply, request, idempotent=True)
        scores = (float32_array(r.scores.data, r.scores.rows, r.scores.width)
                  if include_scores and r.HasField("scores") else None)
        return ApplyResult(r.version, float32_array(r.logits.data, r.logits.rows, r.logits.width),
                           scores)

    def merge(self, versions: Sequence[int], *, description: str = "", job_id: str = "",
              activate: bool = False, partial: bool = False) -> VersionInfo:
        """Merges exact-mode versions (e.g. a sharded job's partial versions) into one."""
        request = _cal.MergeRequest(versions=[_version_number(v) for v in versions],
                                    description=description, job_id=job_id, activate=activate,
                                    partial=partial)
        r = self._unary("Merge", self._calibration.Merge, request, idempotent=False)
        return VersionInfo.from_proto(r.statistics_version)

    # ----- StatsStoreService -----

    def list_versions(self, *, job_id: Optional[str] = None, source: Optional[str] = None,
                      partial: Optional[bool] = None, page_size: int = 0) -> List[VersionInfo]:
        """Every version matching the filters (all pages), ascending. source: "logits",
        "images", "merge", "import" or "served_traffic" ("served", as the CLI names it, too);
        job_id "" keeps the versions without one."""
        request = _stats.ListVersionsRequest(page_size=page_size)
        if job_id is not None:
            request.job_id = job_id
        if source is not None:
            name = source.replace("-", "_").upper()
            name = "SERVED_TRAFFIC" if name == "SERVED" else name
            request.source = _store.VersionSource.Value("VERSION_SOURCE_" + name)
        if partial is not None:
            request.partial = partial
        out: List[VersionInfo] = []
        while True:
            page = self._unary("ListVersions", self._stats.ListVersions, request,
                               idempotent=True)
            out.extend(VersionInfo.from_proto(v) for v in page.statistics_versions)
            if not page.next_page_token:
                return out
            request.page_token = page.next_page_token

    def get_version(self, version: StatisticsRef = None, *, statistics: bool = False
                    ) -> VersionInfo:
        """One version (a number or an alias; None: "active"); statistics=True adds the
        per-column mean and variance (VersionInfo.mean, .variance)."""
        request = _stats.GetVersionRequest(
            selector=_selector(version),
            view=_stats.VERSION_VIEW_FULL if statistics else _stats.VERSION_VIEW_BASIC)
        r = self._unary("GetVersion", self._stats.GetVersion, request, idempotent=True)
        return VersionInfo.from_proto(r.statistics_version)

    def set_alias(self, alias: str, version: int, *, allow_served_traffic: bool = False) -> int:
        """Points `alias` at `version`; returns the version it pointed at before (0: new). A
        served-traffic version (a drift reference or snapshot) needs allow_served_traffic."""
        r = self._unary("SetAlias", self._stats.SetAlias, _stats.SetAliasRequest(
            alias=alias, version=_version_number(version),
            allow_served_traffic=allow_served_traffic), idempotent=False)
        return r.previous_version

    def activate(self, version: int, *, allow_served_traffic: bool = False) -> int:
        """Points "active" at `version`; returns the version it pointed at before (0: none). A
        served-traffic version (a drift reference or snapshot) needs allow_served_traffic."""
        r = self._unary("Activate", self._stats.Activate,
                        _stats.ActivateRequest(version=_version_number(version),
                                               allow_served_traffic=allow_served_traffic),
                        idempotent=False)
        return r.previous_version

    def rollback(self) -> int:
        """Points "active" back at its previous version; returns the version it points at now."""
        r = self._unary("Rollback", self._stats.Rollback, _stats.RollbackRequest(),
                        idempotent=False)
        return r.active_version

    def delete_version(self, version: int) -> None:
        """Deletes a version (FailedPrecondition while an alias points at it)."""
        self._unary("DeleteVersion", self._stats.DeleteVersion,
                    _stats.DeleteVersionRequest(version=_version_number(version)),
                    idempotent=False)

    def export_version(self, version: StatisticsRef = None, format: str = "json") -> bytes:
        """One version as an export file's bytes: "json" (proto3 JSON) or "binary"."""
        formats = {"json": _stats.EXPORT_FORMAT_JSON, "binary": _stats.EXPORT_FORMAT_BINARY}
        if format not in formats:
            raise ValueError(f"format must be 'json' or 'binary', got {format!r}")
        r = self._unary("ExportVersion", self._stats.ExportVersion, _stats.ExportVersionRequest(
            selector=_selector(version), export_format=formats[format]), idempotent=True)
        return r.content

    def import_version(self, content: Union[bytes, PathLike], *, description: str = "",
                       activate: bool = False) -> VersionInfo:
        """Stores an exported file (bytes, or a file path) as a new version."""
        if not isinstance(content, (bytes, bytearray)):
            with open(content, "rb") as f:
                content = f.read()
        r = self._unary("ImportVersion", self._stats.ImportVersion, _stats.ImportVersionRequest(
            content=bytes(content), description=description, activate=activate),
            idempotent=False)
        return VersionInfo.from_proto(r.statistics_version)

    def set_calibration_profile(self, version: StatisticsRef, calibration: CalibrationArg, *,
                                description: str = "") -> VersionInfo:
        """Sets the setting Detect uses with `version` when a request names none (calibration
        None clears it)."""
        request = _stats.SetCalibrationProfileRequest(selector=_selector(version))
        if calibration is not None:
            request.calibration_profile.default_setting.CopyFrom(_setting(calibration))
            request.calibration_profile.description = description
        # Retried like the C++ client: setting the same profile twice leaves the same state.
        r = self._unary("SetCalibrationProfile", self._stats.SetCalibrationProfile, request,
                        idempotent=True)
        return VersionInfo.from_proto(r.statistics_version)

    # ----- ModelService -----

    def list_models(self, model: str = "") -> List[ModelVersion]:
        """Every model version the server knows (only `model`'s when given), by model name then
        version."""
        r = self._unary("ListModels", self._models.ListModels,
                        _models.ListModelsRequest(model_name=model), idempotent=True)
        return [ModelVersion.from_proto(s) for s in r.model_versions]

    def load_model(self, model: str, version: int) -> ModelVersion:
        """Admin: loads `version` of `model` now and keeps it until unload_model; returns once it
        is warm (state "available") or failed (state "failed", with the reason). The timeout must
        cover loading and warming the model."""
        r = self._unary("LoadModel", self._models.LoadModel, _models.LoadModelRequest(
            model_name=model, model_version=_version_number(version)), idempotent=False)
        return ModelVersion.from_proto(r.model_version_status)

    def unload_model(self, model: str, version: int) -> ModelVersion:
        """Admin: stops routing requests to the version; it is freed once its in-flight requests
        finish."""
        r = self._unary("UnloadModel", self._models.UnloadModel, _models.UnloadModelRequest(
            model_name=model, model_version=_version_number(version)), idempotent=False)
        return ModelVersion.from_proto(r.model_version_status)

    def reload_models(self, model: str = "", version: int = 0) -> List[ModelVersion]:
        """Admin: rescans the repository now and clears the manual loads / unloads of `model`
        (every model when empty); with `version`, also loads that version's file afresh."""
        r = self._unary("ReloadModels", self._models.ReloadModels, _models.ReloadModelsRequest(
            model_name=model, model_version=version), idempotent=False)
        return [ModelVersion.from_proto(s) for s in r.model_versions]

    # ----- DriftService -----

    def get_drift(self, model: str = "", model_version: int = 0, *, top_k: int = 0
                  ) -> DriftReport:
        """The drift of a model version's live window against its reference (model "" : the
        served model; model_version 0: its newest available version); top_k classes by score
        (0: the server's default, 10)."""
        r = self._unary("GetDrift", self._drift.GetDrift, _drift.GetDriftRequest(
            model_name=model, model_version=model_version, top_k=top_k), idempotent=True)
        return DriftReport.from_proto(r)

    def capture_drift_reference(self, model: str = "", model_version: int = 0, *,
                                next_window: bool = False, description: str = ""
                                ) -> Optional[VersionInfo]:
        """Admin: makes the current live window the drift reference and returns the stored
        version (source "served_traffic"); next_window=True gathers the next full window
        instead and returns None."""
        r = self._unary("CaptureDriftReference", self._drift.CaptureDriftReference,
                        _drift.CaptureDriftReferenceRequest(
                            model_name=model, model_version=model_version,
                            from_next_window=next_window, description=description),
                        idempotent=False)
        return VersionInfo.from_proto(r.statistics_version) if r.HasField(
            "statistics_version") else None

    def snapshot_live_statistics(self, model: str = "", model_version: int = 0, *,
                                 description: str = "") -> VersionInfo:
        """Admin: stores the current live window as a statistics version (source
        "served_traffic"); the reference does not change."""
        r = self._unary("SnapshotLiveStatistics", self._drift.SnapshotLiveStatistics,
                        _drift.SnapshotLiveStatisticsRequest(
                            model_name=model, model_version=model_version,
                            description=description), idempotent=False)
        return VersionInfo.from_proto(r.statistics_version)
