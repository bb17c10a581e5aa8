"""Plain Python results of the client's calls (dataclasses), converted from the logn.v1 messages.

Every result keeps the message it came from in `.raw` (excluded from repr and equality) for the
fields this layer does not surface.
"""
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[float, float, float, float]


def _enum_suffix(enum_type: Any, value: int, prefix: str) -> str:
    """VERSION_SOURCE_LOGITS -> "logits"; "" for UNSPECIFIED or an unknown number."""
    try:
        name = enum_type.Name(value)
    except ValueError:
        return ""
    name = name[len(prefix):] if name.startswith(prefix) else name
    return "" if name == "UNSPECIFIED" else name.lower()


def _timestamp(message: Any, present: bool) -> Optional[datetime.datetime]:
    if not present:
        return None
    return message.ToDatetime(tzinfo=datetime.timezone.utc)


def float32_array(data: bytes, rows: int, width: int) -> np.ndarray:
    """A packed LogitBatch payload (little-endian float32) as a [rows, width] float32 array."""
    array = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=True)
    return array.reshape(int(rows), int(width))


@dataclass(frozen=True)
class ClassInfo:
    """One foreground class of the served model, in logit-column order."""
    id: int  # the dataset's category id, reported with every detection
    name: str
    frequency: str  # "rare", "common", "frequent" or "" (unknown)
    image_count: int = 0
    instance_count: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """GetModelInfo: the served model and what Detect uses by default."""
    name: str
    description: str
    classes: Tuple[ClassInfo, ...]
    background: str  # "first", "last" or "none"
    sha256: str
    device: str
    active_version: int  # 0: no active statistics yet
    has_classify_rois: bool
    has_proposals: bool
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def width(self) -> int:
        """Logits per row: C+1 with a background column, C without."""
        return self.num_classes + (0 if self.background == "none" else 1)

    def class_names(self) -> Dict[int, str]:
        """Category id -> class name."""
        return {c.id: c.name for c in self.classes}

    @classmethod
    def from_proto(cls, response: Any) -> "ModelInfo":
        from . import pb
        m = response.manifest
        return cls(
            name=m.name, description=m.description,
            classes=tuple(ClassInfo(c.id, c.name,
                                    _enum_suffix(pb.model_pb2.FrequencyGroup, c.frequency,
                                                 "FREQUENCY_GROUP_"),
                                    c.image_count, c.instance_count) for c in m.classes),
            background=_enum_suffix(pb.statistics_pb2.BackgroundPosition, m.background,
                                    "BACKGROUND_POSITION_"),
            sha256=response.model_sha256, device=response.device,
            active_version=response.active_version, has_classify_rois=m.has_classify_rois,
            has_proposals=m.has_proposals, raw=response)


@dataclass(frozen=True)
class Detection:
    """One detected object: box (x1, y1, x2, y2) in original-image pixels."""
    box: Box
    category_id: int
    class_name: str
    score: float
    # With detect(..., include_uncalibrated_score=True): the same box and class without calibration.
    uncalibrated_score: Optional[float] = None


@dataclass
class ImageDetections(Sequence[Detection]):
    """One image's detections under one calibration setting, by descending score. A sequence of
    Detection; `boxes`, `scores`, `labels` give the same as numpy arrays."""
    image_id: str
    detections: List[Detection]
    setting: str  # the setting's name, e.g. "logn" or "none"
    version: int  # the statistics version used; 0 when the setting needed none

    def __len__(self) -> int:
        return len(self.detections)

    def __getitem__(self, index):  # type: ignore[override]
        return self.detections[index]

    def __iter__(self) -> Iterator[Detection]:
        return iter(self.detections)

    @property
    def boxes(self) -> np.ndarray:
        """[K, 4] float32, x1 y1 x2 y2."""
        return np.array([d.box for d in self.detections], dtype=np.float32).reshape(-1, 4)

    @property
    def scores(self) -> np.ndarray:
        """[K] float32."""
        return np.array([d.score for d in self.detections], dtype=np.float32)

    @property
    def labels(self) -> np.ndarray:
        """[K] int64 category ids."""
        return np.array([d.category_id for d in self.detections], dtype=np.int64)

    @property
    def class_names(self) -> List[str]:
        return [d.class_name for d in self.detections]

    @property
    def uncalibrated_scores(self) -> np.ndarray:
        """[K] float32; NaN where the server sent none."""
        return np.array([np.nan if d.uncalibrated_score is None else d.uncalibrated_score
                         for d in self.detections], dtype=np.float32)


@dataclass(frozen=True)
class VersionInfo:
    """One statistics version with its provenance; `mean`/`variance` only in the full view
    (get_version(..., statistics=True))."""
    version: int
    created_at: Optional[datetime.datetime]
    source: str  # "logits", "images", "merge", "import" or "served_traffic"
    method: str  # "exact" or "ema"
    rows_seen: int
    images_seen: int
    description: str
    job_id: str
    partial: bool
    aliases: Tuple[str, ...]
    parent_versions: Tuple[int, ...]
    payload_sha256: str
    momentum: float
    model_name: str
    model_sha256: str
    mean: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    variance: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, v: Any) -> "VersionInfo":
        from . import pb
        has_stats = v.HasField("statistics")
        return cls(
            version=v.version, created_at=_timestamp(v.created_at, v.HasField("created_at")),
            source=_enum_suffix(pb.store_pb2.VersionSource, v.source, "VERSION_SOURCE_"),
            method=_enum_suffix(pb.statistics_pb2.AccumulationMethod, v.method,
                                "ACCUMULATION_METHOD_"),
            rows_seen=v.rows_seen, images_seen=v.images_seen, description=v.description,
            job_id=v.job_id, partial=v.partial, aliases=tuple(v.aliases),
            parent_versions=tuple(v.parent_versions), payload_sha256=v.payload_sha256,
            momentum=v.momentum, model_name=v.model.name, model_sha256=v.model.sha256,
            mean=np.array(v.statistics.mean, dtype=np.float64) if has_stats else None,
            variance=np.array(v.statistics.variance, dtype=np.float64) if has_stats else None,
            raw=v)


@dataclass(frozen=True)
class CalibrationResult:
    """What a Calibrate stream committed."""
    version: VersionInfo
    rows_seen: int
    images_seen: int
    batches_seen: int
    # EMA only: the weight the starting statistics still carry.
    ema_start_weight: float = 0.0
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, r: Any) -> "CalibrationResult":
        return cls(VersionInfo.from_proto(r.statistics_version), r.rows_seen, r.images_seen,
                   r.batches_seen, r.ema_start_weight, raw=r)


@dataclass(frozen=True)
class CalibrationJob:
    """A resumable job's last checkpoint (GetCalibrationJob)."""
    job_id: str
    batches_seen: int
    rows_seen: int
    images_seen: int
    source: str
    method: str
    checkpointed_at: Optional[datetime.datetime]

    @classmethod
    def from_proto(cls, j: Any) -> "CalibrationJob":
        from . import pb
        return cls(j.job_id, j.batches_seen, j.rows_seen, j.images_seen,
                   _enum_suffix(pb.store_pb2.VersionSource, j.source, "VERSION_SOURCE_"),
                   _enum_suffix(pb.statistics_pb2.AccumulationMethod, j.method,
                                "ACCUMULATION_METHOD_"),
                   _timestamp(j.checkpointed_at, j.HasField("checkpointed_at")))


@dataclass(frozen=True)
class ApplyResult:
    """Apply: calibrated logits [N, W] float32 and, when asked for, their softmax scores."""
    version: int  # 0 for NONE / LOGA
    logits: np.ndarray
    scores: Optional[np.ndarray]


@dataclass(frozen=True)
class Progress:
    """Handed to a `progress` callable after every batch of a calibration, and once at the end
    (`finished` True, rows and images then the server's counts)."""
    unit: str  # "images" or "rows": what `done` and `total` count
    done: int
    total: Optional[int]
    batches: int
    elapsed: float  # seconds since the stream opened
    finished: bool = False
    rows: Optional[int] = None
    images: Optional[int] = None

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> Optional[float]:
        if self.total is None or self.done <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)



def _duration_seconds(message: Any) -> float:
    return message.seconds + message.nanos * 1e-9


@dataclass(frozen=True)
class ModelVersion:
    """One model version the server knows (ListModels, LoadModel, UnloadModel, ReloadModels)."""
    model_name: str
    version: int
    state: str  # "loading", "available", "unloading" or "failed"
    reason: str  # why it failed, or what it waits for
    sha256: str
    is_default: bool  # requests naming no version get this one
    memory_bytes: int  # an estimate: parameters, buffers, warm-up working memory
    loaded_at: Optional[datetime.datetime]
    path: str
    active_version: int  # its active statistics version (0: none)
    missing_statistics: str  # "refuse" or "fallback" (unset: "refuse", the server's default)
    fallback_method: str  # "none", "loga" ("" when unset: NONE)
    pinned: bool  # loaded by LoadModel, outside the version policy
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, s: Any) -> "ModelVersion":
        from . import pb
        return cls(
            model_name=s.model_name, version=s.model_version,
            state=_enum_suffix(pb.model_service_pb2.ModelVersionState, s.state,
                               "MODEL_VERSION_STATE_"),
            reason=s.reason, sha256=s.model_sha256, is_default=s.is_default,
            memory_bytes=s.memory_bytes, loaded_at=_timestamp(s.loaded_at,
                                                              s.HasField("loaded_at")),
            path=s.path, active_version=s.active_version,
            missing_statistics=_enum_suffix(pb.model_service_pb2.MissingStatisticsAction,
                                            s.missing_statistics,
                                            "MISSING_STATISTICS_ACTION_") or "refuse",
            fallback_method=_enum_suffix(pb.common_pb2.CalibrationMethod, s.fallback_method,
                                         "CALIBRATION_METHOD_"),
            pinned=s.pinned, raw=s)


@dataclass(frozen=True)
class DriftScore:
    """Mean shift |mu_live - mu_ref| / sigma_ref, log variance ratio ln(var_live / var_ref) and
    score max(mean shift, |ratio|) of a class; a group's are means over its classes (of the
    ratio's absolute value)."""
    mean_shift: float
    log_variance_ratio: float
    score: float

    @classmethod
    def from_proto(cls, s: Any) -> "DriftScore":
        return cls(s.mean_shift, s.log_variance_ratio, s.score)


@dataclass(frozen=True)
class ClassDrift:
    category_id: int
    name: str
    frequency: str  # "rare", "common", "frequent" or ""
    drift: DriftScore


@dataclass(frozen=True)
class GroupDrift:
    frequency: str  # "rare", "common" or "frequent"
    classes: int
    drift: DriftScore


@dataclass(frozen=True)
class DriftWindow:
    """A window of statistics: rows (RoIs) and requests, over [start_at, end_at]."""
    rows_seen: int
    requests_seen: int
    start_at: Optional[datetime.datetime]
    end_at: Optional[datetime.datetime]  # None while the window is open

    @classmethod
    def from_proto(cls, w: Any) -> "DriftWindow":
        return cls(w.rows_seen, w.requests_seen, _timestamp(w.start_at, w.HasField("start_at")),
                   _timestamp(w.end_at, w.HasField("end_at")))


@dataclass(frozen=True)
class DriftReport:
    """GetDrift: a model version's live window against its drift reference."""
    model_name: str
    model_version: int
    state: str  # "disabled", "collecting_reference" or "monitoring"
    reference_version: int  # the statistics version holding the reference (0: none stored)
    reference_window: DriftWindow
    live_window: DriftWindow
    overall: DriftScore
    groups: Tuple[GroupDrift, ...]
    classes: Tuple[ClassDrift, ...]  # the top_k classes by score, highest first
    window_seconds: float  # the configured window: a duration (0: by rows) ...
    window_rows: int  # ... or a row count
    sample_rate: float  # the fraction of requests sampled
    classes_scored: int
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, d: Any) -> "DriftReport":
        from . import pb
        group = pb.model_pb2.FrequencyGroup
        return cls(
            model_name=d.model_name, model_version=d.model_version,
            state=_enum_suffix(pb.drift_service_pb2.DriftState, d.state, "DRIFT_STATE_"),
            reference_version=d.reference_version,
            reference_window=DriftWindow.from_proto(d.reference_window),
            live_window=DriftWindow.from_proto(d.live_window),
            overall=DriftScore.from_proto(d.overall),
            groups=tuple(GroupDrift(_enum_suffix(group, g.frequency, "FREQUENCY_GROUP_"),
                                    g.classes, DriftScore.from_proto(g.drift))
                         for g in d.groups),
            classes=tuple(ClassDrift(c.category_id, c.name,
                                     _enum_suffix(group, c.frequency, "FREQUENCY_GROUP_"),
                                     DriftScore.from_proto(c.drift)) for c in d.classes),
            window_seconds=_duration_seconds(d.window_duration), window_rows=d.window_rows,
            sample_rate=d.sample_rate, classes_scored=d.classes_scored, raw=d)
