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
