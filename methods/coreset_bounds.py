"""Float32 rounding margins, and the ball test that the pruned coreset search uses to skip points.

Every bound the pruned search tests is lowered by these margins, so a point is
skipped only when the plain float32 step would have left its minimum alone too.
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = 2.0**-24  # float32


def dot_error(dim: int) -> float:
    """gamma_dim: a float32 dot product of ``dim`` terms is off by at most this times sum |a_i b_i|
    (Higham, whatever the order of the additions)."""
    return dim * UNIT_ROUNDOFF / (1 - dim * UNIT_ROUNDOFF)


def rounding_slack(dim: int) -> float:
    """Bound on the float32 error of ``|x|^2 - 2 x.c + |c|^2`` in units of ``(|x| + |c|)^2``, doubled.

    Two dot products of ``dim`` terms and two additions, each bounded by the
    size of its terms. Doubled: the bound must never be the one thing that is tight.
    """
    return 2 * (2 * dot_error(dim) + 4 * UNIT_ROUNDOFF)


# A stored float32 coordinate is within u of its float64 value, so a prefix distance
# read from storage is within u (|p| + |p_c|) of the exact one; 1.01: rounding of that.
STORAGE_ERROR = 1.01 * UNIT_ROUNDOFF


def cannot_move(gap: np.ndarray, ball_max: np.ndarray, ball_norm: np.ndarray, c_norm: float, slack: float):
    """Which balls the new centre leaves untouched (all ``[K]`` float64 but ``c_norm``, ``slack``).

    gap: a lower bound on ``|x - c|`` for every x of the ball; ball_max: the
    largest running minimum (squared) in it; ball_norm: its largest ``|x|``.
    Untouched when ``gap^2 >= ball_max + slack (ball_norm + |c|)^2``: every
    point's float32 distance then still exceeds its minimum.
    """
    gap = gap * (1 - 1e-9)  # float64 rounding of the gap itself
    return (gap > 0) & (gap * gap >= ball_max + slack * (ball_norm + c_norm) ** 2)

