"""The test images a report shows for a category: which ones, and their pixels, masks and maps.

People look at the failures first, so the chosen images are the defects every
method scored lowest (the worst misses) and the good images scored highest (the
worst false alarms). Scores of different methods live on different scales, so
"lowest across methods" is the mean of each image's within-method rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import rankdata

from datasets.errors import DatasetError
from datasets.transforms import load_rgb, read_mask, resize_crop
from methods.maps import resize_bilinear

DISPLAY_MIN, DISPLAY_MAX = 96, 128  # pixels a side per panel: enough to see a defect, small enough to embed


def mean_ranks(scores: np.ndarray) -> np.ndarray:
    """``[M, N]`` scores of M methods on the same N images -> ``[N]`` mean rank in [0, 1].

    0 is the lowest score of every method, 1 the highest; ties share their average rank.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n = scores.shape[1]
    if n == 0:
        return np.zeros(0)
    ranks = np.stack([rankdata(row, method="average") for row in scores]) - 1.0
    return ranks.mean(axis=0) / max(n - 1, 1)


def pick_examples(labels: np.ndarray, ranks: np.ndarray, k: int = 4) -> np.ndarray:
    """Indices of ``k`` images: lowest-ranked defects first, then highest-ranked good images.

    ``labels``, ``ranks``: ``[N]``. Half of ``k`` (rounded up) goes to defects;
    when one kind runs short the other fills the rest.
    """
    labels, ranks = np.asarray(labels), np.asarray(ranks, dtype=np.float64)
    # Stable sorts on (rank, index) so equal ranks keep the data set's order.
    defects = np.flatnonzero(labels != 0)[np.argsort(ranks[labels != 0], kind="stable")]
    good = np.flatnonzero(labels == 0)[np.argsort(-ranks[labels == 0], kind="stable")]
    n_defects = min(len(defects), max(k - len(good), (k + 1) // 2))
    n_good = min(len(good), k - n_defects)
    return np.concatenate([defects[:n_defects], good[:n_good]]).astype(np.int64)


@dataclass
class Examples:
    """What the examples figure of one category draws; K images, M methods, S x S display pixels."""

    names: list[str]             # [K] short image names, "crack/003.png"
    labels: np.ndarray           # [K] 0 good, 1 defect
    images: list                 # [K] [S, S, 3] uint8, or None when the file is gone
    truths: list                 # [K] [S, S] bool, or None when there is no mask file to read
    methods: list[str]           # [M]
    maps: np.ndarray             # [M, K, S, S] float32 anomaly maps
    scores: np.ndarray           # [M, K] image scores
    image_thresholds: np.ndarray  # [M]
    pixel_thresholds: np.ndarray  # [M]
    map_ranges: np.ndarray       # [M, 2] (low, high) of each method's maps over the whole category


def aligned(predictions: dict[str, dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The image paths every method predicted, and for each method the indices of those paths."""
    methods = list(predictions)
    paths = [str(p) for p in predictions[methods[0]]["image_paths"]]
    common = set(paths)
    for name in methods[1:]:
        common &= {str(p) for p in predictions[name]["image_paths"]}
    paths = [p for p in paths if p in common]
    index = {name: {str(p): i for i, p in enumerate(predictions[name]["image_paths"])} for name in methods}
    return np.array(paths), {name: np.array([index[name][p] for p in paths], dtype=np.int64)
                             for name in methods}


def display_size(geometry: tuple[int, int] | None) -> int:
    """Panel side: the crop the model saw, within [DISPLAY_MIN, DISPLAY_MAX]."""
    return int(np.clip(geometry[1], DISPLAY_MIN, DISPLAY_MAX)) if geometry else DISPLAY_MAX


def display_image(path: str, geometry: tuple[int, int] | None, size: int) -> np.ndarray | None:
    """The test image as the model saw it (same resize and crop, no normalisation): ``[S, S, 3]`` uint8."""
    try:
        image = load_rgb(path)
    except (DatasetError, OSError):
        return None
    if geometry:
        image = resize_crop(image, geometry[0], geometry[1], Image.BILINEAR)
    return np.asarray(image.resize((size, size), Image.BILINEAR))


def display_mask(path: str, geometry: tuple[int, int] | None, size: int) -> np.ndarray | None:
    """The ground truth as ``[S, S]`` bool; all False for a good image (no mask path)."""
    if not path:
        return np.zeros((size, size), dtype=bool)
    try:
        if geometry:
            mask = read_mask(path, geometry[0], geometry[1])
        else:
            with Image.open(path) as image:
                mask = (np.asarray(image.convert("L")) > 0).astype(np.uint8)
    except (DatasetError, OSError):
        return None
    as_image = Image.fromarray(mask * np.uint8(255))
    return np.asarray(as_image.resize((size, size), Image.NEAREST)) > 0


def short_name(path: str) -> str:
    """``.../test/crack/003.png`` -> ``crack/003.png``: the defect type is the useful part."""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def category_examples(predictions: dict[str, dict], geometry: tuple[int, int] | None,
                      k: int = 4) -> Examples | None:
    """Choose and load the examples of one category from its methods' saved predictions.

    ``predictions``: method name -> ``load_predictions`` dict. None when no image
    was predicted by every method.
    """
    paths, index = aligned(predictions)
    if len(paths) == 0:
        return None
    methods = list(predictions)
    first = predictions[methods[0]]
    labels = np.asarray(first["labels"])[index[methods[0]]]
    mask_paths = np.asarray(first["mask_paths"])[index[methods[0]]]
    scores = np.stack([np.asarray(predictions[m]["scores"], dtype=np.float64)[index[m]] for m in methods])
    chosen = pick_examples(labels, mean_ranks(scores), k)
    size = display_size(geometry)
    maps = np.stack([
        resize_bilinear(np.asarray(predictions[m]["maps"], dtype=np.float32)[index[m][chosen]], (size, size))
        for m in methods
    ])
    ranges = np.array([[np.nanmin(predictions[m]["maps"]), np.nanmax(predictions[m]["maps"])] for m in methods],
                      dtype=np.float64)
    return Examples(
        names=[short_name(paths[i]) for i in chosen],
        labels=labels[chosen].astype(np.int64),
        images=[display_image(paths[i], geometry, size) for i in chosen],
        truths=[display_mask(str(mask_paths[i]), geometry, size) for i in chosen],
        methods=methods,
        maps=maps,
        scores=scores[:, chosen],
        image_thresholds=np.array([float(predictions[m]["image_threshold"]) for m in methods]),
        pixel_thresholds=np.array([float(predictions[m]["pixel_threshold"]) for m in methods]),
        map_ranges=ranges,
    )
