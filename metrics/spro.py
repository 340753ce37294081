"""Saturated per-region overlap (sPRO) curve and its normalised area AU-sPRO, MVTec LOCO AD protocol.

This follows the evaluation code published with MVTec LOCO AD (Bergmann et al.,
"Beyond Dents and Scratches: Logical Constraints in Unsupervised Anomaly
Detection and Localization", IJCV 2022), for one set of test images:

* A region is one ground-truth channel: one PNG under
  ``ground_truth/<type>/<image id>/`` marks one defect. The whole channel is
  the region, however many connected pieces it has (no labelling, unlike
  PRO), and channels of one image may overlap. Good images have none.
* Each region has a saturation area ``s`` in pixels, from the category's
  ``defects_config.json``: ``min(saturation_threshold, region area)`` if the
  threshold is absolute, ``int(saturation_threshold * region area)`` if
  ``relative_saturation``. Deriving ``s`` from the config (and scaling it to
  resized masks) is the dataset's job: ``datasets.mvtec_loco``; here ``s``
  is given with each region.
* sPRO(t) = mean over all regions (each region weighs the same) of
  ``min(covered pixels / s, 1)``: a region counts as fully found once ``s``
  of its pixels are flagged.
* FPR(t) = flagged pixels outside every region of their image / all such
  pixels, pooled over every test image, good images included (a pixel inside
  any channel is never a false positive).
* AU-sPRO integrates sPRO over FPR in [0, fpr_limit] with the trapezoid rule,
  interpolating at the limit, and divides by the limit, like AU-PRO.

The official script samples thresholds (``score > t``) and refines them until
neighbouring curve points lie within ``curve_max_distance``; every point it
gets is a vertex of the exact curve computed here (one point per distinct
score, highest first, ``score >= t``), so it approximates this curve by chords.

Exactness at the speed of PRO: a region's term ``min(c / s, 1)`` is not a sum
of fixed per-pixel weights, but it is once the region's pixels are ranked by
score. With ``k = ceil(s)``, the ``j``-th highest pixel adds
``min(j, s) / s - min(j - 1, s) / s``: ``1 / s`` for ``j < k``, the remainder
``(s - (k - 1)) / s`` for ``j = k``, nothing after. How ties are ranked does not
matter, since a threshold flags a whole tie group at once and the sum over the
group is the same. So one partial sort per region (of its top ``k`` pixels)
turns the curve into the same weighted cumulative sum over one sort of the
scores as PRO (``metrics._ranking``); overlapping regions add their weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from metrics import _checks, _ranking
from metrics._checks import MetricError
from metrics.pro import au_pro_of, check_fpr_limit, pro_of

Region = tuple[np.ndarray, float]  # (bool mask [H, W], saturation area in pixels, > 0)


def _inputs(
    maps, regions, method: str | None
) -> tuple[np.ndarray, list[list[tuple[np.ndarray, float]]]]:
    """Validate ``maps [N, H, W]`` and ``regions`` (N sequences of ``(mask [H, W], saturation)``).

    Returns the maps as finite floats and, per image, ``(flat pixel indices in the
    whole [N, H, W] array, saturation capped at the region's area)`` per region.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise MetricError(
            f"{_checks._source(method)} anomaly maps of shape {maps.shape}; expected [N, H, W]"
        )
    maps = _checks.as_scores(maps, "pixel scores", method)
    n, h, w = maps.shape
    if len(regions) != n:
        raise MetricError(
            f"{len(regions)} region lists for {n} anomaly maps; expected one list of "
            f"ground-truth regions per test image (empty for a good image)"
        )
    checked = []
    for i, image_regions in enumerate(regions):
        image = []
        for j, region in enumerate(image_regions):
            if len(region) != 2:
                raise MetricError(f"region {j} of image {i} is not a (mask, saturation) pair")
            mask, saturation = region
            mask = _checks.as_binary(mask, f"region {j} of image {i}")
            if mask.shape != (h, w):
                raise MetricError(
                    f"region {j} of image {i} has a mask of shape {mask.shape}; expected "
                    f"{(h, w)}, the [H, W] of the anomaly maps"
                )
            saturation = float(saturation)
            if not (math.isfinite(saturation) and saturation > 0):
                raise MetricError(
                    f"region {j} of image {i} has saturation {saturation}; it must be a finite "
                    f"number of pixels > 0 (a relative LOCO threshold that truncates to 0 "
                    f"pixels on a tiny region gives 0)"
                )
            pixels = np.flatnonzero(mask)
            if pixels.size == 0:
                # the LOCO code refuses an empty channel too; a good image has no regions
                raise MetricError(f"region {j} of image {i} is empty; a region needs a pixel")
            # the LOCO code caps an absolute threshold at the area (with a printed warning)
            image.append((pixels + i * h * w, min(saturation, float(pixels.size))))
        checked.append(image)
    return maps, checked


def region_pixel_weights(
    flat_maps: np.ndarray, regions: list[list[tuple[np.ndarray, float]]], union: np.ndarray
) -> tuple[np.ndarray, int]:
    """Per defect pixel weight whose cumulative sum down the scores is sPRO.

    ``flat_maps [N*H*W]``; ``regions`` from ``_inputs``; ``union [N*H*W]`` bool,
    the pixels inside any region. Returns ``(weights [P], n_regions)``,
    ``weights`` in the order of ``flat_maps[union]``; each region adds up to
    ``1 / n_regions``, on its ``ceil(s)`` highest pixels.
    """
    n_regions = sum(len(image) for image in regions)
    weights = np.zeros(np.count_nonzero(union))
    union_pixels = np.flatnonzero(union)
    for image in regions:
        for pixels, saturation in image:
            scores = flat_maps[pixels]
            k = min(math.ceil(saturation), pixels.size)
            # the k highest pixels, highest first; which of tied pixels is taken is immaterial
            top = np.argpartition(-scores, k - 1)[:k] if k < pixels.size else np.arange(k)
            top = top[np.argsort(-scores[top], kind="stable")]
            rank = np.arange(1, k + 1, dtype=np.float64)
            gain = (np.minimum(rank, saturation) - np.minimum(rank - 1, saturation)) / saturation
            # unique pixels within one region, so a plain fancy-index add is exact
            weights[np.searchsorted(union_pixels, pixels[top])] += gain / n_regions
    return weights, n_regions


def _prepared(maps, regions, method: str | None):
    """Validated flat maps [N*H*W], union of the regions [N*H*W], its pixel weights, counts."""
    maps, regions = _inputs(maps, regions, method)
    flat = maps.ravel()
    union = np.zeros(flat.size, dtype=bool)
    for image in regions:
        for pixels, _ in image:
            union[pixels] = True
    weights, n_regions = region_pixel_weights(flat, regions, union)
    return flat, union, weights, n_regions, flat.size - weights.size


def spro_curve(
    maps, regions: Sequence[Sequence[Region]], *, method: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact sPRO curve over the whole FPR range.

    ``maps [N, H, W]``; ``regions``: N sequences, ``regions[i]`` the
    ``(mask [H, W], saturation area in pixels)`` pairs of image ``i`` (empty for
    a good image) -> ``(fpr [G+1], spro [G+1])``: (0, 0), then one point per
    distinct score, highest first; both non-decreasing, the last point is
    (1, 1). NaN sPRO without regions, NaN FPR without pixels outside every
    region (with a ``MetricWarning``).
    """
    flat, union, weights, n_regions, n_neg = _prepared(maps, regions, method)
    _checks.defined(n_regions and weights.size, n_neg, "sPRO curve", pixels=True)
    return pro_of(_ranking.cumulative_counts(flat, union, weights), n_neg, n_regions)


def au_spro(
    maps, regions: Sequence[Sequence[Region]], fpr_limit: float = 0.3, *, method: str | None = None
) -> float:
    """Normalised area under the sPRO curve up to ``fpr_limit``: a float in [0, 1].

    Inputs as ``spro_curve``. 1 for a perfect map, ``fpr_limit / 2`` for a
    constant one, 0 for one that ranks every defect pixel below every other
    pixel. NaN with a ``MetricWarning`` without regions or without pixels
    outside every region.
    """
    check_fpr_limit(fpr_limit)
    flat, union, weights, n_regions, n_neg = _prepared(maps, regions, method)
    if not _checks.defined(n_regions and weights.size, n_neg, "AU-sPRO", pixels=True):
        return float("nan")
    # as au_pro: sort only the scores down to the first point past the limit
    max_negatives = math.floor(fpr_limit * n_neg) + 1
    counts = _ranking.cumulative_counts(flat, union, weights, max_negatives)
    return au_pro_of(*pro_of(counts, n_neg, n_regions), fpr_limit)


__all__ = ["Region", "au_spro", "region_pixel_weights", "spro_curve"]
