"""Percentile bootstrap confidence intervals over test images, for one metric or a paired difference.

The unit that is resampled is the test image: every array given is resampled
along its first axis with the same indices, so an image's label, score, mask
and map stay together, and the pixels of one image (which are correlated) are
drawn or left out as a whole. The resampling is stratified by whether an image
is anomalous (read from the first array: a label, or a mask with a defect
pixel): the good and the anomalous images are resampled separately, each to
its own count, so every resample has the test set's class balance.

``metrics.image_auroc``, ``metrics.pixel_auroc`` and ``metrics.au_pro`` (also as
``functools.partial(metrics.au_pro, fpr_limit=...)``) take fast paths that
never re-sort per resample (see ``metrics._bootstrap_fast`` for how, and for
their measured error against the exact metrics: below 1e-5 for pixel AUROC,
2e-4 for AU-PRO, which is binned coarser; image AUROC is exact). Any other function of the same arrays
returning a float is called once per resample.

Resamples on which the metric is undefined (NaN) are dropped; if none is left
the interval is ``(nan, nan)``. ``bootstrap_values`` gives the metric on each
resample (NaN kept) and ``percentile_interval`` the interval of such values:
together they let a caller combine resamples first, e.g. average a method's
values over its seeds (same seed, same test images: the same resamples).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from scipy import stats

from metrics import _bootstrap_fast
from metrics._checks import MetricError, MetricWarning
from metrics.classification import image_auroc, pixel_auroc
from metrics.pro import au_pro, check_fpr_limit

# The exact image-AUROC path holds an [N, N] pair matrix; beyond this many images the generic one runs.
IMAGE_PAIRS_MAX = 4096


def bootstrap_ci(metric, *arrays, n_resamples: int = 1000, level: float = 0.95,
                 seed: int = 0, stratify: bool = True) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``metric(*arrays)`` over resampled test images.

    ``metric``: e.g. ``metrics.image_auroc`` with ``arrays = (labels [N], scores [N])``,
    ``metrics.pixel_auroc`` / ``metrics.au_pro`` with ``(masks [N, H, W], maps [N, H, W])``,
    or any function of arrays sharing the first axis ``N`` that returns a float.
    ``n_resamples`` resamples drawn with ``numpy.random.default_rng(seed)``,
    stratified by the anomalous images of ``arrays[0]`` (``stratify=False``: all
    rows as one group, for samples without classes); ``level`` in (0, 1).
    The same seed gives the same resamples for every metric of the same ``N``
    images (and classes), on the fast path and the generic one alike.
    Equal to ``percentile_interval(bootstrap_values(metric, *arrays, ...), level)``.
    """
    _check_level(level)  # before the resamples are computed, not after
    values = bootstrap_values(metric, *arrays, n_resamples=n_resamples, seed=seed, stratify=stratify)
    return _interval(values, level)


def paired_bootstrap_ci(metric, reference, first, second, *, n_resamples: int = 1000,
                        level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(diff, low, high)`` for ``metric(reference, first) - metric(reference, second)``.

    Two methods scored on the same test images: ``reference`` is the labels
    ``[N]`` or masks ``[N, H, W]``, ``first`` and ``second`` the two methods'
    scores or maps of the same shape. ``diff`` is the difference on the whole
    test set; ``(low, high)`` the percentile bootstrap interval of the
    difference, both metrics computed on the same resamples (same indices,
    stratified as in ``bootstrap_ci``), which is what makes it paired: an
    interval excluding 0 says the first method is better (or worse) on
    these images beyond resampling noise. Example::

        diff, low, high = metrics.paired_bootstrap_ci(
            metrics.image_auroc, labels, scores_patchcore, scores_padim, seed=0)
    """
    if np.shape(first) != np.shape(second):
        raise MetricError(f"the two methods' scores differ in shape: {np.shape(first)} and "
                          f"{np.shape(second)}; a paired comparison needs the same test images")
    _check_level(level)
    # the same seed and the same reference (strata) give the same resamples to both calls
    values = (bootstrap_values(metric, reference, first, n_resamples=n_resamples, seed=seed)
              - bootstrap_values(metric, reference, second, n_resamples=n_resamples, seed=seed))
    diff = float(metric(reference, first) - metric(reference, second))
    return (diff, *_interval(values, level))


def bootstrap_values(metric, *arrays, n_resamples: int = 1000, seed: int = 0,
                     stratify: bool = True) -> np.ndarray:
    """``metric(*arrays)`` on each resample of the test images: ``[n_resamples]``, NaN where undefined.

    The resamples of ``bootstrap_ci`` with the same ``seed`` (same arguments as
    there, without ``level``). Resamples depend only on ``seed`` and the
    anomalous images of ``arrays[0]``, so the values of several methods (or of
    one method under several seeds) scored on the same test images line up
    resample by resample: their differences or means are paired values, whose
    interval ``percentile_interval`` gives.
    """
    counts, indices = _resamples(arrays, n_resamples, seed, stratify)
    return _values(metric, arrays, counts, indices)


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval ``(low, high)`` of ``values [R]``, NaN values left out.

    ``(nan, nan)`` when no value is defined. ``level`` in (0, 1).
    """
    _check_level(level)
    return _interval(np.asarray(values, dtype=np.float64).ravel(), level)


def expanded_level(level: float, n: int) -> float:
    """The percentile level that makes a bootstrap interval of a mean of ``n`` values cover ``level``.

    The plain percentile interval is too narrow for small ``n`` (it uses the
    sample's spread as if it were known, and divides by ``n`` where the unbiased
    variance divides by ``n - 1``): for ``n = 8`` a 95 % interval covers about
    91 %. Hesterberg's expanded percentile interval ("What teachers should know
    about the bootstrap", The American Statistician, 2015) widens it to the
    ``t`` interval's width: the level whose normal quantile is
    ``sqrt(n / (n - 1)) t_{n-1}``, e.g. 0.983 for ``level=0.95, n=10``, 0.995
    for ``n=6``. For ``n`` of 2 or 3 that is within 1e-6 of 1, the whole range
    of the resampled values.
    """
    _check_level(level)
    if n < 2:
        raise MetricError(f"an interval needs at least 2 values; got n={n}")
    quantile = np.sqrt(n / (n - 1)) * stats.t.ppf((1 + level) / 2, n - 1)
    return float(min(2 * stats.norm.cdf(quantile) - 1, 1 - 1e-9))


def resample_indices(first, n_resamples: int, seed: int = 0, stratify: bool = True) -> np.ndarray:
    """``[R, N]`` image indices of each resample, stratified by the anomalous images of ``first``.

    Good images first, then anomalous ones, each drawn with replacement from
    its own class to its own count, with ``numpy.random.default_rng(seed)``.
    ``stratify=False``: every row of ``first`` is drawn from all of them.
    """
    first = np.asarray(first)
    if first.ndim == 0:
        raise MetricError("bootstrap arrays need a first axis of test images; got a scalar")
    n = first.shape[0]
    anomalous = (first.reshape(n, -1) != 0).any(axis=1) if stratify else np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    parts = []
    for members in (np.flatnonzero(~anomalous), np.flatnonzero(anomalous)):
        if members.size:
            parts.append(members[rng.integers(0, members.size, size=(n_resamples, members.size))])
    return np.concatenate(parts, axis=1) if parts else np.empty((n_resamples, 0), dtype=np.int64)


def _check_level(level) -> None:
    if not 0 < level < 1:
        raise MetricError(f"level must be in (0, 1); got {level}")


def _resamples(arrays, n_resamples, seed, stratify=True):
    """Checks, then ``(counts [R, N] float, indices [R, N])`` of the resamples."""
    if not arrays:
        raise MetricError("bootstrap needs the metric's arrays, e.g. labels and scores")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise MetricError(f"n_resamples must be a positive integer; got {n_resamples}")
    lengths = {np.shape(a)[0] if np.ndim(a) else None for a in arrays}
    if len(lengths) != 1:
        raise MetricError(f"every bootstrap array needs the same first axis (test images); "
                          f"got lengths {sorted(map(str, lengths))}")
    indices = resample_indices(arrays[0], int(n_resamples), seed, stratify)
    r, n = indices.shape
    offsets = (np.arange(r) * n)[:, None]
    counts = np.bincount((indices + offsets).ravel(), minlength=r * n).reshape(r, n)
    return counts.astype(np.float64), indices


def _fast_kernel(metric, arrays):
    """The fast kernel for a built-in metric, or None for any other function."""
    keywords = {}
    if isinstance(metric, functools.partial) and not metric.args:
        metric, keywords = metric.func, dict(metric.keywords)
    keywords.pop("method", None)
    if len(arrays) != 2:
        return None
    if metric is image_auroc and not keywords and np.shape(arrays[0])[0] <= IMAGE_PAIRS_MAX:
        return _bootstrap_fast.image_auroc_kernel(*arrays)
    if metric is pixel_auroc and not keywords:
        return _bootstrap_fast.pixel_auroc_kernel(*arrays)
    if metric is au_pro and set(keywords) <= {"fpr_limit"}:
        fpr_limit = keywords.get("fpr_limit", 0.3)
        check_fpr_limit(fpr_limit)
        return _bootstrap_fast.au_pro_kernel(*arrays, fpr_limit=fpr_limit)
    return None


def _values(metric, arrays, counts, indices) -> np.ndarray:
    """The metric on every resample, ``[R]``, NaN where undefined."""
    kernel = _fast_kernel(metric, arrays)
    if kernel is not None:
        return np.asarray(kernel(counts), dtype=np.float64)
    arrays = [np.asarray(a) for a in arrays]
    values = np.empty(indices.shape[0])
    with warnings.catch_warnings():
        # an undefined resample is expected here and dropped, not reported R times
        warnings.simplefilter("ignore", MetricWarning)
        for r, chosen in enumerate(indices):
            values[r] = metric(*(a[chosen] for a in arrays))
    return values


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the defined values, or ``(nan, nan)``."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
