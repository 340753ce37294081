"""Seeded synthetic inputs at MVTec scale, for ``bench.py profile`` and the latency benchmarks to time.

Default sizes are those of one MVTec AD category with resnet18 at 224 x 224
(784 layer2 positions per image; about 200 training images give 160,000 patch
features of 384 dims; a 10 % memory bank holds 16,000). ``QUICK`` shrinks
everything to run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# resnet18 channels of layer1..layer3 and the grid each has at 224 x 224.
RESNET18 = {"layer1": (64, 56), "layer2": (128, 28), "layer3": (256, 14)}
RESNET18_POOLED = 512  # avgpool pools layer4
# wide_resnet50_2 channels of layer1..layer3 and their grid at 224 x 224.
WIDE_RESNET50 = {"layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14)}


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one profile."""

    image_size: int = 224
    images: int = 32  # for feature extraction
    batch_size: int = 8
    points: int = 160_000  # coreset input, 384-dim patch features
    reference_steps: int = 500  # steps of the plain loop timed, the rest extrapolated
    queries: int = 784  # one image's layer2 positions
    bank: int = 16_000  # a 10 % memory bank of 160,000
    train_images: int = 40  # PaDiM's Gaussians
    spade_train_images: int = 60  # SPADE needs more than its K = 50 neighbours
    predict_images: int = 8

    @property
    def grid(self) -> dict[str, tuple[int, int]]:
        """Channels and side of layer1..3 at this image size."""
        scale = self.image_size / 224
        return {name: (c, max(1, round(side * scale))) for name, (c, side) in RESNET18.items()}


FULL = Sizes()
QUICK = Sizes(image_size=64, images=4, batch_size=4, points=6_000, reference_steps=100, queries=64,
              bank=600, train_images=6, spade_train_images=6, predict_images=2)


def patch_like_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 features shaped like CNN patch features, seeded.

    Non-negative (post-ReLU) mixtures of a 48-dim latent with a decaying
    spectrum around 8 "scene" clusters: after the 128-dim projection, 90 % of
    the variance lies in about 13 directions and 99 % in about 80. Real
    ImageNet features of one MVTec category are structured like this; pure
    noise (``gaussian_features``) is the coreset's worst case.
    """
    rng = np.random.default_rng(seed)
    latent = 48
    scale = (1.0 / np.arange(1, latent + 1) ** 0.8).astype(np.float32)
    scenes = 2 * rng.standard_normal((8, latent), dtype=np.float32)
    z = scenes[rng.integers(8, size=n)] + rng.standard_normal((n, latent), dtype=np.float32)
    mixing = rng.standard_normal((latent, dim), dtype=np.float32)
    x = (z * scale) @ mixing
    x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    return np.maximum(x, 0, out=x)


def texture_like_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 post-ReLU features shaped like CNN patch features of a texture, seeded.

    Each point mixes a 96-dim latent with a slowly decaying spectrum (so after the
    128-dim projection no few directions hold most of the variance) around one of
    64 modes set about one noise width apart (weak clustering), plus broad
    per-channel noise, then ReLU.
    """
    rng = np.random.default_rng(seed)
    latent, modes = 96, 64
    scale = (1.0 / np.arange(1, latent + 1) ** 0.35).astype(np.float32)
    centres = 0.8 * rng.standard_normal((modes, latent), dtype=np.float32)
    z = centres[rng.integers(modes, size=n)] + rng.standard_normal((n, latent), dtype=np.float32)
    mixing = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(np.sqrt(latent / 8))
    x = (z * scale) @ mixing
    x += 0.4 * rng.standard_normal((n, dim), dtype=np.float32)
    x += 0.5  # a positive bias: post-ReLU features are mostly non-zero
    return np.maximum(x, 0, out=x)


def gaussian_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 standard normal: no structure for the coreset's bounds to use."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def resnet18_features(n: int, sizes: Sizes, layers, seed: int):
    """A ``FeatureSet`` of ``n`` images with resnet18's layer shapes (and ``avgpool`` ``[n, 512]``)."""
    from methods.base import FeatureSet

    rng = np.random.default_rng(seed)
    out = {}
    for name in layers:
        if name == "avgpool":
            out[name] = np.abs(rng.standard_normal((n, RESNET18_POOLED), dtype=np.float32))
            continue
        channels, side = sizes.grid[name]
        out[name] = np.abs(rng.standard_normal((n, channels, side, side), dtype=np.float32))
    return FeatureSet(out, (sizes.image_size, sizes.image_size))



def part_layout(n: int, side: int, seed: int, *, category: int = 0, parts: int = 32) -> np.ndarray:
    """``[n, side, side]`` int part labels: one coarse layout per ``category`` shared by all its images (an
    aligned object or a periodic texture), each image (from ``seed``) shifted by up to one coarse cell and
    with ~10 % of its cells swapped."""
    coarse = max(2, side // 7)
    layout = np.random.default_rng([category, 1]).integers(parts, size=(coarse, coarse))
    rng = np.random.default_rng([seed, 2])
    cell = -(-side // coarse)
    out = np.empty((n, side, side), dtype=np.int64)
    for i in range(n):
        labels = np.roll(layout, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
        swap = rng.random(labels.shape) < 0.1
        labels = np.where(swap, rng.integers(parts, size=labels.shape), labels)
        out[i] = np.repeat(np.repeat(labels, cell, axis=0), cell, axis=1)[:side, :side]
    return out


def structured_feature_maps(n: int, channels: int, side: int, seed: int, *, category: int = 0,
                            parts: int = 32, labels: np.ndarray | None = None) -> np.ndarray:
    """``[n, channels, side, side]`` float32 maps shaped like CNN features of aligned images, seeded.

    A few dozen "parts" (latent prototypes with a decaying spectrum, fixed by
    ``category``) tile each image in a layout shared across the category's
    images (``part_layout``, or ``labels`` ``[n, side, side]`` given); smooth
    per-image variation (from ``seed``) and blurring make neighbouring positions
    similar; the category's random mixing to ``channels`` and a ReLU finish.
    Unlike ``patch_like_features`` (clusters, no space) and
    ``resnet18_features`` (iid noise), nearest-neighbour bounds have the
    structure of real features to work with. Train and test images of one
    category: same ``category``, different ``seed``.
    """
    from scipy.ndimage import gaussian_filter

    fixed = np.random.default_rng([category, channels, 3])
    latent = 32
    scale = (1.0 / np.arange(1, latent + 1) ** 0.8).astype(np.float32)
    prototypes = 2 * fixed.standard_normal((parts, latent), dtype=np.float32)
    mixing = fixed.standard_normal((latent, channels), dtype=np.float32) / np.float32(np.sqrt(latent / 4))
    if labels is None:
        labels = part_layout(n, side, seed, category=category, parts=parts)
    rng = np.random.default_rng([seed, channels, 4])
    z = prototypes[labels]  # [n, side, side, latent]
    z += 1.8 * gaussian_filter(rng.standard_normal(z.shape, dtype=np.float32), sigma=(0, 2, 2, 0))
    z = gaussian_filter(z, sigma=(0, 1, 1, 0))
    z += 0.15 * rng.standard_normal(z.shape, dtype=np.float32)
    x = (z * scale) @ mixing
    x += 0.05 * rng.standard_normal(x.shape, dtype=np.float32)
    np.maximum(x, 0, out=x)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def structured_features(n: int, sizes: Sizes, layers, seed: int, *, category: int = 0,
                        grid: dict[str, tuple[int, int]] | None = None):
    """A ``FeatureSet`` like ``resnet18_features`` but from ``structured_feature_maps``: every layer of an
    image shares one part layout (so positions correspond across layers); ``avgpool`` is a ReLU'd
    projection (fixed by ``category``) of the image's mean layer3, so similar images pool near.
    ``grid``: channels and side per layer (default resnet18's at ``sizes.image_size``; see ``WIDE_RESNET50``)."""
    from methods.base import FeatureSet

    grid = sizes.grid if grid is None else grid
    side = max(s for _, s in grid.values())
    labels = part_layout(n, side, seed, category=category)
    maps = {}
    for name in ("layer1", "layer2", "layer3"):
        channels, s = grid[name]
        step = max(1, side // s)
        maps[name] = lambda c=channels, s=s, step=step: structured_feature_maps(
            n, c, s, seed, category=category, labels=labels[:, ::step, ::step][:, :s, :s])
    out = {name: maps[name]() for name in layers if name in maps}
    if "avgpool" in layers:
        layer3 = out["layer3"] if "layer3" in out else maps["layer3"]()
        pooled = layer3.mean(axis=(2, 3))
        fixed = np.random.default_rng([category, 5])
        projection = fixed.standard_normal((pooled.shape[1], RESNET18_POOLED), dtype=np.float32) / np.float32(16)
        out["avgpool"] = np.maximum(pooled @ projection, 0).astype(np.float32)
    return FeatureSet(out, (sizes.image_size, sizes.image_size))
