"""How many BLAS threads the coreset's plain pass runs on: one or all usable cores, chosen by timing."""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Iterator

from threadpoolctl import ThreadpoolController


def usable_cores() -> int:
    """Cores this process may run on (respects taskset / cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadChoice:
    """How many BLAS threads the plain pass runs on (1 or all cores), chosen by timing.

    At 160,000 x 128 on two cores, a second thread halves a plain step when the
    other core is idle (1.7 ms against 3.2-3.7 ms) and slows it down when that
    core is busy (5.9-7.3 ms against 4.2-6.2 ms). So every ``keep`` plain passes
    each choice is timed ``trials`` times, interleaved, and the faster is kept.
    """

    def __init__(self, trials: int = 3, keep: int = 256):
        self.controller = ThreadpoolController()
        self.options = sorted({1, usable_cores()})
        self.trials, self.keep = trials, keep
        self.schedule: list[int] = []
        self.times: dict[int, float] = {}
        self.best, self.until_trial = 1, 0

    @contextmanager
    def limit(self) -> Iterator[None]:
        """Runs the block on the chosen thread count (or on the one being tried)."""
        if not self.schedule and self.until_trial <= 0 and len(self.options) > 1:
            self.schedule = self.options * self.trials
            self.times = {n: math.inf for n in self.options}
        threads = self.schedule[0] if self.schedule else self.best
        started = time.perf_counter()
        with self.controller.limit(limits=threads, user_api="blas"):
            yield
        if not self.schedule:
            self.until_trial -= 1
            return
        self.times[threads] = min(self.times[threads], time.perf_counter() - started)
        self.schedule.pop(0)
        if not self.schedule:
            self.best = min(self.times, key=self.times.get)
            self.until_trial = self.keep
