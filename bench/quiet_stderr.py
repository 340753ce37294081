"""Drop known noise lines from stderr during a block; everything else written there passes through.

Paddle prints lines that tell a patchbench user nothing: at import a Python
``print`` ("OMP_NUM_THREADS set to 2, not 1 ... PLEASE USE OMP_NUM_THREADS
WISELY", although the threads are set on purpose, see ``bench.threads``), and
while tracing a model a C++ glog line straight to file descriptor 2 ("Paddle
static graph(PIR) not support input out tensor"). Both the Python stream and
the descriptor are captured, so any other line, a real error among them, is
written out again once the block ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def drop_lines(*noise: str) -> Iterator[None]:
    """Inside the block, lines of stderr containing any of ``noise`` are dropped; the rest are kept."""
    python_side = io.StringIO()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as fd_side:
        os.dup2(fd_side.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                yield
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            fd_side.seek(0)
            written = fd_side.read().decode(errors="replace") + python_side.getvalue()
            kept = [line for line in written.splitlines(keepends=True) if not any(n in line for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
