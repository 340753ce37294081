"""Tiny trees for the ``folder`` dataset (a lab's good/ and bad/ folders), and skeletons of every built-in layout.

``write_folder_tree`` writes two categories side by side: ``bolts`` (.png, with
``masks/``: one mask per naming habit the loader accepts) and ``labels`` (.jpg,
no masks). Images are 48x40 RGB noise; a defective image has a bright box at
``DEFECT_BOX``, where its mask (one channel, 0 / 255) is 255.

``write_layout_skeletons`` writes only the names each built-in layout is
detected by (empty files), for the ``detect`` tests of every dataset class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 40)  # width, height
DEFECT_BOX = (slice(20, 30), slice(6, 16))  # rows, columns
GOOD_IMAGES, BAD_IMAGES = 10, 3  # 10 good: 2 held out for test, 8 to train on


def _image(rng: np.random.Generator, defective: bool) -> Image.Image:
    pixels = rng.integers(50, 130, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    if defective:
        pixels[DEFECT_BOX] = 245
    return Image.fromarray(pixels)


def write_folder_category(folder: Path, seed: int = 0, good: int = GOOD_IMAGES, bad: int = BAD_IMAGES,
                          suffix: str = ".png", masks: bool = True) -> Path:
    """``folder/good/good_<i>``, ``folder/bad/bad_<i>`` (``suffix``) and, with ``masks``,
    ``folder/masks``: ``bad_0.png``, then ``bad_<i>_mask.png`` for the rest; returns ``folder``."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for kind, count in (("good", good), ("bad", bad)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _image(rng, kind == "bad").save(folder / kind / f"{kind}_{index:02d}{suffix}")
    if masks:
        (folder / "masks").mkdir(exist_ok=True)
        values = np.zeros((SIZE[1], SIZE[0]), np.uint8)
        values[DEFECT_BOX] = 255
        for index in range(bad):
            name = f"bad_{index:02d}.png" if index == 0 else f"bad_{index:02d}_mask.png"
            Image.fromarray(values).save(folder / "masks" / name)
    return folder


def write_folder_tree(root: Path, seed: int = 0) -> Path:
    """Two categories under ``root``: ``bolts`` (.png, masks) and ``labels`` (.jpg, no masks)."""
    root = Path(root)
    write_folder_category(root / "bolts", seed, suffix=".png", masks=True)
    write_folder_category(root / "labels", seed + 1, suffix=".jpg", masks=False)
    return root


SKELETONS = {
    "mvtec_ad": ("bottle/train/good/000.png", "bottle/test/good/000.png", "bottle/test/broken_large/000.png",
                 "bottle/ground_truth/broken_large/000_mask.png"),
    "mvtec_ad2": ("can/train/good/000_regular.png", "can/validation/good/000_regular.png",
                  "can/test_public/good/000_regular.png", "can/test_public/bad/000_regular.png",
                  "can/test_public/ground_truth/bad/000_regular_mask.png", "can/test_private/000_regular.png"),
    "visa": ("split_csv/1cls.csv", "candle/image_anno.csv", "candle/Data/Images/Normal/0000.JPG",
             "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"),
    "mvtec_loco": ("breakfast_box/defects_config.json", "breakfast_box/train/good/000.png",
                   "breakfast_box/validation/good/000.png", "breakfast_box/test/good/000.png",
                   "breakfast_box/test/logical_anomalies/000.png", "breakfast_box/test/structural_anomalies/000.png",
                   "breakfast_box/ground_truth/logical_anomalies/000/000.png"),
    "btad": ("01/train/ok/0000.bmp", "01/test/ok/0000.bmp", "01/test/ko/0000.bmp", "01/ground_truth/ko/0000.png"),
    "mpdd": ("bracket_black/train/good/000.png", "bracket_black/test/good/000.png",
             "bracket_black/test/hole/000.png", "bracket_black/ground_truth/hole/000_mask.png"),
    "folder": ("good/good_00.png", "bad/bad_00.png"),
}


def write_layout_skeletons(root: Path) -> dict[str, Path]:
    """Each built-in layout's names (``SKELETONS``) as empty files, one root per layout under
    ``root``: ``{layout name: its root}``."""
    roots = {}
    for name, files in SKELETONS.items():
        for relative in files:
            path = Path(root) / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        roots[name] = Path(root) / name
    return roots
