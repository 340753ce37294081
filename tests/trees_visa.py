"""A tiny VisA tree as ``VisA_20220922.tar`` unpacks (Data/Images, Data/Masks, split_csv/1cls.csv), for tests.

Two objects of different groups: ``candle`` (normal images named with four
digits, ``0000.JPG``, as in VisA's candle) and ``pcb1`` (three digits,
``000.JPG``). Images are 48x40 RGB JPEGs with the upper-case ``.JPG`` of the
archive; an anomalous image has a bright box at ``DEFECT_BOX``. Masks are
one-channel PNGs whose defect pixels carry small class values (``MASK_VALUES``:
1, 2, ...), as VisA stores them, 0 elsewhere. ``split_csv/1cls.csv`` lists
train normal rows first, in a shuffled order as the published file does, then
test normal, then test anomaly rows, with an empty mask field for normal rows.
Each object also gets an ``image_anno.csv`` (image,label,mask; not read by the
loader, its columns as third-party code reads them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 40)  # width, height
DEFECT_BOX = (slice(14, 24), slice(8, 20))  # rows, columns
OBJECTS = {"candle": 4, "pcb1": 3}  # object -> digits of its normal images' names
TRAIN, TEST_NORMAL, TEST_ANOMALY = 3, 2, 2
MASK_VALUES = (1, 2)  # the class value of each anomaly's defect pixels: never 255
HEADER = "object,split,label,image,mask"


def _image(rng: np.random.Generator, anomalous: bool) -> Image.Image:
    pixels = rng.integers(40, 120, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    if anomalous:
        pixels[DEFECT_BOX] = 250
    return Image.fromarray(pixels)


def _mask(value: int) -> Image.Image:
    values = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    values[DEFECT_BOX] = value
    return Image.fromarray(values)


def write_visa_tree(root: Path, seed: int = 0) -> Path:
    """Write ``OBJECTS`` under ``root`` with ``TRAIN`` train, ``TEST_NORMAL`` test normal and
    ``TEST_ANOMALY`` test anomaly images each, and ``split_csv/1cls.csv``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = [HEADER]
    for obj, digits in OBJECTS.items():
        data = root / obj / "Data"
        for folder in (data / "Images" / "Normal", data / "Images" / "Anomaly", data / "Masks" / "Anomaly"):
            folder.mkdir(parents=True, exist_ok=True)
        normal = [f"{index:0{digits}d}.JPG" for index in range(TRAIN + TEST_NORMAL)]
        for name in normal:
            _image(rng, False).save(data / "Images" / "Normal" / name)
        # The published file lists train images in no particular order.
        train_order = [normal[index] for index in rng.permutation(TRAIN)]
        rows += [f"{obj},train,normal,{obj}/Data/Images/Normal/{name}," for name in train_order]
        rows += [f"{obj},test,normal,{obj}/Data/Images/Normal/{name}," for name in normal[TRAIN:]]
        annotations = ["image,label,mask"]
        for index in range(TEST_ANOMALY):
            image, mask = f"{obj}/Data/Images/Anomaly/{index:03d}.JPG", f"{obj}/Data/Masks/Anomaly/{index:03d}.png"
            _image(rng, True).save(root / image)
            _mask(MASK_VALUES[index % len(MASK_VALUES)]).save(root / mask)
            rows.append(f"{obj},test,anomaly,{image},{mask}")
            annotations.append(f"{image},scratch,{mask}")
        annotations += [f"{obj}/Data/Images/Normal/{name},normal," for name in normal]
        (root / obj / "image_anno.csv").write_text("\n".join(annotations) + "\n", encoding="utf-8")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
