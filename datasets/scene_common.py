"""What every synthetic scene shares: the Scene record, the camera and lamp, and defect placement.

The scenes are what an inspection station sees: a fixed camera and lamp, parts
in a jig or nest. Normal images vary in texture phase, pose and a little in
light, as much as such a station lets them; defects vary in kind, size (log-
uniform: most are small) and contrast, from plain to subtle, so that a working
detector scores well above chance on every category but not 1.0 on all.

The budget of normal variation is set by what the features see, and
randomly initialised backbones (the case without network) are very sensitive
to brightness: on mid grey, lifting the whole image by 1 % moves a resnet18
layer2 feature as far as a dark stain 16 px across and 10 % deep does. So the
global light varies by about 1 %, per-image texture noise stays low next to
the defects, and sizes and contrasts were tuned with the real pipeline and
random weights (PatchCore, PaDiM and SPADE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from datasets.draw import SIZE

Rendered = tuple[np.ndarray, "np.ndarray | None"]
LENS_BLUR = 0.8  # px, standard deviation of the camera's point spread
# The lamp's light field: (tilt across the image, slow blotches), as fractions.
LIGHT = (0.01, 0.005)


@dataclass(frozen=True)
class Scene:
    """One category: its name, ``kind`` (``"texture"`` or ``"object"``), defect names, whether
    its images are grey, and its renderer."""

    name: str
    kind: str  # "texture" or "object"
    defects: tuple[str, ...]
    grey: bool
    render: Callable[[np.random.Generator, "str | None"], Rendered]


def check_defect(defect: str | None, known: tuple[str, ...]) -> None:
    if defect is not None and defect not in known:
        raise ValueError(f"unknown defect {defect!r}; known: {known}")


def streams(rng: np.random.Generator) -> tuple[np.random.Generator, np.random.Generator]:
    """Separate streams for the normal picture and for the defect.

    The defect's draws then leave the rest of the picture untouched: a
    defective image and the good image of the same seed differ only where the
    defect is, which is what lets the tests check the masks.
    """
    normal, flaw = rng.spawn(2)
    return normal, flaw


def sensor(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """What the camera adds: lens blur, then noise of ``sigma`` in [0, 1] units.

    The blur (a point spread of about a pixel) softens edges the way a lens
    does, so a part lying a fraction of a pixel off does not change every edge
    pixel. The noise is one field for all channels (luma noise).
    """
    image = gaussian_filter(image, (LENS_BLUR, LENS_BLUR, 0)[: image.ndim])
    noise = np.float32(sigma) * rng.standard_normal((SIZE, SIZE), dtype=np.float32)
    return image + (noise[..., None] if image.ndim == 3 else noise)


def defect_size(rng: np.random.Generator, low: float, high: float) -> float:
    """A defect size in px, log-uniform: small flaws are common, large ones rare."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def inside_point(rng: np.random.Generator, margin: float) -> np.ndarray:
    return rng.uniform(margin, SIZE - margin, 2).astype(np.float32)


def rgb(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], np.float32)


def jitter(rng: np.random.Generator, spread: float, count: int) -> np.ndarray:
    """``[count]`` float32 factors in ``1 +- spread``: per-image colour variation."""
    return rng.uniform(1 - spread, 1 + spread, count).astype(np.float32)
