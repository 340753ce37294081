"""Threshold-free classification metrics: AUROC, ROC curve, average precision, F1-max.

Image level takes ``labels [N]`` (1 = defective) and ``scores [N]``; pixel
level takes ``masks [N, H, W]`` (1 = defect pixel) and ``maps [N, H, W]`` and
pools all pixels of the category, as the PatchCore/PaDiM papers report it.

All of them are computed exactly at every distinct score (see ``_ranking``)
rather than with scikit-learn: ``roc_auc_score`` takes ~4 s on the 7.5M pixels
of one MVTec category, this takes a fraction of a second. The tests check the
results against scikit-learn.

The ``*_of(counts)`` functions are the one implementation of each number;
the public functions here validate, sort and call them for one metric,
``metrics.evaluate`` validates and sorts once and calls them all.

``method`` only names the method in the error raised for NaN/inf scores.
"""

from __future__ import annotations

import numpy as np

from metrics import _checks, _ranking
from metrics._ranking import Counts


def auroc_of(counts: Counts) -> float:
    """Trapezoidal area under the ROC curve, in integer counts until the end.

    Integer arithmetic keeps it exact (ties count one half) for any category
    size: the largest term, 2 * positives * negatives, is far below 2**63.
    Needs both classes. In place, so that a 7.5M-pixel category needs two
    temporaries of its size, not six.
    """
    tp, fp = counts.tp, counts.fp
    heights = tp[1:] + tp[:-1]
    heights *= np.diff(fp)
    # the first trapezoid starts at (0, 0): width fp[0], height tp[0]
    doubled_area = int(fp[0]) * int(tp[0]) + int(heights.sum())
    return float(doubled_area / (2.0 * tp[-1] * fp[-1]))


def average_precision_of(counts: Counts) -> float:
    """Sum over thresholds of (recall gain) x precision, as scikit-learn defines AP.

    Not the trapezoid under the PR curve, which is optimistic. Needs a positive.
    """
    precision = counts.tp / (counts.tp + counts.fp)
    recall_gain = np.diff(counts.tp, prepend=0) / counts.tp[-1]
    recall_gain *= precision
    return float(np.sum(recall_gain))


def f1_max_of(counts: Counts) -> tuple[float, float]:
    """Best F1 and the highest threshold reaching it; needs at least one positive."""
    # F1 = 2PR / (P + R) = 2 TP / (TP + FP + all positives); no division by zero
    # since every threshold has at least one sample at or above it
    f1 = 2.0 * counts.tp / (counts.tp + counts.fp + counts.tp[-1])
    # argmax takes the first maximum, i.e. the highest threshold reaching it
    best = int(np.argmax(f1))
    return float(f1[best]), float(counts.thresholds[best])


def roc_of(counts: Counts, n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr [G+1], tpr [G+1])`` from (0, 0); an axis whose class is absent is NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = np.concatenate(([0], counts.fp)) / (n_neg or np.nan)
        tpr = np.concatenate(([0], counts.tp)) / (n_pos or np.nan)
    return fpr, tpr


def roc_curve(labels, scores, *, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact ROC curve for plotting: ``labels [N]``, ``scores [N]`` -> ``(fpr [G+1], tpr [G+1])``.

    One point per distinct score (threshold ``score >= t``), highest first,
    preceded by (0, 0); the last point is (1, 1). Equals scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``. Without good images the FPR is
    NaN, without defective ones the TPR (with a ``MetricWarning``). Works for
    pixels too with ``masks.ravel(), maps.ravel()``.
    """
    labels, scores = _checks.image_inputs(labels, scores, method)
    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    _checks.defined(n_pos, n_neg, "ROC curve")
    return roc_of(_ranking.cumulative_counts(scores, labels), n_pos, n_neg)


def image_auroc(labels, scores, *, method: str | None = None) -> float:
    """Image-level AUROC: ``labels [N]`` (1 = defective), ``scores [N]`` -> float in [0, 1].

    NaN with a ``MetricWarning`` if there are no good or no defective images.
    """
    labels, scores = _checks.image_inputs(labels, scores, method)
    n_pos = int(np.count_nonzero(labels))
    if not _checks.defined(n_pos, labels.size - n_pos, "image AUROC"):
        return float("nan")
    return auroc_of(_ranking.cumulative_counts(scores, labels))


def pixel_auroc(masks, maps, *, method: str | None = None) -> float:
    """Pixel-level AUROC over all pixels of a category: ``masks``, ``maps`` ``[N, H, W]`` -> float.

    NaN with a ``MetricWarning`` if there are no defect or no defect-free pixels.
    """
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    n_pos = int(np.count_nonzero(masks))
    if not _checks.defined(n_pos, masks.size - n_pos, "pixel AUROC", pixels=True):
        return float("nan")
    return auroc_of(_ranking.cumulative_counts(maps, masks))


def average_precision(labels, scores, *, method: str | None = None) -> float:
    """Image-level average precision (scikit-learn's definition): ``labels [N]``, ``scores [N]``.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct scores, highest first.
    Needs defective images only (without good ones it is 1); NaN with a
    ``MetricWarning`` if there are none.
    """
    labels, scores = _checks.image_inputs(labels, scores, method)
    n_pos = int(np.count_nonzero(labels))
    if not _checks.defined(n_pos, labels.size - n_pos, "image AP", need_negatives=False):
        return float("nan")
    return average_precision_of(_ranking.cumulative_counts(scores, labels))


def pixel_average_precision(masks, maps, *, method: str | None = None) -> float:
    """Pixel-level average precision over all pixels: ``masks``, ``maps`` ``[N, H, W]`` -> float.

    NaN with a ``MetricWarning`` if there are no defect pixels.
    """
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    n_pos = int(np.count_nonzero(masks))
    if not _checks.defined(
        n_pos, masks.size - n_pos, "pixel AP", pixels=True, need_negatives=False
    ):
        return float("nan")
    return average_precision_of(_ranking.cumulative_counts(maps, masks))


def f1_max(labels, scores, *, method: str | None = None) -> tuple[float, float]:
    """Best image-level F1 over all thresholds: ``labels [N]``, ``scores [N]`` -> ``(f1, t)``.

    A sample is predicted defective when ``score >= threshold``; the threshold
    is one of the scores, the highest one if several reach the best F1.
    ``(nan, nan)`` with a ``MetricWarning`` if there are no defective images.
    """
    labels, scores = _checks.image_inputs(labels, scores, method)
    n_pos = int(np.count_nonzero(labels))
    if not _checks.defined(n_pos, labels.size - n_pos, "image F1-max", need_negatives=False):
        return float("nan"), float("nan")
    return f1_max_of(_ranking.cumulative_counts(scores, labels))


def pixel_f1_max(masks, maps, *, method: str | None = None) -> tuple[float, float]:
    """Best pixel-level F1 over all pixels: ``masks``, ``maps`` ``[N, H, W]`` -> ``(f1, t)``.

    Same conventions as ``f1_max``; ``(nan, nan)`` with a ``MetricWarning`` if
    there are no defect pixels.
    """
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    n_pos = int(np.count_nonzero(masks))
    if not _checks.defined(
        n_pos, masks.size - n_pos, "pixel F1-max", pixels=True, need_negatives=False
    ):
        return float("nan"), float("nan")
    return f1_max_of(_ranking.cumulative_counts(maps, masks))
