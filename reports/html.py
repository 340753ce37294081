"""``report.html`` of a run folder: one self-contained page (inline CSS, figures as base64 PNG, no JS).

Everything is read back from the run folder, so an old run gets a report too:
``python -m reports.html RUN_DIR``.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import shlex
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from reports import figures
from reports.atomic import write_text_atomic
from reports.examples import category_examples
from reports.predictions import load_predictions, prediction_path
from reports.runfolder import RunSettings, read_results, read_settings, requested_device
from reports.statistics import statistics_html
from reports.tables import (ACCURACY, MEMORY, METHOD_NAME, SPEED, Column, MetricTable, base_metric,
                            configuration_parts, configurations, has_values, metric_tables, table_columns,
                            table_subtitle)

REPORT_FILE = "report.html"
# The harness's logger, by name: reports imports nothing from bench.
logger = logging.getLogger("patchbench")
EXAMPLES_PER_CATEGORY = 4
CONFIGURATIONS_NOTE = ('<p class="note">This run has several backbones: each method on each backbone is a column '
                       "of its own, <em>method · backbone</em>, grouped by backbone, and so in the statistics and "
                       "the figures.</p>")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.15em; margin-bottom: 0.3em; }
h4 { font-size: 1em; margin: 1em 0 0.3em; }
.direction { font-weight: normal; color: #555; }
.banner { background: #fff3cd; border: 1px solid #e0b100; border-left: 6px solid #e0b100; padding: 0.7em 1em;
          margin: 1em 0; }
.banner.failed { background: #fde8e8; border-color: #c62828; }
.note { color: #666; font-size: 0.9em; }
nav { font-size: 0.9em; }
nav a { margin-right: 1em; }
.table-grid { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.metric-table { max-width: 100%; min-width: 15em; flex: 0 1 auto; }
.metric-table h4 { max-width: 22em; }
table { border-collapse: collapse; margin: 0.3em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #c8e6c9; }
tr.mean td, tr.mean th { border-top: 2px solid #888; }
table.settings th { text-align: left; }
table.failures td { font-family: ui-monospace, monospace; font-size: 0.85em; }
figure { margin: 0.5em 0 1.5em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
"""


def best_cells(table: pd.DataFrame, higher_is_better: bool, fmt: str) -> pd.DataFrame:
    """``[rows, methods]`` bool: the best value of each row (all of them on a tie), NaN never best.

    Values are compared as printed, so two cells that read the same are both
    marked rather than one winning on digits nobody sees. A row whose values
    all read the same (the extraction time all methods share, a run of one
    method) marks nothing: a best needs something worse beside it.
    """
    shown = table.apply(lambda col: col.map(lambda v: _as_shown(v, fmt))).astype(np.float64)
    best = shown.max(axis=1) if higher_is_better else shown.min(axis=1)  # NaN-skipping
    marked = shown.eq(best, axis=0) & shown.notna()
    marked.loc[shown.nunique(axis=1) < 2] = False  # nunique skips NaN
    return marked


def _as_shown(value: float, fmt: str) -> float:
    if pd.isna(value) or np.isinf(value):
        return float(value)
    return float(format(value, fmt))


def table_html(table: MetricTable, column: Column) -> str:
    """A titled categories x methods table (``metric_tables``) with each row's best mean marked."""
    direction = table_subtitle(column, table)
    best = best_cells(table.mean, column.higher_is_better, column.fmt)
    head = "".join(f"<th>{html.escape(str(m))}</th>" for m in table.mean.columns)
    body = []
    for row in table.mean.index:
        cells = []
        for method in table.mean.columns:
            is_best = bool(best.loc[row, method])
            css = "num best" if is_best else "num"
            title = ' title="best in this row"' if is_best else ""
            text = html.escape(table.cell(row, method, column.fmt)).replace("inf", "∞")
            cells.append(f'<td class="{css}"{title}>{text}</td>')
        css = ' class="mean"' if row == "mean" else ""
        body.append(f"<tr{css}><th>{html.escape(str(row))}</th>{''.join(cells)}</tr>")
    return (f'<div class="metric-table"><h4 id="table-{column.key}">{html.escape(column.title)} '
            f'<span class="direction">({direction})</span></h4>\n'
            f'<table class="metric" data-metric="{column.key}"><thead><tr><th>category</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def tables_html(results: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    results = configurations(results)
    groups = (("Accuracy", ACCURACY), ("Speed", SPEED), ("Memory", MEMORY))
    parts = []
    for name, group in groups:
        keys = {c.key for c in group}
        present = [c for c in columns if base_metric(c) in keys and has_values(results, c)]
        if present:
            parts.append(f"<h3>{name}</h3>")
            parts.append('<div class="table-grid">')
            parts.extend(table_html(metric_tables(results, c.key), c) for c in present)
            parts.append("</div>")
    return "\n".join(parts)


def is_random_weights(settings: RunSettings, results: pd.DataFrame) -> bool:
    # The settings say what the backbone ended up with ("imagenet" can fall back to random).
    in_rows = "weights" in results and (results["weights"].astype(str) == "random").any()
    return settings.weights == "random" or bool(in_rows)


def banner_html(backbones: list[str] | None = None) -> str:
    """The random-weights warning; ``backbones``: in a run of several, those whose rows ran on random weights."""
    which = f" Random here: {', '.join(backbones)}." if backbones else ""
    return ('<div class="banner" id="random-weights-warning"><strong>Random backbone weights.</strong> '
            "The backbone was not pretrained (weights=random), so these numbers say little about the "
            "methods and are not comparable with published results, which use ImageNet-pretrained "
            f"backbones.{which}</div>")


def random_backbones(results: pd.DataFrame) -> list[str]:
    """The backbones of relabelled rows (``configurations``) that ran on random weights; [] for other rows."""
    if METHOD_NAME not in results or "weights" not in results:
        return []
    return [str(b) for b in dict.fromkeys(results.loc[results["weights"].astype(str) == "random", "backbone"])]


def settings_html(settings: RunSettings, run_dir: Path) -> str:
    rows = [(label, text) for label, text in settings.header().items() if label != "device"]
    rows.append(("device", requested_device(settings)))  # also for runs that did not record it
    if settings.argv:
        rows.append(("command", "python bench.py " + shlex.join(map(str, settings.argv))))
    rows.append(("run folder", str(run_dir)))
    rows += [(f"{name} version", version) for name, version in settings.versions.items()]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    note = "" if settings.versions else '<p class="note">This run folder does not record versions.</p>'
    return f'<table class="settings">{body}</table>{note}'


def failures_html(results: pd.DataFrame) -> str:
    failed = results[results["error"].notna()]
    rows = "".join(
        f"<tr><td>{html.escape(str(r.category))}</td><td>{html.escape(str(r.method))}</td>"
        f"<td>{html.escape(str(r.error))}</td></tr>" for r in failed.itertuples()
    )
    return ('<table class="failures"><thead><tr><th>category</th><th>method</th><th>error</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def figure_html(png: bytes, alt: str, caption: str, kind: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure class="{kind}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def guarded(what: str, draw: Callable[[], str]) -> str:
    """``draw()``, or a visible note when it fails.

    A report is written after the benchmark's numbers are safe on disk; one
    figure that cannot be drawn (a moved data set, an odd file) must cost that
    figure, not the report or the run.
    """
    try:
        return draw()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("warning: report: %s could not be drawn: %s: %s", what, type(exc).__name__, exc)
        logger.debug("the figure's traceback", exc_info=True)
        return f'<p class="note">{html.escape(what)} could not be drawn: {html.escape(type(exc).__name__)}: ' \
               f"{html.escape(str(exc))}</p>"


def load_category(run_dir: Path, results: pd.DataFrame, category: str, settings: RunSettings) -> dict[str, dict]:
    """method (configuration label in a run of several backbones, ``configurations``) -> saved prediction of
    the category's rows that finished and kept one; the first seed's in a run of several seeds."""
    seeds = settings.method_seeds
    seed = seeds[0] if len(seeds) > 1 else None
    results = configurations(results, always=settings.several_backbones)
    rows = results[(results["category"] == category) & results["error"].isna()]
    if seed is not None:
        rows = rows[rows["seed"] == seed]
    found, parts = {}, configuration_parts(rows)
    for label in rows["method"]:
        method, backbone = parts[label]
        path = prediction_path(run_dir, category, method, seed, backbone)
        if path.is_file():
            found[label] = load_predictions(path)
    return found


def category_html(run_dir: Path, results: pd.DataFrame, settings: RunSettings, category: str) -> str:
    results = configurations(results, always=settings.several_backbones)
    predictions = load_category(run_dir, results, category, settings)
    anchor = _anchor(category)
    title = f'<h3 id="category-{anchor}">{html.escape(category)}</h3>'
    if not predictions:
        failed = results.loc[results["category"] == category, "error"].notna().all()
        reason = "the category failed, see Failures" if failed else "an older run, or files removed"
        return f'{title}<p class="note">No saved predictions ({reason}).</p>'
    rows = results[results["category"] == category]
    if len(settings.method_seeds) > 1:  # the figures are of the first seed's predictions
        rows = rows[rows["seed"] == settings.method_seeds[0]]
    rows = rows.set_index("method")
    limit = settings.pro_fpr_limit

    def draw_curves() -> str:
        png = figures.curves(predictions, limit, category, _by_method(rows, "image_auroc"), _by_method(rows, "pro"))
        return figure_html(png, f"ROC and PRO curves, {category}",
                           f"Left: image-level ROC. Right: PRO curve; AU-PRO integrates it up to FPR {limit:g} "
                           "(dashed line) and is normalised by that limit.", kind="curves")

    geometry = (settings.resize, settings.crop) if settings.resize is not None else None

    def draw_examples() -> str:
        examples = category_examples(predictions, geometry, EXAMPLES_PER_CATEGORY)
        if examples is None:
            return '<p class="note">No test image was predicted by every method.</p>'
        png = figures.to_png(figures.examples_figure(examples, category))
        return figure_html(png, f"Example test images, {category}",
                           "Worst-scored defects (lowest mean rank of score across methods), then the "
                           "highest-scored good images. Maps share one colour scale per method over the "
                           "category (the colour bar under the method's maps); masks are map > the method's "
                           "pixel F1-max threshold, ground truth outlined in red; 'flagged' means score ≥ the "
                           "image F1-max threshold.",
                           kind="examples")

    return "\n".join([title, guarded(f"ROC/PRO curves of {category}", draw_curves),
                      guarded(f"examples of {category}", draw_examples)])


def _by_method(rows: pd.DataFrame, key: str) -> dict[str, float]:
    return rows[key].to_dict() if key in rows else {}


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


def build_report(run_dir: Path) -> str:
    """The whole page of the run in ``run_dir``."""
    run_dir = Path(run_dir)
    settings = read_settings(run_dir)
    # One "method" per (method, backbone) configuration in a run of several backbones, for every part below.
    results = configurations(read_results(run_dir), always=settings.several_backbones)
    columns = table_columns(settings.pro_fpr_limit, results)
    # one panel per metric of every test image; the subsets' numbers are in the tables (17 panels for LOCO)
    accuracy = tuple(c for c in columns if c.key in {a.key for a in ACCURACY} and has_values(results, c))
    categories = list(dict.fromkeys(results["category"]))
    has_failures = results["error"].notna().any()

    def draw_bars() -> str:
        png = figures.to_png(figures.metric_bars_figure(results, accuracy))
        return figure_html(png, "Accuracy per category and method",
                           "Each accuracy metric per category and its mean (right of the line); whiskers "
                           "are the 95 % bootstrap interval over test images where there is one, else the "
                           "std over seeds; a grey cross marks a failed row.", kind="bars")

    def draw_latency() -> str:
        fig, averaged = figures.accuracy_latency_figure(results)
        png = figures.to_png(fig)
        return figure_html(png, "Image AUROC against predict time",
                           f"Mean over the categories every method finished ({', '.join(averaged) or 'none'}). "
                           "Up and to the left is better.", kind="accuracy-latency")

    nav = ['<a href="#settings">Settings</a>', '<a href="#tables">Tables</a>', '<a href="#statistics">Statistics</a>',
           '<a href="#figures">Figures</a>', '<a href="#categories">Per category</a>']
    if has_failures:
        nav.append('<a href="#failures">Failures</a>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>patchbench report: {html.escape(run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>patchbench report: {html.escape(run_dir.name)}</h1>",
        f"<nav>{''.join(nav)}</nav>",
        banner_html(random_backbones(results)) if is_random_weights(settings, results) else "",
        f'<p class="banner failed">{int(results["error"].notna().sum())} row(s) failed; see '
        '<a href="#failures">Failures</a>.</p>' if has_failures else "",
        '<h2 id="settings">Settings</h2>',
        settings_html(settings, run_dir),
        '<h2 id="tables">Tables</h2>',
        '<p class="note">Categories as rows, methods as columns; the best value of each row is in bold on green '
        "(nothing is when all values of the row read the same). The mean row is empty for a method with a "
        "failed category.</p>",
        CONFIGURATIONS_NOTE if METHOD_NAME in results else "",
        tables_html(results, columns),
        '<h2 id="statistics">Statistics</h2>',
        guarded("the statistics", lambda: statistics_html(run_dir, results, settings)),
        '<h2 id="figures">Figures</h2>',
        '<h3 id="figure-bars">Accuracy per category</h3>',
        guarded("the accuracy bars", draw_bars) if accuracy else '<p class="note">No accuracy values.</p>',
        '<h3 id="figure-accuracy-latency">Accuracy against latency</h3>',
        guarded("accuracy against latency", draw_latency)
        if {"image_auroc", "predict_ms_per_image"} <= set(results) else '<p class="note">Not recorded.</p>',
        '<h2 id="categories">Per category: ROC and PRO curves, examples</h2>',
        *(guarded(f"the section of {c}", lambda c=c: category_html(run_dir, results, settings, c))
          for c in categories),
    ]
    if has_failures:
        parts += ['<h2 id="failures">Failures</h2>', failures_html(results)]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(run_dir: Path) -> Path:
    """Write ``report.html`` into ``run_dir`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    return write_text_atomic(run_dir / REPORT_FILE, build_report(run_dir))


def main(argv: list[str]) -> int:
    """``python bench.py report RUN_DIR...``: (re)write the report of earlier runs."""
    parser = argparse.ArgumentParser(prog="bench.py report", description=main.__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    for folder in parser.parse_args(argv).run_dirs:
        print(write_report(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
