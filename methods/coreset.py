"""Greedy k-center coreset (Sener & Savarese 2018), as PatchCore selects its memory bank.

The features are first mapped to ``projection_dim`` dimensions with a seeded
Gaussian random projection (Johnson-Lindenstrauss), which keeps distances
nearly intact and makes each greedy step cheap. Selection then starts at a
seeded random point and repeatedly adds the point farthest from everything
chosen so far, keeping for every point its squared distance to the nearest
centre (``|x|^2 - 2 x.c + |c|^2``, squared norms cached).

Two implementations of that one loop, chosen with ``methods.backend.use_paddle()``:

* ``greedy_numpy`` (the CPU). A dense step reads all N x d projected features
  to compute one matrix-vector product: on two cores that read (82 MB at
  MVTec scale) is the whole cost. So the points are first ordered into small
  balls (``LeafLayout``: leaves of a balanced PCA tree, each a contiguous
  block) and a step only touches the leaves that the triangle inequality
  cannot rule out: a leaf whose every point is provably farther from the new
  centre than that point's current minimum keeps its minima. The bound carries
  a margin for float32 rounding, so skipping never changes a minimum the
  dense float32 step would have changed: the selection is the dense loop's,
  up to floating-point ties. When too many leaves survive (features with no
  low-dimensional structure, or the first steps) a step falls back to the
  dense pass and the bound is tried again less often.
* ``greedy_paddle`` (the GPU): the dense loop on device tensors, the running
  minimum updated in place, no host round trip per step.

Both break exact ties like ``np.argmax`` on the original order: lowest index.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from methods.backend import use_paddle
from methods.nearest import squared_norms

LEAF_SIZE = 16
# Leaves per coarse node: the coarse bound rules out most leaves before their own bounds are read.
GROUP_LEAVES = 32
# Above this share of surviving leaves, gathering them costs more than one dense pass.
DENSE_FRACTION = 0.35
# After a dense fallback the bound is tried again after 2, 4, ... up to this many steps.
MAX_BACKOFF = 32
POWER_ITERATIONS = 2

Progress = Callable[[int], object]


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
    order, the first being the seeded random start. A progress bar shows on a
    terminal (stderr) only.
    """
    n = len(features)
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be between 1 and {n}, got {n_select}")
    rng = np.random.default_rng(seed)
    start = int(rng.integers(n))
    points = random_projection(features, projection_dim, seed)
    impl = greedy_paddle if use_paddle() else greedy_numpy
    with progress_bar(n_select) as advance:
        return impl(points, start, n_select, progress=advance)


@contextmanager
def progress_bar(total: int) -> Iterator[Progress]:
    """``advance(steps)`` callback of a tqdm bar; ``disable=None`` keeps it quiet off a terminal."""
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="coreset", unit="pt", disable=None, leave=False) as bar:
        bar.update(1)  # the seeded start
        yield bar.update


def greedy_numpy(
    points: np.ndarray,
    start: int,
    n_select: int,
    *,
    leaf_size: int = LEAF_SIZE,
    progress: Progress | None = None,
) -> np.ndarray:
    """Greedy k-center on ``points`` ``[N, d]`` from ``start``: ``[n_select]`` int64 indices.

    BLAS runs on one thread: a two-thread product of a few MB is no faster,
    and far slower when the other core is busy.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    selected = np.empty(n_select, dtype=np.int64)
    selected[0] = start
    if n_select == 1:
        return selected
    with threadpool_limits(limits=1, user_api="blas"):
        layout = LeafLayout.build(points, leaf_size)
        search = PrunedSearch(layout)
        centre = start
        for step in range(1, n_select):
            centre = search.add_centre(centre)
            selected[step] = centre
            if progress is not None and step % 64 == 0:
                progress(64)
    if progress is not None:
        progress((n_select - 1) % 64)
    return selected


# --- the leaf layout: small balls of points, contiguous in memory ------------------------------


def power_direction(x: np.ndarray, mean: np.ndarray, iterations: int) -> np.ndarray:
    """Approximate principal direction of each node: x ``[nodes, m, d]``, mean ``[nodes, d]`` -> ``[nodes, d]``.

    Power iterations on the covariance without a centred copy of ``x``:
    ``C v ~ x^T (x v - mean.v) - mean sum(x v - mean.v)``.
    """
    v = x[:, 0] - mean  # a point's offset: a deterministic start
    for _ in range(iterations):
        u = np.matmul(x, v[:, :, None])[:, :, 0] - np.einsum("nd,nd->n", mean, v)[:, None]
        v = np.matmul(u[:, None, :], x)[:, 0] - mean * u.sum(axis=1, keepdims=True)
        v /= np.linalg.norm(v, axis=1, keepdims=True) + np.float32(1e-30)
    return v


def leaf_order(points: np.ndarray, leaf_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced PCA tree over ``points`` ``[N, d]``: ``order`` and ``valid``, both ``[leaves, L]``.

    ``order[b]`` lists the point indices of leaf ``b`` (``leaf_size`` to twice
    that); consecutive leaves are tree siblings, so a node of the tree is a
    run of leaves. Each node is split at the median of its points along an
    approximate principal direction. The leaf count is a power of two; the
    few slots past N repeat points 0, 1, ... and are marked ``valid=False``.
    """
    n = len(points)
    depth = max(0, math.floor(math.log2(max(1.0, n / leaf_size))))
    n_leaves = 1 << depth
    per_leaf = -(-n // n_leaves)
    # Slot ids travel with the points; id % N is the point, id >= N a repeat.
    ids = np.arange(n_leaves * per_leaf)
    for level in range(depth):
        nodes = ids.reshape(1 << level, -1)
        x = points[nodes % n]  # [nodes, m, d]
        direction = power_direction(x, x.mean(axis=1), POWER_ITERATIONS)
        projected = np.matmul(x, direction[:, :, None])[:, :, 0]
        half = nodes.shape[1] // 2
        lower_first = np.argpartition(projected, half - 1, axis=1)
        ids = np.take_along_axis(nodes, lower_first, axis=1).ravel()
    ids = ids.reshape(n_leaves, per_leaf)
    return ids % n, ids < n


def ball_bounds(
    points: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``[B, d]`` float32, radius ``[B]`` and largest norm ``[B]`` (float64) of each ball
    of ``points`` ``[B, m, d]``, over its ``valid`` ``[B, m]`` points (none: radius 0).

    The centre is the mean rounded to float32 (it takes part in float32 products); the
    radius is measured, in float64, from that rounded centre.
    """
    centre = np.zeros((len(points), points.shape[2]), dtype=np.float32)
    radius = np.zeros(len(points))
    norm = np.zeros(len(points))
    # A few balls at a time: float64 copies of all points would be twice the features.
    for lo in range(0, len(points), 4096):
        block = points[lo : lo + 4096].astype(np.float64)
        keep = valid[lo : lo + 4096]
        count = np.maximum(keep.sum(axis=1), 1)[:, None]
        centre[lo : lo + 4096] = np.einsum("bmd,bm->bd", block, keep.astype(np.float64)) / count
        offset = block - centre[lo : lo + 4096, None, :].astype(np.float64)
        offset = np.sqrt((offset * offset).sum(axis=2))
        radius[lo : lo + 4096] = np.where(keep, offset, 0.0).max(axis=1)
        norm[lo : lo + 4096] = np.where(keep, np.sqrt((block * block).sum(axis=2)), 0.0).max(axis=1)
    # float64 rounding of the bound itself, far below the float32 margin.
    return centre, radius * (1 + 1e-12), norm * (1 + 1e-12)


class LeafLayout:
    """The points in leaf order, with a ball around each leaf and each group of leaves.

    Attributes (``B`` leaves of ``L`` slots in ``G`` groups of ``B / G`` leaves):
        order, valid: ``[B, L]`` point index and whether the slot is a real point.
        points: ``[B, L, d]`` float32; sq_norms: ``[B, L]`` float32, as the dense loop has them.
        slot_of: ``[N]`` flat slot of each point.
        centre: ``[B, d]`` float32 leaf centres; centre_sq, centre_norm, radius, norm: ``[B]``
            float64 (norm: the largest |x| in the leaf).
        group_centre ``[G, d]``, group_radius ``[G]``, group_norm ``[G]``: the same for groups.
    """

    def __init__(self, points: np.ndarray, order: np.ndarray, valid: np.ndarray, group_leaves: int):
        n_leaves, _ = order.shape
        self.order, self.valid = order, valid
        self.points = points[order]
        self.sq_norms = squared_norms(points)[order]
        self.slot_of = np.empty(len(points), dtype=np.int64)
        self.slot_of[order[valid]] = np.flatnonzero(valid)
        self.centre, self.radius, self.norm = ball_bounds(self.points, valid)
        centre64 = self.centre.astype(np.float64)
        self.centre_sq = (centre64 * centre64).sum(axis=1)
        self.centre_norm = np.sqrt(self.centre_sq)
        self.group_leaves = min(group_leaves, n_leaves)
        n_groups = n_leaves // self.group_leaves
        group_centre, self.group_radius, self.group_norm = ball_bounds(
            self.points.reshape(n_groups, -1, points.shape[1]), valid.reshape(n_groups, -1)
        )
        self.group_centre = group_centre.astype(np.float64)

    @classmethod
    def build(cls, points: np.ndarray, leaf_size: int = LEAF_SIZE, group_leaves: int = GROUP_LEAVES):
        order, valid = leaf_order(points, leaf_size)
        return cls(points, order, valid, group_leaves)

    @property
    def n_leaves(self) -> int:
        return len(self.order)

    @property
    def n_groups(self) -> int:
        return len(self.group_radius)


# --- the pruned greedy step ---------------------------------------------------------------------

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


def row_max(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``a.max(axis=1)`` for a ``[B, L]`` array of short rows, into ``out`` ``[B]``.

    A reduction along a short contiguous axis takes NumPy's slow path (5x
    slower here); L column-wise maxima do not.
    """
    np.copyto(out, a[:, 0])
    for column in range(1, a.shape[1]):
        np.maximum(out, a[:, column], out=out)
    return out


def cannot_move(gap: np.ndarray, ball_max: np.ndarray, ball_norm: np.ndarray, c_norm: float, slack: float):
    """Which balls the new centre leaves untouched (all ``[K]`` float64 but ``c_norm``, ``slack``).

    gap: a lower bound on ``|x - c|`` for every x of the ball (``|centre - c| - radius``);
    ball_max: the largest running minimum (squared) in the ball. Untouched when
    ``gap^2 >= ball_max + slack (norm + |c|)^2``: every point's computed distance then
    still exceeds its minimum, float32 rounding included.
    """
    gap = gap * (1 - 1e-9)  # float64 rounding of the gap itself
    return (gap > 0) & (gap * gap >= ball_max + slack * (ball_norm + c_norm) ** 2)


class PrunedSearch:
    """The running minima of one greedy selection over a ``LeafLayout``.

    ``add_centre(c)`` folds the distances to point ``c`` into the minima and
    returns the next centre (the farthest point, lowest index on ties).

    State: ``min_sq`` ``[B, L]`` float32 squared distance of each slot to its
    nearest centre (-inf for chosen centres and padding slots) and
    ``leaf_max`` ``[B]``, the largest of them per leaf (kept fresh whenever
    the next step tests the bound).
    """

    def __init__(self, layout: LeafLayout):
        self.layout = layout
        n_leaves, per_leaf, dim = layout.points.shape
        self.min_sq = np.where(layout.valid, np.float32(np.inf), np.float32(-np.inf))
        self.leaf_max = np.full(n_leaves, np.inf, dtype=np.float32)
        self.slack = rounding_slack(dim)
        self.anchor_error = 2 * dot_error(dim) * (1 + 1e-6)
        self.gathered = np.empty_like(layout.points)  # reused: no page faults per step
        self.dist = np.empty(n_leaves * per_leaf, dtype=np.float32)
        self.backoff, self.next_bound_step, self.step = 1, 1, 0
        self.stats = {"dense": 0, "pruned": 0, "leaves": 0}

    def add_centre(self, centre: int) -> int:
        lay = self.layout
        self.step += 1
        slot = lay.slot_of[centre]
        c = lay.points.reshape(-1, lay.points.shape[2])[slot]
        c_sq = lay.sq_norms.reshape(-1)[slot]
        active = self.active_leaves(c) if self.step >= self.next_bound_step else None
        if active is None or len(active) > DENSE_FRACTION * lay.n_leaves:
            self.dense_update(c, c_sq, slot)
            return self.farthest_dense()
        self.leaf_update(c, c_sq, slot, active)
        return self.farthest_pruned()

    def active_leaves(self, c: np.ndarray) -> np.ndarray:
        """Leaves the triangle inequality cannot rule out for centre ``c`` ``[d]`` (``cannot_move``).

        Groups of leaves are tested first (float64 distances to 1/32 as many
        centres); leaf distances come from one float32 product, its rounding
        (``anchor_error``) taken off the bound.
        """
        lay = self.layout
        c64 = c.astype(np.float64)
        c_sq = float(c64 @ c64)
        c_norm = math.sqrt(c_sq) * (1 + 1e-12)
        per_group = lay.group_leaves
        group_max = self.leaf_max.reshape(-1, per_group).max(axis=1).astype(np.float64)
        gap = np.sqrt(((lay.group_centre - c64) ** 2).sum(axis=1)) - lay.group_radius
        near = np.flatnonzero(~cannot_move(gap, group_max, lay.group_norm, c_norm, self.slack))
        if len(near) > lay.n_groups // 2:
            leaves = np.arange(lay.n_leaves)
            centre_dot = lay.centre @ c
        else:
            leaves = (near[:, None] * per_group + np.arange(per_group)).ravel()
            centre_dot = lay.centre[leaves] @ c
        dist_sq = lay.centre_sq[leaves] - 2 * centre_dot.astype(np.float64) + c_sq
        dist_sq -= self.anchor_error * lay.centre_norm[leaves] * c_norm
        gap = np.sqrt(np.maximum(dist_sq, 0.0)) - lay.radius[leaves]
        leaf_max = self.leaf_max[leaves].astype(np.float64)
        return leaves[~cannot_move(gap, leaf_max, lay.norm[leaves], c_norm, self.slack)]

    def dense_update(self, c: np.ndarray, c_sq: np.float32, slot: int) -> None:
        """The plain step over every slot, in place: min_sq = min(min_sq, |x - c|^2)."""
        lay = self.layout
        dist = self.dist
        np.matmul(lay.points.reshape(-1, lay.points.shape[2]), c * np.float32(-2.0), out=dist)
        dist += lay.sq_norms.reshape(-1)  # -2 x.c above: scaling by a power of 2 is exact
        dist += c_sq
        flat_min = self.min_sq.reshape(-1)
        np.minimum(flat_min, dist, out=flat_min)
        flat_min[slot] = -np.inf  # never chosen twice, duplicates included
        if self.step >= self.next_bound_step:
            # The bound was tried and lost: try again after twice as many steps.
            self.backoff = min(2 * self.backoff, MAX_BACKOFF)
            self.next_bound_step = self.step + self.backoff
        if self.step + 1 >= self.next_bound_step:
            row_max(self.min_sq, self.leaf_max)
        self.stats["dense"] += 1

    def leaf_update(self, c: np.ndarray, c_sq: np.float32, slot: int, active: np.ndarray) -> None:
        """The plain step on the ``active`` leaves only, gathered into one contiguous block."""
        lay = self.layout
        n_active, per_leaf, dim = len(active), lay.points.shape[1], lay.points.shape[2]
        block = np.take(lay.points, active, axis=0, out=self.gathered[:n_active])
        dist = np.matmul(
            block.reshape(-1, dim), c * np.float32(-2.0), out=self.dist[: n_active * per_leaf]
        ).reshape(n_active, per_leaf)
        dist += lay.sq_norms[active]
        dist += c_sq
        minima = self.min_sq[active]
        np.minimum(minima, dist, out=minima)
        self.min_sq[active] = minima
        self.leaf_max[active] = row_max(minima, np.empty(n_active, dtype=np.float32))
        leaf = slot // per_leaf
        self.min_sq.reshape(-1)[slot] = -np.inf
        self.leaf_max[leaf] = self.min_sq[leaf].max()
        self.backoff, self.next_bound_step = 1, self.step + 1
        self.stats["pruned"] += 1
        self.stats["leaves"] += n_active

    def farthest_dense(self) -> int:
        flat = self.min_sq.reshape(-1)
        slot = int(np.argmax(flat))
        best = flat[slot]
        if np.count_nonzero(flat == best) > 1:
            return int(self.layout.order.reshape(-1)[flat == best].min())
        return int(self.layout.order.reshape(-1)[slot])

    def farthest_pruned(self) -> int:
        leaf = int(np.argmax(self.leaf_max))
        best = self.leaf_max[leaf]
        row = self.min_sq[leaf]
        if np.count_nonzero(self.leaf_max == best) > 1 or np.count_nonzero(row == best) > 1:
            leaves = np.flatnonzero(self.leaf_max == best)
            tied = self.min_sq[leaves] == best
            return int(self.layout.order[leaves][tied].min())
        return int(self.layout.order[leaf, int(np.argmax(row))])


# --- the Paddle path ------------------------------------------------------------------------


def greedy_paddle(
    points, start: int, n_select: int, *, progress: Progress | None = None, sync_every: int = 256
) -> np.ndarray:
    """``greedy_numpy`` on Paddle's device: the dense loop, all state in device tensors.

    points: ``[N, d]`` NumPy array or Paddle tensor. Each step is one
    matrix-vector product and in-place updates of ``[N]`` vectors; the chosen
    index stays on the device (no host round trip per step), so the progress
    bar advances every ``sync_every`` steps. Returns NumPy int64 ``[n_select]``.
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
        order = paddle.arange(n, dtype="int64").reshape([n, 1])
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
            # Lowest index among equal maxima, like np.argmax.
            best = min_sq.max()
            centre = paddle.where(min_sq == best, order, paddle.full_like(order, n)).min().reshape([1])
            selected[step] = centre
            if progress is not None and step % sync_every == 0:
                progress(sync_every)
        result = selected.numpy().astype(np.int64)
    if progress is not None:
        progress((n_select - 1) % sync_every)
    return result
