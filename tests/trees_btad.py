"""A tiny BTAD tree as the archive ships it (per-product extensions, ok/ko folders, stem-named masks), for tests.

Products 01 and 03 have .bmp images, 02 .png; masks are .png for 01 and 02 and
.bmp for 03, named by the image's stem (no ``_mask``), 0 background and 255
defect, one channel. Images are 48x40 RGB noise; a defective image has a bright
box at ``DEFECT_BOX``, which is where its mask is 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 40)  # width, height
DEFECT_BOX = (slice(10, 20), slice(12, 26))  # rows, columns
# product -> (image extension, mask extension)
PRODUCTS = {"01": (".bmp", ".png"), "02": (".png", ".png"), "03": (".bmp", ".bmp")}
TRAIN, TEST_OK, TEST_KO = 3, 2, 2


def _image(rng: np.random.Generator, defective: bool) -> Image.Image:
    pixels = rng.integers(40, 120, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    if defective:
        pixels[DEFECT_BOX] = 250
    return Image.fromarray(pixels)


def _mask() -> Image.Image:
    values = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    values[DEFECT_BOX] = 255
    return Image.fromarray(values)


def write_btad_tree(root: Path, seed: int = 0) -> Path:
    """Write products 01, 02, 03 under ``root``: ``TRAIN`` train/ok, ``TEST_OK`` test/ok and
    ``TEST_KO`` test/ko images each, stems ``0000``, ``0001``, ...; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for product, (image_ext, mask_ext) in PRODUCTS.items():
        folder = root / product
        for split, kind, count in (("train", "ok", TRAIN), ("test", "ok", TEST_OK), ("test", "ko", TEST_KO)):
            (folder / split / kind).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                _image(rng, kind == "ko").save(folder / split / kind / f"{index:04d}{image_ext}")
                if kind == "ko":
                    (folder / "ground_truth" / "ko").mkdir(parents=True, exist_ok=True)
                    _mask().save(folder / "ground_truth" / "ko" / f"{index:04d}{mask_ext}")
    return root
