"""BTAD (beanTech Anomaly Detection, Mishra et al. 2021) as a dataset plugin: three products, ``ok``/``ko`` folders.

Layout, as the archive ``btad.zip`` unpacks (folder ``BTech_Dataset_transformed``)::

    ROOT/<NN>/train/ok/<stem>.<ext>
    ROOT/<NN>/test/ok/<stem>.<ext>
    ROOT/<NN>/test/ko/<stem>.<ext>
    ROOT/<NN>/ground_truth/ko/<stem>.<mask ext>

with ``<NN>`` one of ``01``, ``02``, ``03``. The extensions differ per product:
images are .bmp for 01 and 03 and .png for 02; masks are .png for 01 and 02
and .bmp for 03. anomalib's downloader converts every .bmp to .png, so a
converted copy holds .png only. A mask is therefore found by its image's stem,
whatever its extension; it has the same stem as its image, no ``_mask`` suffix.
"""

from __future__ import annotations

from pathlib import Path

from datasets.base import (GOOD, Dataset, Sample, list_images, masks_by_stem, one_mask, require_folder,
                           subfolders)
from datasets.errors import DatasetError

CATEGORIES: tuple[str, ...] = ("01", "02", "03")
OK = "ok"  # BTAD's name for good images, on disk; samples say "good"
KO = "ko"
# The mask extension each product ships with, to name the expected file in an error.
MASK_SUFFIX = {"01": ".png", "02": ".png", "03": ".bmp"}
LAYOUT = "<NN>/train/ok, <NN>/test/<ok|ko>, <NN>/ground_truth/ko/<stem>.<png|bmp>"


class BTAD(Dataset):
    """BTAD: products ``01``, ``02``, ``03``, each with ``train/ok``, ``test/ok``, ``test/ko`` and
    ``ground_truth/ko``. Good images are ``ok`` on disk, but their ``Sample.defect`` is ``good``
    (the harness's name for good images everywhere); defective ones have ``defect`` ``ko``, the
    folder's name. A mask is ``ground_truth/ko/<stem>.*``: the image's stem, any image extension."""

    name = "btad"
    layout = LAYOUT
    known_categories = CATEGORIES

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / name / "train" / OK).is_dir() for name in subfolders(root))

    def categories(self) -> list[str]:
        require_folder(self.root, LAYOUT)
        return [name for name in subfolders(self.root) if (self.root / name / "train" / OK).is_dir()]

    def train(self, category: str) -> list[Sample]:
        folder = self._category_folder(category) / "train" / OK
        images = list_images(folder)
        if not images:
            raise DatasetError(f"{folder} has no images (.png .bmp .jpg .jpeg .tif .tiff); put the "
                               f"good training images of product {category} there ({LAYOUT})")
        return [Sample(path, 0, GOOD) for path in images]

    def test(self, category: str) -> list[Sample]:
        folder = self._category_folder(category)
        test = folder / "test"
        if not test.is_dir():
            raise DatasetError(f"{folder} has no test folder; expected {test}/ok and {test}/ko ({LAYOUT})")
        samples = []
        for kind in subfolders(test):
            images = list_images(test / kind)
            if kind == OK:
                samples += [Sample(path, 0, GOOD) for path in images]
            else:
                truth = folder / "ground_truth" / kind
                masks = masks_by_stem(truth)
                samples += [Sample(path, 1, kind, one_mask(
                    path, masks, f"{truth / (path.stem + MASK_SUFFIX.get(category, '.png'))} (the image's stem, "
                    "any image extension)", f"add the mask or move the image out of {path.parent}"))
                    for path in images]
        if not samples:
            raise DatasetError(f"{test} has no images in its subfolders; expected {test}/ok and "
                               f"{test}/ko ({LAYOUT})")
        return samples

    def _category_folder(self, category: str) -> Path:
        folder = self.root / category
        if not (folder / "train" / OK).is_dir():
            if folder.is_dir():
                raise DatasetError(f"{folder} has no train/ok folder; put the good training images "
                                   f"there ({LAYOUT})")
            self.resolve(category)  # raises: unknown category, with what is there
        return folder

