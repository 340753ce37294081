"""MVTec AD as a dataset plugin: the layout of ``datasets.mvtec``, its categories and groups.

The synthetic set (``datasets.synthetic``) is written in this layout, so its
scenes join MVTec AD's ``objects`` and ``textures`` (``datasets.categories``).
"""

from __future__ import annotations

from pathlib import Path

from datasets import mvtec
from datasets.base import Dataset, Sample, subfolders
from datasets.categories import CATEGORY_GROUPS, resolve_categories


class MVTecAD(Dataset):
    """MVTec AD (Bergmann et al., CVPR 2019), or any folder in its layout such as the synthetic set."""

    name = "mvtec_ad"
    layout = ("<category>/train/good, <category>/test/<good|defect>, "
              "<category>/ground_truth/<defect>/<stem>_mask.png")
    known_categories = mvtec.CATEGORIES
    groups = CATEGORY_GROUPS.members

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / name / "train" / mvtec.GOOD).is_dir() and (root / name / "test").is_dir()
                   for name in subfolders(root))

    def categories(self) -> list[str]:
        return mvtec.list_categories(self.root)

    def train(self, category: str) -> list[Sample]:
        return mvtec.load_split(self.root, category, "train")

    def test(self, category: str) -> list[Sample]:
        return mvtec.load_split(self.root, category, "test")

    def resolve(self, spec: str) -> list[str]:
        return resolve_categories(self.root, spec)
