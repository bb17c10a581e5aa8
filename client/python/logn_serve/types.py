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
    source: str  # "logits", "images", "merge" or "import"
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

