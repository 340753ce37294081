"""MVTec AD 2 (Heckler-Kram et al., 2025) as a dataset plugin: train on train/good, score the public test set.

Layout, as MVTec ships each category::

    ROOT/<category>/train/good/<NNN>_regular.png
    ROOT/<category>/validation/good/<NNN>_regular.png        (not read)
    ROOT/<category>/test_public/good/<NNN>_<lighting>.png
    ROOT/<category>/test_public/bad/<NNN>_<lighting>.png
    ROOT/<category>/test_public/ground_truth/bad/<NNN>_<lighting>_mask.png
    ROOT/<category>/test_private/<NNN>*.png                  (no labels)
    ROOT/<category>/test_private_mixed/<NNN>*.png            (no labels)

``<lighting>`` is ``regular``, ``overexposed``, ``underexposed``, ``shift_1``, ...
A test image's mask is ``ground_truth/bad/`` + its stem + ``_mask.png``, 0
good and 255 defect, the image's size; sizes differ between categories.
Only ``good`` and ``bad`` are read from ``test_public``: MVTec AD 2 names no
defect types, so defective samples have defect ``bad``.

The private test sets carry no labels: MVTec scores them on its evaluation
server (https://benchmark.mvtec.com), so they are never read here.
"""

from __future__ import annotations

from pathlib import Path

from datasets.base import GOOD, Dataset, Sample, list_images, require_folder, subfolders
from datasets.errors import DatasetError

CATEGORIES: tuple[str, ...] = (
    "can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts",
)
PUBLIC = "test_public"
PRIVATE = ("test_private", "test_private_mixed")
BAD = "bad"
LAYOUT = ("<category>/train/good, <category>/test_public/<good|bad>, "
          "<category>/test_public/ground_truth/bad/<stem>_mask.png")


def _is_category(folder: Path) -> bool:
    return (folder / "train" / GOOD).is_dir() or any((folder / name).is_dir() for name in (PUBLIC, *PRIVATE))


class MVTecAD2(Dataset):
    """MVTec AD 2: eight categories; trains on ``train/good``, scores ``test_public`` (good, bad).

    ``validation/good`` is not used: no method here has a validation step, so those images would
    only be more training data, which the published protocol does not have. The private test sets
    (``test_private``, ``test_private_mixed``) have no public labels and are not scored."""

    name = "mvtec_ad2"
    layout = LAYOUT
    known_categories = CATEGORIES

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / name / split).is_dir() for name in subfolders(root) for split in (PUBLIC, *PRIVATE))

    def categories(self) -> list[str]:
        require_folder(self.root, LAYOUT)
        found = [name for name in subfolders(self.root) if _is_category(self.root / name)]
        if not found and _is_category(self.root):
            raise DatasetError(f"{self.root} is one MVTec AD 2 category folder (it holds "
                               f"{', '.join(subfolders(self.root))}); pass the folder above it, "
                               f"{self.root.parent}, which holds the category folders ({LAYOUT})")
        return found

    def train(self, category: str) -> list[Sample]:
        folder = self._folder(category) / "train" / GOOD
        images = list_images(folder)
        if not images:
            what = "has no images (.png)" if folder.is_dir() else "does not exist"
            raise DatasetError(f"{folder} {what}; put the good training images of {category} there ({LAYOUT})")
        return [Sample(path, 0, GOOD) for path in images]

    def test(self, category: str) -> list[Sample]:
        folder = self._folder(category)
        public = folder / PUBLIC
        if not public.is_dir():
            private = [name for name in PRIVATE if (folder / name).is_dir()]
            if private:
                raise DatasetError(
                    f"{folder} has {' and '.join(private)} but no {PUBLIC} folder: the private test sets have "
                    f"no public labels (MVTec evaluates them on its server, https://benchmark.mvtec.com) and "
                    f"patchbench scores {PUBLIC}; unpack {PUBLIC} from the category's archive into {folder}")
            raise DatasetError(f"{folder} has no {PUBLIC} folder; expected {public}/good, {public}/bad and "
                               f"{public}/ground_truth/bad ({LAYOUT})")
        # both halves, or image AUROC is undefined (NaN) with no word of which folder is missing
        for half in (GOOD, BAD):
            if not list_images(public / half):
                raise DatasetError(f"{public / half} is missing or has no images; restore it from the "
                                   f"category's archive ({LAYOUT})")
        samples = [Sample(path, 0, GOOD) for path in list_images(public / GOOD)]
        truth = public / "ground_truth" / BAD
        samples += [Sample(path, 1, BAD, mask_for(path, truth)) for path in list_images(public / BAD)]
        return sorted(samples, key=lambda sample: (sample.defect, sample.image_path.name))

    def _folder(self, category: str) -> Path:
        if category not in self.categories():
            self.resolve(category)  # raises: unknown category, with what is there
            raise DatasetError(f"{self.root / category} is not an MVTec AD 2 category folder; expected {LAYOUT}")
        return self.root / category


def mask_for(image: Path, truth: Path) -> Path:
    """The mask of ``test_public/bad/<stem>.png``: ``truth/<stem>_mask.png``; a ``DatasetError`` if missing."""
    mask = truth / f"{image.stem}_mask.png"
    if not mask.is_file():
        raise DatasetError(f"defective test image {image} has no mask; expected {mask}; restore it from the "
                           f"category's archive or move the image out of {image.parent}")
    return mask
