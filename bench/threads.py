"""CPU threading environment for Paddle. Must not import paddle itself.

Why this exists:

* ``import paddle`` sets ``OMP_NUM_THREADS=1`` when it is unset, so eager Paddle
  ops (and MKL's GEMM) run on one core.
* Paddle bundles MKL 2019.0u5, which picks its code path from the CPU vendor:
  on AMD it falls back to a slow generic path unless ``MKL_DEBUG_CPU_TYPE=5``
  (force AVX2). On Intel that same variable *downgrades* AVX-512 to AVX2, so we
  set it only on AMD.

MKL and OpenMP read these variables lazily, at their first call, not when the
process starts: setting them in ``os.environ`` before ``import paddle`` is
enough (checked with ``MKL_VERBOSE=1``, which prints the ISA and thread count
MKL uses). No re-exec needed.
"""

from __future__ import annotations

import os
import sys
import warnings


def cpu_count() -> int:
    """Cores this process may run on (respects taskset / cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_vendor() -> str:
    """``"AuthenticAMD"``, ``"GenuineIntel"``, ... from /proc/cpuinfo; ``""`` if unknown (non-Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def configure_cpu_env() -> dict[str, str]:
    """Set ``OMP_NUM_THREADS`` (all usable cores) and, on AMD, ``MKL_DEBUG_CPU_TYPE=5``.

    Values already in the environment win (``setdefault``). Call it before the
    first ``import paddle``; afterwards ``OMP_NUM_THREADS`` is already ``"1"``.
    Returns the values now in effect.
    """
    if "paddle" in sys.modules:
        warnings.warn(
            "configure_cpu_env() called after paddle was imported; "
            "OMP_NUM_THREADS may already be forced to 1",
            stacklevel=2,
        )
    os.environ.setdefault("OMP_NUM_THREADS", str(cpu_count()))
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    return {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE") if k in os.environ}
