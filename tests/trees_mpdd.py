"""A tiny MPDD tree as the publisher ships it (the MVTec AD layout, MPDD's category and defect names), for tests.

Images are .png, 48x40 RGB noise; masks ``ground_truth/<defect>/<stem>_mask.png``
are one channel, 0 background and 255 defect, 255 on ``DEFECT_BOX`` where the
defective image has a bright box. Stems are three digits, as in MPDD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 40)  # width, height
DEFECT_BOX = (slice(8, 18), slice(20, 30))  # rows, columns
# Two of MPDD's categories with (some of) their defect folders.
DEFECTS = {"bracket_black": ("hole", "scratches"), "tubes": ("flattening",)}
TRAIN, TEST_GOOD, PER_DEFECT = 3, 2, 2


def _image(rng: np.random.Generator, defective: bool) -> Image.Image:
    pixels = rng.integers(30, 110, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    if defective:
        pixels[DEFECT_BOX] = 240
    return Image.fromarray(pixels)


def write_mpdd_tree(root: Path, seed: int = 0) -> Path:
    """Write the categories of ``DEFECTS`` under ``root``: ``TRAIN`` train/good, ``TEST_GOOD``
    test/good and ``PER_DEFECT`` images per defect, each with its mask; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    mask[DEFECT_BOX] = 255
    for category, defects in DEFECTS.items():
        folder = root / category
        for split, kind, count in (("train", "good", TRAIN), ("test", "good", TEST_GOOD),
                                   *(("test", defect, PER_DEFECT) for defect in defects)):
            (folder / split / kind).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                _image(rng, kind != "good").save(folder / split / kind / f"{index:03d}.png")
                if kind != "good":
                    (folder / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(folder / "ground_truth" / kind / f"{index:03d}_mask.png")
    return root
