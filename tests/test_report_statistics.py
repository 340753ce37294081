"""The report's statistics: bootstrap values, the CD diagram's groups and picture, statistics_html on a run."""

from __future__ import annotations

import base64
import io
import itertools
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

import metrics
from metrics import MetricError
from metrics.bootstrap import resample_indices
from reports.cd_diagram import cliques, critical_difference_png
from reports.predictions import load_predictions, prediction_path, save_predictions
from reports.runfolder import RunSettings, read_results, read_settings
from reports.statistics import statistics_html
from report_fixtures import tiny_test_set

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
CATEGORIES = ("c1", "c2", "c3", "c4", "c5", "c6")
# method -> how far its scores separate defective from good images (unit noise): strong >> mid > weak
STRENGTH = {"strong": 3.0, "mid": 0.6, "weak": 0.3}
SEEDS = [0, 1]
RUN_SEED = 7
RESAMPLES = 200
GOOD = BAD = 15
SIDE = 8


# ------------------------------------------------------------------ bootstrap_values / percentile_interval


def test_bootstrap_values_give_bootstrap_ci_and_the_resamples_of_resample_indices():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [12, 9])
    scores = rng.standard_normal(21) + labels
    values = metrics.bootstrap_values(metrics.image_auroc, labels, scores, n_resamples=300, seed=5)
    assert values.shape == (300,)
    assert metrics.percentile_interval(values, 0.9) == metrics.bootstrap_ci(
        metrics.image_auroc, labels, scores, n_resamples=300, level=0.9, seed=5)
    by_hand = [metrics.image_auroc(labels[i], scores[i]) for i in resample_indices(labels, 300, seed=5)]
    assert values == pytest.approx(by_hand, abs=1e-12)
    # NaN values are left out of the interval; none defined gives NaN
    assert metrics.percentile_interval([np.nan, 0.2, 0.4, np.nan], 0.5) == pytest.approx((0.25, 0.35))
    assert np.isnan(metrics.percentile_interval([np.nan, np.nan])).all()
    with pytest.raises(MetricError, match="level"):
        metrics.percentile_interval(values, level=95)
    with pytest.raises(MetricError, match="n_resamples"):
        metrics.bootstrap_values(metrics.image_auroc, labels, scores, n_resamples=0)


# ------------------------------------------------------------------ CD diagram


def test_cliques_of_hand_made_ranks():
    ranks = {"a": 1.0, "b": 1.5, "c": 2.9, "d": 3.6}
    assert cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    # a-b-c span 1.9 < 2; b-d span 2.1: [b, c] lies inside [a, b, c] and is not listed
    assert cliques(ranks, 2.0) == [["a", "b", "c"], ["c", "d"]]
    assert cliques(ranks, 1.5) == [["a", "b"], ["b", "c"], ["c", "d"]]
    assert cliques(ranks, 0.4) == []
    assert cliques(ranks, 3.0) == [["a", "b", "c", "d"]]
    # ranks exactly CD apart differ significantly: not a group; input order does not matter
    assert cliques({"y": 2.0, "x": 1.0}, 1.0) == []
    assert cliques({"d": 3.6, "c": 2.9, "b": 1.5, "a": 1.0}, 1.0) == [["a", "b"], ["c", "d"]]
    with pytest.raises(ValueError):
        cliques(ranks, float("nan"))


def test_cd_diagram_is_a_png_that_grows_with_the_names():
    ranks = {"patchcore": 1.2, "padim": 2.1, "spade": 2.7}
    png = critical_difference_png(ranks, 1.9, "Image AUROC")
    assert png.startswith(PNG_HEADER)
    short = Image.open(io.BytesIO(png))
    short.load()
    long = Image.open(io.BytesIO(critical_difference_png({**ranks, "a_much_longer_method_name": 3.0}, 1.9, "t")))
    assert long.size[0] > short.size[0] and long.size[1] >= short.size[1]
    with pytest.raises(ValueError, match="at least 2"):
        critical_difference_png({"only": 1.0}, 1.0, "t")


# ------------------------------------------------------------------ a hand-made run folder


def make_run(folder: Path) -> Path:
    """6 categories x 3 methods x 2 seeds, saved predictions of 30 images each, bootstrap on."""
    folder.mkdir(parents=True)
    settings = RunSettings(categories=list(CATEGORIES), seed=RUN_SEED, seeds=SEEDS, bootstrap=RESAMPLES,
                           methods={m: {} for m in STRENGTH})
    (folder / "run.json").write_text(settings.to_json())
    labels, masks, samples = tiny_test_set(GOOD, BAD, SIDE)
    rng = np.random.default_rng(0)
    rows = []
    for category, (method, strength), seed in itertools.product(CATEGORIES, STRENGTH.items(), SEEDS):
        maps = strength * masks + rng.standard_normal(masks.shape)
        # image scores of their own: mid and weak close enough to swap places in some categories
        scores = strength * labels + rng.standard_normal(len(labels))
        evaluation = metrics.evaluate(labels, scores, masks, maps)
        save_predictions(prediction_path(folder, category, method, seed), samples, labels, masks, scores,
                         maps, evaluation)
        rows.append({"category": category, "method": method, "seed": seed, "error": np.nan,
                     "image_auroc": evaluation.image_auroc, "pixel_auroc": evaluation.pixel_auroc,
                     "pro": evaluation.pro})
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, pd.DataFrame, RunSettings, str]:
    folder = make_run(tmp_path_factory.mktemp("statistics") / "run")
    results, settings = read_results(folder), read_settings(folder)
    return folder, results, settings, statistics_html(folder, results, settings)


def paired_rows(page: str) -> dict[tuple[str, str, str], dict]:
    """(category, first, second) -> difference, low, high, verdict of the paired table."""
    table = re.search(r'<table class="paired" data-metric="image_auroc">(.*?)</table>', page, re.S).group(1)
    out = {}
    for cat, first, second, low, high, body in re.findall(
            r'<tr data-category="([^"]*)" data-first="([^"]*)" data-second="([^"]*)" '
            r'data-low="([^"]*)" data-high="([^"]*)">(.*?)</tr>', table):
        diff = float(re.search(r'data-value="([^"]*)"', body).group(1))
        out[cat, first, second] = {"diff": diff, "low": float(low), "high": float(high),
                                   "verdict": re.findall(r"<td>([^<]*)</td>", body)[-1]}
    return out


def wilcoxon_rows(page: str, key: str) -> dict[tuple[str, str], dict]:
    table = re.search(rf'<table class="wilcoxon" data-metric="{key}">(.*?)</table>', page, re.S).group(1)
    out = {}
    for first, second, body in re.findall(r'<tr data-first="([^"]*)" data-second="([^"]*)">(.*?)</tr>', table):
        texts = re.findall(r"<td>([^<]*)</td>", body)
        out[first, second] = {"statistic": float(re.search(r'data-statistic="([^"]*)"', body).group(1)),
                              "pvalue": float(re.search(r'data-pvalue="([^"]*)"', body).group(1)),
                              "higher": texts[2], "significant": texts[3]}
    return out


def seed_mean_table(results: pd.DataFrame, key: str) -> pd.DataFrame:
    """[categories, methods] mean over seeds, computed here without reports.tables."""
    return results.groupby(["category", "method"])[key].mean().unstack().loc[list(CATEGORIES), list(STRENGTH)]


def test_paired_interval_equals_an_independent_computation(run):
    folder, _, _, page = run
    rows = paired_rows(page)
    assert len(rows) == 3 * len(CATEGORIES)
    for category in ("c1", "c4"):
        for first, second in itertools.combinations(STRENGTH, 2):
            diffs, exact = [], []
            for seed in SEEDS:
                a = load_predictions(prediction_path(folder, category, first, seed))
                b = load_predictions(prediction_path(folder, category, second, seed))
                labels = a["labels"]
                chosen = resample_indices(labels, RESAMPLES, seed=RUN_SEED)
                diffs.append([metrics.image_auroc(labels[i], a["scores"][i])
                              - metrics.image_auroc(labels[i], b["scores"][i]) for i in chosen])
                exact.append(metrics.image_auroc(labels, a["scores"]) - metrics.image_auroc(labels, b["scores"]))
            low, high = np.quantile(np.mean(diffs, axis=0), [0.025, 0.975])
            shown = rows[category, first, second]
            assert (shown["low"], shown["high"]) == pytest.approx((low, high), abs=1e-12)
            assert shown["diff"] == pytest.approx(np.mean(exact), abs=1e-12)


def test_a_clearly_better_method_is_reported_better(run):
    _, _, _, page = run
    rows = paired_rows(page)
    for category in CATEGORIES:
        assert rows[category, "strong", "weak"]["verdict"] == "first better"
        assert rows[category, "strong", "weak"]["low"] > 0
    wilcoxon = wilcoxon_rows(page, "image_auroc")[("strong", "weak")]
    # strong is higher in all 6 categories: the exact two-sided p is 2 / 2^6
    assert wilcoxon["higher"] == "strong" and wilcoxon["significant"] == "yes"
    assert wilcoxon["pvalue"] == pytest.approx(2 / 2 ** 6)
    ranks = dict(re.findall(r'<tr><td>([^<]*)</td><td class="num" data-rank="([^"]*)"',
                            re.search(r'<table class="ranks" data-metric="image_auroc".*?</table>', page,
                                      re.S).group(0)))
    assert float(ranks["strong"]) == 1.0


def test_rank_tests_equal_scipy_on_the_seed_mean_table(run):
    _, results, _, page = run
    for key in ("image_auroc", "pixel_auroc", "pro"):
        table = seed_mean_table(results, key)
        for (first, second), shown in wilcoxon_rows(page, key).items():
            expected = stats.wilcoxon(table[first], table[second])
            assert (shown["statistic"], shown["pvalue"]) == pytest.approx((expected.statistic, expected.pvalue))
        friedman = re.search(rf'<table class="friedman" data-metric="{key}">(.*?)</table>', page, re.S).group(1)
        chi2, p = stats.friedmanchisquare(*table.to_numpy().T)
        n, k = table.shape
        # every category ranking the methods alike makes F infinite (pixel AUROC and AU-PRO here)
        f = (n - 1) * chi2 / (n * (k - 1) - chi2) if chi2 < n * (k - 1) else np.inf
        shown = {name: float(v) for name, v in re.findall(r'data-(statistic|pvalue|f_statistic|f_pvalue)="([^"]*)"',
                                                          friedman)}
        assert shown == pytest.approx({"statistic": chi2, "pvalue": p, "f_statistic": f,
                                       "f_pvalue": stats.f.sf(f, k - 1, (k - 1) * (n - 1))})
        ranks = re.search(rf'<table class="ranks" data-metric="{key}" data-cd="([^"]*)">(.*?)</table>', page, re.S)
        expected_ranks = stats.rankdata(-table.to_numpy(), axis=1).mean(axis=0)
        shown_ranks = dict(re.findall(r'<td>([^<]*)</td><td class="num" data-rank="([^"]*)"', ranks.group(2)))
        assert [float(shown_ranks[m]) for m in STRENGTH] == pytest.approx(expected_ranks)
        q = stats.studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2)
        assert float(ranks.group(1)) == pytest.approx(q * np.sqrt(k * (k + 1) / (6 * n)))
        figure = re.search(rf'<figure class="cd-diagram" data-metric="{key}"><img alt="[^"]*" '
                           r'src="data:image/png;base64,([^"]+)"><figcaption>', page)
        assert base64.b64decode(figure.group(1), validate=True).startswith(PNG_HEADER)
    assert "fewer than 6 categories" not in page


def test_missing_predictions_and_no_bootstrap_give_notes(run, tmp_path):
    folder, results, settings, _ = run
    page = statistics_html(folder, results, replace(settings, bootstrap=0))
    assert "bootstrap 0" in page and 'class="paired"' not in page
    assert 'class="wilcoxon"' in page  # the rank tests need no predictions
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    prediction_path(copy, "c2", "mid", 1).unlink()
    rows = paired_rows(statistics_html(copy, results, settings))
    assert ("c2", "strong", "weak") in rows and ("c2", "strong", "mid") not in rows
    assert len(rows) == 3 * len(CATEGORIES) - 2
    assert "c2: no usable predictions of mid (" in statistics_html(copy, results, settings)
    # a method saved on other test images cannot be paired: the category is left out, with its reason
    path = prediction_path(copy, "c5", "weak", 0)
    saved = load_predictions(path)
    np.savez(path.with_suffix(""), **{**saved, "labels": saved["labels"][::-1]})
    page = statistics_html(copy, results, settings)
    assert "c5: the methods&#x27; saved test images differ" in page
    assert not any(category == "c5" for category, _, _ in paired_rows(page))
    shutil.rmtree(copy / "predictions")
    page = statistics_html(copy, results, settings)
    assert 'class="paired"' not in page and "c6: no usable predictions of strong, mid, weak" in page


def test_failed_rows_few_categories_and_one_method(run):
    folder, results, settings, _ = run
    failed = results.astype({"error": object})
    failed.loc[(failed["category"] == "c3") & (failed["method"] == "weak") & (failed["seed"] == 1),
               "error"] = "RuntimeError: out of memory"
    page = statistics_html(folder, failed, settings)
    assert "1 of 6 categories left out" in page
    assert ("c3", "strong", "weak") not in paired_rows(page) and ("c3", "strong", "mid") in paired_rows(page)
    few = statistics_html(folder, results[results["category"].isin(["c1", "c2", "c3", "c4"])], settings)
    assert "fewer than 6 categories" in few
    one = statistics_html(folder, results[results["method"] == "strong"], settings)
    assert one.count("<p") == 1 and "<table" not in one and "<h3" not in one
