"""Resizing feature grids and turning patch scores into anomaly maps.

Resizes follow the conventions the papers' code uses (PyTorch ``interpolate``):
bilinear with ``align_corners=False`` and nearest with ``floor(dst * in / out)``,
so that a feature grid lines up with the image exactly as in the references.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` interpolation matrix for one axis (half-pixel centres, edges clamped)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``[..., h, w]`` to ``[..., H, W]`` bilinearly.

    Separable: two small matrix products, exact and with no per-pixel Python.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    wh = bilinear_weights(h, size[0]).astype(x.dtype, copy=False)
    ww = bilinear_weights(w, size[1]).astype(x.dtype, copy=False)
    return np.matmul(np.matmul(wh, x), ww.T)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out]`` source index of each output position along one axis: ``floor(dst * n_in / n_out)``."""
    return np.minimum((np.arange(n_out) * n_in) // n_out, n_in - 1)


def resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``[..., h, w]`` to ``[..., H, W]`` by nearest neighbour."""
    h, w = x.shape[-2:]
    rows = nearest_indices(h, size[0])
    cols = nearest_indices(w, size[1])
    return x[..., rows[:, None], cols[None, :]]


def smooth(maps: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Gaussian blur of each ``[N, H, W]`` map; radius 4 sigma as in the references."""
    if sigma <= 0:
        return maps
    return gaussian_filter(maps, sigma=(0, sigma, sigma), mode="reflect", truncate=4.0)


def anomaly_map(grid: np.ndarray, image_size: tuple[int, int], sigma: float = 4.0) -> np.ndarray:
    """Patch-score grid ``[N, h, w]`` -> anomaly map ``[N, H, W]``: bilinear upsampling, then blur."""
    return smooth(resize_bilinear(np.asarray(grid, dtype=np.float32), image_size), sigma)
