"""The exceptions a user can cause, and the one tuple the command line catches them by.

``PatchbenchError`` is the harness's own. The packages below the harness raise
their own (``datasets.DatasetError``, ``metrics.MetricError``,
``methods.base.MethodError``, ``reports.errors.ReportError``), since they import
nothing from ``bench``; ``USER_ERRORS`` names them all, so the command line
prints any of them as one line without a traceback.
"""


class PatchbenchError(Exception):
    """A problem the user can fix: bad folder, bad file, unknown name, missing weights.

    The message names the file or the name and says what to do. The CLI prints it
    without a traceback and exits non-zero.
    """


# Below the class on purpose: while lower packages still import it, this module may be half-loaded.
from datasets.errors import DatasetError  # noqa: E402
from methods.base import MethodError  # noqa: E402
from metrics import MetricError  # noqa: E402
from reports.errors import ReportError  # noqa: E402

USER_ERRORS = (PatchbenchError, DatasetError, MetricError, MethodError, ReportError)
