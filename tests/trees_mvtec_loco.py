"""A tiny MVTec LOCO AD tree as the archive ships it: two categories, folder masks, defects_config.json.

Per category: ``train/good`` (3), ``validation/good`` (2, which the loader
ignores), ``test/good`` (2), ``test/logical_anomalies`` (2),
``test/structural_anomalies`` (1), and per defective image a folder
``ground_truth/<type>/<id>/`` with one 8-bit grey PNG per defect region
(``000.png``, ``001.png``), its region pixels holding the defect's
``pixel_value`` and zero elsewhere. Images are 48x40 RGB PNGs. The config
entries follow LOCO's: pixel values counting down from 255, relative
thresholds as fractions (1.0; 0.5 for an extra cable), absolute ones as
integer pixel counts of the full-size image.

``REGIONS`` gives every region's rectangle, so tests can work out by hand
what the loader must return.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 48, 40
TRAIN, VALIDATION, TEST_GOOD = 3, 2, 2

DEFECTS = {
    "breakfast_box": [
        {"defect_name": "missing_almonds", "pixel_value": 255, "saturation_threshold": 1.0,
         "relative_saturation": True},
        {"defect_name": "nectarines_2_tangerine_1", "pixel_value": 250, "saturation_threshold": 100,
         "relative_saturation": False},
        {"defect_name": "box_damaged", "pixel_value": 236, "saturation_threshold": 1.0,
         "relative_saturation": True},
        {"defect_name": "contamination", "pixel_value": 234, "saturation_threshold": 1.0,
         "relative_saturation": True},
    ],
    "splicing_connectors": [
        {"defect_name": "wrong_connector_type_5_2", "pixel_value": 255, "saturation_threshold": 40,
         "relative_saturation": False},
        {"defect_name": "extra_cable", "pixel_value": 246, "saturation_threshold": 0.5,
         "relative_saturation": True},
        {"defect_name": "broken_cable", "pixel_value": 244, "saturation_threshold": 1.0,
         "relative_saturation": True},
        {"defect_name": "contamination", "pixel_value": 235, "saturation_threshold": 1.0,
         "relative_saturation": True},
    ],
}

# (category, type, image id) -> one (pixel_value, (row0, row1, col0, col1)) per mask file, half-open.
REGIONS = {
    ("breakfast_box", "logical_anomalies", "000"): [(255, (10, 20, 8, 28)), (250, (30, 40, 36, 48))],
    ("breakfast_box", "logical_anomalies", "001"): [(255, (0, 6, 10, 20))],
    ("breakfast_box", "structural_anomalies", "000"): [(236, (0, 10, 0, 4)), (234, (25, 30, 20, 30))],
    ("splicing_connectors", "logical_anomalies", "000"): [(246, (10, 20, 8, 28))],
    ("splicing_connectors", "logical_anomalies", "001"): [(255, (20, 30, 20, 40))],
    ("splicing_connectors", "structural_anomalies", "000"): [(244, (10, 14, 30, 34))],
}


def write_mvtec_loco_tree(root: Path, seed: int = 0) -> Path:
    """Write the tree under ``root`` (created if missing) and return ``root``, the --data-path."""
    root = Path(root)
    for number, (category, defects) in enumerate(DEFECTS.items()):
        folder = root / category
        rng = np.random.default_rng([seed, number])
        base = _background(number)
        for split, count in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST_GOOD)):
            for index in range(count):
                _save(folder / split / "good" / f"{index:03d}.png", _noisy(base, rng))
        for (name, kind, image_id), regions in REGIONS.items():
            if name != category:
                continue
            image = _noisy(base, rng)
            for file_index, (value, (r0, r1, c0, c1)) in enumerate(regions):
                image[r0:r1, c0:c1] = (30 + value // 4, 200 - value // 2, 60)  # the defect shows
                mask = np.zeros((HEIGHT, WIDTH), np.uint8)
                mask[r0:r1, c0:c1] = value
                _save(folder / "ground_truth" / kind / image_id / f"{file_index:03d}.png", mask)
            _save(folder / "test" / kind / f"{image_id}.png", image)
        (folder / "defects_config.json").write_text(json.dumps(defects, indent=4), encoding="utf-8")
        (folder / "license.txt").write_text("CC BY-NC-SA 4.0 (test stand-in)\n", encoding="utf-8")
        (folder / "readme.txt").write_text("MVTec LOCO AD test stand-in\n", encoding="utf-8")
    return root


def _background(number: int) -> np.ndarray:
    """``[H, W, 3]`` float: a smooth gradient, different per category."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([90 + 2 * cols, 140 - 2 * rows + 20 * number, 100 + rows + cols], axis=-1).astype(float)


def _noisy(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
