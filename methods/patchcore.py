"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

1. Locally aware patch features: layer2 and layer3 of the backbone, each
   averaged over its 3x3 neighbourhood (stride 1, zero padding 1), layer3
   resized bilinearly to layer2's grid, the two concatenated per position.
2. Memory bank: a greedy k-center coreset of all training patch features,
   ``coreset_ratio`` of them, selected on a seeded random projection.
3. Patch score: distance of each test patch to its nearest bank entry. On the
   NumPy path a bank of 4,096 rows or more is clustered at fit and searched exactly with bounds
   (``methods.bank_index``): the same nearest entries as brute force, most
   distances never computed.
4. Image score (Eq. 7): the largest patch score s*, re-weighted by how isolated
   its nearest bank entry m* is: ``s = (1 - softmax(d)[0]) * s*`` where ``d``
   holds the distances from that test patch to m* and to m*'s other b-1
   nearest bank entries.
5. Anomaly map: the patch-score grid upsampled to the input size, Gaussian
   blur with sigma 4.

On the Paddle path (a GPU, see ``methods.backend``) fit and predict embed the
patches on the device from the category's shared device copies
(``FeatureSet.tensor``), the bank stays on the device between calls, and only
the bank, the patch scores and each image's worst patch come back to the host.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.special import softmax  # subtracts the largest entry first: cannot overflow

from bench import hookimpl
from methods.backend import use_paddle
from methods.bank_clusters import ClusteredBank, cluster_bank
from methods.bank_index import nearest_in_clusters
from methods.base import AnomalyMethod, FeatureSet, MethodError, Prediction
from methods.coreset import greedy_coreset
from methods.device_embedding import patchcore_embedding_tensor
from methods.maps import anomaly_map, resize_bilinear
from methods.nearest import nearest_neighbors, nearest_neighbors_paddle
from methods.options import float_range, positive_int

if TYPE_CHECKING:
    import paddle

SEARCHES = ("auto", "pruned", "brute")
# Below this many bank rows brute force is about as fast as anything: "auto" does not cluster.
PRUNE_MIN_ROWS = 4096


def local_average(x: np.ndarray) -> np.ndarray:
    """3x3 average over each position of ``[N, C, h, w]``, zeros beyond the border, divided by 9."""
    return uniform_filter(x, size=(1, 1, 3, 3), mode="constant", cval=0.0)


def patch_embedding(features: FeatureSet) -> np.ndarray:
    """layer2 and layer3 -> ``[N, h2, w2, C2 + C3]`` locally aware patch features."""
    layer2 = local_average(features["layer2"])
    layer3 = resize_bilinear(local_average(features["layer3"]), layer2.shape[-2:])
    return np.concatenate([layer2, layer3], axis=1).transpose(0, 2, 3, 1).astype(np.float32)


def reweighted_image_scores(
    patches: np.ndarray,
    patch_scores: np.ndarray,
    nearest: np.ndarray,
    bank: np.ndarray,
    num_neighbors: int,
) -> np.ndarray:
    """The paper's Eq. 7 image score.

    patches: ``[N, P, D]`` test patch features; patch_scores, nearest: ``[N, P]``
    distance to and index of each patch's nearest bank entry; bank: ``[K, D]``.
    Returns ``[N]``.
    """
    rows = np.arange(len(patches))
    worst = patch_scores.argmax(axis=1)
    return worst_patch_scores(patches[rows, worst], patch_scores[rows, worst], nearest[rows, worst],
                              bank, num_neighbors)


def bank_neighbors(bank: np.ndarray, m_star: np.ndarray, b: int) -> np.ndarray:
    """``[N, b]`` indices of the ``b`` nearest bank rows of each bank row ``m_star`` ``[N]``."""
    return nearest_neighbors(bank[m_star], bank, k=b)[1]


def worst_patch_scores(
    test_patch: np.ndarray,
    s_star: np.ndarray,
    m_star: np.ndarray,
    bank: np.ndarray,
    num_neighbors: int,
    neighbors_of=bank_neighbors,
) -> np.ndarray:
    """Eq. 7 from each image's worst patch alone.

    test_patch: ``[N, D]`` each image's highest-scoring patch; s_star, m_star:
    ``[N]`` its distance to and index of its nearest bank entry; bank: ``[K, D]``.
    ``neighbors_of(bank, m_star, b)`` gives the ``[N, b]`` support sets (the Paddle
    path searches its device copy of the bank). Returns ``[N]``.
    """
    b = min(num_neighbors, len(bank))
    if b <= 1:
        # One bank entry leaves nothing to re-weight by (softmax over one distance is 1, and
        # would zero every score): the image score is the plain maximum, as for b = 1.
        return s_star
    support = neighbors_of(bank, m_star, b)  # [N, b]
    # m* itself leads the support set even if the bank holds duplicates of it.
    others = np.array([[j for j in row if j != m][: b - 1] for row, m in zip(support, m_star)], dtype=np.int64)
    support = np.concatenate([m_star[:, None], others.reshape(len(m_star), b - 1)], axis=1)
    d = np.linalg.norm(bank[support] - test_patch[:, None, :], axis=2)  # [N, b]
    return (1.0 - softmax(d, axis=1)[:, 0]) * s_star


class PatchCore(AnomalyMethod):
    """Memory bank of nominal patch features, scored by nearest-neighbour distance."""

    name = "patchcore"
    layers = ("layer2", "layer3")

    def __init__(
        self,
        coreset_ratio: float = 0.1,
        num_neighbors: int = 9,
        projection_dim: int = 128,
        seed: int = 0,
        search: str = "auto",
    ):
        self.coreset_ratio = coreset_ratio
        self.num_neighbors = num_neighbors
        self.projection_dim = projection_dim
        self.seed = seed
        # "pruned": clustered exact search on the NumPy path; "brute": plain GEMM search;
        # "auto": pruned for banks of PRUNE_MIN_ROWS rows or more. The scores agree up to float32
        # rounding (in near ties the pruned pick is the nearer one; see methods.bank_index).
        if search not in SEARCHES:
            raise MethodError(f"PatchCore's search must be one of {', '.join(SEARCHES)}, got {search!r}")
        self.search = search

    @classmethod
    def from_config(cls, options) -> "PatchCore":
        return cls(
            coreset_ratio=options.coreset_ratio,
            num_neighbors=options.num_neighbors,
            seed=options.seed,
        )

    def n_select(self, n_patches: int) -> int:
        return max(1, int(round(n_patches * self.coreset_ratio)))

    def fit(self, features: FeatureSet) -> "PatchCore":
        if use_paddle():
            return self._fit_on_device(features)
        patches = patch_embedding(features)
        patches = patches.reshape(-1, patches.shape[-1])
        if self.coreset_ratio >= 1.0:
            self.memory_bank_ = patches
        else:
            chosen = greedy_coreset(
                patches, self.n_select(len(patches)), projection_dim=self.projection_dim, seed=self.seed
            )
            self.memory_bank_ = patches[chosen]
        if self.prunes():
            self.clustered_bank()  # built here, so that fit pays for it
        return self

    def _fit_on_device(self, features: FeatureSet) -> "PatchCore":
        """fit's Paddle path: patches embedded, projected and selected on the device from the
        category's shared device copies; only the ``[K, D]`` bank comes back to the host."""
        import paddle

        with paddle.no_grad():
            patches = patchcore_embedding_tensor(features)
            patches = patches.reshape([-1, patches.shape[-1]])  # [N*h*w, D]
            if self.coreset_ratio >= 1.0:
                bank = patches
            else:
                chosen = greedy_coreset(
                    patches, self.n_select(int(patches.shape[0])), projection_dim=self.projection_dim,
                    seed=self.seed,
                )
                bank = paddle.gather(patches, paddle.to_tensor(chosen))
            self.memory_bank_ = bank.numpy()
            # The bank is on the device already: predict need not upload it again.
            self._keep_device_bank(bank)
        return self

    def prunes(self) -> bool:
        """Whether predict searches the bank through its clusters (NumPy path only)."""
        if self.search == "brute" or use_paddle():
            return False
        return self.search == "pruned" or len(self.memory_bank_) >= PRUNE_MIN_ROWS

    def clustered_bank(self) -> ClusteredBank:
        """The memory bank clustered for pruned search: built once per bank, kept privately (it is
        derived from ``memory_bank_``, so saved models need not hold it; a loaded model builds it here)."""
        cached = getattr(self, "_clustered", None)
        if cached is None or cached[0] is not self.memory_bank_:
            cached = (self.memory_bank_, cluster_bank(self.memory_bank_, seed=self.seed))
            self._clustered = cached
        return cached[1]

    def nearest_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[M, D]`` -> distance ``[M]`` to and index ``[M]`` of each patch's nearest bank row."""
        if self.prunes():
            bank = self.clustered_bank()
            found = nearest_in_clusters(patches, bank)
            return found.distances, bank.source[found.rows]
        dist, idx = nearest_neighbors(patches, self.memory_bank_, k=1)
        return dist[:, 0], idx[:, 0]

    def device_bank(self) -> tuple["paddle.Tensor", "paddle.Tensor"]:
        """``memory_bank_`` ``[K, D]`` and its squared row norms ``[K]`` on Paddle's current device.

        Uploaded once per bank and device and kept privately, like the clustered bank:
        derived from ``memory_bank_``, so saved models need not hold it (a loaded model
        uploads it here, at its first predict).
        """
        import paddle

        cached = getattr(self, "_device_bank", None)
        if cached is None or cached[0] is not self.memory_bank_ or cached[1] != paddle.device.get_device():
            self._keep_device_bank(paddle.to_tensor(np.ascontiguousarray(self.memory_bank_, dtype=np.float32)))
            cached = self._device_bank
        return cached[2], cached[3]

    def _keep_device_bank(self, bank: "paddle.Tensor") -> None:
        """Remember ``bank`` (a device copy of ``memory_bank_``) and its squared norms for ``device_bank``."""
        import paddle

        with paddle.no_grad():
            norms = (bank * bank).sum(axis=1)  # x*x: far faster than x**2
        self._device_bank = (self.memory_bank_, paddle.device.get_device(), bank, norms)

    def predict(self, features: FeatureSet) -> Prediction:
        if use_paddle():
            patch_scores, scores = self._scores_on_device(features)
        else:
            patch_scores, scores = self._scores_on_host(features)
        maps = anomaly_map(patch_scores, features.image_size)
        return Prediction(scores=scores.astype(np.float64), maps=maps)

    def _scores_on_host(self, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
        """Patch scores ``[N, h, w]`` and Eq. 7 image scores ``[N]``, in NumPy."""
        patches = patch_embedding(features)
        n, h, w, d = patches.shape
        patches = patches.reshape(n, h * w, d)
        dist, idx = self.nearest_patches(patches.reshape(-1, d))
        patch_scores = dist.reshape(n, h * w)
        scores = reweighted_image_scores(
            patches, patch_scores, idx.reshape(n, h * w), self.memory_bank_, self.num_neighbors
        )
        return patch_scores.reshape(n, h, w), scores

    def _scores_on_device(self, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
        """``_scores_on_host`` on Paddle's device: the patches embedded from the category's shared
        device copies and searched against the kept device bank; only the scores, the nearest
        indices and each image's worst patch ``[N, D]`` (for Eq. 7) come back to the host."""
        import paddle

        bank, norms = self.device_bank()

        def neighbors_of(_host_bank: np.ndarray, m_star: np.ndarray, b: int) -> np.ndarray:
            # The support sets searched in the device bank, not the host one handed in.
            return nearest_neighbors_paddle(paddle.gather(bank, paddle.to_tensor(m_star)), bank, k=b,
                                            bank_sq_norms=norms)[1]

        with paddle.no_grad():
            patches = patchcore_embedding_tensor(features)
            n, h, w, d = patches.shape
            flat = patches.reshape([-1, d])  # [N*h*w, D]
            dist, idx = nearest_neighbors_paddle(flat, bank, k=1, bank_sq_norms=norms)
            patch_scores, nearest = dist[:, 0].reshape(n, h * w), idx[:, 0].reshape(n, h * w)
            rows = np.arange(n)
            worst = patch_scores.argmax(axis=1)
            test_patch = paddle.gather(flat, paddle.to_tensor(rows * h * w + worst)).numpy()
            scores = worst_patch_scores(test_patch, patch_scores[rows, worst], nearest[rows, worst],
                                        self.memory_bank_, self.num_neighbors, neighbors_of=neighbors_of)
        return patch_scores.reshape(n, h, w), scores


# Flags are prefixed with the method's name (the rule of bench.hookspecs); each keeps its
# first spelling as a hidden alias, so older command lines and ``--resume`` of older runs parse.
FLAG_ALIASES = {"--patchcore-coreset-ratio": "--coreset-ratio", "--patchcore-num-neighbors": "--num-neighbors"}


@hookimpl
def patchbench_add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("patchcore")
    flags = {
        "--patchcore-coreset-ratio": dict(
            dest="coreset_ratio", type=float_range(0.0, 1.0, low_open=True), default=0.1, metavar="RATIO",
            help="fraction of training patch features kept in PatchCore's memory bank "
                 "(default 0.1; > 0 and <= 1). Formerly --coreset-ratio, still accepted",
        ),
        "--patchcore-num-neighbors": dict(
            dest="num_neighbors", type=positive_int, default=9, metavar="B",
            help="b in PatchCore's re-weighted image score, Eq. 7; 1 is the plain maximum "
                 "(default 9; at least 1). Formerly --num-neighbors, still accepted",
        ),
    }
    for flag, settings in flags.items():
        group.add_argument(flag, **settings)
        # A second argument rather than a second option string of the first: argparse then names
        # the spelling the user typed in its errors, and the help lists only the new name.
        group.add_argument(FLAG_ALIASES[flag], **{**settings, "help": argparse.SUPPRESS})


@hookimpl
def patchbench_methods() -> list[type[AnomalyMethod]]:
    return [PatchCore]
