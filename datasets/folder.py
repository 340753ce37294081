"""A lab's own images as a dataset plugin: ``good/`` and ``bad/`` folders, split into train and test with the run's seed.

Layout, one category named after ROOT's folder::

    ROOT/good/*.<ext>         good images, split 80 / 20 into train and test
    ROOT/bad/*.<ext>          defective images, all test
    ROOT/masks/               optional: a mask for every image in bad/

or several categories, one per child folder of ROOT that holds ``good/`` and
``bad/`` (``ROOT/<category>/good``, ...). When ROOT itself holds ``good/`` and
``bad/``, it is the one category and its child folders are not looked at
(a warning names any that look like categories too). ``detect`` passes over
a folder with ``good/`` and ``bad/`` beside ``ground_truth/``: that is MVTec
AD 2's ``test_public``, not this layout.

The mask of ``bad/<stem>.<ext>`` is ``masks/<stem>.<any image ext>`` or
``masks/<stem>_mask.png`` (anomalib's and MVTec's habits); exactly one of them
must exist. Without ``masks/``, defective samples have no mask and the
harness reports pixel metrics as undefined.

There is no split on disk: ``TEST_FRACTION`` of the good images (at least one,
rounded half up) go to test, chosen by a permutation of the name-sorted list
drawn from ``numpy.random.default_rng`` seeded with the run's seed and the
category's name (its crc32): the same seed gives the same split, and two
categories do not share one pattern. (Renaming a single-category ROOT renames
its category, so it changes the split.) At least one good image must stay for
training: fewer than two good images is an error.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from datasets.base import (GOOD, Dataset, Sample, list_images, masks_by_stem, one_mask, require_folder,
                           subfolders)
from datasets.errors import DatasetError

logger = logging.getLogger("patchbench")

GOOD_FOLDER = "good"
BAD_FOLDER = "bad"
MASKS_FOLDER = "masks"
TEST_FRACTION = 0.2
LAYOUT = ("ROOT/good, ROOT/bad and optionally ROOT/masks/<stem>.<ext> or <stem>_mask.png "
          "(one category), or ROOT/<category>/good, ROOT/<category>/bad, ...")


def _is_category(folder: Path) -> bool:
    return (folder / GOOD_FOLDER).is_dir() and (folder / BAD_FOLDER).is_dir()


class Folder(Dataset):
    """Good and defective images in two folders, with optional masks; the good ones split by seed.

    Defective samples are labelled 1 with defect ``bad`` (the folder's name); good ones 0, ``good``.
    """

    name = "folder"
    layout = LAYOUT

    @classmethod
    def detect(cls, root: Path) -> bool:
        # MVTec AD 2's <category>/test_public holds good/ and bad/ too, beside ground_truth/.
        def looks_like(folder: Path) -> bool:
            return _is_category(folder) and not (folder / "ground_truth").is_dir()

        return looks_like(root) or any(looks_like(root / name) for name in subfolders(root))

    def categories(self) -> list[str]:
        require_folder(self.root, LAYOUT)
        if _is_category(self.root):
            inner = [name for name in subfolders(self.root) if _is_category(self.root / name)]
            if inner:
                logger.warning("warning: %s holds good/ and bad/, so it is one category; its folders %s "
                               "are not read as categories (move good/ and bad/ away to use them)",
                               self.root, ", ".join(inner))
            return [self._own_name()]
        return [name for name in subfolders(self.root) if _is_category(self.root / name)]

    def train(self, category: str) -> list[Sample]:
        good, test_index = self._split(category)
        return [Sample(path, 0, GOOD) for i, path in enumerate(good) if i not in test_index]

    def test(self, category: str) -> list[Sample]:
        folder = self._folder(category)
        good, test_index = self._split(category)
        held_out = [Sample(path, 0, GOOD) for i, path in enumerate(good) if i in test_index]
        bad = list_images(folder / BAD_FOLDER)
        if not bad:
            raise DatasetError(f"{folder / BAD_FOLDER} has no images (.png .jpg .jpeg .bmp .tif .tiff); "
                               f"put the defective images of {category} there ({LAYOUT})")
        masks = folder / MASKS_FOLDER
        if not masks.is_dir():
            return [Sample(path, 1, BAD_FOLDER) for path in bad] + held_out
        index = masks_by_stem(masks, "_mask.png")
        defective = [Sample(path, 1, BAD_FOLDER, one_mask(
            path, index, f"{masks / (path.stem + '.png')} (any image extension) or "
            f"{masks / (path.stem + '_mask.png')}", f"add it, or remove {masks} to run without pixel metrics"))
            for path in bad]
        return defective + held_out

    def _own_name(self) -> str:
        return self.root.resolve().name or "folder"

    def _folder(self, category: str) -> Path:
        """The folder holding ``category``'s good/ and bad/; raises if there is no such category."""
        folder = self.root if _is_category(self.root) else self.root / category
        if not _is_category(folder) or (folder == self.root and category != self._own_name()):
            self.resolve(category)  # raises: unknown category, with what is there
            raise DatasetError(f"{category!r} names no single category under {self.root}; name one of: "
                               f"{', '.join(self.categories())}")
        return folder

    def _split(self, category: str) -> tuple[list[Path], set[int]]:
        """The name-sorted good images of ``category`` and the indices of those held out for test."""
        folder = self._folder(category) / GOOD_FOLDER
        good = list_images(folder)
        return good, set(held_out_indices(len(good), self.seed, category, folder).tolist())


def held_out_count(n: int) -> int:
    """How many of ``n`` good images go to test: ``TEST_FRACTION`` rounded half up, at least 1."""
    return max(1, int(n * TEST_FRACTION + 0.5))


def held_out_indices(n: int, seed: int, category: str, folder: Path) -> np.ndarray:
    """Sorted indices ``[held_out_count(n)]`` into the ``n`` name-sorted good images of ``category``
    (in ``folder``, for the error) that go to test; the same (seed, category) gives the same ones."""
    held_out = held_out_count(n)
    if n - held_out < 1:
        raise DatasetError(f"{folder} has {n} good image{'s' if n != 1 else ''}; at least 2 are needed "
                           f"(one to train on, {held_out} held out for test); add good images")
    # crc32, not hash(): the same name must give the same stream in every process.
    rng = np.random.default_rng([seed % 2**64, zlib.crc32(category.encode("utf-8"))])
    return np.sort(rng.permutation(n)[:held_out])

