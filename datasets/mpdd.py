"""MPDD (Metal Parts Defect Detection, Jezek et al. 2021) as a dataset plugin: the MVTec AD layout, MPDD's categories.

Layout, exactly MVTec AD's (``datasets.mvtec`` lists it)::

    ROOT/<category>/train/good/<stem>.png
    ROOT/<category>/test/<good|defect>/<stem>.png
    ROOT/<category>/ground_truth/<defect>/<stem>_mask.png

Categories: bracket_black, bracket_brown, bracket_white, connector,
metal_plate, tubes. Since the layout is MVTec AD's, a folder is MPDD rather
than MVTec AD only by its category names: every category folder present must
be an MPDD name (``refines`` makes detection prefer this class then).
"""

from __future__ import annotations

from pathlib import Path

from datasets import mvtec
from datasets.base import Dataset, Sample, subfolders

CATEGORIES: tuple[str, ...] = (
    "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes",
)


class MPDD(Dataset):
    """MPDD: six metal parts in the MVTec AD layout; masks ``ground_truth/<defect>/<stem>_mask.png``."""

    name = "mpdd"
    layout = ("<category>/train/good, <category>/test/<good|defect>, "
              "<category>/ground_truth/<defect>/<stem>_mask.png with MPDD's category names "
              "(bracket_black, bracket_brown, bracket_white, connector, metal_plate, tubes)")
    known_categories = CATEGORIES
    refines = "mvtec_ad"

    @classmethod
    def detect(cls, root: Path) -> bool:
        present = [name for name in subfolders(root) if (root / name / "train" / mvtec.GOOD).is_dir()]
        return (bool(present) and all(name in CATEGORIES for name in present)
                and any((root / name / "test").is_dir() for name in present))

    def categories(self) -> list[str]:
        return mvtec.list_categories(self.root)

    def train(self, category: str) -> list[Sample]:
        self._require(category)
        return mvtec.load_split(self.root, category, "train")

    def test(self, category: str) -> list[Sample]:
        self._require(category)
        return mvtec.load_split(self.root, category, "test")

    def _require(self, category: str) -> None:
        # mvtec's own message hints at MVTec AD's names; this one hints at MPDD's.
        if not (self.root / category).is_dir():
            self.resolve(category)
