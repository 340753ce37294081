"""Write the synthetic anomaly set in the MVTec AD layout, and cache it.

Every image comes from its own generator seeded by (seed, category, split,
defect, index), so a build is byte-identical for a seed whatever the order of
work, and categories never share random streams.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from datasets.cache_root import cache_root
from datasets.synthetic_scenes import SCENES, Scene

# Bump when the pictures change, so old caches are not reused (1 was development only).
VERSION = 3
TRAIN_IMAGES = 24
TEST_GOOD_IMAGES = 8
IMAGES_PER_DEFECT = 5


@dataclass(frozen=True)
class ImageCounts:
    """How many images a synthetic category has: good training images, good test images, and test
    images per defect type. The default set is small; ``bench.py profile`` builds an MVTec-sized
    category (300 train, 105 test) from the same scenes."""

    train: int = TRAIN_IMAGES
    test_good: int = TEST_GOOD_IMAGES
    per_defect: int = IMAGES_PER_DEFECT

SYNTHETIC_CATEGORIES: tuple[str, ...] = tuple(sorted(SCENES))
SYNTHETIC_TEXTURES: tuple[str, ...] = tuple(
    name for name in SYNTHETIC_CATEGORIES if SCENES[name].kind == "texture"
)
SYNTHETIC_OBJECTS: tuple[str, ...] = tuple(
    name for name in SYNTHETIC_CATEGORIES if SCENES[name].kind == "object"
)


def build_synthetic(
    root: Path | str,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    workers: int | None = None,
    counts: ImageCounts = ImageCounts(),
) -> Path:
    """Write the synthetic categories (default: all) under ``root``, ``counts`` images each; returns ``root``.

    Image ``i`` of a split is the same picture whatever the counts: a larger set
    extends the default one.

    Images are drawn on a thread pool: NumPy and Pillow release the GIL for
    the heavy array work and the PNG encoding.
    """
    root = Path(root)
    names = SYNTHETIC_CATEGORIES if categories is None else tuple(categories)
    unknown = sorted(set(names) - set(SCENES))
    if unknown:
        raise ValueError(f"unknown synthetic categories {unknown}; known: {SYNTHETIC_CATEGORIES}")
    jobs = [job for name in names for job in category_jobs(SCENES[name], counts)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = [pool.submit(_write_image, SCENES[name], seed, split, defect, index, root)
                for name, split, defect, index in jobs]
        for future in done:
            future.result()  # re-raise the first failure
    return root


def category_jobs(scene: Scene, counts: ImageCounts = ImageCounts()) -> list[tuple[str, str, str | None, int]]:
    """``(category, split, defect or None, index)`` of every image of a category."""
    jobs = [(scene.name, "train", None, i) for i in range(counts.train)]
    jobs += [(scene.name, "test", None, i) for i in range(counts.test_good)]
    jobs += [(scene.name, "test", d, i) for d in scene.defects for i in range(counts.per_defect)]
    return jobs


def _write_image(
    scene: Scene, seed: int, split: str, defect: str | None, index: int, root: Path
) -> None:
    """Draw one image and write it, and its mask, where MVTec would keep them."""
    image, mask = scene.render(image_rng(seed, scene.name, split, defect, index), defect)
    stem = f"{index:03d}"
    folder = root / scene.name / split / (defect or "good")
    folder.mkdir(parents=True, exist_ok=True)
    _save_png(image, folder / f"{stem}.png")
    if defect is None:
        return
    if mask is None or not mask.any():
        raise AssertionError(f"{scene.name}/{defect}/{stem}: defect drawn with an empty mask")
    mask_folder = root / scene.name / "ground_truth" / defect
    mask_folder.mkdir(parents=True, exist_ok=True)
    _save_png(mask.astype(np.uint8) * np.uint8(255), mask_folder / f"{stem}_mask.png")


def _save_png(array: np.ndarray, path: Path) -> None:
    # A 2-D array is saved as one-channel grey ("L"), [H, W, 3] as RGB. Huffman-only
    # zlib: noisy pictures gain nothing from slow string matching, and it is 2x faster.
    Image.fromarray(array).save(path, format="PNG", compress_level=1, compress_type=2)


def image_rng(
    seed: int, category: str, split: str, defect: str | None, index: int
) -> np.random.Generator:
    """The generator of one image; names enter as CRC32 because ``hash`` is salted per run."""
    words = [seed, zlib.crc32(category.encode()), zlib.crc32(split.encode()),
             zlib.crc32((defect or "good").encode()), index]
    return np.random.default_rng(words)


def default_synthetic_root(seed: int = 0) -> Path:
    """``<cache root>/synthetic-v<VERSION>-seed<seed>`` (``datasets.cache_root``: ``$PATCHBENCH_CACHE``,
    else ``~/.cache/patchbench``)."""
    return cache_root() / f"synthetic-v{VERSION}-seed{seed}"


def ensure_synthetic(root: Path | str | None = None, seed: int = 0) -> Path:
    """The synthetic set at ``root`` (default: the cache), built on first use.

    The build goes to a temporary sibling folder that is renamed into place at
    the end, so ``root`` exists only when complete: an interrupted build leaves
    no folder that would be taken for a finished one.
    """
    root = Path(root) if root is not None else default_synthetic_root(seed)
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        build_synthetic(staging, seed)
        try:
            staging.rename(root)
        except OSError:
            # Another process finished the same build first; its copy is as good.
            if not root.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root
