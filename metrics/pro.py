"""Per-region overlap (PRO) curve and its normalised area AU-PRO, MVTec AD protocol.

This follows the evaluation script published with MVTec AD (Bergmann et al.,
"The MVTec Anomaly Detection Dataset", IJCV 2021), for one category:

* Ground-truth regions are the connected components of each image's mask with
  8-connectivity (pixels touching only at a corner belong to one region).
  Regions never span two images.
* For a threshold ``t`` a pixel is anomalous when ``score >= t``.
* FPR(t) = anomalous defect-free pixels / all defect-free pixels, pooled over
  every test image of the category, good images included.
* PRO(t) = mean over all regions of the category (each region weighs the
  same, whatever its size) of the fraction of the region's pixels that are
  anomalous.
* The curve is exact: one point per distinct score, highest first (tied
  scores are one point), starting at (0, 0) and ending at (1, 1).
* AU-PRO integrates PRO over FPR in [0, fpr_limit] (default 0.3) with the
  trapezoid rule; if the limit falls between two points, the last segment ends
  at the linearly interpolated point at the limit. The area is divided by the
  limit, so a perfect map scores 1 and a constant map ``fpr_limit / 2``.

Because PRO is a mean of per-region fractions, it is a sum of per-pixel
weights ``1 / (region size * number of regions)`` over the anomalous defect
pixels, so the whole curve is one sorted cumulative sum (see ``_ranking``).
``pro_of`` and ``au_pro_of`` turn those sums into the curve and its area, for
the functions here and for ``metrics.evaluate`` alike.

``method`` only names the method in the error raised for NaN/inf scores.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from metrics import _checks, _ranking
from metrics._checks import MetricError
from metrics._ranking import Counts

# 8-connectivity within an image, nothing across the image axis
_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per defect pixel weight ``1 / (size of its region * number of regions)``.

    ``masks [N, H, W]`` bool -> ``(weights [P], n_regions)``, ``weights`` in the
    order of ``masks[masks]`` (C order), summing to 1 if there is a region.
    """
    regions, n_regions = ndimage.label(masks, structure=_IN_PLANE_8)
    region_of_pixel = regions[masks]
    sizes = np.bincount(region_of_pixel)
    return 1.0 / (sizes[region_of_pixel] * float(n_regions)), n_regions


def check_fpr_limit(fpr_limit: float) -> None:
    """AU-PRO's FPR limit must be in (0, 1]; a ``MetricError`` otherwise."""
    if not 0 < fpr_limit <= 1:
        raise MetricError(f"fpr_limit for AU-PRO must be in (0, 1]; got {fpr_limit}")


def pro_of(counts: Counts, n_neg: int, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr [G+1], pro [G+1])`` from weighted counts (weights from ``region_weights``).

    Starts at (0, 0). FPR is NaN without defect-free pixels, PRO without regions.
    """
    fpr = np.empty(counts.fp.size + 1)
    fpr[0] = 0.0
    np.divide(counts.fp, n_neg or np.nan, out=fpr[1:])
    pro = np.empty_like(fpr)
    pro[0] = 0.0
    # a float sum of weights can end a hair above 1
    np.minimum(counts.weight, 1.0, out=pro[1:])
    if n_regions == 0:
        pro[:] = np.nan
    return fpr, pro


def au_pro_of(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by it; needs both classes.

    ``fpr``/``pro`` may stop early as long as they reach the first point past the limit.
    """
    return float(area_up_to(fpr, pro, fpr_limit) / fpr_limit)


def pro_curve(masks, maps, *, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact PRO curve over the whole FPR range.

    ``masks [N, H, W]`` (1 = defect pixel), ``maps [N, H, W]`` ->
    ``(fpr [G+1], pro [G+1])``: (0, 0), then one point per distinct score,
    highest first; both non-decreasing, the last point is (1, 1). Without
    defect pixels PRO is NaN, without defect-free pixels FPR is NaN (with a
    ``MetricWarning``).
    """
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    weights, n_regions = region_weights(masks)
    n_neg = masks.size - weights.size
    _checks.defined(weights.size, n_neg, "PRO curve", pixels=True)
    return pro_of(_ranking.cumulative_counts(maps, masks, weights), n_neg, n_regions)


def au_pro(masks, maps, fpr_limit: float = 0.3, *, method: str | None = None) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``: a float in [0, 1].

    ``masks [N, H, W]`` (1 = defect pixel), ``maps [N, H, W]``. 1 for a perfect
    map, ``fpr_limit / 2`` for a constant one. NaN with a ``MetricWarning`` if
    there are no defect or no defect-free pixels.
    """
    check_fpr_limit(fpr_limit)
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    weights, n_regions = region_weights(masks)
    n_neg = masks.size - weights.size
    if not _checks.defined(weights.size, n_neg, "AU-PRO", pixels=True):
        return float("nan")
    # Only the points up to the limit and the first one past it are needed. One
    # negative of slack because floor() of a float product can land one below the
    # exact count; the curve is cut exactly by area_up_to afterwards.
    max_negatives = math.floor(fpr_limit * n_neg) + 1
    counts = _ranking.cumulative_counts(maps, masks, weights, max_negatives)
    return au_pro_of(*pro_of(counts, n_neg, n_regions), fpr_limit)


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under ``y(x)`` for ``x`` in ``[x[0], limit]``.

    ``x [K]`` non-decreasing, ``y [K]``, ``x[0] <= limit``. If ``limit`` lies
    strictly between two points, the last trapezoid ends at the linear
    interpolation at ``limit``; if it lies beyond ``x[-1]``, the area stops at
    ``x[-1]``.
    """
    inside = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
    if inside < x.size and xs[-1] < limit:
        x0, y0, x1, y1 = x[inside - 1], y[inside - 1], x[inside], y[inside]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_limit) / 2.0
    return area
