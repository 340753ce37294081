"""What a run tells the user: progress bars and messages on the terminal, everything in ``run.log``.

Messages go through the ``patchbench`` logger: the terminal gets warnings and
errors always and the step-by-step lines unless ``--quiet``; the run folder's
``run.log`` gets everything, tracebacks included, and also what was said
before the run folder existed (the weights fallback, building the synthetic
set), kept until then. Progress bars (tqdm) show only on a terminal and never
with ``--quiet``.
"""

from __future__ import annotations

import collections
import logging
import sys
from pathlib import Path

from tqdm import tqdm

import methods.coreset

logger = logging.getLogger("patchbench")
_quiet = False


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes around an active progress bar instead of through it, to the current ``sys.stderr``.

    Not ``tqdm.contrib.logging.logging_redirect_tqdm``: that context manager
    swaps in a handler without the replaced one's level (so ``--quiet`` would
    print INFO, and DEBUG would reach the terminal), binds the stream once on
    entry (this handler looks ``sys.stderr`` up at each record, so it follows
    a replaced one, such as pytest's capture), and on exit puts back the
    handler list it found, dropping a run log attached in between. The
    handler class it uses is private.
    """

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _EarlyRecords(logging.Handler):
    """Keeps the latest records said while no run log is attached, for the next run log."""

    def __init__(self, capacity: int = 1000):
        super().__init__(logging.DEBUG)
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=capacity)

    def emit(self, record):
        self.records.append(record)


_early = _EarlyRecords()


def setup(quiet: bool = False) -> None:
    """Terminal output for this process: INFO and up, or WARNING and up when ``quiet``."""
    global _quiet
    _quiet = quiet
    methods.coreset.show_progress = not quiet  # the one bar drawn below the harness
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in [h for h in logger.handlers if isinstance(h, _TqdmSafeHandler)]:
        logger.removeHandler(handler)
    handler = _TqdmSafeHandler()
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.addHandler(_early)  # adding a handler twice is a no-op


def attach_run_log(run_dir: Path) -> logging.Handler:
    """Append what was said since the last run log, and everything from now on, to ``run_dir/run.log``.

    Detach with ``detach_run_log``.
    """
    handler = logging.FileHandler(Path(run_dir) / "run.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for record in _early.records:
        handler.handle(record)
    logger.removeHandler(_early)
    logger.addHandler(handler)
    return handler


def detach_run_log(handler: logging.Handler) -> None:
    """Stop writing to a run log; what is said next waits for the next one."""
    logger.removeHandler(handler)
    handler.close()
    _early.records.clear()
    logger.addHandler(_early)


def progress(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar on stderr that stays silent off a terminal and with ``--quiet``."""
    return tqdm(iterable, disable=True if _quiet else None, leave=False, dynamic_ncols=True, **kwargs)


setup()
