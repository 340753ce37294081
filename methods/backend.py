"""Which implementation the numeric kernels use: NumPy on the CPU or Paddle on the GPU.

The kernels (nearest neighbours, Mahalanobis distances) exist twice, with the
same signatures and results: in NumPy and in Paddle. NumPy wins on a CPU (on two
cores, 784 x 16000 x 384 distances and a top-9 take 0.14 s against Paddle's
0.38 s); Paddle wins on a GPU. So by default Paddle is used exactly when this
Paddle was built with CUDA and sees a GPU.

The choice, first match wins:

1. ``set_backend("numpy" | "paddle" | "auto")`` or ``with backend("paddle"):``
   in code (tests use this to run the Paddle path on CPU tensors);
2. the environment variable ``PATCHBENCH_KERNELS`` (``numpy``, ``paddle`` or ``auto``);
3. ``auto``: Paddle if it has a usable GPU, else NumPy.

Importing this module never imports paddle; ``use_paddle()`` imports it only
when the answer depends on it (``auto`` with paddle installed, or ``paddle``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from contextlib import contextmanager
from typing import Iterator

from methods.base import MethodError
from methods.paddle_build import has_no_gpu


ENV_VAR = "PATCHBENCH_KERNELS"
CHOICES = ("auto", "numpy", "paddle")

_forced: str | None = None


def _check(name: str, source: str) -> str:
    value = name.strip().lower()
    if value not in CHOICES:
        raise MethodError(
            f"{source} is {name!r}; choose one of {', '.join(CHOICES)}"
        )
    return value


def set_backend(name: str | None) -> None:
    """Force the kernels' backend (``"numpy"``, ``"paddle"``, ``"auto"``); ``None`` clears it."""
    global _forced
    _forced = None if name is None else _check(name, "the kernel backend")


@contextmanager
def backend(name: str | None) -> Iterator[None]:
    """``with backend("paddle"): ...`` runs the block with that backend, then restores the previous one."""
    global _forced
    previous = _forced
    set_backend(name)
    try:
        yield
    finally:
        _forced = previous


def requested_backend() -> str:
    """``"auto"``, ``"numpy"`` or ``"paddle"``: the explicit choice, else the environment, else auto."""
    if _forced is not None:
        return _forced
    env = os.environ.get(ENV_VAR, "").strip()
    return _check(env, f"${ENV_VAR}") if env else "auto"


@functools.lru_cache(maxsize=1)
def paddle_has_gpu() -> bool:
    """True when paddle is installed, built with CUDA, and at least one GPU is visible."""
    if importlib.util.find_spec("paddle") is None or has_no_gpu():
        return False  # a CPU build says so in its build flags: no import (about a second) needed
    import paddle

    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


def use_paddle() -> bool:
    """Whether the numeric kernels should run in Paddle (see the module docstring)."""
    choice = requested_backend()
    if choice == "auto":
        return paddle_has_gpu()
    if choice == "paddle" and importlib.util.find_spec("paddle") is None:
        raise MethodError(
            f"the Paddle kernels were requested (${ENV_VAR} or set_backend) but paddle is not "
            "installed; install paddlepaddle or choose the numpy backend"
        )
    return choice == "paddle"
