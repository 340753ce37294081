"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for
Anomaly Detection and Localization", 2020).

1. Embedding extraction: the activations of layer1, layer2 and layer3 of the
   backbone, layer2 and layer3 resized (nearest) to layer1's grid and
   concatenated per position; each grid position (i, j) then holds one patch
   embedding vector x_ij. A random subset of d of its dimensions is kept
   (random selection works as well as PCA and costs nothing): d = 100 of 448
   for ResNet-18, 550 of 1792 for Wide-ResNet-50-2. The subset is seeded.
2. Learning normality: at each position a multivariate Gaussian N(mu_ij,
   Sigma_ij) of the N training embeddings, with the sample mean and the
   unbiased sample covariance regularised by eps * I (eps = 0.01) so that it is
   full rank and invertible:
   ``Sigma_ij = 1/(N-1) sum_k (x^k_ij - mu_ij)(x^k_ij - mu_ij)^T + eps I``.
3. Inference: the anomaly score of a test patch is its Mahalanobis distance
   ``M(x_ij) = sqrt((x_ij - mu_ij)^T Sigma_ij^-1 (x_ij - mu_ij))``. The grid of
   distances is the anomaly map: upsampled (bilinear) to the input size and
   smoothed with a Gaussian of sigma 4. The image score is the map's maximum.

How (``methods.gaussians``): per position one float32 SYRK for the
covariance (checked against float64 at one position per chunk), one Cholesky
``Sigma = L L^T`` and the triangular inverse ``U = L^-T``; the model keeps
``mean_`` ``[P, d]`` and ``whitener_`` ``[P, d(d+1)/2]``, ``U``'s upper triangle
packed (float32), and the distance is ``|(x - mu) U|``. Models saved before
(``cov_inv_``, full float32 inverse covariances) still load and predict with
those.

Memory: the channel subset is taken from each layer before anything is
concatenated, and fit builds the reduced embedding a few grid rows at a time
(within ``budget_bytes``), so it holds the packed factors and one block of
rows, never the whole ``[N, d, h, w]`` embedding.

The Mahalanobis distances run in NumPy or, on a GPU, in Paddle (see
``methods.backend``); there the test embedding is built on the device from the
category's shared device copies (``FeatureSet.tensor``). Fit stays on the host
(its covariances are checked in float64 there).
"""

from __future__ import annotations

import argparse

import numpy as np

from bench import hookimpl
from methods.backend import use_paddle
from methods.base import AnomalyMethod, FeatureSet, MethodError, Prediction
from methods.gaussians import (
    DEFAULT_BUDGET_BYTES,
    fit_gaussians,
    packed_dim,
    packed_size,
    positions_per_chunk,
    single_threaded_blas,
    unpack_upper,
    whitened_distances,
    whitened_distances_paddle,
)
from methods.device_embedding import padim_samples_tensor
from methods.maps import anomaly_map, nearest_indices
from methods.options import positive_int

LAYERS = ("layer1", "layer2", "layer3")
# Channels of layer1..layer3 concatenated -> dimensions kept (the paper's choices).
DEFAULT_FEATURES = {448: 100, 1792: 550}  # resnet18, wide_resnet50_2
BACKBONE_CHANNELS = {"resnet18": 448, "wide_resnet50_2": 1792}
EPSILON = 0.01
IMAGES_PER_STEP = 32


def feature_count(total_channels: int, requested: int | None) -> int:
    """How many of ``total_channels`` embedding dimensions PaDiM keeps.

    ``requested`` (``--padim-features``) wins; without it the paper's choice for
    ResNet-18 (448 -> 100) and Wide-ResNet-50-2 (1792 -> 550); any other channel
    count needs the flag.
    """
    if requested is None:
        if total_channels not in DEFAULT_FEATURES:
            known = ", ".join(f"{c} -> {d}" for c, d in DEFAULT_FEATURES.items())
            raise MethodError(
                f"PaDiM has no default number of features for a backbone whose layer1..layer3 give "
                f"{total_channels} channels (known: {known}, i.e. resnet18 and wide_resnet50_2); "
                f"pass --padim-features N with 1 <= N <= {total_channels}"
            )
        return DEFAULT_FEATURES[total_channels]
    if not 1 <= requested <= total_channels:
        raise MethodError(
            f"--padim-features is {requested}, but layer1..layer3 give {total_channels} channels; "
            f"choose 1 <= N <= {total_channels}"
        )
    return int(requested)


def channel_subset(total_channels: int, n_features: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``n_features`` channels kept: a seeded draw without replacement."""
    chosen = np.random.default_rng(seed).choice(total_channels, n_features, replace=False)
    return np.sort(chosen).astype(np.int64)


def padim_samples(features: FeatureSet, channels: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """layer1..layer3 -> ``[r*w, d, N]`` float32, position-major: the ``channels`` of their
    concatenation at ``rows`` of layer1's ``h x w`` grid (all ``h`` rows by default).

    layer2 and layer3 are resized (nearest) to layer1's grid. Each layer gives
    only its share of ``channels``, and only the rows asked for, so neither the
    full concatenation nor a full resized layer is ever built. Position-major
    because every position's ``[d, N]`` samples are then one contiguous matrix
    for BLAS; the transposition is done a few images at a time, on a temporary
    small enough to stay in cache.
    """
    n, _, h, w = features[LAYERS[0]].shape
    grid_rows = np.arange(h)[rows]
    r = len(grid_rows)
    out = np.empty((r * w, len(channels), n), dtype=np.float32)
    offset, filled = 0, 0
    for name in LAYERS:
        layer = features[name]
        width, layer_h, layer_w = layer.shape[1:]
        local = channels[(channels >= offset) & (channels < offset + width)] - offset
        offset += width
        if r == 0 or len(local) == 0:
            continue
        source_rows = nearest_indices(layer_h, h)[grid_rows]
        source_cols = nearest_indices(layer_w, w)
        # Nearest indices rise with the row: the rows needed are one contiguous band.
        band = slice(int(source_rows[0]), int(source_rows[-1]) + 1)
        same_grid = (layer_h, layer_w) == (h, w)
        target = out[:, filled : filled + len(local)]
        for start in range(0, n, IMAGES_PER_STEP):
            part = layer[start : start + IMAGES_PER_STEP, local, band]  # [i, c, band, layer_w]
            if not same_grid:
                part = part[:, :, (source_rows - band.start)[:, None], source_cols[None, :]]
            target[:, :, start : start + IMAGES_PER_STEP] = part.reshape(len(part), len(local), r * w).T
        filled += len(local)
    return out


def padim_embedding(features: FeatureSet, channels: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """``padim_samples`` as ``[N, d, r, w]`` (a view): the embedding in the backbone's layout."""
    n, _, _, w = features[LAYERS[0]].shape
    samples = padim_samples(features, channels, rows)
    return samples.T.reshape(n, len(channels), -1, w)


def total_channels(features: FeatureSet) -> int:
    return int(sum(features[name].shape[1] for name in LAYERS))


def gaussian_per_position(
    x: np.ndarray, eps: float = EPSILON, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse regularised covariance at every position (the representation before the
    packed factor; PaDiM itself keeps ``methods.gaussians.fit_gaussians``'s whitener).

    x: ``[N, P, d]`` (any strides). Returns ``mean`` ``[P, d]`` and ``cov_inv``
    ``[P, d, d]`` float32, ``cov_inv = U U^T`` from the whitening factor ``U``.
    """
    mean, whitener = fit_gaussians(x, eps, budget_bytes=budget_bytes)
    d = mean.shape[1]
    cov_inv = np.empty((len(mean), d, d), dtype=np.float32)
    step = positions_per_chunk(4 * 2 * d * d, budget_bytes, len(mean))
    with single_threaded_blas():
        for start in range(0, len(mean), step):
            factor = unpack_upper(whitener[start : start + step], d)
            np.matmul(factor, factor.transpose(0, 2, 1), out=cov_inv[start : start + step])
    return mean, cov_inv


def mahalanobis(
    x: np.ndarray, mean: np.ndarray, cov_inv: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """Mahalanobis distance of each ``x[n, p]`` to the Gaussian at position ``p``, from full inverse
    covariances: what models saved with ``cov_inv_`` (before the packed factor) predict with.

    x: ``[N, P, d]`` (any strides); mean: ``[P, d]``; cov_inv: ``[P, d, d]``.
    Returns ``[N, P]`` float32. Runs ``mahalanobis_paddle`` when
    ``methods.backend.use_paddle()``, else ``mahalanobis_numpy``.
    """
    impl = mahalanobis_paddle if use_paddle() else mahalanobis_numpy
    return impl(x, mean, cov_inv, budget_bytes=budget_bytes)


def _chunk_step(x: np.ndarray, budget_bytes: int) -> int:
    n, p, d = x.shape
    # Per position: the centred chunk and its product with the inverse, float32.
    return positions_per_chunk(4 * 2 * n * d, budget_bytes, p)


def mahalanobis_numpy(
    x: np.ndarray, mean: np.ndarray, cov_inv: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """NumPy ``mahalanobis``: batched matrix products over a chunk of positions."""
    n, p, d = x.shape
    out = np.empty((p, n), dtype=np.float32)
    step = _chunk_step(x, budget_bytes)
    with single_threaded_blas():  # one small (N x d) @ (d x d) product per position
        for start in range(0, p, step):
            stop = min(p, start + step)
            delta = np.ascontiguousarray(x[:, start:stop].transpose(1, 0, 2), dtype=np.float32)
            delta -= mean[start:stop, None, :]
            scaled = np.matmul(delta, cov_inv[start:stop])  # [pc, N, d]
            squared = np.einsum("pnd,pnd->pn", scaled, delta)
            np.maximum(squared, 0.0, out=squared)
            out[start:stop] = np.sqrt(squared)
    return np.ascontiguousarray(out.T)


def mahalanobis_paddle(
    x: np.ndarray, mean: np.ndarray, cov_inv: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """Paddle ``mahalanobis``: same arguments and result, on Paddle's device, a chunk at a time."""
    import paddle

    n, p, d = x.shape
    out = np.empty((p, n), dtype=np.float32)
    step = _chunk_step(x, budget_bytes)
    with paddle.no_grad():
        for start in range(0, p, step):
            stop = min(p, start + step)
            delta = paddle.to_tensor(
                np.ascontiguousarray(x[:, start:stop].transpose(1, 0, 2), dtype=np.float32)
            )
            mu = paddle.to_tensor(np.ascontiguousarray(mean[start:stop], dtype=np.float32))
            inv = paddle.to_tensor(np.ascontiguousarray(cov_inv[start:stop], dtype=np.float32))
            delta = delta - mu.unsqueeze(1)
            squared = (paddle.bmm(delta, inv) * delta).sum(axis=-1)  # [pc, N]
            out[start:stop] = paddle.sqrt(paddle.clip(squared, min=0.0)).numpy()
    return np.ascontiguousarray(out.T)


class Padim(AnomalyMethod):
    """A Gaussian per patch position; patches scored by Mahalanobis distance."""

    name = "padim"
    layers = LAYERS

    def __init__(
        self,
        n_features: int | None = None,
        seed: int = 0,
        eps: float = EPSILON,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ):
        self.n_features = n_features
        self.seed = seed
        self.eps = eps
        self.budget_bytes = budget_bytes

    @classmethod
    def from_config(cls, options) -> "Padim":
        return cls(n_features=options.padim_features, seed=options.seed)

    def _positions(self, features: FeatureSet, rows: slice = slice(None)) -> np.ndarray:
        """``[N, r*w, d]`` view (of position-major memory) of the reduced embedding at ``rows``."""
        return padim_samples(features, self.channels_, rows).transpose(2, 0, 1)

    def fit(self, features: FeatureSet) -> "Padim":
        channels = total_channels(features)
        d = feature_count(channels, self.n_features)
        self.channels_ = channel_subset(channels, d, self.seed)
        self.input_channels_ = channels
        self.grid_shape_ = tuple(features[LAYERS[0]].shape[-2:])
        self.mean_, self.whitener_ = self._gaussians(features, d)
        return self

    def _rows_per_block(self, n: int, d: int, w: int) -> int:
        """Grid rows of the reduced ``[N, d, r, w]`` float32 embedding that fit ``budget_bytes`` (at least 1)."""
        return max(1, self.budget_bytes // (4 * n * d * w))

    def _gaussians(self, features: FeatureSet, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``[h*w, d]`` and whitener ``[h*w, d(d+1)/2]``, a few grid rows of the embedding at a
        time: fit holds the packed factors and one block, never the whole ``[N, d, h, w]`` embedding."""
        n, _, h, w = features[LAYERS[0]].shape
        rows_per_block = self._rows_per_block(n, d, w)
        mean = np.empty((h * w, d), dtype=np.float32)
        whitener = np.empty((h * w, packed_size(d)), dtype=np.float32)
        for top in range(0, h, rows_per_block):
            x = self._positions(features, slice(top, top + rows_per_block))  # [N, r*w, d]
            done = slice(top * w, top * w + x.shape[1])
            mean[done], whitener[done] = fit_gaussians(x, self.eps, budget_bytes=self.budget_bytes)
        return mean, whitener

    def predict(self, features: FeatureSet) -> Prediction:
        grid = tuple(features[LAYERS[0]].shape[-2:])
        channels = total_channels(features)
        if grid != self.grid_shape_ or channels != self.input_channels_:
            raise MethodError(
                f"PaDiM was fitted on {self.input_channels_} channels on a {self.grid_shape_} grid but "
                f"got {channels} on {grid}; fit and predict with the same backbone and crop"
            )
        if use_paddle() and hasattr(self, "whitener_"):
            distances = self._distances_on_device(features)
        else:
            distances = self._distances(self._positions(features))
        maps = anomaly_map(distances.reshape(len(distances), *grid), features.image_size)
        scores = maps.reshape(len(maps), -1).max(axis=1)
        return Prediction(scores=scores.astype(np.float64), maps=maps)

    def _check_whitener(self, p: int, d: int) -> None:
        """MethodError unless ``whitener_`` holds ``p`` packed factors of dimension ``d``."""
        fitted_d = packed_dim(self.whitener_.shape[1])
        if fitted_d != d or self.whitener_.shape[0] != p:
            raise MethodError(
                f"PaDiM's whitener_ holds {self.whitener_.shape[0]} factors of d = {fitted_d}, but the "
                f"features give {p} positions of d = {d}: the model is damaged; refit it"
            )

    def _distances(self, x: np.ndarray) -> np.ndarray:
        """``[N, P, d]`` -> ``[N, P]`` Mahalanobis distances, from the packed factor or, in a model
        saved before it (``cov_inv_``, full inverse covariances), from those."""
        if hasattr(self, "whitener_"):
            self._check_whitener(x.shape[1], x.shape[2])
            return whitened_distances(x, self.mean_, self.whitener_, budget_bytes=self.budget_bytes)
        if hasattr(self, "cov_inv_"):
            return mahalanobis(x, self.mean_, self.cov_inv_, budget_bytes=self.budget_bytes)
        raise MethodError("PaDiM has neither whitener_ nor cov_inv_: fit it (or refit and save it again)")

    def _distances_on_device(self, features: FeatureSet) -> np.ndarray:
        """``_distances`` ``[N, h*w]`` on Paddle's device from the packed factor: the samples
        ``[r*w, d, N]`` built there from the category's shared device copies, a few grid rows at a
        time as in fit (the device holds one block, never two copies of the whole embedding)."""
        import paddle

        n, _, h, w = features[LAYERS[0]].shape
        d = len(self.channels_)
        self._check_whitener(h * w, d)  # before anything is uploaded
        out = np.empty((n, h * w), dtype=np.float32)
        step = self._rows_per_block(n, d, w)
        with paddle.no_grad():
            for top in range(0, h, step):
                samples = padim_samples_tensor(features, self.channels_, slice(top, top + step))
                done = slice(top * w, top * w + samples.shape[0])
                out[:, done] = whitened_distances_paddle(samples, self.mean_[done], self.whitener_[done],
                                                         budget_bytes=self.budget_bytes)
        return out


@hookimpl
def patchbench_add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("padim")
    group.add_argument(
        "--padim-features", type=positive_int, default=None, metavar="N",
        help="embedding dimensions PaDiM keeps, a seeded random subset of layer1..layer3's channels "
             "(default: 100 for resnet18's 448, 550 for wide_resnet50_2's 1792; required for other backbones)",
    )


@hookimpl
def patchbench_check_options(options: argparse.Namespace) -> None:
    backbones = options.backbone if isinstance(options.backbone, (list, tuple)) else [options.backbone]
    for backbone in backbones:
        total = BACKBONE_CHANNELS.get(backbone)
        if options.padim_features is not None and total is not None and options.padim_features > total:
            raise argparse.ArgumentTypeError(
                f"argument --padim-features: must be at most {total} (the channels of {backbone}'s "
                f"layer1..layer3), got {options.padim_features}"
            )


@hookimpl
def patchbench_methods() -> list[type[AnomalyMethod]]:
    return [Padim]
