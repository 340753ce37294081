"""Paddle, imported on first use: quietly, after ``configure_cpu_env``, and timed.

Importing Paddle costs about a second, so the harness imports it only when it
builds, loads or runs a model: a run whose features all come from the cache
never does. How long the import took is start-up, whichever phase it falls in
(``bench.runner`` reports it so).
"""

from __future__ import annotations

import sys
import time
import warnings

from bench.quiet_stderr import drop_lines
from bench.threads import configure_cpu_env

_import_seconds = 0.0


def paddle():
    """The ``paddle`` module, imported (quietly, after ``configure_cpu_env``) on first use."""
    global _import_seconds
    if "paddle.inference" not in sys.modules:
        if "paddle" not in sys.modules:
            configure_cpu_env()
        started = time.perf_counter()
        # Paddle warns at import that ccache (for compiling C++ extensions, which we never do) is
        # missing, and that OMP_NUM_THREADS is not 1, which configure_cpu_env chose on purpose.
        with warnings.catch_warnings(), drop_lines("OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY"):
            warnings.filterwarnings("ignore", message="No ccache found")
            import paddle.inference  # noqa: F401
        _import_seconds = time.perf_counter() - started
    return sys.modules["paddle"]


def import_seconds() -> float:
    """How long the import of Paddle here took (0.0 if it never imported it): start-up, not work."""
    return _import_seconds
