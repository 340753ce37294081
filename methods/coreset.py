"""Greedy k-center coreset (Sener & Savarese 2018), as PatchCore selects its memory bank.

The features are first mapped to ``projection_dim`` dimensions with a seeded
Gaussian random projection (Johnson-Lindenstrauss), which keeps distances
nearly intact and makes each greedy step cheap. Selection then starts at a
seeded random point and repeatedly adds the point farthest from everything
chosen so far, keeping for every point its squared distance to the nearest
centre, ``|x|^2 - 2 x.c + |c|^2`` in float32 with the squared norms cached.

Two implementations of that loop, chosen with ``methods.backend.use_paddle()``:

* ``greedy_numpy`` (the CPU). A plain step reads all N x d projected features
  for one matrix-vector product; at MVTec scale (82 MB) that read is the whole
  cost. So each step first rules out, with the triangle inequality, the points
  that provably keep their minimum, cheapest test first: groups of leaves,
  leaves (small balls of a PCA tree, stored contiguously), then single points
  by their distance in the leading principal coordinates (a lower bound read
  from 32 of 128 numbers). Only the points left are read in full. Every test
  keeps a margin for float32 rounding, so a point is skipped only when the
  plain float32 step would have left its minimum alone too: the selection is
  the plain loop's, up to floating-point ties. Features without
  low-dimensional structure (no test rules much out) fall back to the plain
  pass, and the tests are then tried less often.
* ``greedy_paddle`` (the GPU): the plain loop on device tensors, minimum
  updated in place, no host round trip per step.

Both break exact ties as ``np.argmax`` does on the original order: lowest index.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits

from bench.threads import cpu_count
from methods.backend import use_paddle
from methods.nearest import squared_norms

# Points per leaf (up to twice this): smaller leaves bound tighter but cost more bounds per step.
LEAF_SIZE = 32
# Leaves per group: groups are tested first, so most leaves' bounds are never read.
GROUP_LEAVES = 32
# Principal coordinates read per point of a surviving leaf before its full row is.
PREFIX_DIMS = 32
# Above this share of surviving leaves the plain pass is cheaper than gathering them.
DENSE_FRACTION = 0.5
# After a plain fallback the bounds are tried again after 2, 4, ... up to this many steps.
MAX_BACKOFF = 32
POWER_ITERATIONS = 2
PROGRESS_EVERY = 64

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
    order, the first being the seeded random start. Shows a progress bar on a
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
    """``advance(steps)`` of a tqdm bar that is silent off a terminal and with ``--quiet``."""
    from bench.log import progress

    with progress(total=total, desc="coreset", unit="pt") as bar:
        bar.update(1)  # the seeded start
        yield bar.update


def greedy_numpy(
    points: np.ndarray,
    start: int,
    n_select: int,
    *,
    leaf_size: int = LEAF_SIZE,
    prefix_dims: int = PREFIX_DIMS,
    progress: Progress | None = None,
) -> np.ndarray:
    """Greedy k-center on ``points`` ``[N, d]`` from ``start``: ``[n_select]`` int64 indices.

    BLAS runs on one thread (the pruned steps' products are a few MB: a second
    thread does not pay), except in plain passes, whose thread count
    ``ThreadChoice`` picks by timing.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    selected = np.empty(n_select, dtype=np.int64)
    selected[0] = start
    if n_select == 1:
        return selected
    with threadpool_limits(limits=1, user_api="blas"):
        search = PrunedSearch(LeafLayout.build(points, leaf_size, prefix_dims=prefix_dims))
        centre = start
        for step in range(1, n_select):
            centre = search.add_centre(centre)
            selected[step] = centre
            if progress is not None and step % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
    if progress is not None:
        progress((n_select - 1) % PROGRESS_EVERY)
    return selected


# --- the layout: points in leaf order, balls around leaves and groups ----------------------------


def principal_basis(points: np.ndarray, dims: int, sample: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and the ``dims`` leading principal directions ``[d, dims]`` (orthonormal,
    float64) of ``points`` ``[N, d]``, estimated on an evenly spaced sample."""
    x = points[:: max(1, len(points) // sample)].astype(np.float64)
    mean = x.mean(axis=0)
    x -= mean
    _, vectors = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    return mean, np.ascontiguousarray(vectors[:, ::-1][:, :dims])


def principal_coordinates(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``[N, d]`` -> ``[N, m]`` float32 ``(x - mean) @ basis``, computed in float64 a block at a time."""
    out = np.empty((len(x), basis.shape[1]), dtype=np.float32)
    for lo in range(0, len(x), 16384):
        out[lo : lo + 16384] = (x[lo : lo + 16384].astype(np.float64) - mean) @ basis
    return out


def power_direction(x: np.ndarray, mean: np.ndarray, iterations: int) -> np.ndarray:
    """Approximate principal direction ``[nodes, m]`` of each node of x ``[nodes, k, m]`` (mean ``[nodes, m]``).

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
    """Balanced PCA tree over ``points`` ``[N, m]``: ``order`` and ``valid``, both ``[leaves, L]``.

    ``order[b]`` lists the point indices of leaf ``b`` (``leaf_size`` to twice
    that); consecutive leaves are tree siblings. Each node is split at the
    median of its points along an approximate principal direction. The leaf
    count is a power of two; the few slots past N repeat points 0, 1, ... and
    are marked ``valid=False``.
    """
    n = len(points)
    depth = max(0, math.floor(math.log2(max(1.0, n / leaf_size))))
    n_leaves = 1 << depth
    # Slot ids travel with the points; id % N is the point, id >= N a repeat.
    ids = np.arange(n_leaves * -(-n // n_leaves))
    for level in range(depth):
        nodes = ids.reshape(1 << level, -1)
        x = points[nodes % n]  # [nodes, k, m]
        direction = power_direction(x, x.mean(axis=1), POWER_ITERATIONS)
        projected = np.matmul(x, direction[:, :, None])[:, :, 0]
        lower_first = np.argpartition(projected, nodes.shape[1] // 2 - 1, axis=1)
        ids = np.take_along_axis(nodes, lower_first, axis=1).ravel()
    ids = ids.reshape(n_leaves, -1)
    return ids % n, ids < n


def leaf_balls(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``[B, m]`` float32, radius ``[B]`` and largest norm ``[B]`` (float64) of each ball
    of ``points`` ``[B, L, m]``, over its ``valid`` ``[B, L]`` points (none: radius 0).

    The centre is the mean rounded to float32 (it enters float32 products); the
    radius is measured in float64 from that rounded centre.
    """
    centre = np.zeros((len(points), points.shape[2]), dtype=np.float32)
    radius = np.zeros(len(points))
    norm = np.zeros(len(points))
    for lo in range(0, len(points), 4096):  # float64 copies of a block only
        block = points[lo : lo + 4096].astype(np.float64)
        keep = valid[lo : lo + 4096]
        count = np.maximum(keep.sum(axis=1), 1)[:, None]
        centre[lo : lo + 4096] = np.einsum("bld,bl->bd", block, keep.astype(np.float64)) / count
        offset = block - centre[lo : lo + 4096, None, :].astype(np.float64)
        radius[lo : lo + 4096] = np.where(keep, np.sqrt((offset * offset).sum(axis=2)), 0.0).max(axis=1)
        norm[lo : lo + 4096] = np.where(keep, np.sqrt((block * block).sum(axis=2)), 0.0).max(axis=1)
    return centre, radius * (1 + 1e-12), norm * (1 + 1e-12)


def group_balls(
    centre: np.ndarray, radius: np.ndarray, norms: tuple[np.ndarray, ...], valid: np.ndarray, per_group: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Balls around groups of ``per_group`` consecutive leaves, from the leaf balls alone.

    centre ``[B, m]``, radius ``[B]``, norms: ``[B]`` arrays (largest per group
    taken), valid ``[B, L]``. Returns float64 centres ``[G, m]``, radii ``[G]``
    and norms. A group's ball holds its leaves' balls (``|a - A| + r``).
    """
    n_groups = len(centre) // per_group
    filled = valid.any(axis=1).reshape(n_groups, per_group)
    leaves = centre.astype(np.float64).reshape(n_groups, per_group, -1)
    group_centre = (leaves * filled[:, :, None]).sum(axis=1) / np.maximum(filled.sum(axis=1), 1)[:, None]
    reach = np.sqrt(((leaves - group_centre[:, None, :]) ** 2).sum(axis=2)) + radius.reshape(n_groups, -1)
    group_radius = np.where(filled, reach, 0.0).max(axis=1) * (1 + 1e-12)
    return group_centre, group_radius, tuple(n.reshape(n_groups, -1).max(axis=1) for n in norms)


class LeafLayout:
    """The points in leaf order, their principal coordinates, and balls around leaves and groups.

    The balls live in the principal coordinates (``prefix``): a distance there
    is a lower bound of the full one, and reading m of d numbers is cheaper.

    Attributes (``B`` leaves of ``L`` slots, ``G`` groups of ``B / G`` leaves, ``m`` prefix dims):
        order, valid: ``[B, L]`` point index and whether the slot is a real point.
        points: ``[B, L, d]`` float32; sq_norms: ``[B, L]`` float32, as the plain loop has them.
        slot_of: ``[N]`` flat slot of each point.
        prefix: ``[B, L, m]`` float32 ``(x - mean) @ basis``; prefix_sq: ``[B, L]`` float64.
        centre: ``[B, m]`` float32 leaf centres (prefix space); centre_sq, centre_norm,
            radius, prefix_norm (largest |prefix| in the leaf), norm (largest |x|): ``[B]`` float64.
        group_centre ``[G, m]``, group_radius, group_prefix_norm, group_norm ``[G]``: the same per group.
    """

    def __init__(self, points, order, valid, prefix, group_leaves: int):
        self.order, self.valid = order, valid
        self.points = points[order]
        self.sq_norms = squared_norms(points)[order]
        self.slot_of = np.empty(len(points), dtype=np.int64)
        self.slot_of[order[valid]] = np.flatnonzero(valid)
        self.prefix = prefix[order]
        self.prefix_sq = np.einsum("blm,blm->bl", self.prefix, self.prefix, dtype=np.float64)
        self.centre, self.radius, self.prefix_norm = leaf_balls(self.prefix, valid)
        centre64 = self.centre.astype(np.float64)
        self.centre_sq = (centre64 * centre64).sum(axis=1)
        self.centre_norm = np.sqrt(self.centre_sq)
        # Largest |x| from the cached float32 squares, raised by their rounding bound.
        largest_sq = np.where(valid, self.sq_norms, 0.0).max(axis=1).astype(np.float64)
        self.norm = np.sqrt(largest_sq * (1 + 2 * dot_error(points.shape[1])))
        self.group_leaves = min(group_leaves, len(order))
        self.group_centre, self.group_radius, (self.group_prefix_norm, self.group_norm) = group_balls(
            self.centre, self.radius, (self.prefix_norm, self.norm), valid, self.group_leaves
        )

    @classmethod
    def build(
        cls,
        points: np.ndarray,
        leaf_size: int = LEAF_SIZE,
        group_leaves: int = GROUP_LEAVES,
        prefix_dims: int = PREFIX_DIMS,
    ) -> "LeafLayout":
        """``points`` ``[N, d]`` float32 in a layout with leaves of ``leaf_size`` to ``2 * leaf_size``."""
        mean, basis = principal_basis(points, min(prefix_dims, points.shape[1]))
        prefix = principal_coordinates(points, mean, basis)
        # The tree decides how well the bounds prune, never what is selected; on the
        # principal coordinates it reads a quarter of the data per level.
        order, valid = leaf_order(prefix, leaf_size)
        return cls(points, order, valid, prefix, group_leaves)

    @property
    def n_leaves(self) -> int:
        return len(self.order)

    @property
    def n_groups(self) -> int:
        return len(self.group_radius)


# --- bounds with float32 rounding margins ---------------------------------------------------------

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

    gap: a lower bound on ``|x - c|`` for every x of the ball; ball_max: the
    largest running minimum (squared) in it; ball_norm: its largest ``|x|``.
    Untouched when ``gap^2 >= ball_max + slack (ball_norm + |c|)^2``: every
    point's float32 distance then still exceeds its minimum.
    """
    gap = gap * (1 - 1e-9)  # float64 rounding of the gap itself
    return (gap > 0) & (gap * gap >= ball_max + slack * (ball_norm + c_norm) ** 2)


# --- the step ---------------------------------------------------------------------------------


class ThreadChoice:
    """How many BLAS threads the plain pass runs on (1 or all cores), chosen by timing.

    At 160,000 x 128 on two cores, a second thread halves a plain step when the
    other core is idle (1.7 ms against 3.2-3.7 ms) and slows it down when that
    core is busy (5.9-7.3 ms against 4.2-6.2 ms). So every ``keep`` plain passes
    each choice is timed ``trials`` times, interleaved, and the faster is kept.
    """

    def __init__(self, trials: int = 3, keep: int = 256):
        self.controller = ThreadpoolController()
        self.options = sorted({1, cpu_count()})
        self.trials, self.keep = trials, keep
        self.schedule: list[int] = []
        self.times: dict[int, float] = {}
        self.best, self.until_trial = 1, 0

    @contextmanager
    def limit(self) -> Iterator[None]:
        """Runs the block on the chosen thread count (or on the one being tried)."""
        if not self.schedule and self.until_trial <= 0 and len(self.options) > 1:
            self.schedule = self.options * self.trials
            self.times = {n: math.inf for n in self.options}
        threads = self.schedule[0] if self.schedule else self.best
        started = time.perf_counter()
        with self.controller.limit(limits=threads, user_api="blas"):
            yield
        if not self.schedule:
            self.until_trial -= 1
            return
        self.times[threads] = min(self.times[threads], time.perf_counter() - started)
        self.schedule.pop(0)
        if not self.schedule:
            self.best = min(self.times, key=self.times.get)
            self.until_trial = self.keep


class PrunedSearch:
    """The running minima of one greedy selection over a ``LeafLayout``.

    ``add_centre(c)`` folds the distances to point ``c`` into the minima and
    returns the next centre (the farthest point, lowest index on ties).

    State: ``min_sq`` ``[B, L]`` float32 squared distance of each slot to its
    nearest centre (-inf for chosen centres and padding slots) and
    ``leaf_max`` ``[B]``, the largest of them per leaf (kept fresh whenever
    the next step tests the bounds).
    """

    def __init__(self, layout: LeafLayout):
        self.layout = layout
        n_leaves, per_leaf, dim = layout.points.shape
        prefix_dims = layout.prefix.shape[2]
        self.min_sq = np.where(layout.valid, np.float32(np.inf), np.float32(-np.inf))
        self.leaf_max = np.full(n_leaves, np.inf, dtype=np.float32)
        self.slack = rounding_slack(dim)
        self.anchor_error = 2 * dot_error(prefix_dims) * (1 + 1e-6)
        # Point test: |p - p_c|^2 - margin < min_sq. The margin (float32 error of the
        # full distance and of the prefix one, plus the prefix's storage) is bounded
        # through (a + b)^2 <= 2 a^2 + 2 b^2, so it splits into a per-point part, folded
        # into prefix_offset here, and a per-centre part. 8u covers the storage and the
        # rounding of the folded terms.
        self.prefix_slack = rounding_slack(prefix_dims) + 8 * UNIT_ROUNDOFF
        point_margin = 2 * self.slack * layout.sq_norms + 2 * self.prefix_slack * layout.prefix_sq
        self.prefix_offset = (layout.prefix_sq - point_margin).astype(np.float32)  # [B, L]
        self.dist = np.empty(n_leaves * per_leaf, dtype=np.float32)
        # Reused gather buffers: no page faults per step.
        self.gathered_prefix = np.empty_like(layout.prefix)
        self.gathered_points = np.empty((n_leaves * per_leaf, dim), dtype=np.float32)
        self.threads = ThreadChoice()
        self.backoff, self.next_bound_step, self.step = 1, 1, 0
        self.stats = {"plain": 0, "pruned": 0, "leaves": 0, "rows": 0}

    def add_centre(self, centre: int) -> int:
        self.step += 1
        slot = self.layout.slot_of[centre]
        active = self.active_leaves(slot) if self.step >= self.next_bound_step else None
        if active is None or len(active) > DENSE_FRACTION * self.layout.n_leaves:
            self.plain_update(slot)
            return self.farthest_plain()
        self.pruned_update(slot, active)
        return self.farthest_pruned()

    def active_leaves(self, slot: int) -> np.ndarray:
        """Leaves that the bounds cannot rule out for the centre in ``slot``.

        Per ball: ``gap = |centre - p_c| - radius``, less the storage rounding
        of the prefix, and less (for leaves) the float32 rounding of the
        product that gives ``|centre - p_c|``; then ``cannot_move``.
        """
        lay = self.layout
        p_c = lay.prefix.reshape(-1, lay.prefix.shape[2])[slot]
        p_c64 = p_c.astype(np.float64)
        p_c_sq = float(p_c64 @ p_c64)
        p_c_norm = math.sqrt(p_c_sq)
        c_norm = math.sqrt(float(lay.sq_norms.reshape(-1)[slot]) * (1 + 2 * dot_error(lay.points.shape[2])))
        per_group = lay.group_leaves
        group_max = self.leaf_max.reshape(-1, per_group).max(axis=1).astype(np.float64)
        gap = np.sqrt(((lay.group_centre - p_c64) ** 2).sum(axis=1)) - lay.group_radius
        gap -= STORAGE_ERROR * (lay.group_prefix_norm + p_c_norm)
        near = np.flatnonzero(~cannot_move(gap, group_max, lay.group_norm, c_norm, self.slack))
        if len(near) > lay.n_groups // 2:  # one product over all leaves beats gathering most
            leaves = np.arange(lay.n_leaves)
            centre_dot = lay.centre @ p_c
        else:
            leaves = (near[:, None] * per_group + np.arange(per_group)).ravel()
            centre_dot = lay.centre[leaves] @ p_c
        dist_sq = lay.centre_sq[leaves] - 2 * centre_dot.astype(np.float64) + p_c_sq
        dist_sq -= self.anchor_error * lay.centre_norm[leaves] * p_c_norm
        gap = np.sqrt(np.maximum(dist_sq, 0.0)) - lay.radius[leaves]
        gap -= STORAGE_ERROR * (lay.prefix_norm[leaves] + p_c_norm)
        leaf_max = self.leaf_max[leaves].astype(np.float64)
        return leaves[~cannot_move(gap, leaf_max, lay.norm[leaves], c_norm, self.slack)]

    def plain_update(self, slot: int) -> None:
        """The plain step over every slot, in place: min_sq = min(min_sq, |x - c|^2)."""
        lay = self.layout
        points = lay.points.reshape(-1, lay.points.shape[2])
        dist = self.dist
        with self.threads.limit():
            np.matmul(points, points[slot] * np.float32(-2.0), out=dist)  # scaling by 2 is exact
        dist += lay.sq_norms.reshape(-1)
        dist += lay.sq_norms.reshape(-1)[slot]
        flat_min = self.min_sq.reshape(-1)
        np.minimum(flat_min, dist, out=flat_min)
        flat_min[slot] = -np.inf  # never chosen twice, duplicates included
        if self.step >= self.next_bound_step:
            # The bounds were tried and lost: try again after twice as many steps.
            self.backoff = min(2 * self.backoff, MAX_BACKOFF)
            self.next_bound_step = self.step + self.backoff
        if self.step + 1 >= self.next_bound_step:
            row_max(self.min_sq, self.leaf_max)
        self.stats["plain"] += 1

    def movers(self, slot: int, active: np.ndarray) -> np.ndarray:
        """Flat slots of the ``active`` leaves that the principal-coordinate bound does not rule out."""
        lay = self.layout
        n_active, per_leaf, prefix_dims = len(active), *lay.prefix.shape[1:]
        p_c = lay.prefix.reshape(-1, prefix_dims)[slot]
        p_c_sq = float(lay.prefix_sq.reshape(-1)[slot])
        c_sq = float(lay.sq_norms.reshape(-1)[slot])
        # mode="clip": with the default mode, take() buffers ``out`` and copies twice (3x slower).
        block = np.take(lay.prefix, active, axis=0, out=self.gathered_prefix[:n_active], mode="clip")
        bound = np.matmul(
            block.reshape(-1, prefix_dims), p_c * np.float32(-2.0), out=self.dist[: n_active * per_leaf]
        ).reshape(n_active, per_leaf)
        bound += self.prefix_offset[active]
        threshold = self.min_sq[active]
        threshold += np.float32(2 * self.slack * c_sq + 2 * self.prefix_slack * p_c_sq - p_c_sq)
        rows, columns = np.nonzero(bound < threshold)
        return active[rows] * per_leaf + columns

    def pruned_update(self, slot: int, active: np.ndarray) -> None:
        """The plain step on the points that may move: the ``movers`` of the ``active`` leaves."""
        lay = self.layout
        per_leaf, dim = lay.points.shape[1:]
        movers = self.movers(slot, active)
        points = lay.points.reshape(-1, dim)
        rows = np.take(points, movers, axis=0, out=self.gathered_points[: len(movers)], mode="clip")
        dist = np.matmul(rows, points[slot] * np.float32(-2.0), out=self.dist[: len(movers)])
        dist += lay.sq_norms.reshape(-1)[movers]
        dist += lay.sq_norms.reshape(-1)[slot]
        flat_min = self.min_sq.reshape(-1)
        flat_min[movers] = np.minimum(flat_min[movers], dist)
        flat_min[slot] = -np.inf
        touched = np.unique(np.append(movers, slot) // per_leaf)
        self.leaf_max[touched] = row_max(self.min_sq[touched], np.empty(len(touched), dtype=np.float32))
        self.backoff, self.next_bound_step = 1, self.step + 1
        self.stats["pruned"] += 1
        self.stats["leaves"] += len(active)
        self.stats["rows"] += len(movers)

    def farthest_plain(self) -> int:
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
            return int(self.layout.order[leaves][self.min_sq[leaves] == best].min())
        return int(self.layout.order[leaf, int(np.argmax(row))])


# --- the Paddle path ------------------------------------------------------------------------------


def greedy_paddle(
    points, start: int, n_select: int, *, progress: Progress | None = None, sync_every: int = 256
) -> np.ndarray:
    """``greedy_numpy`` on Paddle's device: the plain loop, all state in device tensors.

    points: ``[N, d]`` NumPy array or Paddle tensor. Each step is one
    matrix-vector product and in-place updates of ``[N, 1]`` columns; the
    chosen index stays on the device (no host round trip per step), so the
    progress bar advances every ``sync_every`` steps. Returns ``[n_select]`` int64.
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
                progress(sync_every)
        result = selected.numpy().astype(np.int64)
    if progress is not None:
        progress((n_select - 1) % sync_every)
    return result
