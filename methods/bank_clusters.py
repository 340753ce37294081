"""A bank of vectors partitioned into small clusters, stored cluster by cluster, for pruned search.

``cluster_bank`` runs a seeded k-means (Lloyd's steps on a sample, then one
assignment of every row) and keeps, per cluster, its centre and the radius of
the ball about that centre that holds all its members. The radius is measured
in float64 from the stored float32 rows and centre and then rounded up, so the
triangle inequality ``|q - b| >= |q - c| - r`` holds for every stored row: the
search (``methods.bank_index``) relies on nothing else about the clustering. A
poor clustering only prunes less; it never changes a result.

Rows and centres are stored less the bank's mean (``offset``). Distances do not
change, but norms shrink (3-4x for post-ReLU CNN features), and the float32
expansion ``|q|^2 - 2 q.b + |b|^2`` errs in proportion to the squared norms: the
search's rounding width, and with it the near ties it must settle by direct
distance, shrinks ~10x. ``raw`` keeps the bank as given, for those direct distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Rows per k-means sample point: centres only need to find the bank's modes.
SAMPLE_PER_CLUSTER = 32
KMEANS_STEPS = 6
CHUNK_ROWS = 8192
# Radii are computed in float64 from exactly representable values; this covers its rounding.
RADIUS_INFLATION = 1 + 1e-12
# Members farther than this times their cluster's median distance go to clusters of their own.
OUTLIER_SPREAD = 2.0


@dataclass(frozen=True)
class ClusteredBank:
    """Bank rows grouped by cluster (all arrays, no behaviour).

    rows: ``[N, D]`` float32, ``fl(raw row - offset)``, cluster ``j`` in
    ``rows[offsets[j]:offsets[j+1]]``; sq_norms: ``[N]`` float32 ``|row|^2``;
    source: ``[N]`` int64 index of each stored row in ``raw``; offsets: ``[C + 1]``
    int64; centres: ``[C, D]`` float32, in the stored (offset) coordinates;
    centre_sq_norms: ``[C]`` float32; radii: ``[C]`` float64, every stored member
    within ``radii[j]`` of ``centres[j]``; labels: ``[N]`` int64 cluster of each
    stored row (ascending); offset: ``[D]`` float32; raw: ``[N, D]`` float32, the
    bank as given (not a copy when it was contiguous float32).
    """

    rows: np.ndarray
    sq_norms: np.ndarray
    source: np.ndarray
    offsets: np.ndarray
    centres: np.ndarray
    centre_sq_norms: np.ndarray
    radii: np.ndarray
    labels: np.ndarray
    offset: np.ndarray
    raw: np.ndarray

    @property
    def max_norm(self) -> float:
        return float(np.sqrt(self.sq_norms.max(initial=0.0)))


def default_clusters(n_rows: int, per_sqrt: float = 2.0) -> int:
    """``per_sqrt * sqrt(N)`` clusters (at least 1, at most N). Measured on structured features: 2 for
    PatchCore banks (16k x 384: 13 % of the distances computed), 1 for SPADE's low-dimensional
    layer1 (188k x 64), where smaller products cost more in calls than they save in distances."""
    return max(1, min(n_rows, int(round(per_sqrt * math.sqrt(n_rows)))))


def nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``[N, D]``, ``[C, D]`` -> ``[N]`` int64 index of each row's nearest centre (float32 expansion)."""
    c_sq = np.einsum("ij,ij->i", centres, centres)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), CHUNK_ROWS):
        block = x[start : start + CHUNK_ROWS] @ (centres.T * np.float32(-2.0))
        block += c_sq[None, :]
        out[start : start + CHUNK_ROWS] = block.argmin(axis=1)
    return out


def cluster_means(x: np.ndarray, labels: np.ndarray, n_clusters: int, fallback: np.ndarray) -> np.ndarray:
    """Mean of each cluster's rows (float64 sums), ``fallback[j]`` for an empty cluster: ``[C, D]`` float32."""
    sums = np.zeros((n_clusters, x.shape[1]), dtype=np.float64)
    _sorted_sums(x, labels, sums)
    counts = np.bincount(labels, minlength=n_clusters)
    means = fallback.astype(np.float64, copy=True)
    filled = counts > 0
    means[filled] = sums[filled] / counts[filled, None]
    return means.astype(np.float32)


def _sorted_sums(x: np.ndarray, labels: np.ndarray, sums: np.ndarray) -> None:
    """Add each cluster's rows of ``x`` into ``sums`` (float64), ``CHUNK_ROWS`` sorted rows at a time: a float64
    copy of all of ``x`` would be 2.5 GB for SPADE's 1.2M x 256 layer1 positions at wide_resnet50_2."""
    order = np.argsort(labels, kind="stable")
    for at in range(0, len(order), CHUNK_ROWS):
        rows = order[at : at + CHUNK_ROWS]
        chunk_labels = labels[rows]
        starts = np.flatnonzero(np.r_[True, chunk_labels[1:] != chunk_labels[:-1]])
        # Each label once per chunk (sorted), so the fancy += adds every run.
        sums[chunk_labels[starts]] += np.add.reduceat(x[rows].astype(np.float64), starts, axis=0)


def kmeans(x: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means of ``[N, D]`` float32 rows: labels ``[N]`` int64 and centres ``[C', D]`` float32.

    Lloyd's steps run on a seeded sample; every row is then assigned once and
    the centres re-averaged over all members. Empty clusters are dropped (C' <= C).
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    n_clusters = max(1, min(n_clusters, n))
    sample = x if n <= SAMPLE_PER_CLUSTER * n_clusters else x[rng.choice(n, SAMPLE_PER_CLUSTER * n_clusters, replace=False)]
    centres = sample[rng.choice(len(sample), n_clusters, replace=False)].copy()
    for _ in range(KMEANS_STEPS):
        centres = cluster_means(sample, nearest_centre(sample, centres), n_clusters, centres)
    labels = nearest_centre(x, centres)
    centres = cluster_means(x, labels, n_clusters, centres)
    used = np.unique(labels)
    renumber = np.full(n_clusters, -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    return renumber[labels], centres[used]


def split_outliers(x: np.ndarray, labels: np.ndarray, centres: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move each cluster's far members (beyond ``OUTLIER_SPREAD`` x its median distance to the centre)
    into clusters of their own: a radius is its farthest member's, and a few strays would make every
    bound of their cluster loose. Returns labels ``[N]`` and centres ``[C'', D]`` like ``kmeans``."""
    dist = np.empty(len(x))
    for start in range(0, len(x), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        diff = x[part] - centres[labels[part]]
        dist[part] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(len(centres)))
    median = np.array([np.median(chunk) if len(chunk) else 0.0 for chunk in np.split(dist[order], starts[1:])])
    far = dist > OUTLIER_SPREAD * median[labels]
    if far.sum() < 2:
        return labels, centres
    far_labels, far_centres = kmeans(x[far], default_clusters(int(far.sum()), 1.0), seed + 1)
    labels = labels.copy()
    labels[far] = len(centres) + far_labels
    centres = np.concatenate([centres, far_centres])
    used = np.unique(labels)
    renumber = np.full(len(centres), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    return renumber[labels], centres[used]


def member_radii(rows: np.ndarray, labels: np.ndarray, centres: np.ndarray, n_groups: int,
                 groups: np.ndarray | None = None) -> np.ndarray:
    """Largest ``|row - centre[label]|`` per (group, cluster), float64, rounded up: ``[n_groups, C]``.

    rows: ``[N, D]`` float32; labels, groups: ``[N]`` (groups None: one group).
    A (group, cluster) pair without members gets ``-inf``.
    """
    radii = np.full((n_groups, len(centres)), -np.inf)
    groups = np.zeros(len(rows), dtype=np.int64) if groups is None else groups
    for start in range(0, len(rows), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        diff = rows[part].astype(np.float64) - centres[labels[part]].astype(np.float64)
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff)) * RADIUS_INFLATION
        np.maximum.at(radii, (groups[part], labels[part]), dist)
    return radii


def cluster_bank(bank: np.ndarray, n_clusters: int | None = None, seed: int = 0) -> ClusteredBank:
    """Partition ``bank`` ``[N, D]`` into about ``n_clusters`` clusters (default ``default_clusters(N)``)."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    if n_clusters is None:
        n_clusters = default_clusters(len(bank))
    labels, centres = split_outliers(bank, *kmeans(bank, n_clusters, seed), seed)
    order = np.argsort(labels, kind="stable")
    return arrange(bank, labels, centres, order)


def arrange(bank: np.ndarray, labels: np.ndarray, centres: np.ndarray, order: np.ndarray) -> ClusteredBank:
    """The ``ClusteredBank`` of ``bank`` ``[N, D]`` float32 stored in ``order`` (which must sort ``labels``),
    less the bank's mean; ``centres`` in the bank's own coordinates."""
    offset = bank.mean(axis=0, dtype=np.float64).astype(np.float32)
    rows = bank[order]
    rows -= offset
    centres = np.ascontiguousarray(centres - offset, dtype=np.float32)
    sorted_labels = labels[order]
    offsets = np.searchsorted(sorted_labels, np.arange(len(centres) + 1)).astype(np.int64)
    return ClusteredBank(
        rows=rows,
        sq_norms=np.einsum("ij,ij->i", rows, rows),
        source=order.astype(np.int64),
        offsets=offsets,
        centres=centres,
        centre_sq_norms=np.einsum("ij,ij->i", centres, centres),
        radii=member_radii(rows, sorted_labels, centres, 1)[0],
        labels=sorted_labels,
        offset=offset,
        raw=bank,
    )
