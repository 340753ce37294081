"""Test data and reference computations shared by the metrics tests: small random sets with ties,
and the metrics computed by their definitions (loops over thresholds and regions)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_image_data(seed: int, n: int = 60, decimals: int = 1):
    """Labels [n] with both classes and scores [n] rounded so that there are ties."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    labels[:2] = [True, False]
    scores = np.round(rng.random(n) + 0.5 * labels, decimals)
    return labels.astype(np.uint8), scores


def random_pixel_data(seed: int, shape=(4, 16, 16), decimals: int = 1):
    """Masks with many small regions (some touching diagonally) and one good image; tied scores."""
    rng = np.random.default_rng(seed)
    masks = (rng.random(shape) < 0.15).astype(np.uint8)
    masks[0] = 0  # a good image: its pixels must count as negatives
    masks[1, 3:7, 3:9] = 1  # one big region next to the small ones
    maps = np.round(rng.random(shape) + 0.4 * masks, decimals)
    return masks, maps


# ------------------------------------------------------- reference computations


def reference_pro_at(masks, maps, threshold):
    """(FPR, PRO) at one threshold by the definition: label, loop over regions."""
    overlaps, false_positives, negatives = [], 0, 0
    for mask, amap in zip(masks, maps):
        predicted = amap >= threshold
        regions, n_regions = ndimage.label(mask, structure=np.ones((3, 3)))
        for k in range(1, n_regions + 1):
            overlaps.append(predicted[regions == k].mean())
        false_positives += np.count_nonzero(predicted & (mask == 0))
        negatives += np.count_nonzero(mask == 0)
    return false_positives / negatives, float(np.mean(overlaps))


def reference_pro_curve(masks, maps):
    """The curve at every distinct score as threshold, highest first, from (0, 0)."""
    points = [reference_pro_at(masks, maps, t) for t in np.unique(maps)[::-1]]
    fpr, pro = np.array([(0.0, 0.0)] + points).T
    return fpr, pro


def reference_area(fpr, pro, limit):
    """Segment-by-segment trapezoids, the one crossing ``limit`` cut at its interpolation."""
    area = 0.0
    for x0, y0, x1, y1 in zip(fpr[:-1], pro[:-1], fpr[1:], pro[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def brute_force_f1(labels, scores):
    """Best F1 by trying every distinct score as threshold; also all F1 values per threshold."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores).ravel()
    f1_at = {}
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.count_nonzero(predicted & labels)
        precision = tp / np.count_nonzero(predicted)
        recall = tp / np.count_nonzero(labels)
        f1_at[float(t)] = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return max(f1_at.values()), f1_at


def random_evaluation_data(seed: int, n: int = 12, size: int = 20, decimals: int | None = None):
    """Labels [n], scores [n], masks and float32 maps [n, size, size]; the labels follow the masks.

    ``decimals=None``: (almost) every pixel score distinct, like real maps; otherwise ties.
    """
    rng = np.random.default_rng(seed)
    masks, maps = random_pixel_data(seed, shape=(n, size, size), decimals=6)
    masks[rng.random(n) < 0.3] = 0  # more good images
    maps = maps + rng.normal(0, 0.3, maps.shape)
    if decimals is not None:
        maps = np.round(maps, decimals)
    maps = maps.astype(np.float32)
    labels = masks.reshape(n, -1).any(axis=1).astype(np.uint8)
    scores = maps.reshape(n, -1).max(axis=1).astype(np.float64)
    if decimals is not None:
        scores = np.round(scores, 1)
    return labels, scores, masks, maps
