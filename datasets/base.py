"""The contract of a dataset: the categories under one root folder, and each category's train and test samples.

A dataset class reads one published layout (MVTec AD, VisA, MVTec LOCO, ...)
or a lab's own. The harness gets the classes from the ``patchbench_datasets``
hook (``bench/hookspecs.py``), builds one per run with
``from_config(root, options)`` and asks it for categories and samples; the
pixels are read later, by ``datasets.transforms``, from the paths in the
samples. A class lists files and says what they mean; it never reads images,
except where the meaning is inside a file (a LOCO region's defect type).

Subclass ``Dataset``, set the class attributes, implement ``categories``,
``train`` and ``test``; the rest has defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np

from datasets.errors import DatasetError

logger = logging.getLogger("patchbench")

GOOD = "good"
ALL = "all"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """One image of a split. ``label`` is 0 for good, 1 for defective; ``defect`` names the defect
    type (``good`` for good images); ``mask_path`` is None for good images (their mask is all zero)
    and for defective images of a data set without masks. It is a file, or a folder whose image
    files are the image's defect regions, one per file, their union the mask (MVTec LOCO)."""

    image_path: Path
    label: int
    defect: str
    mask_path: Path | None = None


# (region [H, W] bool, saturation area in pixels at that resolution): one defect region, for sPRO
Region = tuple[np.ndarray, float]


class Dataset:
    """A data set on disk, read from ``root``: its categories, and per category the samples.

    Class attributes (set them in a subclass):

    - ``name``: what ``--dataset`` selects; unique among loaded plugins.
    - ``layout``: the folder layout in one line, for ``--list-datasets`` and error messages.
    - ``known_categories``: the publisher's category names (the hint when one is missing).
    - ``groups``: names ``--category`` accepts for several categories, ``{"objects": (...)}``;
      ``all`` is always every category present.
    - ``subsets``: defect types scored apart, ``{"logical": ("logical_anomalies",)}``: each row
      gets the image AUROC, AU-PRO (and sPRO) of every good image with that subset's defects.
    - ``refines``: the ``name`` of a layout this one specialises (MPDD is laid out as MVTec
      AD): when a folder looks like both, detection picks this one.
    """

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    known_categories: ClassVar[tuple[str, ...]] = ()
    groups: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    subsets: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    refines: ClassVar[str | None] = None

    def __init__(self, root: Path | str, seed: int = 0):
        self.root = Path(root)
        self.seed = seed  # for any random choice the loader makes (a split of a plain folder)

    @classmethod
    def from_config(cls, root: Path | str, options) -> Dataset:
        """The dataset of a run: ``root`` is ``--data-path``; ``options`` every parsed flag."""
        return cls(root, seed=options.seed)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` is laid out as this data set ships; looks at names only, quickly."""
        return False

    def categories(self) -> list[str]:
        """Sorted names of the categories present under ``root``; raises ``DatasetError`` if
        ``root`` is not a folder of this layout."""
        raise NotImplementedError

    def train(self, category: str) -> list[Sample]:
        """The good images to fit on, in a fixed order."""
        raise NotImplementedError

    def test(self, category: str) -> list[Sample]:
        """The images to score, with labels and masks, in a fixed order."""
        raise NotImplementedError

    def regions(self, category: str, samples: Sequence[Sample], resize: int, crop: int) -> list[list[Region]] | None:
        """The defect regions of each test sample at the evaluated size, for sPRO; None (the
        default) when the data set defines no saturation, and the run reports no sPRO."""
        return None

    def resolve(self, spec: str) -> list[str]:
        """``--category``: a name, ``all``, a group name, or a comma-separated list of these,
        as category names present, in the order given, each once."""
        return select_categories(self.categories(), spec, self.groups, where=str(self.root),
                                 source=self.name, known=self.known_categories, layout=self.layout)


def select_categories(available: Sequence[str], spec: str, groups: Mapping[str, tuple[str, ...]],
                      where: str, source: str, known: Sequence[str] = (), layout: str = "",
                      known_source: str | None = None) -> list[str]:
    """``spec`` (see ``Dataset.resolve``) as names from ``available``; a ``DatasetError`` names
    what is there when a token stands for nothing. ``source`` names whose groups they are,
    ``known_source`` (default ``source``) whose category names ``known`` are."""
    available = list(available)
    names = (ALL, *groups)
    if not available:
        expected = f"; expected the {source} layout: {layout}" if layout else ""
        raise DatasetError(f"no category folders under {where}{expected}; pass the folder that holds them "
                           "(see --list-datasets)")
    tokens = [token.strip() for token in spec.split(",") if token.strip()]
    if not tokens:
        raise DatasetError(f"empty category list {spec!r}; name one of: {', '.join(available)} "
                           f"(or {', '.join(names)})")
    chosen: list[str] = []
    for token in tokens:
        if token == ALL:
            found = available
        elif token in groups:
            found = [name for name in available if name in groups[token]]
            if not found:
                raise DatasetError(
                    f"{token!r} selects the {token} of {source} ({', '.join(groups[token])}) but none is "
                    f"under {where}; available: {', '.join(available)}; name them instead")
        elif token in available:
            found = [token]
        else:
            hint = (f" (a category of {known_source or source} that is not downloaded or not unpacked there)"
                    if token in known else "")
            raise DatasetError(f"unknown category {token!r} under {where}{hint}; available: "
                               f"{', '.join(available)} (or {', '.join(names)})")
        chosen += [name for name in found if name not in chosen]
    return chosen


def require_folder(root: Path, layout: str) -> None:
    """A ``DatasetError`` unless ``root`` is a folder; says which layout was expected there."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass the folder that holds the "
                           f"category folders ({layout})")


def subfolders(folder: Path) -> list[str]:
    """Sorted names of the visible folders directly in ``folder`` (none if it is not a folder)."""
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    Hidden files (``.DS_Store``) and folders are skipped silently; any other file
    that is not an image is skipped with a warning naming it, so a stray
    ``notes.txt`` neither sinks the run nor disappears unnoticed. A link to a
    file that is not there (shared storage not mounted) is an error.
    """
    if not folder.is_dir():
        return []
    images = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_symlink() and not path.exists():
            raise DatasetError(f"{path} links to {path.readlink()}, which does not exist; mount or restore "
                               "it, or remove the link")
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            logger.warning(
                "warning: skipping %s: not an image (expected %s); remove it or rename it",
                path, ", ".join(sorted(IMAGE_SUFFIXES)),
            )
            continue
        images.append(path)
    return images


def masks_by_stem(folder: Path, mask_suffix: str | None = None) -> dict[str, list[Path]]:
    """The image files in ``folder`` (none if it is missing) under the stem of the image each may be
    the mask of: its own stem, and for a name ending in ``mask_suffix`` (``_mask.png``) the stem before it."""
    found: dict[str, list[Path]] = {}
    for path in list_images(folder):
        found.setdefault(path.stem, []).append(path)
        if mask_suffix and path.name.endswith(mask_suffix):
            found.setdefault(path.name[:-len(mask_suffix)], []).append(path)
    return found


def one_mask(image: Path, masks: Mapping[str, list[Path]], expected: str, fix: str) -> Path:
    """The one mask filed under ``image``'s stem in ``masks`` (``masks_by_stem``). None: a
    ``DatasetError`` saying what was ``expected`` and the ``fix``; several: one naming them all."""
    candidates = masks.get(image.stem, [])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"defective image {image} has no mask; expected {expected}; {fix}")
    raise DatasetError(f"defective image {image} has several masks: {', '.join(str(p) for p in candidates)}; "
                       "keep one of them")
