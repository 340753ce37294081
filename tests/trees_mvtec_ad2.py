"""A tiny MVTec AD 2 tree as MVTec ships a category (train, validation, test_public with masks, private test sets), for tests.

Two categories of different image sizes and modes: ``can`` (RGB, 48x40) and
``vial`` (8-bit grey, 40x56). Names follow MVTec AD 2: ``<NNN>_<lighting>.png``
(``regular``, ``overexposed``, ``underexposed``, ``shift_1``, ...), masks
``test_public/ground_truth/bad/<stem>_mask.png``, one channel, 0 good and 255
defect at ``DEFECT_BOX``, where the defective image has a bright box. The
private test sets hold unlabelled images directly in their folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DEFECT_BOX = (slice(6, 16), slice(10, 22))  # rows, columns
CATEGORIES = {"can": ((48, 40), "RGB"), "vial": ((40, 56), "L")}  # name -> ((width, height), mode)
TRAIN = ("000_regular.png", "001_regular.png", "002_regular.png")
VALIDATION = ("000_regular.png", "001_regular.png")
TEST_GOOD = ("000_regular.png", "000_overexposed.png")
TEST_BAD = ("000_regular.png", "001_shift_1.png")
PRIVATE = ("000_regular.png", "001_underexposed.png")


def _image(rng: np.random.Generator, size: tuple[int, int], mode: str, defective: bool) -> Image.Image:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(30, 110, shape, dtype=np.uint8)
    if defective:
        pixels[DEFECT_BOX] = 245
    return Image.fromarray(pixels)


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_mvtec_ad2_tree(root: Path, seed: int = 0) -> Path:
    """Write the ``CATEGORIES`` under ``root``, each with the images named above; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for category, (size, mode) in CATEGORIES.items():
        folder = root / category
        for relative, names, defective in (("train/good", TRAIN, False), ("validation/good", VALIDATION, False),
                                           ("test_public/good", TEST_GOOD, False), ("test_public/bad", TEST_BAD, True),
                                           ("test_private", PRIVATE, True), ("test_private_mixed", PRIVATE, False)):
            for name in names:
                _save(_image(rng, size, mode, defective), folder / relative / name)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[DEFECT_BOX] = 255
        for name in TEST_BAD:
            _save(Image.fromarray(mask), folder / "test_public" / "ground_truth" / "bad" / f"{Path(name).stem}_mask.png")
    return root
