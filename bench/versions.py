"""Versions of the software behind a run, from installed package metadata (never imports Paddle)."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version(*names: str) -> str | None:
    """The version of the first installed distribution among ``names``."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def patchbench_version() -> str:
    installed = package_version("patchbench")
    if installed:
        return installed
    # Run from a checkout without `pip install -e .`: the source tree still knows its version.
    # (A regex, not tomllib: that needs Python 3.11 and the project supports 3.10.)
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', PYPROJECT.read_text(), flags=re.M)
    except OSError:
        match = None
    return f"{match.group(1)} (source checkout)" if match else "unknown"


def versions() -> dict[str, str]:
    """``{"python": ..., "numpy": ..., "paddle": ..., "patchbench": ...}`` of this interpreter."""
    return {
        "python": platform.python_version(),
        "numpy": package_version("numpy") or "not installed",
        # The GPU build is a different distribution with the same import name.
        "paddle": package_version("paddlepaddle", "paddlepaddle-gpu") or "not installed",
        "patchbench": patchbench_version(),
    }
