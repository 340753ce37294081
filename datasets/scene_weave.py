"""The weave category (texture, RGB): plain-weave fabric with holes, misweaves and stains."""

from __future__ import annotations

import numpy as np

from datasets import draw
from datasets.draw import SIZE
from datasets.scene_common import (
    LIGHT, Rendered, Scene, check_defect, defect_size, inside_point, jitter, rgb, sensor, streams,
)

DEFECTS = ("hole", "misweave", "stain")


def render(rng: np.random.Generator, defect: str | None) -> Rendered:
    """Plain-weave fabric: threads over/under in a checkerboard, slightly warped."""
    check_defect(defect, DEFECTS)
    rng, flaw = streams(rng)
    period = 14.5 * rng.uniform(0.99, 1.01)
    u, v = draw.local_frame(rng.uniform(0, SIZE, 2), rng.normal(0, np.deg2rad(0.7)))
    u = u + 1.5 * draw.smooth_noise(rng, 48)
    v = v + 1.5 * draw.smooth_noise(rng, 48)
    cell_u, cell_v = np.floor(u / period), np.floor(v / period)
    fu, fv = u / period - cell_u, v / period - cell_v
    warp_on_top = (cell_u + cell_v) % 2 == 0

    # Each thread is bright along its middle and dips where it goes under.
    warp = np.sin(np.pi * fu) ** 0.7 * (0.72 + 0.28 * np.sin(np.pi * fv))
    weft = np.sin(np.pi * fv) ** 0.7 * (0.72 + 0.28 * np.sin(np.pi * fu))
    shade = np.where(warp_on_top, warp, weft)

    mask = None
    if defect == "misweave":
        # A float: over a block of cells one set of threads missed the
        # interlacing and runs straight on top, flat (no dips) and loose.
        width, height = flaw.integers(1, 4), flaw.integers(2, 7)
        if flaw.random() < 0.5:
            width, height = height, width
        col, row = inside_point(flaw, 50).astype(int)
        corner_u, corner_v = cell_u[row, col], cell_v[row, col]
        mask = (
            (cell_u >= corner_u) & (cell_u < corner_u + width)
            & (cell_v >= corner_v) & (cell_v < corner_v + height)
        )
        # Loose threads spread out and lie higher, closer to the light.
        floating = np.sin(np.pi * (fu if height > width else fv)) ** 0.35
        shade = np.where(mask, floating * flaw.uniform(1.05, 1.2), shade)
        warp_on_top = warp_on_top | mask
    base = rgb(0.78, 0.70, 0.55) * jitter(rng, 0.003, 3) * rng.uniform(0.995, 1.005)
    tint = np.where(warp_on_top, np.float32(1.0), np.float32(0.94))[..., None]
    image = (0.65 + 0.3 * shade)[..., None] * tint * base
    image = image * (1 + 0.05 * draw.smooth_noise(rng, 2)[..., None])
    image = image * draw.illumination(rng, *LIGHT)[..., None]

    if defect == "hole":
        # Broken threads: the dark backing shows through a frayed gap.
        alpha, mask = draw.blob(flaw, inside_point(flaw, 30), defect_size(flaw, 4, 22), 1.5, 0.4)
        image = draw.mix(image, alpha * flaw.uniform(0.75, 1.0), base * 0.2)
    elif defect == "stain":
        alpha, mask = draw.blob(flaw, inside_point(flaw, 30), defect_size(flaw, 8, 45), 3.0, 0.3)
        colour = rgb(0.35, 0.25, 0.15) * jitter(flaw, 0.2, 3)
        image = draw.mix(image, alpha * flaw.uniform(0.2, 0.7), colour)
    return draw.to_uint8(sensor(rng, image, 0.012)), mask


SCENE = Scene("weave", "texture", DEFECTS, False, render)
