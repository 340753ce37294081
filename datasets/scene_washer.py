"""The washer category (object, RGB): a keyed metal ring with chips, dents and scratches."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from datasets import draw
from datasets.draw import SIZE
from datasets.scene_common import (
    LIGHT, Rendered, Scene, check_defect, defect_size, rgb, sensor, streams,
)

DEFECTS = ("chip", "dent", "scratch")


def render(rng: np.random.Generator, defect: str | None) -> Rendered:
    """A keyed metal ring on a dark mat, shifted and turned at random."""
    check_defect(defect, DEFECTS)
    rng, flaw = streams(rng)
    center = SIZE / 2 + rng.uniform(-4, 4, 2)
    # Parts come down a chute that lets them turn only so far: the key tab
    # wanders over a quarter turn rather than the whole circle.
    turn = np.deg2rad(-90 + rng.uniform(-45, 45))
    u, v = draw.local_frame(center, turn)
    radius, theta = np.hypot(u, v), np.arctan2(v, u)
    outer = 72 + rng.normal(0, 1.2)
    inner = 31 + rng.normal(0, 0.8)
    # The key tab pointing inwards at theta = 0 makes the rotation visible.
    inner_r = inner - 7 * np.clip(6.5 - np.abs(theta) * inner, 0, 1)
    outer_r = np.full_like(radius, outer)

    mask = None
    nominal = np.minimum(outer_r - radius, radius - inner_r)
    signed = nominal
    # Deformed or broken metal along a damaged edge: coverage [S, S] and its tone.
    scar, scar_tone = np.zeros_like(radius), 0.0
    if defect == "dent":
        where = flaw.uniform(0.5, 2 * np.pi - 0.5) - np.pi
        spread = flaw.uniform(0.12, 0.3)
        bump = np.exp(-0.5 * (_angle_diff(theta, where) / spread) ** 2)
        signed = np.minimum(outer_r - flaw.uniform(5, 14) * bump - radius, radius - inner_r)
        # The pushed-in rim is crumpled: it turns from the lamp (darker) or towards it.
        scar = draw.coverage(flaw.uniform(2, 5) - signed) * (bump > 0.3) * (signed > 0)
        scar_tone = 0.58 + float(flaw.choice([-1, 1])) * flaw.uniform(0.15, 0.3)
        mask = ((signed > 0) != (nominal > 0)) | (scar >= 0.5)
    elif defect == "chip":
        where = flaw.uniform(-np.pi, np.pi)
        size = defect_size(flaw, 5, 20)
        bite = outer + size * flaw.uniform(0.0, 0.4)
        gap = np.hypot(u - bite * np.cos(where), v - bite * np.sin(where)) - size
        signed = np.minimum(nominal, gap)
        # The fracture face is fresh, rough metal that glints.
        scar = draw.coverage(flaw.uniform(2, 5) - gap) * (signed > 0)
        scar_tone = flaw.uniform(0.8, 0.95)
        mask = ((nominal > 0) & (signed <= 0)) | (scar >= 0.5)
    body = draw.coverage(signed)

    # The lamp is fixed (upper left) and the part turns under it, so shading
    # follows image angles, not the part's own.
    light = np.deg2rad(-135) + rng.normal(0, 0.15)
    metal = 0.58 + 0.1 * np.cos(theta + turn - light) * rng.uniform(0.95, 1.05)
    metal = metal + 0.008 * _ring_grooves(rng, radius) + 0.008 * draw.smooth_noise(rng, 2)
    rim = np.exp(-np.maximum(signed, 0) / 1.5)  # bevelled edges catch the light
    metal = (metal + 0.08 * rim)[..., None] * rgb(0.97, 0.98, 1.0)

    mat = rgb(0.16, 0.18, 0.22) * rng.uniform(0.96, 1.04)
    background = mat * (1 + 0.06 * draw.smooth_noise(rng, 3))[..., None]
    shadow = gaussian_filter(np.roll(body, (4, 3), axis=(0, 1)), 3)
    background = background * (1 - 0.4 * shadow)[..., None]
    metal = draw.mix(metal, scar, scar_tone)
    image = draw.mix(background, body, metal) * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "scratch":
        # A point of the ring in the object frame, turned into image coordinates.
        angle = flaw.uniform(-np.pi, np.pi) + turn
        direction = np.array([np.cos(angle), np.sin(angle)], np.float32)
        start = center + flaw.uniform(inner + 10, outer - 10) * direction
        points = draw.random_walk(flaw, start, 4, flaw.uniform(8, 16), 0.15)
        alpha, line = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.2, 3.0))
        alpha = alpha * (body >= 0.5)
        image = draw.mix(image, alpha * flaw.uniform(0.5, 0.9), rgb(0.95, 0.95, 0.98))
        mask = line & (body >= 0.5)
    return draw.to_uint8(sensor(rng, image, 0.01)), mask


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _ring_grooves(rng: np.random.Generator, radius: np.ndarray) -> np.ndarray:
    """Concentric machining marks: 1-D noise along the radius, ``[S, S]``."""
    profile = gaussian_filter(rng.standard_normal(SIZE), 0.8)
    profile = profile / (profile.std() + 1e-6)
    return np.interp(radius, np.arange(SIZE), profile).astype(np.float32)


SCENE = Scene("washer", "object", DEFECTS, False, render)
