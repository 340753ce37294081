"""Exact nearest-neighbour search in chunks, shared by PatchCore and SPADE.

Squared Euclidean distances come from ``|q|^2 - 2 q.b + |b|^2`` (one matrix
product per chunk). Queries are taken a chunk at a time so that the distance
block never exceeds a memory budget, whatever the bank size.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BUDGET_BYTES = 256 * 2**20


def chunk_rows(n_columns: int, budget_bytes: int = DEFAULT_BUDGET_BYTES, itemsize: int = 4) -> int:
    """How many query rows fit a ``[rows, n_columns]`` distance block in the budget (at least 1)."""
    return max(1, int(budget_bytes // max(1, n_columns * itemsize)))


def squared_norms(x: np.ndarray) -> np.ndarray:
    """``[N, D]`` -> ``[N]`` squared row norms (float32 input stays float32)."""
    return np.einsum("ij,ij->i", x, x)


def nearest_neighbors(
    queries: np.ndarray,
    bank: np.ndarray,
    k: int = 1,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    bank_sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest bank rows of each query row.

    queries: ``[M, D]``; bank: ``[K, D]``; returns distances ``[M, k]`` (Euclidean,
    ascending) and indices ``[M, k]`` (int64). ``k`` is capped at ``K``.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    k = min(k, len(bank))
    if bank_sq_norms is None:
        bank_sq_norms = squared_norms(bank)
    out_d = np.empty((len(queries), k), dtype=np.float32)
    out_i = np.empty((len(queries), k), dtype=np.int64)
    step = chunk_rows(len(bank), budget_bytes)
    for start in range(0, len(queries), step):
        q = queries[start : start + step]
        block = q @ bank.T  # [m, K]
        block *= -2.0
        block += bank_sq_norms[None, :]
        block += squared_norms(q)[:, None]
        if k == 1:
            idx = block.argmin(axis=1)[:, None]
        else:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
            idx = np.take_along_axis(part, order, axis=1)
        dist = np.take_along_axis(block, idx, axis=1)
        # Cancellation in the expansion can leave tiny negatives for coincident points.
        np.maximum(dist, 0.0, out=dist)
        out_d[start : start + step] = np.sqrt(dist)
        out_i[start : start + step] = idx
    return out_d, out_i
