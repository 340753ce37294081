"""Timing and peak-memory probes the harness wraps around a method's fit and predict.

Peak memory is the process's resident set high-water mark during the call. On
Linux the mark is reset before the call (``/proc/self/clear_refs``), so the
figure belongs to that call alone; elsewhere it is the process's lifetime peak.
When Paddle runs on a GPU, the peak of GPU memory Paddle allocated during the
call is measured too (0 on the CPU).
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
    peak_gpu_bytes: int = 0


def _gpu():
    """``paddle.device.cuda`` when Paddle is loaded and has a GPU, else None (never imports Paddle)."""
    paddle = sys.modules.get("paddle")
    if paddle is None or not paddle.device.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
        return None
    return paddle.device.cuda


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
    gpu = _gpu()
    if gpu is not None:
        gpu.synchronize()
        gpu.reset_max_memory_allocated()
    _reset_peak()
    start = time.perf_counter()
    result = fn()
    if gpu is not None:
        gpu.synchronize()  # kernels are asynchronous: wait for them before stopping the clock
    seconds = time.perf_counter() - start
    peak_gpu = int(gpu.max_memory_allocated()) if gpu is not None else 0
    return result, Probe(seconds=seconds, peak_rss_bytes=peak_rss_bytes(), peak_gpu_bytes=peak_gpu)
