"""Rank tests for comparing methods across categories (Demsar, JMLR 2006): Wilcoxon, Friedman, Nemenyi.

The unit here is the data set (category): ``table [n_datasets, k_methods]``
holds one metric per category and method, e.g. the image AUROC of each
method on each MVTec AD category. Demsar's recommendation:

* two methods: the Wilcoxon signed-rank test on their per-category scores;
* several methods: the Friedman test on their ranks per category, and if it
  rejects, the Nemenyi post-hoc test: two methods differ when their average
  ranks differ by at least the critical difference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from metrics._checks import MetricError


class FriedmanResult(NamedTuple):
    """Friedman's chi-square and its p-value, and Iman and Davenport's F and its p-value."""

    statistic: float
    pvalue: float
    f_statistic: float
    f_pvalue: float


def wilcoxon(a, b, *, zero_method: str = "wilcox",
             alternative: str = "two-sided") -> tuple[float, float]:
    """Wilcoxon signed-rank test of two methods' scores ``a [n]``, ``b [n]`` over the same data sets.

    Returns ``(statistic, pvalue)`` exactly as ``scipy.stats.wilcoxon(a, b)``
    with the same options: with the default ``zero_method="wilcox"`` data sets
    where the methods tie (zero difference) are dropped, tied absolute
    differences get average ranks, and scipy picks the exact distribution for
    small ``n`` without ties or zeros and the normal approximation otherwise.
    The two-sided statistic is the smaller of the positive and negative rank
    sums. If every difference is zero there is no evidence of a difference:
    ``(0.0, 1.0)``, what scipy returns too, without its warning.
    """
    a, b = _paired(a, b)
    if np.all(a == b):
        return 0.0, 1.0
    result = stats.wilcoxon(a, b, zero_method=zero_method, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def friedman(table) -> FriedmanResult:
    """Friedman test that ``k`` methods perform alike over ``n`` data sets; ``table [n, k]``.

    ``statistic``/``pvalue`` equal ``scipy.stats.friedmanchisquare(*table.T)``
    (chi-square with ``k - 1`` degrees of freedom, ties within a data set
    get average ranks, with scipy's tie correction). ``f_statistic``/``f_pvalue``
    are Iman and Davenport's less conservative variant
    ``F = (n - 1) chi2 / (n (k - 1) - chi2)`` with ``(k - 1, (k - 1)(n - 1))``
    degrees of freedom, the one Demsar recommends (``inf``/0 when every data
    set ranks the methods the same). Needs ``k >= 3`` and ``n >= 2``.
    """
    table = _table(table)
    n, k = table.shape
    if k < 3 or n < 2:
        raise MetricError(f"the Friedman test needs at least 3 methods and 2 data sets; got "
                          f"{k} methods and {n} data sets (use wilcoxon for two methods)")
    chi2, pvalue = stats.friedmanchisquare(*table.T)
    denominator = n * (k - 1) - chi2
    if denominator <= 0:
        f_stat, f_p = float("inf"), 0.0
    else:
        f_stat = (n - 1) * chi2 / denominator
        f_p = float(stats.f.sf(f_stat, k - 1, (k - 1) * (n - 1)))
    return FriedmanResult(float(chi2), float(pvalue), float(f_stat), f_p)


def average_ranks(table, higher_is_better: bool = True) -> np.ndarray:
    """Each method's rank averaged over the data sets: ``table [n, k]`` -> ``[k]``.

    Per data set rank 1 is the best method (the highest score, or the lowest
    with ``higher_is_better=False``); tied methods share the average of their
    ranks (two tied for first both get 1.5).
    """
    table = _table(table)
    ranks = stats.rankdata(-table if higher_is_better else table, method="average", axis=1)
    return ranks.mean(axis=0)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value ``q_alpha`` for ``k`` methods: the studentized range quantile / sqrt 2.

    ``studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)``; Demsar's table at
    alpha 0.05 gives 2.343 (k = 3), 2.569 (k = 4), 2.728 (k = 5).
    """
    if int(k) != k or k < 2:
        raise MetricError(f"the Nemenyi test needs at least 2 methods; got k={k}")
    if not 0 < alpha < 1:
        raise MetricError(f"alpha must be in (0, 1); got {alpha}")
    return float(stats.studentized_range.ppf(1 - alpha, int(k), np.inf) / np.sqrt(2))


def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Smallest difference of average ranks that is significant: ``q_alpha sqrt(k (k + 1) / (6 n))``.

    ``k`` methods compared over ``n`` data sets; ``q_alpha`` from ``nemenyi_q``.
    """
    if int(n) != n or n < 1:
        raise MetricError(f"the Nemenyi test needs at least 1 data set; got n={n}")
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise MetricError(f"wilcoxon needs two score vectors of the same length [n]; got "
                          f"shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise MetricError("wilcoxon got NaN/inf scores; drop the data sets a method has no score for")
    return a, b


def _table(table) -> np.ndarray:
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2:
        raise MetricError(f"expected a table [n_datasets, k_methods]; got shape {table.shape}")
    if not np.isfinite(table).all():
        raise MetricError("the table has NaN/inf scores; drop the data sets a method has no score for")
    return table
