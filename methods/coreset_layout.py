"""The pruned coreset search's layout: points in the leaf order of a PCA tree, balls around leaves and groups.

The leaves are small balls of a balanced PCA tree, stored contiguously;
consecutive leaves form groups. The balls live in the leading principal
coordinates of the points (a distance there is a lower bound of the full one),
so a test reads m of d numbers. The tree decides how well the bounds prune,
never what is selected.
"""

from __future__ import annotations

import math

import numpy as np

from methods.coreset_bounds import dot_error
from methods.nearest import squared_norms

LEAF_SIZE = 32
# Leaves per group: groups are tested first, so most leaves' bounds are never read.
GROUP_LEAVES = 32
# Principal coordinates read per point of a surviving leaf before its full row is.
PREFIX_DIMS = 32
# Power iterations per tree node for the direction it is split along.
POWER_ITERATIONS = 2


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
