"""What the installed Paddle was built for, without importing it (the import costs about a second).

Paddle's wheel writes its build flags into ``paddle/version/__init__.py``
(``cuda_version = 'False'`` in a CPU build). Reading that file is enough to know
that no GPU can be used, which is the answer on most machines; only a CUDA
build needs the real import to count devices.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path


@functools.lru_cache(maxsize=1)
def compiled_with_cuda() -> bool | None:
    """True or False from the build flags; None when Paddle is missing or the file says nothing clear."""
    if "paddle" in sys.modules:
        return bool(sys.modules["paddle"].device.is_compiled_with_cuda())
    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version" / "__init__.py").read_text()
    except OSError:
        return None
    found = re.search(r"^cuda_version\s*=\s*'([^']*)'", text, re.MULTILINE)
    if found is None:
        return None
    return found.group(1) not in ("False", "", "None")


def has_no_gpu() -> bool:
    """True when this Paddle certainly cannot use a GPU (a CPU build), known without importing it."""
    return compiled_with_cuda() is False
