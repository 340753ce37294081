"""metrics.ranktests against scipy and Demsar (JMLR 2006): Wilcoxon, Friedman, average ranks, Nemenyi."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import metrics
from metrics import MetricError
from metrics.ranktests import nemenyi_q


@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.random(15), 2)
    b = np.round(a + rng.normal(0.02, 0.05, 15), 2)
    b[:2] = a[:2]  # zero differences, dropped by zero_method="wilcox"
    expected = stats.wilcoxon(a, b)
    assert metrics.wilcoxon(a, b) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    expected = stats.wilcoxon(a, b, zero_method="pratt", alternative="greater")
    got = metrics.wilcoxon(a, b, zero_method="pratt", alternative="greater")
    assert got == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))


def test_wilcoxon_exact_small_sample():
    # 6 categories without ties or zeros: scipy's exact distribution, smallest two-sided p = 2/64
    a = [0.91, 0.95, 0.88, 0.97, 0.99, 0.93]
    b = [0.90, 0.93, 0.85, 0.93, 0.94, 0.87]
    assert metrics.wilcoxon(a, b) == (0.0, pytest.approx(2 / 64))


def test_wilcoxon_all_equal_is_no_evidence():
    assert metrics.wilcoxon([0.9, 0.8], [0.9, 0.8]) == (0.0, 1.0)


def test_wilcoxon_refuses_bad_input():
    with pytest.raises(MetricError, match="same length"):
        metrics.wilcoxon([1, 2, 3], [1, 2])
    with pytest.raises(MetricError, match="NaN"):
        metrics.wilcoxon([1, np.nan, 3], [1, 2, 3])


@pytest.mark.parametrize("seed", range(4))
def test_friedman_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    table = np.round(rng.random((15, 4)) + [0, 0.1, 0.2, 0.3], 1)  # rounded: ties within rows
    result = metrics.friedman(table)
    expected = stats.friedmanchisquare(*table.T)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)
    n, k = table.shape
    f = (n - 1) * expected.statistic / (n * (k - 1) - expected.statistic)
    assert result.f_statistic == pytest.approx(f)
    assert result.f_pvalue == pytest.approx(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def test_friedman_iman_davenport_demsar_example():
    # Demsar (2006), section 3.2.2: chi2_F = 9.28, F_F = 3.69 for n = 14, k = 4 (average ranks
    # 3.143, 2.000, 2.893, 1.964); from the ranks by Friedman's formula without ties
    n, k, ranks = 14, 4, np.array([3.143, 2.000, 2.893, 1.964])
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(ranks**2) - k * (k + 1) ** 2 / 4)
    assert chi2 == pytest.approx(9.28, abs=0.01)
    assert (n - 1) * chi2 / (n * (k - 1) - chi2) == pytest.approx(3.69, abs=0.01)


def test_friedman_perfect_agreement_and_too_few_methods():
    table = np.array([[0.9, 0.8, 0.7]] * 5)
    result = metrics.friedman(table)
    assert result.statistic == pytest.approx(10.0) and result.f_statistic == np.inf
    assert result.f_pvalue == 0.0
    with pytest.raises(MetricError, match="at least 3 methods"):
        metrics.friedman(table[:, :2])


def test_average_ranks_with_ties():
    table = [[0.9, 0.8, 0.8], [0.7, 0.9, 0.5], [0.6, 0.6, 0.6]]
    # row ranks: [1, 2.5, 2.5], [2, 1, 3], [2, 2, 2]
    assert np.allclose(metrics.average_ranks(table), [5 / 3, 11 / 6, 15 / 6])
    # lower is better (e.g. latency): the ranks flip, ties stay shared
    assert np.allclose(metrics.average_ranks(table, higher_is_better=False), [7 / 3, 13 / 6, 1.5])


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850),
                                  (10, 3.164)])
def test_nemenyi_q_matches_demsar_table(k, q):
    # Demsar's Table 5 to its 3 decimals (it lists 2.3437 as 2.343 but 2.8497 as 2.850)
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


def test_nemenyi_q_at_alpha_010_matches_demsar_table():
    assert [nemenyi_q(k, 0.10) for k in (3, 4, 5)] == pytest.approx([2.052, 2.291, 2.459], abs=1e-3)


def test_nemenyi_critical_difference():
    # Demsar's example: k = 4, n = 14 -> CD = 2.569 * sqrt(20 / 84) = 1.25
    assert metrics.nemenyi_critical_difference(4, 14) == pytest.approx(
        nemenyi_q(4) * np.sqrt(4 * 5 / (6 * 14)))
    assert metrics.nemenyi_critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)
    with pytest.raises(MetricError):
        metrics.nemenyi_critical_difference(1, 14)
