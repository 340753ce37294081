"""The greedy k-center coreset (Sener & Savarese 2018) that PatchCore selects its memory bank with: the public API.

The features are first mapped to ``projection_dim`` dimensions with a seeded
Gaussian random projection (Johnson-Lindenstrauss), which keeps distances
nearly intact and makes each greedy step cheap. Selection then starts at a
seeded random point and repeatedly adds the point farthest from everything
chosen so far, keeping for every point its squared distance to the nearest
centre, ``|x|^2 - 2 x.c + |c|^2`` in float32 with the squared norms cached.

Two implementations of that loop, chosen with ``methods.backend.use_paddle()``:

* ``methods.coreset_pruned.greedy_numpy`` (the CPU): the plain loop's
  selection, up to floating-point ties, with the points that the triangle
  inequality proves keep their minimum never read, and, where the bounds rule
  out little (textures), the lazy loop of ``methods.coreset_lazy``, which
  brings up to date only the points that might be the farthest.
* ``methods.coreset_paddle.greedy_paddle`` (the GPU): the plain loop on device
  tensors, minimum updated in place, no host round trip per step.

Each call logs one INFO line on ``patchbench.coreset``: its time and what share
of the point-steps each test ruled out (``methods.coreset_stats``).

Both break exact ties as ``np.argmax`` does on the original order: lowest
index. ``methods.coreset_reference.plain_greedy`` is the textbook loop both are
tested and profiled against.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
import sys
import time
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from methods.backend import use_paddle
from methods.coreset_paddle import greedy_paddle
from methods.coreset_pruned import greedy_numpy
from methods.coreset_stats import CoresetStats

Progress = Callable[[int, int], None]
# The default bar shows on a terminal; the harness turns it off for --quiet (bench.log.setup).
show_progress = True


def is_tensor(x) -> bool:
    """Whether ``x`` is a Paddle tensor; never imports Paddle (a tensor means it is loaded)."""
    paddle = sys.modules.get("paddle")
    return paddle is not None and isinstance(x, paddle.Tensor)


def projection_matrix(dim: int, projection_dim: int, seed: int) -> np.ndarray:
    """``[dim, projection_dim]`` float32 seeded Gaussian matrix, scaled by ``1 / sqrt(projection_dim)``."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((dim, projection_dim), dtype=np.float32)
    matrix /= np.sqrt(np.float32(projection_dim))
    return matrix


def random_projection(features, projection_dim: int | None, seed: int):
    """``[N, D]`` -> ``[N, projection_dim]`` float32; unchanged when ``projection_dim`` >= D or None.

    A Paddle tensor is projected on its device by the same seeded matrix and
    stays there (the Paddle greedy loop reads it without a host round trip).
    """
    if is_tensor(features):
        import paddle

        if features.dtype != paddle.float32:
            features = features.astype("float32")
        if projection_dim is None or projection_dim >= features.shape[1]:
            return features
        return features @ paddle.to_tensor(projection_matrix(features.shape[1], projection_dim, seed))
    features = np.ascontiguousarray(features, dtype=np.float32)
    if projection_dim is None or projection_dim >= features.shape[1]:
        return features
    return features @ projection_matrix(features.shape[1], projection_dim, seed)


def greedy_coreset(
    features,
    n_select: int,
    *,
    projection_dim: int | None = 128,
    seed: int = 0,
    progress: Progress | None = None,
    stats: dict | None = None,
) -> np.ndarray:
    """Indices of a greedy k-center coreset of ``features``.

    features: ``[N, D]``, a NumPy array or a Paddle tensor (projected where it
    lives; the NumPy loop copies a tensor's projection to the host, the Paddle
    loop a NumPy array's to the device); returns ``[n_select]`` int64 indices in selection
    order, the first being the seeded random start. ``progress(done, n_select)``
    is called every few dozen steps and at the end; without one, a progress bar
    shows on a terminal (stderr) only.

    ``stats``, when given, is filled with ``CoresetStats.as_dict()``: the counts of
    point-steps each test ruled out and computed in full, and their shares
    ``fraction_group``, ``fraction_leaf``, ``fraction_point``, ``fraction_lazy``,
    ``fraction_full`` (summing to 1), steps by kind and ``seconds``. The Paddle path
    computes every point-step in full.
    """
    n = int(features.shape[0])
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be between 1 and {n}, got {n_select}")
    rng = np.random.default_rng(seed)
    start = int(rng.integers(n))
    points = random_projection(features, projection_dim, seed)
    counts = CoresetStats(points=n, selected=n_select)
    started = time.perf_counter()
    with progress_bar(n_select) if progress is None else nullcontext(progress) as report:
        if use_paddle():
            chosen = greedy_paddle(points, start, n_select, progress=report)
            counts.full, counts.plain_steps = counts.point_steps, n_select - 1
        else:
            points = points.numpy() if is_tensor(points) else points
            chosen = greedy_numpy(points, start, n_select, progress=report, stats=counts)
    counts.seconds = time.perf_counter() - started
    counts.log()
    if stats is not None:
        stats.update(counts.as_dict())
    return chosen


@contextmanager
def progress_bar(total: int) -> Iterator[Progress]:
    """A ``progress(done, total)`` that moves a tqdm bar on stderr, shown on a terminal only."""
    # The seeded start is chosen before the first step.
    with tqdm(total=total, initial=1, desc="coreset", unit="pt", leave=False, dynamic_ncols=True,
              disable=None if show_progress else True) as bar:
        yield lambda done, _total: bar.update(done - bar.n)
