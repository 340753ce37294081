"""Datasets: the dataset contract (``datasets.base``), the published layouts, image/mask reading, the synthetic set.

Each published layout is a ``Dataset`` class of its own module (``mvtec_ad``,
``mvtec_ad2``, ``visa``, ``mvtec_loco``, ``btad``, ``mpdd``, ``folder``); the
harness registers them as plugins (``bench.builtin_datasets``).
"""

from datasets.base import Dataset, Region
from datasets.categories import resolve_categories
from datasets.mvtec import (
    CATEGORIES,
    IMAGE_SUFFIXES,
    OBJECTS,
    TEXTURES,
    Sample,
    list_categories,
    load_split,
)
from datasets.synthetic import (
    SYNTHETIC_CATEGORIES,
    SYNTHETIC_OBJECTS,
    SYNTHETIC_TEXTURES,
    build_synthetic,
    default_synthetic_root,
    ensure_synthetic,
)
from datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    read_image,
    read_images,
    read_mask,
    read_masks,
)

__all__ = [
    "CATEGORIES",
    "Dataset",
    "Region",
    "IMAGE_SUFFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OBJECTS",
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_OBJECTS",
    "SYNTHETIC_TEXTURES",
    "TEXTURES",
    "Sample",
    "build_synthetic",
    "default_synthetic_root",
    "ensure_synthetic",
    "list_categories",
    "load_split",
    "read_image",
    "read_images",
    "read_mask",
    "read_masks",
    "resolve_categories",
]
