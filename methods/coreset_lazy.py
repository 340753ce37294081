"""The greedy k-center loop with lazy minima: only points that might be the farthest are brought up to date.

Where no bound rules much out (a texture's patch features spread over many
directions, so balls around leaves overlap every new centre), a plain step
still reads all N x d numbers for one matrix-vector product, and that read is
its whole cost. The lazy loop reads far less per step and does its arithmetic
as matrix-matrix products, which run at the core's speed rather than memory's.

Each point keeps the minimum over the centres folded in so far (the first
``applied`` of them) -- an upper bound of its true running minimum, since a
minimum over fewer float32 distances can only be larger. A step needs only the
farthest point:

1. a few probes (last step's runners-up) are brought up to date; the largest
   of their minima, ``theta``, is a lower bound of the farthest distance;
2. every point whose stale minimum is below ``theta`` cannot be the farthest
   (its true minimum is lower still) and is left alone;
3. the rest are brought up to date with one product per staleness class
   against the centres they miss, and the farthest of them is the answer.

No rounding margin is needed: the test compares stored float32 minima, and each
distance, when it is computed, is the plain loop's ``|x|^2 - 2 x.c + |c|^2`` in
float32 (another summation order: the selection is the plain loop's up to
float32 ties). Ties go to the lowest original index, as ``np.argmax`` does.
"""

from __future__ import annotations

import numpy as np

# Points probed first each step for a lower bound of the farthest distance.
PROBES = 16
# Distances per product at most (16 MB of float32): a poor probe step must not allocate N x k.
BLOCK = 1 << 22


class LazyMinima:
    """Lazy running minima over flat slots of ``points``.

    points ``[S, d]`` float32, sq_norms ``[S]`` float32 (as the plain loop has them),
    min_sq ``[S]`` float32, updated in place: exact for every slot on entry (-inf for
    chosen centres and padding); order ``[S]`` original index of each slot (for ties);
    capacity: how many centres may still be added.

    ``add_centre(slot)`` folds centre ``slot`` in and returns the slot of the next
    centre. ``evaluated`` counts the (point, centre) distances computed.
    """

    def __init__(self, points, sq_norms, min_sq, order, capacity: int):
        self.points, self.sq_norms, self.min_sq, self.order = points, sq_norms, min_sq, order
        self.centres = np.empty((capacity, points.shape[1]), dtype=np.float32)  # -2 c: exact scaling
        self.centre_sq = np.empty(capacity, dtype=np.float32)
        self.count = 0
        self.applied = np.zeros(len(points), dtype=np.int64)
        self.probes = self.largest(PROBES)
        self.evaluated = 0

    def add_centre(self, slot: int) -> int:
        self.centres[self.count] = self.points[slot] * np.float32(-2.0)
        self.centre_sq[self.count] = self.sq_norms[slot]
        self.count += 1
        self.min_sq[slot] = -np.inf
        self.applied[slot] = self.count
        self.refresh(self.probes)
        theta = self.min_sq[self.probes].max() if len(self.probes) else -np.inf
        # -inf minima (chosen, padding) are never candidates.
        theta = max(theta, np.float32(np.finfo(np.float32).min))
        candidates = np.flatnonzero(self.min_sq >= theta)
        self.refresh(candidates[self.applied[candidates] < self.count])
        values = self.min_sq[candidates]
        best = values.max()
        tied = candidates[values == best]
        winner = int(tied[np.argmin(self.order[tied])]) if len(tied) > 1 else int(tied[0])
        # Next step's probes: the runners-up among everything up to date now.
        pool = np.union1d(candidates, self.probes)
        pool = pool[pool != winner]
        if len(pool) > PROBES:
            pool = pool[np.argpartition(-self.min_sq[pool], PROBES - 1)[:PROBES]]
        elif len(pool) < PROBES // 2:
            # Each step without stale candidates uses one up: refill with the largest stale minima.
            pool = np.union1d(pool, self.largest(PROBES))
        self.probes = pool
        return winner

    def largest(self, count: int) -> np.ndarray:
        """Slots of the ``count`` largest minima (stale or not), chosen centres excluded."""
        count = min(count, len(self.min_sq))
        top = np.argpartition(self.min_sq, len(self.min_sq) - count)[len(self.min_sq) - count :]
        return top[self.min_sq[top] > -np.inf]

    def refresh(self, slots: np.ndarray) -> None:
        """Fold every centre ``slots`` ``[m]`` miss into their minima: one product per staleness class.

        Classes are powers of two of the number missed, so a product computes at most twice
        the distances it needs; a class is split into products of at most ``BLOCK`` distances.
        """
        slots = slots[self.applied[slots] < self.count]
        if not len(slots):
            return
        missed = self.count - self.applied[slots]
        classes = np.log2(missed).astype(np.int64)  # exact for powers of two
        for cls in np.unique(classes):
            group = slots[classes == cls]
            rows = max(1, BLOCK // int(self.count - self.applied[group].min()))
            for lo in range(0, len(group), rows):
                self.fold(group[lo : lo + rows])

    def fold(self, group: np.ndarray) -> None:
        """Fold the centres each of ``group`` ``[m]`` misses into its minimum, with one product."""
        first = self.applied[group]
        lo = int(first.min())
        dist = self.points[group] @ self.centres[lo : self.count].T  # [m, missed]
        dist += self.centre_sq[lo : self.count]
        if first.max() > lo:
            # Centres already folded in are not folded twice (their distances would round anew).
            dist[np.arange(self.count - lo) < (first - lo)[:, None]] = np.inf
        # Rounding is monotonic, so adding |x|^2 after the minimum gives the minimum of the sums.
        nearest = dist.min(axis=1)
        nearest += self.sq_norms[group]
        self.min_sq[group] = np.minimum(self.min_sq[group], nearest)
        self.applied[group] = self.count
        self.evaluated += int((self.count - first).sum())
