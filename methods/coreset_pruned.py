"""The CPU greedy k-center loop: exact, with the points the triangle inequality rules out never read.

A plain step reads all N x d projected features for one matrix-vector
product; at MVTec scale (82 MB) that read is the whole cost. So each step
first rules out, with the triangle inequality, the points that provably keep
their minimum, cheapest test first: groups of leaves, leaves (small balls of a
PCA tree, stored contiguously: ``methods.coreset_layout``), then single points
by their distance in the leading principal coordinates (a lower bound read
from 32 of 128 numbers). Only the points left are read in full. Every test
keeps a margin for float32 rounding (``methods.coreset_bounds``), so a point
is skipped only when the plain float32 step would have left its minimum alone
too: the selection is the plain loop's, up to floating-point ties. Features
without low-dimensional structure (no test rules much out) fall back to the
plain pass and the bounds are tried less often; when they keep losing (most of
the last ``LAZY_WINDOW`` steps plain: textures), the remaining steps go to the
lazy loop (``methods.coreset_lazy``), which brings up to date only the points
that might be the farthest, with matrix-matrix products. It takes the running
minima over as they are (exact), so the selection stays the plain loop's.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from methods.coreset_bounds import STORAGE_ERROR, UNIT_ROUNDOFF, cannot_move, dot_error, rounding_slack
from methods.coreset_layout import LEAF_SIZE, PREFIX_DIMS, LeafLayout
from methods.coreset_lazy import LazyMinima
from methods.coreset_stats import CoresetStats
from methods.coreset_threads import ThreadChoice

# Above this share of surviving leaves the plain pass is cheaper than gathering them.
DENSE_FRACTION = 0.5
# After a plain fallback the bounds are tried again after 2, 4, ... up to this many steps.
MAX_BACKOFF = 32
# When at least this share of the last LAZY_WINDOW steps were plain, the lazy loop
# (``methods.coreset_lazy``) takes over for good. A loss now and then is no sign: the tree
# loses the first few dozen steps of object-like features and wins the rest (at 160,000
# points it beats the lazy loop there).
LAZY_WINDOW = 64
LAZY_PLAIN_SHARE = 0.75
PROGRESS_EVERY = 64

# progress(done, total): how many of the points to select are chosen so far.
Progress = Callable[[int, int], object]


def greedy_numpy(
    points: np.ndarray,
    start: int,
    n_select: int,
    *,
    leaf_size: int = LEAF_SIZE,
    prefix_dims: int = PREFIX_DIMS,
    progress: Progress | None = None,
    stats: CoresetStats | None = None,
    lazy: bool | None = None,
) -> np.ndarray:
    """Greedy k-center on ``points`` ``[N, d]`` from ``start``: ``[n_select]`` int64 indices.

    ``stats``, when given, is filled with what each test ruled out (its counts add up
    to N x (n_select - 1) point-steps). ``lazy``: None hands over to the lazy loop
    when the bounds keep losing; True runs it from the first step, False never.

    ``progress(done, n_select)`` is called every ``PROGRESS_EVERY`` steps and at
    the end. BLAS runs on one thread (the pruned steps' products are a few MB: a second
    thread does not pay), except in plain passes, whose thread count
    ``ThreadChoice`` picks by timing.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    selected = np.empty(n_select, dtype=np.int64)
    selected[0] = start
    if n_select == 1:
        return selected
    with threadpool_limits(limits=1, user_api="blas"):
        search = PrunedSearch(
            LeafLayout.build(points, leaf_size, prefix_dims=prefix_dims), n_select, lazy=lazy
        )
        centre = start
        for step in range(1, n_select):
            centre = search.add_centre(centre)
            selected[step] = centre
            if progress is not None and step % PROGRESS_EVERY == 0:
                progress(step + 1, n_select)
    if progress is not None:
        progress(n_select, n_select)
    if stats is not None:
        search.fill(stats)
    return selected


def row_max(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``a.max(axis=1)`` for a ``[B, L]`` array of short rows, into ``out`` ``[B]``.

    A reduction along a short contiguous axis takes NumPy's slow path (5x
    slower here); L column-wise maxima do not.
    """
    np.copyto(out, a[:, 0])
    for column in range(1, a.shape[1]):
        np.maximum(out, a[:, column], out=out)
    return out


class PrunedSearch:
    """The running minima of one greedy selection over a ``LeafLayout``.

    ``add_centre(c)`` folds the distances to point ``c`` into the minima and
    returns the next centre (the farthest point, lowest index on ties).

    State: ``min_sq`` ``[B, L]`` float32 squared distance of each slot to its
    nearest centre (-inf for chosen centres and padding slots) and
    ``leaf_max`` ``[B]``, the largest of them per leaf (kept fresh whenever
    the next step tests the bounds).
    """

    def __init__(self, layout: LeafLayout, n_select: int | None = None, lazy: bool | None = None):
        self.layout = layout
        # n_select: the lazy loop's capacity (None: never hand over); lazy as in greedy_numpy.
        self.n_select, self.lazy_mode, self.lazy = n_select, (lazy if n_select is not None else False), None
        self.recent_plain = collections.deque(maxlen=LAZY_WINDOW)  # was each of the last steps plain
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
        self.stats = {"plain": 0, "pruned": 0, "lazy": 0, "leaves": 0, "rows": 0}
        # Point-steps ruled out per test (valid slots only), as in ``CoresetStats``.
        self.valid_per_leaf = layout.valid.sum(axis=1)
        self.n_points = int(self.valid_per_leaf.sum())
        self.ruled_out = {"group": 0, "leaf": 0, "point": 0}
        self.full = 0
        self.considered = 0  # valid slots of the leaves the last leaf test looked at

    def add_centre(self, centre: int) -> int:
        self.step += 1
        slot = self.layout.slot_of[centre]
        if self.lazy is not None:
            return self.lazy_step(slot)
        if self.lazy_mode:
            return self.hand_over(slot)
        active = self.active_leaves(slot) if self.step >= self.next_bound_step else None
        plain = active is None or len(active) > DENSE_FRACTION * self.layout.n_leaves
        self.recent_plain.append(plain)
        if plain:
            if (self.lazy_mode is None and len(self.recent_plain) == LAZY_WINDOW
                    and sum(self.recent_plain) >= LAZY_PLAIN_SHARE * LAZY_WINDOW):
                return self.hand_over(slot)
            self.plain_update(slot)
            return self.farthest_plain()
        self.pruned_update(slot, active)
        return self.farthest_pruned()

    def hand_over(self, slot: int) -> int:
        """The lazy loop takes the (exact) running minima over from here on; one step of it."""
        lay = self.layout
        self.lazy = LazyMinima(
            lay.points.reshape(-1, lay.points.shape[2]), lay.sq_norms.reshape(-1),
            self.min_sq.reshape(-1), lay.order.reshape(-1), self.n_select - self.step,
        )
        return self.lazy_step(slot)

    def lazy_step(self, slot: int) -> int:
        """One step of the lazy loop; returns the next centre's point index."""
        self.stats["lazy"] += 1
        return int(self.layout.order.reshape(-1)[self.lazy.add_centre(slot)])

    def fill(self, stats: CoresetStats) -> None:
        """Counts of what each test ruled out so far into ``stats``."""
        stats.group, stats.leaf, stats.point = (self.ruled_out[k] for k in ("group", "leaf", "point"))
        stats.full = self.full
        stats.plain_steps, stats.pruned_steps = self.stats["plain"], self.stats["pruned"]
        stats.lazy_steps = self.stats["lazy"]
        if self.lazy is not None:
            stats.full += self.lazy.evaluated
            stats.lazy = self.n_points * stats.lazy_steps - self.lazy.evaluated

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
        self.considered = int(self.valid_per_leaf[leaves].sum())
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
        self.full += self.n_points

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
        in_active = int(self.valid_per_leaf[active].sum())
        self.ruled_out["group"] += self.n_points - self.considered
        self.ruled_out["leaf"] += self.considered - in_active
        self.ruled_out["point"] += in_active - len(movers)
        self.full += len(movers)

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
