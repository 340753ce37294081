"""Drawing primitives for the synthetic set: noise fields, strokes, blobs.

Everything works on float32 ``[S, S]`` fields (S = ``SIZE``) in pixel
coordinates, x to the right and y down. Shapes are drawn from signed distances
so edges are anti-aliased and the same distance gives an exact hard mask.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

SIZE = 256


@lru_cache(maxsize=4)
def pixel_grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``, each ``[S, S]`` float32, pixel centres at integers."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def local_frame(center: tuple[float, float], angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a frame centred at ``center`` and turned by ``angle`` (radians).

    Returns ``(u, v)``, each ``[S, S]``: the object is drawn in ``(u, v)``, so
    turning the frame turns the object.
    """
    x, y = pixel_grid()
    dx, dy = x - np.float32(center[0]), y - np.float32(center[1])
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return c * dx + s * dy, -s * dx + c * dy


def smooth_noise(rng: np.random.Generator, scale: float, size: int = SIZE) -> np.ndarray:
    """``[S, S]`` float32 noise with features about ``scale`` pixels wide, mean 0, std 1.

    Large scales are upsampled from a coarse grid (cheap); small ones are a
    Gaussian-filtered white noise (no grid artefacts at small scale).
    """
    if scale <= 4:
        field = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), scale / 2)
    else:
        cells = max(2, int(round(size / scale)) + 1)
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    field = field - field.mean()
    return (field / (field.std() + 1e-6)).astype(np.float32)


def illumination(rng: np.random.Generator, gradient: float, blotch: float) -> np.ndarray:
    """``[S, S]`` multiplicative light field around 1: a tilt plus a slow blotch."""
    x, y = pixel_grid()
    angle = rng.uniform(0, 2 * np.pi)
    tilt = (float(np.cos(angle)) * (x - SIZE / 2) + float(np.sin(angle)) * (y - SIZE / 2)) / SIZE
    field = 1 + gradient * rng.uniform(-1, 1) * 2 * tilt + blotch * smooth_noise(rng, 96)
    return field.astype(np.float32)


def segment_distance(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """``[S, S]`` distance of each pixel to the segment ``p0``-``p1`` (points ``(x, y)``)."""
    x, y = pixel_grid()
    d = np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    length2 = float(d @ d) or 1e-6
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / length2, 0, 1)
    return np.hypot(x - (p0[0] + t * d[0]), y - (p0[1] + t * d[1]))


def polyline_distance(points: np.ndarray) -> np.ndarray:
    """``[S, S]`` distance to a polyline given as ``[K, 2]`` points ``(x, y)``."""
    return np.minimum.reduce(
        [segment_distance(points[i], points[i + 1]) for i in range(len(points) - 1)]
    )


def random_walk(
    rng: np.random.Generator, start: np.ndarray, steps: int, step: float, turn: float
) -> np.ndarray:
    """``[steps + 1, 2]`` points of a wandering line: crack- or scratch-like."""
    heading = rng.uniform(0, 2 * np.pi)
    turns = heading + np.cumsum(rng.normal(0, turn, steps))
    moves = step * np.stack([np.cos(turns), np.sin(turns)], axis=1)
    return np.vstack([start, start + np.cumsum(moves, axis=0)]).astype(np.float32)


def stroke(distance: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage ``[S, S]`` of a line ``width`` px wide, and its hard mask."""
    alpha = np.clip(width / 2 + 0.5 - distance, 0, 1)
    return alpha, alpha >= 0.5


def blob(
    rng: np.random.Generator, center: np.ndarray, radius: float, soft: float, wobble: float
) -> tuple[np.ndarray, np.ndarray]:
    """A soft irregular ellipse: coverage ``[S, S]`` and hard mask (coverage >= 0.5).

    ``soft`` is the width of the fading rim in px; ``wobble`` the relative
    amplitude of the lumpy outline.
    """
    x, y = pixel_grid()
    dx, dy = x - center[0], y - center[1]
    stretch, turn = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
    c, s = float(np.cos(turn)), float(np.sin(turn))
    u, v = c * dx + s * dy, (-s * dx + c * dy) / stretch
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    for k in (2, 3, 5):
        outline += wobble / k * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    signed = radius * outline - np.hypot(u, v)
    alpha = np.clip(0.5 + signed / max(soft, 1e-3), 0, 1).astype(np.float32)
    return alpha, alpha >= 0.5


def coverage(signed: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (positive inside)."""
    return np.clip(0.5 + signed, 0, 1).astype(np.float32)


def box_signed(u: np.ndarray, v: np.ndarray, half_w: float, half_h: float, round_: float = 0.0):
    """Signed distance (positive inside) to an axis-aligned rounded box centred at 0."""
    qu = np.abs(u) - (half_w - round_)
    qv = np.abs(v) - (half_h - round_)
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)
    return (round_ - outside).astype(np.float32)


def mix(base: np.ndarray, alpha: np.ndarray, value) -> np.ndarray:
    """Paint ``value`` (scalar, colour ``[3]`` or field) over ``base`` with coverage ``alpha``."""
    a = alpha[..., None] if base.ndim == 3 else alpha
    return base + (np.asarray(value, np.float32) - base) * a


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any shape) -> uint8."""
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
