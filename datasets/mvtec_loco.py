"""MVTec LOCO AD as a dataset plugin: its layout, its folder masks, and the saturated defect regions of sPRO.

MVTec LOCO AD (Bergmann et al., "Beyond Dents and Scratches", IJCV 2022)::

    ROOT/<category>/train/good/*.png
    ROOT/<category>/validation/good/*.png        (not used: the harness fits on train only)
    ROOT/<category>/test/<good|logical_anomalies|structural_anomalies>/<id>.png
    ROOT/<category>/ground_truth/<logical_anomalies|structural_anomalies>/<id>/000.png, 001.png, ...
    ROOT/<category>/defects_config.json

A defective image's mask is the folder ``ground_truth/<type>/<id>/``: one grey
PNG per defect region ("channel"), its defect pixels all carrying the
``pixel_value`` of one defect type of ``defects_config.json``, zero elsewhere;
the union of the files is the image's mask. The config gives each defect type a
saturation threshold, the number of a region's pixels a method must flag for
the region to count as fully found: pixels of the full-resolution image, or
with ``relative_saturation`` a fraction of the region's area. This follows the
official evaluation code (``src/image.py``: ``DefectConfig``,
``GroundTruthChannel.get_saturation_area``, ``read_from_png_dir``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from datasets import transforms
from datasets.base import GOOD, Dataset, Region, Sample, list_images, require_folder, subfolders
from datasets.errors import DatasetError

CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
LOGICAL, STRUCTURAL = "logical_anomalies", "structural_anomalies"
CONFIG = "defects_config.json"
CONFIG_KEYS = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
LAYOUT = ("<category>/train/good, <category>/test/<good|logical_anomalies|structural_anomalies>/<id>.png, "
          "<category>/ground_truth/<type>/<id>/000.png, ..., <category>/defects_config.json")


class MVTecLOCO(Dataset):
    """MVTec LOCO AD: logical and structural anomalies, one mask file per defect region."""

    name = "mvtec_loco"
    layout = LAYOUT
    known_categories = CATEGORIES
    subsets = {"logical": (LOGICAL,), "structural": (STRUCTURAL,)}
    # A LOCO category also has MVTec AD's train/good and test/<type> folders, so MVTec AD's
    # detection matches it too; this layout is the more specific reading of such a folder.
    refines = "mvtec_ad"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / name / CONFIG).is_file() or (root / name / "test" / LOGICAL).is_dir()
                   for name in subfolders(root))

    def categories(self) -> list[str]:
        require_folder(self.root, LAYOUT)
        return [name for name in subfolders(self.root)
                if (self.root / name / "train" / GOOD).is_dir() or (self.root / name / CONFIG).is_file()]

    def train(self, category: str) -> list[Sample]:
        train = self._folder(category) / "train" / GOOD
        images = list_images(train)
        if not images:
            raise DatasetError(f"{train} has no images (.png); expected the good training images there "
                               f"({LAYOUT})")
        return [Sample(path, 0, GOOD) for path in images]

    def test(self, category: str) -> list[Sample]:
        folder = self._folder(category)
        test = folder / "test"
        if not test.is_dir():
            raise DatasetError(f"{folder} has no test folder; expected {LAYOUT}")
        load_defects(folder / CONFIG)  # fails now, not after feature extraction, if sPRO cannot be scored
        samples = [self._test_sample(folder, kind, path)
                   for kind in subfolders(test) for path in list_images(test / kind)]
        if not samples:
            raise DatasetError(f"{test} has no images in its subfolders; expected {LAYOUT}")
        return samples

    def regions(self, category: str, samples: Sequence[Sample], resize: int, crop: int) -> list[list[Region]]:
        """Per sample its defect regions ``(bool [crop, crop], saturation area in pixels)``, one per
        mask file, at the evaluated size; good images have none."""
        config = self._folder(category) / CONFIG
        defects = load_defects(config)
        regions: list[list[Region]] = [[] for _ in samples]

        def fill(index: int) -> None:  # a LOCO mask is 1600 x 1100 px, ~16 ms to decode: in parallel
            sample = samples[index]
            if sample.mask_path is not None:
                transforms.check_mask_size(sample.mask_path, sample.image_path)
                found = [region_at(path, defects, config, resize, crop)
                         for path in transforms.mask_files(sample.mask_path)]
                regions[index] = [region for region in found if region is not None]

        transforms.run_parallel(fill, len(samples), None)
        return regions

    def _folder(self, category: str) -> Path:
        if category not in self.categories():
            self.resolve(category)  # the unknown-category error, with what is there
            raise DatasetError(f"{self.root / category} is not an MVTec LOCO category folder; expected {LAYOUT}")
        return self.root / category

    def _test_sample(self, folder: Path, kind: str, path: Path) -> Sample:
        if kind == GOOD:
            return Sample(path, 0, GOOD)
        masks = folder / "ground_truth" / kind / path.stem
        if not masks.is_dir():
            raise DatasetError(f"defective test image {path} has no ground-truth folder; expected {masks}/ "
                               f"with one mask per defect region (000.png, 001.png, ...); restore it or move "
                               f"the image out of the test folder")
        if not list_images(masks):
            raise DatasetError(f"ground-truth folder {masks} of {path} has no mask images (000.png, "
                               f"001.png, ...); restore them or move the image out of the test folder")
        return Sample(path, 1, kind, masks)


def load_defects(path: Path) -> dict[int, dict]:
    """``defects_config.json`` as ``{pixel_value: entry}``; every entry checked, errors name the key."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing; every MVTec LOCO category ships it (the defect types "
                           f"and their saturation thresholds); restore it from the archive")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DatasetError(f"cannot read {path}: {error}; restore it from the archive") from error
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path} is not a non-empty list of defects (objects with keys "
                           f"{', '.join(CONFIG_KEYS)}); restore it from the archive")
    defects: dict[int, dict] = {}
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, defects)
        if problem:
            raise DatasetError(f"{path}, defect {index}{problem}; fix the entry or restore the file")
        defects[entry["pixel_value"]] = entry
    return defects


def _entry_problem(entry: object, defects: dict[int, dict]) -> str | None:
    """What is wrong with one config entry (the checks of the official ``DefectConfig``), or None."""
    if not isinstance(entry, dict):
        return f" is not an object with keys {', '.join(CONFIG_KEYS)}"
    missing = [key for key in CONFIG_KEYS if key not in entry]
    if missing:
        return f" has no key {missing[0]!r} (needs {', '.join(CONFIG_KEYS)})"
    value, threshold, relative = entry["pixel_value"], entry["saturation_threshold"], entry["relative_saturation"]
    if not isinstance(entry["defect_name"], str):
        return ": 'defect_name' is not a string"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
        return f": 'pixel_value' is {value!r}, not an integer in 1..255"
    if value in defects:
        return f": 'pixel_value' {value} is also defect {defects[value]['defect_name']!r}'s"
    if not isinstance(relative, bool):
        return f": 'relative_saturation' is {relative!r}, not true or false"
    # The official code wants an int when absolute; a float count is as clear, so it is let through.
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 < threshold <= (1 if relative else math.inf)):
        bound = "a fraction in (0, 1] (relative_saturation is true)" if relative else "a pixel count > 0"
        return f": 'saturation_threshold' is {threshold!r}, not {bound}"
    return None


def region_at(path: Path, defects: dict[int, dict], config: Path, resize: int, crop: int) -> Region | None:
    """One mask file as ``(bool [crop, crop], saturation area)`` at the evaluated size; None when the
    crop leaves none of it (nothing is left to find there, and sPRO would divide by zero).

    The region is resized as ``read_mask`` resizes masks (nearest), so the regions of an image tile
    its union mask; a region thinner than the resize's sampling step, which nearest would drop
    (1600 px to 256 keeps one column in six), is instead every evaluated pixel it touches, so it
    still counts in sPRO's mean as the official full-size evaluation counts it.
    """
    values = _defect_values(path)
    present = np.unique(values[values != 0])
    if present.size != 1:
        what = "no defect pixels" if present.size == 0 else f"several pixel values ({', '.join(map(str, present))})"
        raise DatasetError(f"mask {path} has {what}; an MVTec LOCO mask file holds one defect region, all its "
                           f"pixels one pixel_value of {config}; restore the file")
    value = int(present[0])
    if value not in defects:
        raise DatasetError(f"mask {path} has pixel value {value}, which no defect of {config} has (pixel "
                           f"values there: {', '.join(map(str, sorted(defects)))}); restore the mask or the config")
    height, width = values.shape
    binary = Image.fromarray((values != 0).astype(np.uint8) * np.uint8(255))
    whole = transforms.resize_crop(binary, resize, resize, Image.NEAREST)
    if not np.asarray(whole).any():
        whole = transforms.resize_crop(binary, resize, resize, Image.BOX)  # any coverage is > 0
    region = np.asarray(transforms.resize_crop(whole, resize, crop, Image.NEAREST)) > 0
    visible = int(region.sum())
    if visible == 0:
        return None
    return region, saturation_area(defects[value], resize * resize / (width * height), visible)


def saturation_area(defect: dict, scale: float, visible: int) -> float:
    """A region's saturation area in pixels at the evaluated size.

    ``scale``: evaluated pixels per original pixel, ``resize**2 / (W * H)``; ``visible``: the
    region's pixels at the evaluated size, after the crop.

    The official code counts at the original resolution: an absolute threshold is a pixel
    count there, so it is scaled by ``scale``; a relative one (there ``int(threshold * area)``)
    is a fraction of the region, taken of what the crop leaves of it, so a half-cropped region
    asks for the same fraction of what can be found. The official truncation is under one
    original pixel; truncating at a coarser size would bias it by up to a pixel, so it is not copied.
    """
    threshold = float(defect["saturation_threshold"])
    saturation = threshold * visible if defect["relative_saturation"] else threshold * scale
    # The crop can cut a region; what it cut off cannot be flagged, so a saturation above the
    # visible pixels could never be reached. At least one pixel: sPRO divides by it.
    return float(min(max(saturation, 1.0), visible))


def _defect_values(path: Path) -> np.ndarray:
    """A mask file's pixel values ``[H, W]`` as stored (the official code reads ``np.array(image)``)."""
    try:
        with Image.open(path) as image:
            image.load()
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot read mask {path}: {error}; replace or remove the file") from error
    if values.ndim != 2:
        raise DatasetError(f"mask {path} has {values.shape[-1]} channels (mode {image.mode}); MVTec LOCO masks "
                           f"are single-channel grey PNGs whose values are defect pixel values; restore the file")
    return values
