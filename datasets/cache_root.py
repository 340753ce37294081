"""The folder every patchbench cache lives under: ``$PATCHBENCH_CACHE``, else ``~/.cache/patchbench``.

The one place that reads the variable. Under it: ``synthetic-v<V>-seed<S>``
(the synthetic sets, ``datasets.synthetic``), ``features`` (the feature
cache, ``bench.features``) and ``models`` (the backbones' saved inference
models, ``bench.backbone``). ``bench.py cache`` lists and clears the last two. It lives in ``datasets``, the lowest package
that needs it, so the harness can import it and ``datasets`` stays free of
``bench``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PATCHBENCH_CACHE"


def configured_cache_root() -> Path | None:
    """``$PATCHBENCH_CACHE`` (``~`` expanded), or None when it is unset or empty."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """``$PATCHBENCH_CACHE``, or ``~/.cache/patchbench`` when it is unset or empty."""
    return configured_cache_root() or Path.home() / ".cache" / "patchbench"
