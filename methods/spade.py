"""SPADE (Cohen and Hoshen, "Sub-Image Anomaly Detection with Deep Pyramid
Correspondences", 2020).

1. Feature extraction: an ImageNet-pretrained ResNet gives, per image, its
   globally average-pooled feature vector (after layer4, the network's own
   pool) and its feature pyramid (the activation maps of layer1, layer2 and
   layer3).
2. K nearest normal images: the image anomaly score of a test image is the
   mean distance of its pooled feature to those of its K nearest training
   images (K = 50 in the paper; Euclidean distances, as the authors' reference
   code computes them). K is capped at the number of training images.
3. Sub-image anomaly detection by alignment with those K images: for each
   pyramid level, a gallery holds the features of every position of the K
   retrieved images; the score of a test position is its distance to the
   nearest gallery feature (kappa = 1). Looking up any position of any
   retrieved image, rather than only the same position, is what makes the
   correspondence robust to misalignment.
4. Anomaly map: each level's score grid is upsampled (bilinear) to the input
   size, the levels are averaged, and the result is smoothed with a Gaussian of
   sigma 4. The image score stays the one of step 2.

The image search goes through ``methods.nearest.nearest_neighbors``. The pixel
search, on the NumPy path and for galleries of 4,096 rows or more, clusters each level's training positions once at fit
and searches each gallery as a subset of them, exactly, computing few of the
distances (``methods.spade_gallery``); on a GPU it is brute force in Paddle
(see ``methods.backend``), on the test features' shared device copies
(``FeatureSet.tensor``). Both give the same maps up to float32 rounding.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench import hookimpl
from methods.backend import use_paddle
from methods.base import AnomalyMethod, FeatureSet, MethodError, Prediction
from methods.device_embedding import spade_pooled_tensor, spade_queries_tensor
from methods.maps import resize_bilinear, smooth
from methods.nearest import (
    DEFAULT_BUDGET_BYTES,
    nearest_neighbors,
    nearest_neighbors_numpy,
    nearest_neighbors_paddle,
)
from methods.options import positive_int
from methods.spade_gallery import GalleryIndex, gallery_index, gallery_nearest

PYRAMID = ("layer1", "layer2", "layer3")
POOLED = "avgpool"
SIGMA = 4.0
SEARCHES = ("auto", "pruned", "brute")
# Galleries below this many rows are searched by brute force under "auto": nothing to gain.
PRUNE_MIN_ROWS = 4096
# The clustering's seed: it changes which distances are computed, never a result.
INDEX_SEED = 0


def positions_last(layer: np.ndarray) -> np.ndarray:
    """``[N, C, h, w]`` -> contiguous float32 ``[N, h, w, C]``: one row per position."""
    return np.ascontiguousarray(layer.transpose(0, 2, 3, 1), dtype=np.float32)


def queries(image: np.ndarray) -> np.ndarray:
    """One image's ``[C, h, w]`` features -> ``[h*w, C]`` rows, in row-major position order."""
    return np.ascontiguousarray(image.reshape(len(image), -1).T, dtype=np.float32)


def gallery_distances(train: np.ndarray, test: np.ndarray, neighbors: np.ndarray,
                      budget_bytes: int = DEFAULT_BUDGET_BYTES) -> np.ndarray:
    """Each test position's distance to the nearest position of the test image's retrieved images.

    train: ``[N_train, h, w, C]`` (the fitted state); test: ``[N, C, h', w']`` (as
    the backbone gives it; transposed one image at a time); neighbors: ``[N, K]``
    indices of each test image's nearest training images. Returns ``[N, h', w']``.
    """
    n_train, h, w, c = train.shape
    n, _, ht, wt = test.shape
    if use_paddle():
        # A [N, h'*w', C] view: each image's rows are made contiguous as they go to the device.
        rows = test.reshape(n, c, ht * wt).transpose(0, 2, 1)
        return gallery_distances_paddle(train, rows, neighbors, budget_bytes).reshape(n, ht, wt)
    bank = train.reshape(n_train, h * w, c)
    out = np.empty((n, ht * wt), dtype=np.float32)
    norms = np.einsum("npc,npc->np", bank, bank)
    for i in range(n):
        gallery = bank[neighbors[i]].reshape(-1, c)
        dist, _ = nearest_neighbors_numpy(
            queries(test[i]), gallery, 1, budget_bytes=budget_bytes,
            bank_sq_norms=norms[neighbors[i]].reshape(-1),
        )
        out[i] = dist[:, 0]
    return out.reshape(n, ht, wt)


def gallery_distances_paddle(train: np.ndarray, test_rows, neighbors: np.ndarray,
                             budget_bytes: int = DEFAULT_BUDGET_BYTES) -> np.ndarray:
    """``gallery_distances`` on Paddle's device, per position: returns ``[N, h'*w']``.

    train: ``[N_train, h, w, C]``; test_rows: ``[N, h'*w', C]``, a NumPy array or
    a tensor already on the device (``spade_queries_tensor``: then no test row
    is uploaded); neighbors: ``[N, K]``.
    """
    import paddle

    n_train, h, w, c = train.shape
    n = int(test_rows.shape[0])
    out = np.empty((n, int(test_rows.shape[1])), dtype=np.float32)
    # The training features go to the device once; each gallery is gathered there.
    with paddle.no_grad():
        bank_t = paddle.to_tensor(np.ascontiguousarray(train.reshape(n_train, h * w, c), dtype=np.float32))
        norms_t = (bank_t * bank_t).sum(axis=2)
        for i in range(n):
            idx = paddle.to_tensor(neighbors[i])
            gallery = paddle.gather(bank_t, idx).reshape([-1, c])
            norms = paddle.gather(norms_t, idx).reshape([-1])
            dist, _ = nearest_neighbors_paddle(test_rows[i], gallery, 1, budget_bytes=budget_bytes,
                                               bank_sq_norms=norms)
            out[i] = dist[:, 0]
    return out


def pruned_gallery_distances(index: GalleryIndex, test: np.ndarray, neighbors: np.ndarray,
                             budget_bytes: int = DEFAULT_BUDGET_BYTES) -> np.ndarray:
    """``gallery_distances`` through the clustered index: the same ``[N, h', w']``, few distances computed."""
    n, _, ht, wt = test.shape
    out = np.empty((n, ht * wt), dtype=np.float32)
    for i in range(n):
        out[i] = gallery_nearest(index, queries(test[i]), neighbors[i], budget_bytes).distances
    return out.reshape(n, ht, wt)


class Spade(AnomalyMethod):
    """kNN over pooled features for images; per-pixel nearest match in the K nearest images' pyramids."""

    name = "spade"
    layers = PYRAMID + (POOLED,)

    def __init__(self, top_k: int = 50, budget_bytes: int = DEFAULT_BUDGET_BYTES, search: str = "auto"):
        self.top_k = top_k
        self.budget_bytes = budget_bytes
        # "pruned": clustered exact pixel search on the NumPy path; "brute": plain GEMM search;
        # "auto": pruned for galleries of PRUNE_MIN_ROWS rows or more. The maps agree up to float32
        # rounding (in near ties the pruned pick is the nearer one; see methods.bank_index).
        if search not in SEARCHES:
            raise MethodError(f"SPADE's search must be one of {', '.join(SEARCHES)}, got {search!r}")
        self.search = search

    @classmethod
    def from_config(cls, options) -> "Spade":
        return cls(top_k=options.spade_top_k)

    def fit(self, features: FeatureSet) -> "Spade":
        if self.top_k < 1:
            raise MethodError(f"SPADE's K (--spade-top-k) must be at least 1, got {self.top_k}")
        self.train_pooled_ = np.ascontiguousarray(features[POOLED], dtype=np.float32)
        for name in PYRAMID:
            setattr(self, f"train_{name}_", positions_last(features[name]))
            if self.prunes(name):
                self.gallery_index(name)  # built here, so that fit pays for it
        return self

    def prunes(self, name: str) -> bool:
        """Whether level ``name``'s pixel search goes through the clustered index (NumPy path only)."""
        if self.search == "brute" or use_paddle():
            return False
        train = getattr(self, f"train_{name}_")
        gallery_rows = min(self.top_k, len(train)) * train.shape[1] * train.shape[2]
        return self.search == "pruned" or gallery_rows >= PRUNE_MIN_ROWS

    def gallery_index(self, name: str) -> GalleryIndex:
        """Level ``name``'s training positions clustered, built once per training array and kept
        privately (derived from ``train_<name>_``: saved models need not hold it)."""
        train = getattr(self, f"train_{name}_")
        cache = self.__dict__.setdefault("_gallery_index", {})
        cached = cache.get(name)
        if cached is None or cached[0] is not train:
            n, h, w, c = train.shape
            cached = cache[name] = (train, gallery_index(train.reshape(n, h * w, c), seed=INDEX_SEED))
        return cached[1]

    def neighbors(self, pooled) -> tuple[np.ndarray, np.ndarray]:
        """Distances ``[N, K]`` and indices ``[N, K]`` of the K nearest training images (K capped).

        pooled: ``[N, C4]``, a NumPy array or, on the Paddle path, a device tensor."""
        k = min(self.top_k, len(self.train_pooled_))
        return nearest_neighbors(pooled, self.train_pooled_, k, budget_bytes=self.budget_bytes)

    def predict(self, features: FeatureSet) -> Prediction:
        on_device = use_paddle()
        # On the device the test features come from the category's shared device copies.
        distances, neighbors = self.neighbors(spade_pooled_tensor(features) if on_device else features[POOLED])
        scores = distances.astype(np.float64).mean(axis=1)
        n = len(distances)
        maps = np.zeros((n, *features.image_size), dtype=np.float32)
        for name in PYRAMID:
            train = getattr(self, f"train_{name}_")
            test = features[name]
            if test.shape[1] != train.shape[-1]:
                raise MethodError(
                    f"SPADE was fitted on {train.shape[-1]} {name} channels but got {test.shape[1]}; "
                    "fit and predict with the same backbone"
                )
            if self.prunes(name):
                grid = pruned_gallery_distances(self.gallery_index(name), test, neighbors, self.budget_bytes)
            elif on_device:
                rows = gallery_distances_paddle(train, spade_queries_tensor(features, name), neighbors,
                                                self.budget_bytes)
                grid = rows.reshape(n, *test.shape[2:])
            else:
                grid = gallery_distances(train, test, neighbors, self.budget_bytes)
            maps += resize_bilinear(grid, features.image_size)
        maps /= len(PYRAMID)
        return Prediction(scores=scores, maps=smooth(maps, SIGMA))


@hookimpl
def patchbench_add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("spade")
    group.add_argument(
        "--spade-top-k", type=positive_int, default=50, metavar="K",
        help="K nearest training images SPADE scores against and takes its pixel galleries from "
             "(default 50, as in the paper; capped at the number of training images)",
    )


@hookimpl
def patchbench_methods() -> list[type[AnomalyMethod]]:
    return [Spade]
