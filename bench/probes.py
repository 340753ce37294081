"""Timing and peak-memory probes the harness wraps around a method's fit and predict.

Peak memory is the process's resident set high-water mark during the call. On
Linux the mark is reset before the call (``/proc/self/clear_refs``), so the
figure belongs to that call alone; elsewhere it is the process's lifetime peak.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Probe:
    seconds: float
    peak_rss_bytes: int


def _reset_peak() -> None:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """The resident set high-water mark since the last reset (or since start)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(fn: Callable[[], T]) -> tuple[T, Probe]:
    """Call ``fn()`` and return its result with the wall time and peak RSS it took."""
    _reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, Probe(seconds=seconds, peak_rss_bytes=peak_rss_bytes())
