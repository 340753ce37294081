"""The textbook greedy k-center loop: the one reference the fast coreset paths are tested and profiled against.

Each step is one matrix-vector product over all points and an in-place
minimum: no pruning, no device, nothing clever. The tests hold
``methods.coreset.greedy_coreset`` (both its paths) to this loop's selection in
float64; ``bench.py profile`` times it in float32, the fast paths' arithmetic,
beside them.
"""

from __future__ import annotations

import numpy as np


def plain_greedy(points: np.ndarray, start: int, n_select: int, *, dtype=np.float64) -> np.ndarray:
    """Greedy k-center on ``points`` ``[N, d]`` from ``start``: ``[n_select]`` int64 indices.

    Each next point is the one farthest from all chosen so far, by the squared
    distance ``|x|^2 - 2 x.c + |c|^2`` computed in ``dtype``; a chosen point is
    never chosen again (duplicates included) and exact ties go to the lowest
    index (``np.argmax``). ``dtype=np.float32`` is, step for step, the plain
    float32 loop that ``methods.coreset_pruned`` skips most of the work of.
    """
    x = np.ascontiguousarray(points, dtype=dtype)
    sq = np.einsum("ij,ij->i", x, x)
    min_sq = np.full(len(x), np.inf, dtype=dtype)
    dist = np.empty(len(x), dtype=dtype)
    chosen = [start]
    for _ in range(n_select - 1):
        centre = chosen[-1]
        np.matmul(x, x[centre], out=dist)
        dist *= -2.0
        dist += sq
        dist += sq[centre]
        np.minimum(min_sq, dist, out=min_sq)
        min_sq[centre] = -np.inf
        chosen.append(int(np.argmax(min_sq)))
    return np.array(chosen, dtype=np.int64)
