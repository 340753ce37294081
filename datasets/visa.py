"""VisA (Visual Anomaly, Zou et al., ECCV 2022) as a dataset plugin: the images read in place, split by the published ``split_csv/1cls.csv``.

Layout, as ``VisA_20220922.tar`` unpacks (amazon-science/spot-diff)::

    ROOT/split_csv/1cls.csv                       the 1-class split: train on normal images only
    ROOT/<object>/Data/Images/Normal/<id>.JPG
    ROOT/<object>/Data/Images/Anomaly/<id>.JPG
    ROOT/<object>/Data/Masks/Anomaly/<id>.png
    ROOT/<object>/image_anno.csv                  (not read)

``1cls.csv`` has the header ``object,split,label,image,mask``; ``split`` is
``train`` or ``test``, ``label`` ``normal`` or ``anomaly``; ``image`` and
``mask`` are paths relative to ROOT, ``mask`` empty for normal images. The
split is read from it as published: nothing is copied or reorganised on disk
(anomalib and spot-diff's ``prepare_data.py`` copy the files into an MVTec AD
layout first; this reads the originals).

A mask's pixel values are the defect classes of spot-diff's ``id2class``
(0 background, 1, 2, ... a class each), not 0 / 255: a viewer shows them
black. ``datasets.transforms.read_mask`` counts any non-zero pixel as defect,
which is the binarisation of ``prepare_data.py``.

Every anomalous image has the defect type ``anomaly``, the label of
``1cls.csv``: the per-object ``image_anno.csv`` names defect classes in free
text, several per image, which is not a defect type to group images by.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from datasets.base import GOOD, Dataset, Sample, require_folder, subfolders
from datasets.errors import DatasetError

CATEGORIES: tuple[str, ...] = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)
# The object types of the VisA paper and spot-diff's README.
GROUPS = {
    "complex_structure": ("pcb1", "pcb2", "pcb3", "pcb4"),
    "multiple_instances": ("candle", "capsules", "macaroni1", "macaroni2"),
    "single_instance": ("cashew", "chewinggum", "fryum", "pipe_fryum"),
}
SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
SPLITS = ("train", "test")
NORMAL, ANOMALY = "normal", "anomaly"
DEFECT = "anomaly"  # the defect type of every anomalous sample
LAYOUT = ("split_csv/1cls.csv, <object>/Data/Images/<Normal|Anomaly>/<id>.JPG, "
          "<object>/Data/Masks/Anomaly/<id>.png (read in place, split by 1cls.csv)")
SOURCE = ("it ships in the VisA archive (VisA_20220922.tar, folder split_csv) and in the spot-diff "
          "repository (https://github.com/amazon-science/spot-diff, split_csv/1cls.csv)")


@dataclass(frozen=True)
class Row:
    """One checked row of ``1cls.csv``: paths as written (relative to ROOT), ``mask`` None for
    normal images, ``line`` the row's line number in the file (the header is line 1)."""

    object: str
    split: str
    label: str
    image: str
    mask: str | None
    line: int


class VisA(Dataset):
    """VisA: twelve objects, JPEG images read in place, train and test as ``split_csv/1cls.csv`` lists them.

    Good samples have defect ``good``, anomalous ones ``anomaly`` (1cls.csv gives no defect type);
    masks are ``Data/Masks/Anomaly/<id>.png`` with small non-zero class values as defect."""

    name = "visa"
    layout = LAYOUT
    known_categories = CATEGORIES
    groups = GROUPS

    def __init__(self, root: Path | str, seed: int = 0):
        super().__init__(root, seed)
        self._rows: list[Row] | None = None
        self._listed: dict[Path, frozenset[str]] = {}  # folder -> its file names, listed once

    @classmethod
    def detect(cls, root: Path) -> bool:
        # Either name alone: objects without their CSV should reach the error that says where it is.
        return (root / SPLIT_CSV).is_file() or any((root / name / "Data" / "Images").is_dir()
                                                   for name in subfolders(root))

    def categories(self) -> list[str]:
        """Objects listed in 1cls.csv whose folder is under ROOT, sorted."""
        listed = {row.object for row in self.rows()}
        return sorted(name for name in listed if (self.root / name).is_dir())

    def train(self, category: str) -> list[Sample]:
        rows = self._rows_of(category, "train")
        return sorted((Sample(self._existing(row, row.image), 0, GOOD) for row in rows),
                      key=lambda sample: sample.image_path)

    def test(self, category: str) -> list[Sample]:
        samples = [self._test_sample(row) for row in self._rows_of(category, "test")]
        return sorted(samples, key=lambda sample: (sample.defect, sample.image_path))

    def rows(self) -> list[Row]:
        """Every row of ``1cls.csv``, checked, in file order; read once per instance."""
        if self._rows is None:
            require_folder(self.root, LAYOUT)
            self._rows = read_split(self.root / SPLIT_CSV)
        return self._rows

    def _rows_of(self, category: str, split: str) -> list[Row]:
        if category not in self.categories():
            listed = {row.object for row in self.rows()}
            if (self.root / category).is_dir() and category not in listed:
                raise DatasetError(f"{self.root / category} is not listed in {self.root / SPLIT_CSV}, so it "
                                   f"has no train/test split; restore the published 1cls.csv ({SOURCE})")
            self.resolve(category)  # the unknown-category error, with what is there
            raise DatasetError(f"train() and test() take one category name, not a selection; got {category!r} "
                               f"(Dataset.resolve turns a selection into names)")
        rows = [row for row in self.rows() if row.object == category and row.split == split]
        if not rows:
            raise DatasetError(f"{self.root / SPLIT_CSV} lists no {split} images of {category}; "
                               f"restore the published 1cls.csv ({SOURCE})")
        return rows

    def _test_sample(self, row: Row) -> Sample:
        image = self._existing(row, row.image)
        if row.label == NORMAL:
            return Sample(image, 0, GOOD)
        return Sample(image, 1, DEFECT, self._existing(row, row.mask))

    def _existing(self, row: Row, relative: str) -> Path:
        # One listing per folder, not a stat per row: 12,000 rows on a network disk take seconds each way.
        path = self.root / relative
        if path.parent not in self._listed:
            self._listed[path.parent] = frozenset(os.listdir(path.parent)) if path.parent.is_dir() else frozenset()
        if path.name not in self._listed[path.parent]:
            raise DatasetError(f"{self.root / SPLIT_CSV}, line {row.line}: {path} does not exist"
                               f"{case_hint(path)}; restore it from the VisA archive, or remove the row")
        return path


def read_split(path: Path) -> list[Row]:
    """``1cls.csv`` as checked rows; a ``DatasetError`` names the file, the line and what is wrong."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing; VisA's train/test split is read from it: {SOURCE}; "
                           f"put it at {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            columns = _columns(path, header)
            rows: list[Row] = []
            seen: dict[str, int] = {}
            for fields in reader:
                if not any(field.strip() for field in fields):
                    continue
                row = _row(path, reader.line_num, fields, columns, len(header))
                if row.image in seen:
                    raise DatasetError(f"{path}, line {row.line}: {row.image} is listed again (first on line "
                                       f"{seen[row.image]}); keep one of the rows")
                seen[row.image] = row.line
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path}: {error}; restore the published 1cls.csv ({SOURCE})") from error
    if not rows:
        raise DatasetError(f"{path} has a header but no rows; restore the published 1cls.csv ({SOURCE})")
    return rows


def _columns(path: Path, header: list[str] | None) -> dict[str, int]:
    """Column name -> index; a ``DatasetError`` if one of ``COLUMNS`` is missing."""
    names = [name.strip() for name in header or []]
    for column in COLUMNS:
        if column not in names:
            raise DatasetError(f"{path}, line 1: no column {column!r} (the header is {','.join(names) or 'empty'}; "
                               f"1cls.csv has {','.join(COLUMNS)}); restore the published file ({SOURCE})")
    return {column: names.index(column) for column in COLUMNS}


def _row(path: Path, line: int, fields: list[str], columns: dict[str, int], width: int) -> Row:
    where = f"{path}, line {line}"
    if len(fields) != width:
        raise DatasetError(f"{where}: {len(fields)} fields where the header has {width} "
                           f"({','.join(COLUMNS)}); fix the row or remove it")
    value = {column: fields[index].strip() for column, index in columns.items()}
    if value["split"] not in SPLITS:
        raise DatasetError(f"{where}: split {value['split']!r} is neither 'train' nor 'test'; fix the row")
    if value["label"] not in (NORMAL, ANOMALY):
        raise DatasetError(f"{where}: label {value['label']!r} is neither 'normal' nor 'anomaly'; fix the row")
    image, mask, obj = value["image"], value["mask"] or None, value["object"]
    problem = _path_problem(image, obj, "image") or (mask and _path_problem(mask, obj, "mask"))
    if problem:
        raise DatasetError(f"{where}: {problem}; fix the row")
    # one spelling per file (a Windows "\", a "./" or "//"), so a file listed twice is seen as one
    image, mask = _clean(image), mask and _clean(mask)
    if value["label"] == ANOMALY and value["split"] == "train":
        raise DatasetError(f"{where}: a train image labelled anomaly; the 1-class split trains on normal "
                           f"images only (is this 2cls_*.csv?); use the published 1cls.csv ({SOURCE})")
    if value["label"] == ANOMALY and mask is None:
        raise DatasetError(f"{where}: anomaly image {image} has no mask (the mask column is empty); give its "
                           f"mask, e.g. {obj}/Data/Masks/Anomaly/{PurePosixPath(image).stem}.png, or remove the row")
    if value["label"] == NORMAL and mask is not None:
        raise DatasetError(f"{where}: normal image {image} lists a mask ({mask}); normal images have none, "
                           f"empty the mask column or label the row anomaly")
    return Row(obj, value["split"], value["label"], image, mask, line)


def _clean(relative: str) -> str:
    """A CSV path in one spelling: ``/`` between parts, no ``.`` parts or doubled separators."""
    return PurePosixPath(relative.replace("\\", "/")).as_posix()


def _path_problem(relative: str, obj: str, column: str) -> str | None:
    """Why a path of the CSV cannot be ``obj``'s file under ROOT, or None."""
    if not obj:
        return "the object column is empty"
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if not parts:
        return f"the {column} column is empty"
    if relative.startswith(("/", "\\")) or ".." in parts or parts[0] != obj:
        return f"{column} {relative!r} is not a path under the object's folder {obj}/ relative to ROOT"
    return None


def case_hint(path: Path) -> str:
    """`` (there is <file>: ...)`` when ``path`` exists with other letter case, else empty: 1cls.csv
    writes ``.JPG`` and a copy that lower-cased names no longer matches on a case-sensitive disk."""
    folder = path.parent
    if not folder.is_dir():
        return f" (no folder {folder})"
    for other in folder.iterdir():
        if other.name.lower() == path.name.lower():
            return f" (there is {other}: names are case-sensitive here; rename it to {path.name})"
    return ""
