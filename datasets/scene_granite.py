"""The granite category (texture, grey): speckled stone with cracks, smudges and stains."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from datasets import draw
from datasets.draw import SIZE
from datasets.scene_common import (
    LIGHT, Rendered, Scene, check_defect, defect_size, inside_point, sensor, streams,
)

DEFECTS = ("crack", "smudge", "stain")


def render(rng: np.random.Generator, defect: str | None) -> Rendered:
    """Speckled stone: grains at several scales on a slowly varying ground."""
    check_defect(defect, DEFECTS)
    rng, flaw = streams(rng)
    ground = 0.525 + rng.uniform(-0.002, 0.002) + 0.02 * draw.smooth_noise(rng, 40)
    grains = 0.04 * draw.smooth_noise(rng, 2) + 0.035 * draw.smooth_noise(rng, 5)
    image = ground + grains + _speckles(rng, count=int(rng.integers(300, 340)))
    image = image * draw.illumination(rng, *LIGHT)

    mask = None
    if defect == "crack":
        points = draw.random_walk(flaw, inside_point(flaw, 60), 8, flaw.uniform(6, 12), 0.45)
        alpha, mask = draw.stroke(draw.polyline_distance(points), flaw.uniform(1.5, 3.5))
        image = image * (1 - flaw.uniform(0.35, 0.7) * alpha)
    elif defect == "smudge":
        # A greasy smear: the grains are blurred away and the surface turns glossy.
        alpha, mask = draw.blob(flaw, inside_point(flaw, 35), defect_size(flaw, 12, 40), 4.0, 0.25)
        sheen = flaw.uniform(0.06, 0.16)
        image = draw.mix(image, alpha, gaussian_filter(image, 3.0) + sheen)
    elif defect == "stain":
        alpha, mask = draw.blob(flaw, inside_point(flaw, 35), defect_size(flaw, 8, 40), 5.0, 0.35)
        image = image + float(flaw.choice([-1, 1])) * flaw.uniform(0.1, 0.3) * alpha
    return draw.to_uint8(sensor(rng, image, 0.01)), mask


def _speckles(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[S, S]`` scattered dark and light mineral grains, 1-2 px wide."""
    field = np.zeros((SIZE, SIZE), np.float32)
    rows, cols = rng.integers(0, SIZE, (2, count))
    field[rows, cols] = rng.choice([-1.0, 0.6], count) * rng.uniform(0.5, 1.2, count)
    return gaussian_filter(field, 0.9)


SCENE = Scene("granite", "texture", DEFECTS, True, render)
