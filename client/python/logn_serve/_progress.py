"""Calibration progress: one rewritten line on a terminal's stderr, plain lines every few seconds
otherwise (logs), or a user callable. No dependencies."""
import sys
import time
from typing import Callable, Optional, Union

from .types import Progress

ProgressArg = Union[bool, Callable[[Progress], None], None]


def _seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_progress(p: Progress) -> str:
    unit = p.unit
    if p.total:
        text = f"{p.done}/{p.total} {unit} ({100.0 * p.done / p.total:.0f}%)"
    else:
        text = f"{p.done} {unit}"
    text += f", {p.batches} batches, {p.rate:.1f} {unit}/s"
    if p.finished:
        parts = []
        if p.rows is not None:
            parts.append(f"{p.rows} rows")
        if p.images:
            parts.append(f"{p.images} images")
        return f"{text}; committed {', '.join(parts)} in {_seconds(p.elapsed)}"
    eta = p.eta
    return text + (f", ETA {_seconds(eta)}" if eta is not None else "")


class Reporter:
    """`progress`: True (stderr), False/None (silent) or a callable taking a Progress."""

    def __init__(self, progress: ProgressArg, unit: str, total: Optional[int],
                 label: str = "calibrate", interval: float = 2.0) -> None:
        self.callback = progress if callable(progress) else None
        self.enabled = bool(progress)
        self.unit, self.total, self.label, self.interval = unit, total, label, interval
        self.start = time.monotonic()
        self.last_print = 0.0
        self.done = 0
        self.batches = 0
        self.width = 0

    def _stream(self):
        return sys.stderr

    def _emit(self, p: Progress, final: bool = False) -> None:
        if self.callback is not None:
            self.callback(p)
            return
        if not self.enabled:
            return
        stream = self._stream()
        line = f"{self.label}: {format_progress(p)}"
        tty = hasattr(stream, "isatty") and stream.isatty()
        now = time.monotonic()
        if tty and (final or now - self.last_print >= 0.1):  # at most 10 redraws a second
            pad = " " * max(0, self.width - len(line))
            self.width = len(line)
            stream.write(f"\r{line}{pad}" + ("\n" if final else ""))
        elif not tty and (final or now - self.last_print >= self.interval):
            stream.write(line + "\n")
        else:
            return
        self.last_print = now
        stream.flush()

    def update(self, done: int, batches: int) -> None:
        self.done, self.batches = done, batches
        self._emit(Progress(self.unit, done, self.total, batches, time.monotonic() - self.start))

    def finish(self, rows: int, images: int, batches: int) -> None:
        done = rows if self.unit == "rows" else images
        self._emit(Progress(self.unit, done, self.total if self.total else done, batches,
                            time.monotonic() - self.start, finished=True, rows=rows,
                            images=images), final=True)
