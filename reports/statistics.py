"""The report's statistics section: are the methods' differences beyond noise? An HTML fragment.

Two questions, two units of evidence (Demsar, JMLR 2006, for the second):

* per category, over test images: the paired bootstrap interval of the
  difference in image AUROC of two methods, both scored on the same resamples
  of the same test images (``metrics.bootstrap_values``), averaged over the
  method seeds resample by resample (same run seed, same images: the same
  resamples), so seed noise is averaged out before the interval is taken;
* across categories, the category being the unit: Wilcoxon signed-rank tests
  per pair of methods, and with 3 or more methods the Friedman test (and Iman
  and Davenport's F), average ranks, the Nemenyi critical difference and a
  critical-difference diagram, on the per-category means over seeds.

In a run of several backbones a "method" is a configuration such as
``patchcore · resnet18`` (``reports.tables.configurations``), paired and ranked
like a method; its prediction files are found through the method and backbone
the relabelled rows keep. Only rows without error count. Missing prediction
files (older runs, removed files) and runs without bootstrap cost their part a
note, never an exception.
This module must not import ``reports.html``, which imports it.
"""

from __future__ import annotations

import base64
import html
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import metrics
from reports.cd_diagram import cliques, critical_difference_png
from reports.predictions import prediction_path
from reports.runfolder import RunSettings
from reports.tables import configuration_parts, configurations, metric_tables

LEVEL = 0.95
ALPHA = 0.05
# The smallest two-sided exact Wilcoxon p-value is 2 / 2^n: 0.0625 for 5 categories, 0.031 for 6.
WILCOXON_MIN_N = 6
VERDICTS = ("first better", "second better", "no detectable difference")


def statistics_html(run_dir: Path, results: pd.DataFrame, settings: RunSettings) -> str:
    """The statistics section of the report of the run in ``run_dir``: h3/h4 headings, tables, notes, figures.

    ``results``: the run's rows (category, method, seed, error, metric columns),
    as ``reports.runfolder.read_results`` gives them, or relabelled by ``configurations`` already.
    """
    results = configurations(results, always=settings.several_backbones)
    finished = _finished(results)
    methods = list(dict.fromkeys(finished["method"]))
    if len(methods) < 2:
        return '<p class="note">Fewer than two methods finished: there is nothing to compare.</p>'
    parts = ['<h3 id="statistics-paired">Paired differences in image AUROC, per category</h3>',
             paired_html(Path(run_dir), results, settings, methods),
             '<h3 id="statistics-across">Across categories</h3>',
             '<p class="note">Each category is one observation: the mean over seeds of a method\'s metric '
             "there. Tests after Demsar (JMLR 2006): Wilcoxon signed-rank per pair of methods; with three or "
             "more methods, Friedman on the ranks per category and the Nemenyi critical difference (CD) of "
             "average ranks.</p>"]
    for key, title in (("image_auroc", "Image AUROC"), ("pixel_auroc", "Pixel AUROC"),
                       ("pro", f"AU-PRO (FPR up to {settings.pro_fpr_limit:g})")):
        if key in finished and finished[key].notna().any():
            parts.append(across_html(finished, key, title))
    return "\n".join(parts)


def _finished(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["error"].isna()] if "error" in results else results


# ------------------------------------------------------------- per category


def paired_html(run_dir: Path, results: pd.DataFrame, settings: RunSettings, methods: list[str]) -> str:
    """One row per (pair of methods, category): the difference in image AUROC and its paired interval."""
    if not settings.bootstrap:
        return ('<p class="note">This run drew no bootstrap resamples (bootstrap 0), so there are no paired '
                "intervals; run with <code>--bootstrap N</code> to get them.</p>")
    file_seeds = [None] if len(settings.method_seeds) <= 1 else settings.method_seeds
    categories = list(dict.fromkeys(_finished(results)["category"]))
    per_category, notes = {}, []
    for category in categories:
        found, missing = category_values(run_dir, results, settings, category, methods, file_seeds)
        per_category[category] = found
        if missing:
            notes.append(f"{category}: {missing}")
    rows = [_paired_row(category, first, second, per_category[category])
            for first, second in itertools.combinations(methods, 2) for category in categories
            if first in per_category[category] and second in per_category[category]]
    seeds = len(file_seeds)
    text = (f"Difference = {'mean over the ' + str(seeds) + ' seeds of ' if seeds > 1 else ''}"
            f"(image AUROC of first − of second). Interval: 95 % percentile bootstrap over {settings.bootstrap} "
            f"resamples of the test images (stratified by class, seed {settings.seed or 0}); both methods are "
            "scored on the same resamples"
            + (", and each resample's difference is averaged over the seeds" if seeds > 1 else "")
            + ". An interval excluding 0 means a difference beyond the resampling noise of these test images.")
    parts = [f'<p class="note">{html.escape(text)}</p>']
    if rows:
        head = "".join(f"<th>{h}</th>" for h in ("category", "first", "second", "difference",
                                                   "95 % interval", "verdict"))
        parts.append(f'<table class="paired" data-metric="image_auroc"><thead><tr>{head}</tr></thead>'
                     f"<tbody>{''.join(rows)}</tbody></table>")
    if notes:
        parts.append(f'<p class="note">Left out of this table: {html.escape("; ".join(notes))}.</p>')
    return "\n".join(parts)


def category_values(run_dir: Path, results: pd.DataFrame, settings: RunSettings, category: str,
                    methods: list[str], file_seeds: list) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """``method -> (exact AUROC [S], resampled AUROC [S, R])`` over the seeds, and why others are missing;
    ``methods`` are labels of ``results`` (configurations in a run of several backbones).

    A method counts only when none of its rows in the category failed and
    every seed's predictions can be read; every method must have been scored
    on the same test images (the same labels), or resamples would not pair.
    """
    results = configurations(results, always=settings.several_backbones)
    rows = results[results["category"] == category]
    failed = set(rows.loc[rows["error"].notna(), "method"]) if "error" in rows else set()
    found, missing, labels_seen = {}, [], None
    parts = configuration_parts(rows)  # label -> (method, backbone) of the prediction files' names
    for method in methods:
        loaded = [None]
        if method not in failed and method in parts:
            name, backbone = parts[method]
            loaded = [_image_scores(prediction_path(run_dir, category, name, seed, backbone)) for seed in file_seeds]
        if any(item is None for item in loaded):
            missing.append(method)
            continue
        labels_seen = loaded[0][0] if labels_seen is None else labels_seen
        if not all(np.array_equal(labels, labels_seen) for labels, _ in loaded):
            return {}, "the methods' saved test images differ"
        found[method] = _auroc_values(loaded, settings)
    if not missing:
        return found, ""
    return found, (f"no usable predictions of {', '.join(missing)} (a failed row, an older run or "
                   "removed files)")


def _image_scores(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(labels [N], scores [N])`` of a saved prediction, or None when it is missing or unreadable.

    Only these two arrays are read: decompressing the maps too would cost most of the time.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["labels"]), np.asarray(data["scores"], dtype=np.float64)
    except (OSError, ValueError, KeyError):
        return None


def _auroc_values(loaded: list[tuple[np.ndarray, np.ndarray]],
                  settings: RunSettings) -> tuple[np.ndarray, np.ndarray]:
    """Exact image AUROC ``[S]`` and its values on the run's resamples ``[S, R]``, one row per seed."""
    with warnings.catch_warnings():
        # a category without good or defective images is undefined: shown as "–", not warned per method
        warnings.simplefilter("ignore", metrics.MetricWarning)
        exact = np.array([metrics.image_auroc(labels, scores) for labels, scores in loaded])
        values = np.stack([metrics.bootstrap_values(metrics.image_auroc, labels, scores,
                                                    n_resamples=settings.bootstrap, seed=settings.seed or 0)
                           for labels, scores in loaded])
    return exact, values


def paired_difference(first: tuple[np.ndarray, np.ndarray],
                      second: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float]:
    """``(diff, low, high)``: mean over seeds of the exact difference, interval of the seed-averaged one.

    ``first``, ``second``: ``(exact [S], values [S, R])`` of two methods on the
    same resamples. The per-resample difference is averaged over the seeds
    before the percentiles are taken; a resample undefined in any seed is NaN
    and left out.
    """
    diff = float(np.mean(first[0] - second[0]))
    low, high = metrics.percentile_interval((first[1] - second[1]).mean(axis=0), LEVEL)
    return diff, low, high


def verdict(low: float, high: float) -> str:
    """Which method the interval ``(low, high)`` of first − second favours, if it excludes 0."""
    if low > 0:
        return VERDICTS[0]
    if high < 0:
        return VERDICTS[1]
    return VERDICTS[2] if not (np.isnan(low) or np.isnan(high)) else "undefined"


def _paired_row(category: str, first: str, second: str, found: dict) -> str:
    diff, low, high = paired_difference(found[first], found[second])
    interval = "–" if np.isnan(low) else f"[{low:+.3f}, {high:+.3f}]"
    return (f'<tr data-category="{html.escape(category)}" data-first="{html.escape(first)}" '
            f'data-second="{html.escape(second)}" data-low="{low!r}" data-high="{high!r}">'
            f"<td>{html.escape(category)}</td><td>{html.escape(first)}</td><td>{html.escape(second)}</td>"
            f"{_num(diff, '+.3f')}<td class=\"num\">{interval}</td><td>{verdict(low, high)}</td></tr>")


# ---------------------------------------------------------- across categories


def across_html(finished: pd.DataFrame, key: str, title: str) -> str:
    """Rank tests of metric ``key`` over the categories where every method has a value."""
    table = metric_tables(finished, key).mean.drop(index="mean")  # [categories, methods], mean over seeds
    complete = table.notna().all(axis=1)
    dropped, table = int((~complete).sum()), table[complete]
    n, k = table.shape
    parts = [f'<h4 id="statistics-{key}">{html.escape(title)}</h4>']
    if dropped:
        parts.append(f'<p class="note">{dropped} of {dropped + n} categories left out: some method has no '
                     "value there (a failed row or seed, or for a pixel metric a category without masks).</p>")
    if n == 0:
        return "\n".join(parts + ['<p class="note">No category where every method has a value.</p>'])
    parts.append(wilcoxon_html(table, key))
    if n < WILCOXON_MIN_N:
        parts.append(f'<p class="note">Only {n} categories: a two-sided exact Wilcoxon test cannot reach '
                     f"p &lt; 0.05 with fewer than {WILCOXON_MIN_N} categories.</p>")
    if k >= 3 and n >= 2:
        parts.append(friedman_html(table, key, title))
    elif k >= 3:
        parts.append('<p class="note">The Friedman test needs at least 2 categories.</p>')
    return "\n".join(parts)


def wilcoxon_html(table: pd.DataFrame, key: str) -> str:
    """One row per pair of methods: means, which is higher, Wilcoxon W and p; ``table [n, k]``."""
    rows = []
    for first, second in itertools.combinations(table.columns, 2):
        a, b = table[first].to_numpy(np.float64), table[second].to_numpy(np.float64)
        statistic, pvalue = metrics.wilcoxon(a, b)
        higher = first if a.mean() > b.mean() else second if b.mean() > a.mean() else "neither"
        rows.append(f'<tr data-first="{html.escape(first)}" data-second="{html.escape(second)}">'
                    f"<td>{html.escape(first)}</td><td>{html.escape(second)}</td>{_num(a.mean(), '.3f')}"
                    f"{_num(b.mean(), '.3f')}<td>{html.escape(higher)}</td>{_num(statistic, 'g', 'statistic')}"
                    f"{_num(pvalue, '.3g', 'pvalue')}<td>{'yes' if pvalue < ALPHA else 'no'}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("first", "second", "mean first", "mean second", "higher mean",
                                               "Wilcoxon W", "p", "p &lt; 0.05"))
    return (f'<table class="wilcoxon" data-metric="{key}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def friedman_html(table: pd.DataFrame, key: str, title: str) -> str:
    """Friedman and Iman–Davenport tests, average ranks, Nemenyi CD and the CD diagram; ``table [n, k >= 3]``."""
    values = table.to_numpy(np.float64)
    n, k = values.shape
    if (values == values[:, :1]).all():
        # every category ties every method: the rank statistics divide by zero
        return '<p class="note">Every category ties all methods: there is nothing for the Friedman test.</p>'
    result = metrics.friedman(values)
    ranks = dict(zip(map(str, table.columns), metrics.average_ranks(values, higher_is_better=True)))
    cd = metrics.nemenyi_critical_difference(k, n, ALPHA)
    tests = (f'<table class="friedman" data-metric="{key}"><thead><tr><th>test</th><th>statistic</th>'
             f"<th>p</th></tr></thead><tbody>"
             f"<tr><td>Friedman χ² (df {k - 1})</td>{_num(result.statistic, '.3f', 'statistic')}"
             f"{_num(result.pvalue, '.3g', 'pvalue')}</tr>"
             f"<tr><td>Iman–Davenport F (df {k - 1}, {(k - 1) * (n - 1)})</td>"
             f"{_num(result.f_statistic, '.3f', 'f_statistic')}{_num(result.f_pvalue, '.3g', 'f_pvalue')}</tr>"
             f"</tbody></table>")
    rank_rows = "".join(f"<tr><td>{html.escape(m)}</td>{_num(r, '.2f', 'rank')}</tr>"
                        for m, r in sorted(ranks.items(), key=lambda item: item[1]))
    rank_table = (f'<table class="ranks" data-metric="{key}" data-cd="{cd!r}"><thead><tr><th>method</th>'
                  f"<th>average rank (1 = best)</th></tr></thead><tbody>{rank_rows}</tbody></table>")
    return "\n".join([tests, rank_table, f'<p class="note">{html.escape(_nemenyi_text(result, ranks, cd, n))}</p>',
                      _cd_figure(ranks, cd, key, title, n)])


def _nemenyi_text(result, ranks: dict[str, float], cd: float, n: int) -> str:
    """What the Friedman p-value and the Nemenyi CD say, in words."""
    rejects = result.f_pvalue < ALPHA
    apart = [f"{a}–{b}" for a, b in itertools.combinations(sorted(ranks, key=ranks.get), 2)
             if ranks[b] - ranks[a] >= cd]
    return (f"Nemenyi critical difference at alpha {ALPHA:g} for {len(ranks)} methods over {n} categories: "
            f"CD = {cd:.3f}. The Iman–Davenport test {'rejects' if rejects else 'does not reject'} that the "
            f"methods perform alike (p {'<' if rejects else '≥'} {ALPHA:g})"
            + (". " if rejects else "; Demsar runs the Nemenyi comparison only after a rejection, so read "
               "the diagram below as no evidence of a difference. ")
            + ("Average ranks at least CD apart: " + ", ".join(apart) + "." if apart
               else "No two average ranks are CD or more apart."))


def _cd_figure(ranks: dict[str, float], cd: float, key: str, title: str, n: int) -> str:
    """The CD diagram as an inline PNG ``<figure class="cd-diagram" data-metric=key>``."""
    png = critical_difference_png(ranks, cd, f"{title}: average ranks over {n} categories")
    groups = cliques(ranks, cd)
    caption = (f"Average rank of each method over {n} categories (1 = best, on the left). The bar above the "
               f"axis is the Nemenyi critical difference CD = {cd:.2f} (alpha {ALPHA:g}); "
               + (f"thick bars join the {len(groups)} group(s) of methods whose average ranks differ by less "
                  "than CD, which the test cannot tell apart." if groups
                  else "every two average ranks differ by at least CD."))
    data = base64.b64encode(png).decode("ascii")
    alt = f"Critical-difference diagram, {title}"
    return (f'<figure class="cd-diagram" data-metric="{key}"><img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _num(value: float, fmt: str, name: str = "value") -> str:
    """A number cell: formatted for reading, the full value in ``data-<name>`` for machines and tests."""
    text = "–" if np.isnan(value) else format(value, fmt)
    return f'<td class="num" data-{name}="{float(value)!r}">{text}</td>'
