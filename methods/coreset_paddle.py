"""The greedy k-center loop on Paddle's device (the GPU): the plain loop, all state in device tensors."""

from __future__ import annotations

from typing import Callable

import numpy as np


def greedy_paddle(
    points,
    start: int,
    n_select: int,
    *,
    progress: Callable[[int, int], object] | None = None,
    sync_every: int = 256,
) -> np.ndarray:
    """Greedy k-center on ``points`` from ``start`` (``methods.coreset_pruned.greedy_numpy``'s
    selection) on Paddle's device: the plain loop, all state in device tensors.

    points: ``[N, d]`` NumPy array or Paddle tensor. Each step is one
    matrix-vector product and in-place updates of ``[N, 1]`` columns; the
    chosen index stays on the device (no host round trip per step), so
    ``progress(done, n_select)`` is called every ``sync_every`` steps and at
    the end. Ties go to the lowest index, as ``np.argmax``. Returns
    ``[n_select]`` int64.
    """
    import paddle

    with paddle.no_grad():
        if isinstance(points, paddle.Tensor):
            x = points.astype("float32")
        else:
            x = paddle.to_tensor(np.ascontiguousarray(points, dtype=np.float32))
        n = int(x.shape[0])
        sq = (x * x).sum(axis=1, keepdim=True)  # [N, 1]
        min_sq = paddle.full([n, 1], float("inf"), dtype="float32")
        dist = paddle.empty([n, 1], dtype="float32")
        minus_inf = paddle.full([1, 1], float("-inf"), dtype="float32")
        index = paddle.arange(n, dtype="int64").reshape([n, 1])
        past_end = paddle.full([n, 1], n, dtype="int64")
        selected = paddle.empty([n_select], dtype="int64")
        centre = paddle.full([1], start, dtype="int64")
        selected[0] = centre
        for step in range(1, n_select):
            c = paddle.index_select(x, centre)  # [1, d]
            paddle.matmul(x, c * -2.0, transpose_y=True, out=dist)
            dist.add_(sq)
            dist.add_(paddle.index_select(sq, centre))
            paddle.minimum(min_sq, dist, out=min_sq)
            min_sq.scatter_(centre, minus_inf)
            # Lowest index among equal maxima, as np.argmax, whatever the device's argmax does.
            centre = paddle.where(min_sq == min_sq.max(), index, past_end).min().reshape([1])
            selected[step] = centre
            if progress is not None and step % sync_every == 0:
                progress(step + 1, n_select)
        result = selected.numpy().astype(np.int64)
    if progress is not None:
        progress(n_select, n_select)
    return result
