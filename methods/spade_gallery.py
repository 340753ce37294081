"""SPADE's pixel galleries as subsets of one clustered bank: exact k = 1 search without brute force.

A test image's gallery is every position of its K nearest training images. The
clusters are built once, at fit, over all training positions of a pyramid
level, stored cluster by cluster and, inside a cluster, image by image; each
(training image, cluster) pair keeps its own radius. A gallery is then a row
mask (its images' rows) and per-cluster radii (the largest of its images'),
both cheap, and ``methods.bank_index.nearest_in_clusters`` searches it with
the same exactness argument. The first candidate of each test position is the
same position in the nearest training image (aligned objects and textures
match there or near), then the members of its nearest cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.bank_clusters import ClusteredBank, arrange, default_clusters, kmeans, member_radii, split_outliers
from methods.bank_index import Nearest, nearest_in_clusters
from methods.nearest import DEFAULT_BUDGET_BYTES


@dataclass(frozen=True)
class GalleryIndex:
    """bank: all ``N_train * P`` training positions as a ``ClusteredBank`` (``source`` = image * P +
    position); image_of_row: ``[N_train * P]`` training image of each stored row; slot: ``[N_train, P]``
    stored row of each (image, position); radii: ``[N_train, C]`` float64, ``-inf`` where empty."""

    bank: ClusteredBank
    image_of_row: np.ndarray
    slot: np.ndarray
    radii: np.ndarray


def gallery_index(train: np.ndarray, seed: int = 0, n_clusters: int | None = None) -> GalleryIndex:
    """Index the training positions ``[N_train, P, C]`` of one pyramid level."""
    n_train, p, c = train.shape
    rows = np.ascontiguousarray(train.reshape(n_train * p, c), dtype=np.float32)
    labels, centres = split_outliers(rows, *kmeans(rows, default_clusters(len(rows), 1.0) if n_clusters is None else n_clusters, seed), seed)
    image = np.repeat(np.arange(n_train), p)
    order = np.lexsort((image, labels))  # by cluster, then image
    bank = arrange(rows, labels, centres, order)
    slot = np.empty(n_train * p, dtype=np.int64)
    slot[order] = np.arange(len(order))
    stored_image = image[order]
    radii = member_radii(bank.rows, bank.labels, bank.centres, n_train, stored_image)
    return GalleryIndex(bank=bank, image_of_row=stored_image, slot=slot.reshape(n_train, p), radii=radii)


def gallery_nearest(index: GalleryIndex, queries: np.ndarray, images: np.ndarray,
                    budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Nearest:
    """Each query's nearest position among the training images ``images`` ``[K]`` (nearest first).

    queries: ``[P', C]``, one test image's positions in row-major order. When
    ``P' == P`` the same position of ``images[0]`` is the first candidate.
    """
    n_train, p = index.slot.shape
    chosen = np.zeros(n_train, dtype=bool)
    chosen[images] = True
    row_mask = None if chosen.all() else chosen[index.image_of_row]
    radii = index.radii[images].max(axis=0)
    guess = index.slot[images[0]] if len(queries) == p else None
    return nearest_in_clusters(queries, index.bank, radii=radii, row_mask=row_mask, guess=guess,
                               budget_bytes=budget_bytes)
