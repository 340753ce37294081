"""Datasets: the MVTec AD layout, image/mask reading, and a synthetic set in that layout."""

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
