"""Exact nearest-neighbour search in chunks, shared by PatchCore and SPADE.

Squared Euclidean distances come from ``|q|^2 - 2 q.b + |b|^2`` (one matrix
product per chunk). Queries are taken a chunk at a time so that the distance
block never exceeds a memory budget, whatever the bank size.

That expansion is only good for choosing the neighbours: in float32 it cancels
most digits when distances are small next to the norms (patch features close
to the memory bank, the very case of a normal image), and how much depends on
the chunk's shape. So the ``k`` distances returned are computed again directly,
``|q - b|``, for the chosen rows only: a score does not change with the batch
it was computed in.

Brute force is the reference, the Paddle (device) path, and the choice for
``k > 1`` and small banks; PatchCore and SPADE search large banks on the CPU
through ``methods.bank_index`` instead (exact k = 1, clusters ruled out by
bounds, the same distances).

Two implementations with one signature: ``nearest_neighbors_numpy`` (the CPU
path) and ``nearest_neighbors_paddle`` (the GPU path; also runs on CPU tensors).
``nearest_neighbors`` picks one with ``methods.backend.use_paddle()``. Paddle is
imported only inside the Paddle function.
"""

from __future__ import annotations

import numpy as np

from methods.backend import use_paddle

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
    Runs ``nearest_neighbors_paddle`` when ``methods.backend.use_paddle()``, else
    ``nearest_neighbors_numpy``.
    """
    impl = nearest_neighbors_paddle if use_paddle() else nearest_neighbors_numpy
    return impl(queries, bank, k, budget_bytes=budget_bytes, bank_sq_norms=bank_sq_norms)


def nearest_neighbors_numpy(
    queries: np.ndarray,
    bank: np.ndarray,
    k: int = 1,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    bank_sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy ``nearest_neighbors``: one distance block buffer, reused by every chunk.

    Reusing the buffer (``matmul(out=...)``) spares the page faults of a fresh
    block per chunk. ``-2`` is folded into the query chunk: scaling by a power
    of two is exact, so the block is bit-for-bit ``-2 (q @ b.T)``.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    k = min(k, len(bank))
    if bank_sq_norms is None:
        bank_sq_norms = squared_norms(bank)
    bank_sq_norms = np.asarray(bank_sq_norms, dtype=np.float32)
    out_d = np.empty((len(queries), k), dtype=np.float32)
    out_i = np.empty((len(queries), k), dtype=np.int64)
    step = chunk_rows(len(bank), budget_bytes)
    buffer = np.empty((min(step, len(queries)), len(bank)), dtype=np.float32)
    for start in range(0, len(queries), step):
        q = queries[start : start + step]
        block = buffer[: len(q)]
        np.matmul(q * np.float32(-2.0), bank.T, out=block)  # [m, K]
        block += bank_sq_norms[None, :]
        block += squared_norms(q)[:, None]
        if k == 1:
            idx = block.argmin(axis=1)[:, None]
        else:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
            idx = np.take_along_axis(part, order, axis=1)
        dist, idx = exact_distances(q, bank, idx)
        out_d[start : start + step] = dist
        out_i[start : start + step] = idx
    return out_d, out_i


def exact_distances(queries: np.ndarray, bank: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|q - bank[idx]|`` computed directly, and ``idx`` re-sorted by it.

    queries: ``[m, D]``; bank: ``[K, D]``; idx: ``[m, k]``. Returns distances
    ``[m, k]`` float32, ascending, and the indices in that order.
    """
    diff = bank[idx] - queries[:, None, :]  # [m, k, D]
    dist = np.sqrt(np.einsum("mkd,mkd->mk", diff, diff))
    if idx.shape[1] > 1:
        order = np.argsort(dist, axis=1, kind="stable")
        dist, idx = np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)
    return dist, idx


def nearest_neighbors_paddle(
    queries,
    bank,
    k: int = 1,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    bank_sq_norms=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paddle ``nearest_neighbors``: same arguments and results, computed on Paddle's device.

    ``queries``, ``bank`` and ``bank_sq_norms`` may be NumPy arrays or Paddle
    tensors (already on the device: a bank reused across calls need not be copied
    again). The bank is moved to the device once; queries a chunk at a time.
    Returns NumPy arrays like the NumPy path.
    """
    import paddle

    def as_tensor(x):
        if isinstance(x, paddle.Tensor):
            return x if x.dtype == paddle.float32 else x.astype("float32")
        return paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32))

    n_bank = int(bank.shape[0])
    n_queries = int(queries.shape[0])
    k = min(k, n_bank)
    with paddle.no_grad():
        bank_t = as_tensor(bank)
        if bank_sq_norms is None:
            bank_sq_norms = (bank_t * bank_t).sum(axis=1)  # x*x: far faster than x**2
        bank_sq = as_tensor(bank_sq_norms).reshape([1, n_bank])
        out_d = np.empty((n_queries, k), dtype=np.float32)
        out_i = np.empty((n_queries, k), dtype=np.int64)
        # Paddle's out-of-place adds keep about two blocks alive at once.
        step = chunk_rows(n_bank, budget_bytes // 2)
        for start in range(0, n_queries, step):
            q = as_tensor(queries[start : start + step])
            block = paddle.matmul(q * -2.0, bank_t, transpose_y=True)  # [m, K]
            block = block + bank_sq
            block = block + (q * q).sum(axis=1, keepdim=True)
            if k == 1:
                idx = paddle.argmin(block, axis=1, keepdim=True)
            else:
                _, idx = paddle.topk(block, k, axis=1, largest=False, sorted=True)
            del block
            # As in the NumPy path: the chosen rows' distances again, directly.
            chosen = paddle.gather(bank_t, idx.flatten()).reshape([q.shape[0], k, -1])
            diff = chosen - q.unsqueeze(1)
            dist = paddle.sqrt((diff * diff).sum(axis=2))
            if k > 1:
                order = paddle.argsort(dist, axis=1, stable=True)
                dist = paddle.take_along_axis(dist, order, axis=1)
                idx = paddle.take_along_axis(idx, order, axis=1)
            out_d[start : start + step] = dist.numpy()
            out_i[start : start + step] = idx.numpy().astype(np.int64, copy=False)
    return out_d, out_i
