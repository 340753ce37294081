"""Greedy k-center coreset (Sener & Savarese 2018), as PatchCore selects its memory bank.

The features are first mapped to ``projection_dim`` dimensions with a seeded
Gaussian random projection (Johnson-Lindenstrauss), which keeps distances
nearly intact and makes each greedy step cheap. Selection then starts at a
seeded random point and repeatedly adds the point farthest from everything
chosen so far, keeping for every point its distance to the nearest centre.
"""

from __future__ import annotations

import numpy as np

from methods.nearest import squared_norms


def random_projection(features: np.ndarray, projection_dim: int | None, seed: int) -> np.ndarray:
    """``[N, D]`` -> ``[N, projection_dim]`` float32; unchanged when ``projection_dim`` >= D or None."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    if projection_dim is None or projection_dim >= features.shape[1]:
        return features
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((features.shape[1], projection_dim), dtype=np.float32)
    matrix /= np.sqrt(np.float32(projection_dim))
    return features @ matrix


def greedy_coreset(
    features: np.ndarray,
    n_select: int,
    *,
    projection_dim: int | None = 128,
    seed: int = 0,
) -> np.ndarray:
    """Indices of a greedy k-center coreset of ``features``.

    features: ``[N, D]``; returns ``[n_select]`` int64 indices in selection
    order, the first being the seeded random start.
    """
    n = len(features)
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be between 1 and {n}, got {n_select}")
    rng = np.random.default_rng(seed)
    start = int(rng.integers(n))
    points = random_projection(features, projection_dim, seed)
    sq_norms = squared_norms(points)

    selected = np.empty(n_select, dtype=np.int64)
    selected[0] = start
    # min_sq[i]: squared distance from point i to its nearest centre so far.
    min_sq = np.full(n, np.inf, dtype=np.float32)
    dist = np.empty(n, dtype=np.float32)
    centre = start
    for step in range(1, n_select):
        # dist = |x|^2 - 2 x.c + |c|^2, computed in place in one buffer.
        np.matmul(points, points[centre], out=dist)
        dist *= -2.0
        dist += sq_norms
        dist += sq_norms[centre]
        np.minimum(min_sq, dist, out=min_sq)
        # A chosen centre is never chosen again, even among duplicate points.
        min_sq[centre] = -np.inf
        centre = int(np.argmax(min_sq))
        selected[step] = centre
    return selected
