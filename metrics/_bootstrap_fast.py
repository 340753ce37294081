"""Fast bootstrap kernels: image AUROC, pixel AUROC and AU-PRO for many image resamples at once.

A resample is given by ``counts [R, N]``: how often each of the ``N`` test
images is drawn (the rows sum to ``N``). Every kernel precomputes per-image
quantities once, after which a resample is a weighted sum over images.

* Image AUROC (exact): ``M[i, j] = 1`` if image ``i`` is defective, ``j`` is
  good and ``score_i > score_j`` (one half for a tie). The weighted
  Mann-Whitney U of a resample ``w`` is ``w @ M @ w``, divided by
  (weighted defective) x (weighted good). Identical to ``image_auroc`` of the
  resampled arrays up to float rounding.
* Pixel AUROC (binned): the pixels are put into at most ``BINS`` score bins
  once (edges at quantiles of the defect and of the defect-free pixel scores,
  half each, so both classes are resolved; tied scores always share a bin).
  Per image a histogram of its defect and of its defect-free pixels
  ``[N, B]``; then ``M[i, j]`` = pairs (defect pixel of ``i``, defect-free pixel
  of ``j``) in a higher bin, one half for the same bin, is one ``[N, B] @ [B, N]``
  product, and a resample is again ``w @ M @ w``: no pixel is touched per
  resample. Pairs within one bin count one half, i.e. the exact ROC curve is
  sampled at the bin edges and joined by straight lines. Measured against
  the exact ``pixel_auroc`` (float32 maps, 2**16 bins): ~5e-7 on 150 maps of
  224 x 224 with blob defects (2 % of the pixels) and smooth maps (AUROC
  ~0.93); ~6e-6 on the harder case of white-noise maps (AUROC ~0.8, 15 to 60
  maps of 128 or 224 pixels a side); so below 1e-5. With no more distinct
  scores than bins it is exact.
* AU-PRO (binned the same way, into at most ``PRO_BINS`` bins): per image a histogram of its defect-free pixels
  and one of its defect pixels weighted ``1 / size of their region`` (8-connected
  regions, as ``metrics.pro`` labels them) plus its number of regions. For a
  resample the FPR at each bin edge is the weighted count of defect-free
  pixels at or above it over their weighted total, PRO the weighted sum of
  region overlaps over the weighted number of regions; the curve is
  integrated to ``fpr_limit`` as ``au_pro`` does (trapezoids, interpolated at
  the limit, divided by it). A resample costs ``O(N B)`` here (the FPR and PRO
  curves are rebuilt), so fewer bins than for pixel AUROC. Measured against
  the exact ``au_pro`` at 2**12 bins: 1e-6 to 2.4e-5 on smooth maps, up to
  1.2e-4 on white-noise maps (the hard case; 18 seeded sets of 15 to 40 maps
  of 128 or 224 pixels a side), so below 2e-4, against 7e-6 at 2**16 bins: a
  small fraction of any interval's width (0.01 or more for a test set of
  MVTec AD's size) at a sixteenth of the cost. Exact with no more distinct
  scores than bins (then every distinct score is an edge).

Measured on a 2-core machine, 150 x 224 x 224, 1000 resamples: pixel AUROC
0.8 to 1.4 s in all (nearly all of it sorting and binning the 7.5M pixels
once; the 1000 resamples take ~10 ms); pixel AUROC needs ~350 MB on top of
the maps, mostly ``[N, B]`` histograms. AU-PRO: see ``PRO_BINS``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from metrics import _checks
from metrics.pro import _IN_PLANE_8

# Score bins for the pixel kernels: 2**16 keeps [N, B] histograms at ~80 MB for 150 images.
BINS = 2**16
# AU-PRO's bins: its resamples cost O(R N B) (2.3 s of 2.6 s at 2**16 bins, 150 maps, 1000 resamples).
PRO_BINS = 2**12
# Resamples per block in the AU-PRO kernel: bounds the [R, B] temporaries (~25 MB each).
BLOCK = 48


def image_auroc_kernel(labels, scores):
    """``labels [N]``, ``scores [N]`` -> ``f(counts [R, N]) -> auroc [R]`` (exact)."""
    labels, scores = _checks.image_inputs(labels, scores, None)
    pos = labels.astype(np.float64)
    neg = 1.0 - pos
    above = (scores[:, None] > scores[None, :]) + 0.5 * (scores[:, None] == scores[None, :])
    pairs = pos[:, None] * above * neg[None, :]
    return lambda counts: _auroc_from_pairs(pairs, pos, neg, counts)


def pixel_auroc_kernel(masks, maps, bins: int = BINS):
    """``masks``, ``maps`` ``[N, H, W]`` -> ``f(counts [R, N]) -> pixel auroc [R]`` (binned)."""
    masks, maps = _checks.pixel_inputs(masks, maps, None)
    hist_neg, hist_pos = _histograms(masks, maps, bins)
    below = np.cumsum(hist_neg, axis=1)
    below -= 0.5 * hist_neg  # defect-free pixels in lower bins, half of those in the same bin
    pairs = hist_pos @ below.T
    del below
    return lambda counts: _auroc_from_pairs(pairs, hist_pos.sum(1), hist_neg.sum(1), counts)


def au_pro_kernel(masks, maps, fpr_limit: float = 0.3, bins: int = PRO_BINS):
    """``masks``, ``maps`` ``[N, H, W]`` -> ``f(counts [R, N]) -> au_pro [R]`` (binned)."""
    masks, maps = _checks.pixel_inputs(masks, maps, None)
    regions, _ = ndimage.label(masks, structure=_IN_PLANE_8)
    sizes = np.bincount(regions.ravel())
    overlap_weight = np.zeros(masks.shape, dtype=np.float64)
    overlap_weight[masks] = 1.0 / sizes[regions[masks]]
    n_regions = np.array([np.unique(r[r > 0]).size for r in regions], dtype=np.float64)
    del regions
    hist_neg, hist_overlap = _histograms(masks, maps, bins, weights=overlap_weight)
    del overlap_weight
    # highest bin first, as the curves run
    hist_neg = np.ascontiguousarray(hist_neg[:, ::-1])
    hist_overlap = np.ascontiguousarray(hist_overlap[:, ::-1])
    n_neg = hist_neg.sum(1)

    def kernel(counts: np.ndarray) -> np.ndarray:
        out = np.empty(counts.shape[0])
        for start in range(0, counts.shape[0], BLOCK):
            w = counts[start:start + BLOCK]
            with np.errstate(invalid="ignore", divide="ignore"):
                fpr = np.cumsum(w @ hist_neg, axis=1) / (w @ n_neg)[:, None]
                # only the points up to the first one past the limit matter, in every row
                keep = min(int(np.count_nonzero(fpr <= fpr_limit, axis=1).max()) + 1, fpr.shape[1])
                fpr = fpr[:, :keep]
                pro = np.cumsum(w @ hist_overlap[:, :keep], axis=1) / (w @ n_regions)[:, None]
            np.minimum(pro, 1.0, out=pro)
            out[start:start + BLOCK] = _areas_up_to(fpr, pro, fpr_limit) / fpr_limit
        return out

    return kernel


def _auroc_from_pairs(pairs, pos, neg, counts):
    """AUROC of each resample from the pair matrix: ``(w @ pairs @ w) / (w @ pos * w @ neg)``."""
    counts = np.asarray(counts, dtype=np.float64)
    u = np.einsum("ri,ri->r", counts @ pairs, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return u / ((counts @ pos) * (counts @ neg))


def _histograms(masks, maps, bins, weights=None):
    """Per-image histograms over shared score bins: ``(defect-free [N, B], defect [N, B])``.

    The defect histogram counts pixels, or sums ``weights [N, H, W]`` if given.
    Bin edges are quantiles of the defect and of the defect-free scores (half of
    ``bins`` each); a pixel's bin is the last edge at or below its score, so
    tied scores share a bin and every bin edge is an exact threshold.
    """
    n = masks.shape[0]
    flat = maps.reshape(n, -1)
    positive = masks.reshape(n, -1)
    edges = _edges(np.sort(flat[positive]), np.sort(flat[~positive]), bins)
    n_bins = edges.size
    keys = np.searchsorted(edges, flat, side="right")
    keys -= 1  # >= 0: the lowest edge is the lowest score
    keys += (np.arange(n) * n_bins)[:, None]
    total = np.bincount(keys.ravel(), minlength=n * n_bins).reshape(n, n_bins)
    pos_keys = keys[positive]
    hist_pos = np.bincount(pos_keys, minlength=n * n_bins).reshape(n, n_bins)
    total -= hist_pos
    hist_neg = total.astype(np.float64)
    del total
    if weights is not None:
        hist_pos = np.bincount(pos_keys, weights=weights.reshape(n, -1)[positive],
                               minlength=n * n_bins).reshape(n, n_bins)
    return hist_neg, hist_pos.astype(np.float64)


def _edges(pos: np.ndarray, neg: np.ndarray, bins: int) -> np.ndarray:
    """At most ``bins`` increasing bin edges from the sorted defect and defect-free scores.

    Every distinct score when there are no more than ``bins`` (the kernels are
    then exact); else quantiles of each class, each class getting half of the
    bins or, if it has fewer distinct scores, all of them and the rest to the other.
    """
    distinct_pos, distinct_neg = _distinct(pos), _distinct(neg)
    if distinct_pos.size + distinct_neg.size <= bins:
        return np.union1d(distinct_pos, distinct_neg)
    k_pos = min(distinct_pos.size, max(bins // 2, bins - distinct_neg.size))
    return np.union1d(_quantiles(pos, k_pos), _quantiles(neg, bins - k_pos))


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array, in one pass."""
    if ordered.size == 0:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _quantiles(ordered: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` values of sorted ``ordered`` at evenly spaced ranks (its lowest included)."""
    if ordered.size == 0 or k <= 0:
        return ordered[:0]
    return ordered[np.linspace(0, ordered.size - 1, min(k, ordered.size)).astype(np.int64)]


def _areas_up_to(fpr, pro, limit):
    """Trapezoidal area under each row's curve from (0, 0) up to FPR ``limit``.

    ``fpr``/``pro`` ``[R, B]`` non-decreasing along each row, without the leading
    (0, 0); as ``metrics.pro.area_up_to``, the segment crossing the limit ends at
    its linear interpolation. Rows with NaN give NaN.
    """
    r = fpr.shape[0]
    x = np.concatenate((np.zeros((r, 1)), fpr), axis=1)
    y = np.concatenate((np.zeros((r, 1)), pro), axis=1)
    dx = np.diff(x, axis=1)
    inside = x[:, 1:] <= limit  # segments ending at or before the limit
    area = np.sum(np.where(inside, dx * (y[:, 1:] + y[:, :-1]), 0.0), axis=1) / 2.0
    last = np.count_nonzero(x <= limit, axis=1) - 1  # last point at or before the limit
    cross = last < x.shape[1] - 1
    rows = np.flatnonzero(cross)
    if rows.size:
        x0, y0 = x[rows, last[rows]], y[rows, last[rows]]
        x1, y1 = x[rows, last[rows] + 1], y[rows, last[rows] + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area[rows] += np.where(x0 < limit, (limit - x0) * (y0 + y_limit) / 2.0, 0.0)
    area[np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1)] = np.nan
    return area
