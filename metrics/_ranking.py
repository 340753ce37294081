"""Cumulative class counts at every distinct score: the kernel behind every curve.

For a threshold ``t`` a sample is predicted anomalous when ``score >= t``.
Every curve here (ROC, precision-recall, F1, PRO) only changes at the distinct
scores, so evaluating it there, highest first, gives the exact curve; tied
scores form one point, as a threshold cannot separate them.

The textbook way is ``argsort`` + ``cumsum`` over the positive/negative
indicator. On a category of 7.5M pixels ``argsort`` (~0.4 s) and the gathers
it needs (~0.15 s each) dominate, while a plain ``np.sort`` of the values is
~10x faster. So the values are sorted on their own, tie groups are found in
that sorted array, and only the positives (a few percent of the pixels) are
placed into their tie group with ``searchsorted``; per-group positive counts
then come from ``bincount``, negatives are "group size minus positives". The
result is identical to ``argsort`` + ``cumsum`` + collapsing ties.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Counts(NamedTuple):
    """Cumulative counts at the distinct scores, highest score first; all ``[G]``.

    ``tp[g]`` / ``fp[g]``: positives / negatives with ``score >= thresholds[g]``;
    ``weight[g]``: sum of the positives' weights over the same set (None if no
    weights were given).
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    weight: np.ndarray | None


def sort_scores(values: np.ndarray) -> np.ndarray:
    """``values [M]`` sorted ascending, as a new array: the one sort behind every curve.

    Every metric sorts through here, so a test can count the sorts.
    """
    return np.sort(values)  # copies; the caller's array is untouched


def cumulative_counts(
    scores: np.ndarray,
    positive: np.ndarray,
    weights: np.ndarray | None = None,
    max_negatives: int | None = None,
) -> Counts:
    """Counts of positives and negatives scoring at least each distinct score.

    ``scores [M]`` float, finite; ``positive [M]`` bool; ``weights [P]`` one
    float per positive, in the order of ``scores[positive]``.

    ``max_negatives``: the caller only needs the curve while at most this many
    negatives are above the threshold. The points are then cut after the first
    one exceeding it (kept, for interpolating at the limit). Everything below
    that point's threshold is dropped before sorting, which for AU-PRO at
    FPR 0.3 means sorting ~30% of the pixels instead of all.
    """
    scores = scores.ravel()
    positive = positive.ravel()
    pos_scores = scores[positive]
    values = scores
    if max_negatives is not None:
        neg_scores = scores[~positive]
        if max_negatives < neg_scores.size:
            # the (max_negatives+1)-th highest negative: the first threshold at which
            # the negatives exceed the budget; thresholds below it are not needed
            kth = neg_scores.size - max_negatives - 1
            cutoff = np.partition(neg_scores, kth)[kth]
            values = scores[scores >= cutoff]
            keep = pos_scores >= cutoff
            pos_scores = pos_scores[keep]
            if weights is not None:
                weights = weights[keep]
    values = sort_scores(values)

    n = values.size
    new_value = np.empty(n, dtype=bool)
    new_value[:1] = True
    np.not_equal(values[1:], values[:-1], out=new_value[1:])
    starts = np.flatnonzero(new_value)  # first index of each tie group, ascending
    thresholds = values[starts]

    # every positive's score is one of the thresholds, so this is an exact match
    group = np.searchsorted(thresholds, pos_scores)
    # reversed so the cumulative sums run from the highest score down
    tp = np.cumsum(np.bincount(group, minlength=starts.size)[::-1])
    at_or_above = n - starts[::-1]
    weight = None
    if weights is not None:
        weight = np.cumsum(np.bincount(group, weights=weights, minlength=starts.size)[::-1])
    return Counts(thresholds[::-1], tp, at_or_above - tp, weight)
