"""What ``--category`` names on any data: MVTec AD's groups joined with the synthetic set's.

The MVTec layout loader (``datasets.mvtec``) knows only MVTec AD's
``objects`` and ``textures``; the synthetic set says which of its scenes are
which (``datasets.synthetic``). Joined here, the groups work on the default
synthetic data and on a real MVTec AD folder alike.
"""

from __future__ import annotations

from pathlib import Path

from datasets.mvtec import OBJECTS, TEXTURES, CategoryGroups
from datasets.mvtec import resolve_categories as resolve_in_groups
from datasets.synthetic import SYNTHETIC_OBJECTS, SYNTHETIC_TEXTURES

CATEGORY_GROUPS = CategoryGroups(
    {"objects": OBJECTS + SYNTHETIC_OBJECTS, "textures": TEXTURES + SYNTHETIC_TEXTURES},
    "MVTec AD and of the synthetic set",
)


def resolve_categories(root: Path | str, spec: str) -> list[str]:
    """``datasets.mvtec.resolve_categories`` with the groups of MVTec AD and of the synthetic set."""
    return resolve_in_groups(root, spec, CATEGORY_GROUPS)
