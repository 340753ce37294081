"""The run's ``time:`` line: whole-process wall time, the phases it measured, and the rest.

Written by the runner at the end of a run (terminal and ``run.log``), read back
by ``bench.startup`` to compare cold and warm starts. The wall time counts from
the moment the kernel started the process, so interpreter start-up and every
import are in it; what no phase accounts for is start-up and overhead.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

# The fallback start when /proc cannot tell (imported by bench.runner: later than the process start).
_IMPORTED_AT = time.perf_counter()

PHASES = ("features", "fit", "predict", "statistics", "scoring", "report")
_LINE = re.compile(r"time: (?P<wall>[\d.]+) s in all = (?P<sum>[\d.]+) s in measured phases "
                   r"\((?P<phases>[^)]*)\) \+ (?P<rest>-?[\d.]+) s start-up and overhead")
_PHASE = re.compile(r"(?P<name>[a-z]+) (?P<seconds>[\d.]+)")


@dataclass(frozen=True)
class Timing:
    wall_s: float
    phases: dict[str, float]

    @property
    def phases_s(self) -> float:
        return sum(self.phases.values())


def process_seconds() -> float:
    """Seconds since this process was started (Linux: from ``/proc/self/stat``, 10 ms resolution).

    Elsewhere, since ``bench.run_timing`` was imported: the interpreter's own start-up is then left out.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after "comm"
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED_AT


def format_timing(wall_s: float, phases: dict[str, float]) -> str:
    measured = sum(phases.values())
    parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
    return (f"time: {wall_s:.2f} s in all = {measured:.2f} s in measured phases ({parts}) "
            f"+ {wall_s - measured:.2f} s start-up and overhead")


def parse_timing(text: str) -> Timing | None:
    """The last ``time:`` line in ``text`` (a run.log, a terminal transcript), or None."""
    found = list(_LINE.finditer(text))
    if not found:
        return None
    match = found[-1]
    phases = {m["name"]: float(m["seconds"]) for m in _PHASE.finditer(match["phases"])}
    return Timing(float(match["wall"]), phases)
