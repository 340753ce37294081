"""Find the images and masks of an MVTec-AD-shaped folder.

Layout (MVTec AD and anything written like it, e.g. the synthetic set)::

    ROOT/<category>/train/good/*.png
    ROOT/<category>/test/<good|defect>/*.png
    ROOT/<category>/ground_truth/<defect>/<stem>_mask.png

This module only lists files; reading pixels is ``datasets.transforms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from datasets.base import GOOD, IMAGE_SUFFIXES, Sample, list_images, select_categories
from datasets.errors import DatasetError

CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
TEXTURES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")
OBJECTS: tuple[str, ...] = tuple(name for name in CATEGORIES if name not in TEXTURES)

GROUPS = ("all", "objects", "textures")
SPLITS = ("train", "test")

LAYOUT_HELP = (
    "expected ROOT/<category>/train/good/*.png, ROOT/<category>/test/<good|defect>/*.png "
    "and ROOT/<category>/ground_truth/<defect>/<stem>_mask.png (the MVTec AD layout)"
)


@dataclass(frozen=True)
class CategoryGroups:
    """What the group names select: ``members`` maps ``objects`` and ``textures`` to category
    names; ``source`` says whose names they are, for messages (``"MVTec AD"``)."""

    members: Mapping[str, tuple[str, ...]]
    source: str


MVTEC_GROUPS = CategoryGroups({"objects": OBJECTS, "textures": TEXTURES}, "MVTec AD")


def mask_path_for(root: Path | str, category: str, defect: str, image_path: Path) -> Path:
    """Where MVTec keeps the mask of ``test/<defect>/<stem>.<ext>``."""
    return Path(root) / category / "ground_truth" / defect / f"{image_path.stem}_mask.png"


def list_categories(root: Path | str) -> list[str]:
    """Sorted names of the folders under ``root`` that have ``train/good``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist; pass the folder that holds the "
            f"category folders ({LAYOUT_HELP})"
        )
    return sorted(
        child.name
        for child in root.iterdir()
        if not child.name.startswith(".") and (child / "train" / GOOD).is_dir()
    )


def resolve_categories(root: Path | str, spec: str, groups: CategoryGroups = MVTEC_GROUPS) -> list[str]:
    """Turn ``spec`` into category names present under ``root``.

    ``spec`` is a category name, ``all``, ``objects``, ``textures``, or a
    comma-separated list of those. ``all`` is every category folder under
    ``root``; ``objects``/``textures`` are the names of that kind in ``groups``
    (default: MVTec AD's) that are present. Order follows ``spec``; duplicates
    are dropped.
    """
    available = list_categories(root)
    if not available:
        raise DatasetError(f"no category folders under {root}; {LAYOUT_HELP}")
    return select_categories(available, spec, groups.members, where=str(root), source=groups.source,
                             known=CATEGORIES, known_source="MVTec AD")


def _unknown_message(root: Path | str, name: str, available: list[str]) -> str:
    hint = ""
    if name in CATEGORIES:
        hint = " (an MVTec AD category that is not downloaded or not unpacked there)"
    return (
        f"unknown category {name!r} under {root}{hint}; available: "
        f"{', '.join(available) or 'none'} (or {', '.join(GROUPS)})"
    )


def load_split(root: Path | str, category: str, split: str) -> list[Sample]:
    """The samples of one split, sorted by defect folder then file name.

    ``train`` lists ``train/good`` only; ``test`` lists every folder under
    ``test`` and pairs each defective image with its mask.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    folder = root / category
    if not folder.is_dir():
        available = list_categories(root)
        raise DatasetError(_unknown_message(root, category, available))
    _check_train_folder(folder)
    if split == "train":
        return [Sample(path, 0, GOOD) for path in list_images(folder / "train" / GOOD)]
    return _test_samples(root, category)


def _check_train_folder(folder: Path) -> None:
    train = folder / "train" / GOOD
    if not train.is_dir():
        raise DatasetError(f"{folder} has no train/good folder; {LAYOUT_HELP}")
    if not list_images(train):
        raise DatasetError(
            f"{train} has no images (.png .jpg .jpeg .bmp .tif .tiff); {LAYOUT_HELP}"
        )


def _test_samples(root: Path, category: str) -> list[Sample]:
    test = root / category / "test"
    if not test.is_dir():
        raise DatasetError(f"{root / category} has no test folder; {LAYOUT_HELP}")
    defects = sorted(
        child.name for child in test.iterdir() if child.is_dir() and not child.name.startswith(".")
    )
    samples = [
        _test_sample(root, category, defect, path)
        for defect in defects
        for path in list_images(test / defect)
    ]
    if not samples:
        raise DatasetError(f"{test} has no images in its subfolders; {LAYOUT_HELP}")
    return samples


def _test_sample(root: Path, category: str, defect: str, path: Path) -> Sample:
    if defect == GOOD:
        return Sample(path, 0, GOOD)
    mask = mask_path_for(root, category, defect, path)
    if not mask.is_file():
        raise DatasetError(
            f"defective test image {path} has no mask; expected {mask}; add the mask or "
            f"move the image out of the test folder"
        )
    return Sample(path, 1, defect, mask)
