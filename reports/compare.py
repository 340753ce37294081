"""``python bench.py compare RUN_A RUN_B``: what changed between two runs, per (category, [backbone,] method).

Writes ``RUN_B/compare-<RUN_A name>.md`` (or ``--output FILE``) and a CSV of the
same numbers beside it: for every metric, time and memory column the value in
A, in B, and B - A (plus the relative change for times and memory, where a
ratio is what people quote).

A run has one row per (category, method, seed): each side's value is the mean
over its seeds (as in results.md, ``reports.tables.metric_tables``), shown as
``mean ± std`` when that side has several. For the accuracy columns with a 95 %
bootstrap interval, each change is said to be beyond that interval or not
(``beyond_interval``), and a summary near the top lists the changes beyond it.

When either run has several backbones, rows are per (category, backbone,
method): both runs' rows are relabelled as configurations
(``reports.tables.configurations``, a one-backbone run too, so its rows meet
the same backbone's rows of the other run), and two backbones' rows never
merge. Otherwise the rows, columns and Markdown are those of before backbones.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reports.atomic import write_atomic, write_text_atomic
from reports.runfolder import RunSettings, read_results, read_settings
from reports.tables import (MEMORY, SPEED, Column, cell_text, configuration_label, configuration_parts,
                            configurations, has_values, metric_tables, seed_count, several_backbones, table_columns)

KEY = ["category", "method"]
BACKBONE_KEY = ["category", "backbone", "method"]  # the rows' key when either run has several backbones
RELATIVE = {c.key for c in SPEED + MEMORY}
BEYOND = "beyond the 95 % interval"  # the verdict column's heading


def compared_columns(a: pd.DataFrame, b: pd.DataFrame, fpr: float) -> tuple[Column, ...]:
    """The table columns either run has values in (``has_values``: no GPU columns without a GPU), in the
    tables' order."""
    return tuple(c for c in table_columns(fpr, a, b) if has_values(a, c) or has_values(b, c))


@dataclass(frozen=True)
class SeedNumbers:
    """One run's numbers, rows (category, method) in the run's order, one column per compared column key:
    the mean over seeds, the std over seeds (NaN with one seed), the seed-averaged interval bounds (NaN
    without an interval), and ``seeds``, how many seeds each (category, method) has rows for."""

    mean: pd.DataFrame
    std: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    seeds: pd.Series

    def reindex(self, index: pd.MultiIndex) -> "SeedNumbers":
        return SeedNumbers(self.mean.reindex(index), self.std.reindex(index), self.low.reindex(index),
                           self.high.reindex(index), self.seeds.reindex(index))


def _numbers(results: pd.DataFrame, columns: tuple[Column, ...]) -> SeedNumbers:
    """``results`` rows (category, method, seed) -> ``SeedNumbers``.

    The seed means come from ``metric_tables``, so compare shows the numbers
    results.md shows, with its rule that a failed seed leaves no mean.
    """
    keys = _keys(results).unique()
    tables = {c.key: metric_tables(results, c.key) for c in columns}

    def frame(part: str) -> pd.DataFrame:
        return pd.DataFrame({key: _pairs(getattr(table, part), keys) for key, table in tables.items()},
                            index=keys, columns=[c.key for c in columns], dtype=np.float64)

    seeds = results["seed"] if "seed" in results else pd.Series(-1, index=results.index)
    counts = seeds.fillna(-1).groupby([results["category"], results["method"]], sort=False).nunique()
    return SeedNumbers(frame("mean"), frame("std"), frame("low"), frame("high"), counts.reindex(keys))


def _pairs(grid: pd.DataFrame, keys: pd.MultiIndex) -> pd.Series:
    """A categories (and ``mean``) x methods grid -> its values at the (category, method) ``keys``."""
    return pd.Series([grid.at[category, method] for category, method in keys], index=keys, dtype=np.float64)


def beyond_interval(a: float, b: float, low_a: float, high_a: float, low_b: float, high_b: float) -> bool | None:
    """Whether the change from ``a`` to ``b`` is beyond the 95 % interval: ``a`` outside B's
    ``[low_b, high_b]``, or, when only A has an interval, ``b`` outside A's ``[low_a, high_a]``.

    Why this rule: a run's interval is the test-set sampling noise of its
    value (bootstrap over the test images), so a change whose other end lies
    outside it is larger than that noise. B's interval comes first since B is
    the run being judged. The bounds are inclusive. It is a reading aid, not a
    significance test: both runs score the same test images, and with seeds the
    bounds are averaged over seeds while the seeds' spread is the std beside them.
    ``None`` when a value is missing or neither side has an interval.
    """
    if pd.isna(a) or pd.isna(b):
        return None
    if not (pd.isna(low_b) or pd.isna(high_b)):
        return bool(a < low_b or a > high_b)
    if not (pd.isna(low_a) or pd.isna(high_a)):
        return bool(b < low_a or b > high_a)
    return None


def _with_intervals(na: SeedNumbers, nb: SeedNumbers, columns: tuple[Column, ...]) -> set[str]:
    """Keys of the interval columns either run has a bound in: only these get bounds and a verdict."""
    return {c.key for c in columns if c.interval and (na.low[c.key].notna().any() or nb.low[c.key].notna().any())}


def differences(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """One row per (category, method) of either run, per (category, backbone, method) when either has
    several backbones (``backbone`` the second column): ``in`` ("both", "A only", "B only"), then for
    each column ``<key>_a``, ``<key>_b`` (means over seeds), ``<key>_diff`` (B - A) and, for times and
    memory, ``<key>_rel_pct`` (100 (B - A) / A; NaN when A is 0).

    When either run has several seeds: ``<key>_std_a``, ``<key>_std_b`` (std over seeds) per column and
    ``seeds_a``, ``seeds_b`` last. For an interval column either run has bounds in: ``<key>_low_a``,
    ``<key>_high_a``, ``<key>_low_b``, ``<key>_high_b`` and ``<key>_beyond_interval`` (True, False, or
    NaN; ``beyond_interval``). Two single-seed runs without intervals get the columns of before seeds.
    Rows keep A's order, then B's new rows.
    """
    backbones = several_backbones(a) or several_backbones(b)
    a, b = configurations(a, always=backbones), configurations(b, always=backbones)
    na, nb = _numbers(a, columns), _numbers(b, columns)
    index = na.mean.index.append(nb.mean.index[~nb.mean.index.isin(na.mean.index)])
    na, nb = na.reindex(index), nb.reindex(index)
    several, intervals = seed_count(a) > 1 or seed_count(b) > 1, _with_intervals(na, nb, columns)
    out = pd.DataFrame(index=index)
    out["in"] = np.where(index.isin(_keys(a)) & index.isin(_keys(b)), "both",
                         np.where(index.isin(_keys(a)), "A only", "B only"))
    for c in columns:
        va, vb = na.mean[c.key], nb.mean[c.key]
        out[f"{c.key}_a"], out[f"{c.key}_b"], out[f"{c.key}_diff"] = va, vb, vb - va
        if c.key in RELATIVE:
            out[f"{c.key}_rel_pct"] = relative_pct(va, vb)
        if several:
            out[f"{c.key}_std_a"], out[f"{c.key}_std_b"] = na.std[c.key], nb.std[c.key]
        if c.key in intervals:
            _add_interval(out, c.key, na, nb)
    if several:
        out["seeds_a"], out["seeds_b"] = na.seeds.fillna(0).astype(int), nb.seeds.fillna(0).astype(int)
    return _split_configurations(out.reset_index(), a, b) if backbones else out.reset_index()


def _split_configurations(out: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """``out`` keyed by (category, configuration label) -> keyed by (category, backbone, method)."""
    parts = {**configuration_parts(a), **configuration_parts(b)}
    out.insert(1, "backbone", [parts[label][1] for label in out["method"]])
    out["method"] = [parts[label][0] for label in out["method"]]
    return out


def row_key(diff: pd.DataFrame) -> list[str]:
    """The columns that name a row of ``differences``: ``BACKBONE_KEY`` when it has backbones, else ``KEY``."""
    return BACKBONE_KEY if "backbone" in diff else KEY


def _labels(diff: pd.DataFrame) -> pd.Series:
    """Each row's method, as the configuration ``patchcore · resnet18`` when ``diff`` has backbones."""
    if "backbone" not in diff:
        return diff["method"]
    return pd.Series([configuration_label(m, b) for m, b in zip(diff["method"], diff["backbone"])],
                     index=diff.index, dtype=object)


def _add_interval(out: pd.DataFrame, key: str, na: SeedNumbers, nb: SeedNumbers) -> None:
    """``out``'s bound and verdict columns of ``key`` (see ``differences``)."""
    bounds = {"low_a": na.low[key], "high_a": na.high[key], "low_b": nb.low[key], "high_b": nb.high[key]}
    for name, values in bounds.items():
        out[f"{key}_{name}"] = values
    verdicts = [beyond_interval(*row) for row in zip(na.mean[key], nb.mean[key], *bounds.values())]
    out[f"{key}_beyond_interval"] = pd.Series(verdicts, index=out.index, dtype=object)


def _keys(results: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(results[KEY])


def relative_pct(a: pd.Series, b: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 100.0 * (b - a) / a.abs()
    return rel.where(a != 0)


def method_means(diff: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Per (column, method): means in A and in B over the categories both runs finished, their
    difference, and the relative change for times and memory; ``method`` the configuration's label
    (``_labels``) when ``diff`` has backbones.

    Only pairs with a finite value on both sides count, so a category that
    failed in one run moves neither mean.
    """
    rows = []
    both = diff[diff["in"] == "both"]
    for c in columns:
        for method, group in both.groupby(_labels(both), sort=False):
            va, vb = group[f"{c.key}_a"], group[f"{c.key}_b"]
            paired = np.isfinite(va) & np.isfinite(vb)
            mean_a, mean_b = va[paired].mean(), vb[paired].mean()
            rel = 100.0 * (mean_b - mean_a) / abs(mean_a) if c.key in RELATIVE and mean_a else np.nan
            rows.append({"column": c.key, "method": method, "categories": int(paired.sum()),
                         "mean_a": mean_a, "mean_b": mean_b, "diff": mean_b - mean_a, "rel_pct": rel})
    return pd.DataFrame(rows, columns=["column", "method", "categories", "mean_a", "mean_b", "diff", "rel_pct"])


def _fmt(value: float, fmt: str, sign: bool = False) -> str:
    if pd.isna(value):
        return "–"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, ("+" if sign else "") + fmt)


def _direction(column: Column) -> str:
    return "higher is better" if column.higher_is_better else "lower is better"


def column_markdown(diff: pd.DataFrame, column: Column) -> str:
    """One column's A, B, B - A (and %) for the rows both runs have; ``mean ± std`` for a side with
    several seeds, the interval when a side has one, and whether the change is beyond it."""
    both = diff[diff["in"] == "both"]
    table = pd.DataFrame({
        **{key: both[key] for key in row_key(diff)},
        "A": _cells(both, column, "a"), "B": _cells(both, column, "b"),
        "B − A": [_fmt(v, column.fmt, sign=True) for v in both[f"{column.key}_diff"]],
    })
    if column.key in RELATIVE:
        table["B − A (%)"] = [_fmt(v, ".1f", sign=True) for v in both[f"{column.key}_rel_pct"]]
    if f"{column.key}_beyond_interval" in both:
        table[BEYOND] = [_verdict(v) for v in both[f"{column.key}_beyond_interval"]]
    return (f"### {column.title} ({_subtitle(diff, column)})\n\n"
            f"{table.to_markdown(index=False, disable_numparse=True)}\n")



def _cells(rows: pd.DataFrame, column: Column, side: str) -> list[str]:
    """``rows``' texts of one side ("a" or "b"): ``cell_text`` of its mean, std and bounds (NaN where
    ``differences`` wrote no such column, so two plain runs read as plain numbers)."""
    def part(name: str) -> pd.Series:
        return rows.get(f"{column.key}_{name}{side}", pd.Series(np.nan, index=rows.index))

    return [cell_text(*values, column.fmt) for values in zip(part(""), part("std_"), part("low_"), part("high_"))]


def _verdict(value) -> str:
    return "–" if pd.isna(value) else ("yes" if value else "no")


def _subtitle(diff: pd.DataFrame, column: Column) -> str:
    """Direction, then what the cells show when there is more than a number: seeds and interval."""
    parts = [_direction(column)]
    if "seeds_a" in diff:
        parts.append(", ".join(_seeds_text(side, int(diff[f"seeds_{side.lower()}"].max())) for side in "AB"))
    if f"{column.key}_beyond_interval" in diff:
        parts.append("[95 % bootstrap interval over test images" + (", averaged over seeds]" if "seeds_a" in diff
                                                                    else "]"))
    return "; ".join(parts)


def _seeds_text(side: str, seeds: int) -> str:
    return f"{side}: 1 seed" if seeds <= 1 else f"{side}: mean ± std over {seeds} seeds"


def interval_markdown(diff: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    """Per interval column either run has bounds in: how many changes of the (category, method) rows
    both runs have lie beyond the 95 % interval, and which; empty when no run has an interval."""
    lines = []
    both = diff[diff["in"] == "both"]
    for c in columns:
        verdicts = both.get(f"{c.key}_beyond_interval")
        if verdicts is None:
            continue
        beyond = both[verdicts.eq(True)]
        which = ", ".join(f"{category} {method} ({_fmt(d, c.fmt, sign=True)})"
                          for category, method, d in zip(beyond["category"], _labels(beyond),
                                                         beyond[f"{c.key}_diff"]))
        lines.append(f"- {c.title}: {len(beyond)} of {int(verdicts.notna().sum())}" + (f": {which}" if which else ""))
    if not lines:
        return ""
    rule = ("A change is beyond the interval when A's value lies outside B's 95 % bootstrap interval over test "
            "images (B's value outside A's when only A has one): larger than the test-set noise of one run's value.")
    return "## Changes beyond the 95 % interval\n\n" + rule + "\n\n" + "\n".join(lines) + "\n"


def means_markdown(means: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    """Columns as rows, methods as columns, each cell "mean A → mean B (B − A[, %])"."""
    if means.empty:
        return "(no (category, method) row is in both runs)\n"
    by_key = {c.key: c for c in columns}
    methods = list(dict.fromkeys(means["method"]))
    rows = []
    for key, group in means.groupby("column", sort=False):
        c = by_key[key]
        row = {"column": f"{c.title} ({_direction(c)})"}
        for r in group.itertuples():
            change = _fmt(r.diff, c.fmt, sign=True)
            if c.key in RELATIVE:
                change += f", {_fmt(r.rel_pct, '.1f', sign=True)}%"
            row[r.method] = f"{_fmt(r.mean_a, c.fmt)} → {_fmt(r.mean_b, c.fmt)} ({change})"
        rows.append(row)
    counts = means.groupby("method", sort=False)["categories"].max()
    note = ("Mean A → mean B (B − A) over the categories where both runs have a value; categories: "
            + ", ".join(f"{m} {counts[m]}" for m in methods) + " (fewer for a column a run left empty).")
    table = pd.DataFrame(rows, columns=["column", *methods]).fillna("–")
    return f"{note}\n\n{table.to_markdown(index=False, disable_numparse=True)}\n"


def settings_markdown(settings_a: RunSettings, settings_b: RunSettings) -> str:
    """The settings that differ, since a difference in numbers often starts there."""
    a, b = settings_a.header(), settings_b.header()
    keys = list(dict.fromkeys([*a, *b]))
    changed = [(k, a.get(k, "–"), b.get(k, "–")) for k in keys if a.get(k) != b.get(k)]
    if not changed:
        return ("Same settings (data, categories, backbone, weights, image, seed, method seeds, PRO FPR limit, "
                "bootstrap and each method's hyper-parameters).\n")
    table = pd.DataFrame(changed, columns=["setting", "A", "B"]).astype(str)
    return table.to_markdown(index=False, disable_numparse=True) + "\n"


def failures_markdown(a: pd.DataFrame, b: pd.DataFrame) -> str:
    # With seeds, which seed failed matters: the others of that (category, method) may have run.
    key = BACKBONE_KEY if several_backbones(a) or several_backbones(b) else KEY
    shown = key + (["seed"] if seed_count(a) > 1 or seed_count(b) > 1 else []) + ["error"]
    parts = [results.loc[results["error"].notna()].reindex(columns=shown).assign(run=name)
             for name, results in (("A", a), ("B", b))]
    failed = pd.concat(parts, ignore_index=True)[["run", *shown]]
    return "" if failed.empty else f"## Failed rows\n\n{failed.to_markdown(index=False)}\n"


def other_data_note(settings_a: RunSettings, settings_b: RunSettings) -> str:
    """A warning first when the runs read different data sets: categories of one name are then not the
    same images, and their differences say nothing about the methods. (Another path to the same data
    set is only a line under the settings.)"""
    if settings_a.dataset == settings_b.dataset:
        return ""
    return (f"**The runs read different data sets: A {settings_a.dataset} ({settings_a.data}), B "
            f"{settings_b.dataset} ({settings_b.data}).** Rows are paired by category name; compare runs "
            "of one data set.\n")


def compare_markdown(run_a: Path, run_b: Path, a: pd.DataFrame, b: pd.DataFrame, settings_a: RunSettings,
                     settings_b: RunSettings, diff: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    # The interval summary comes first: it is the short answer to "what changed beyond the noise?".
    parts = [f"# patchbench comparison\n\n- A: {run_a}\n- B: {run_b}\n", other_data_note(settings_a, settings_b),
             interval_markdown(diff, columns),
             "## Settings that differ\n\n" + settings_markdown(settings_a, settings_b),
             "## Means per method\n\n" + means_markdown(method_means(diff, columns), columns)]
    for label, which in (("Only in A", "A only"), ("Only in B", "B only")):
        only = diff.loc[diff["in"] == which, row_key(diff)]
        if not only.empty:
            parts.append(f"## {label}\n\n{only.to_markdown(index=False)}\n")
    failures = failures_markdown(a, b)
    if failures:
        parts.append(failures)
    parts.append("## Per category and method\n\n" + "\n".join(column_markdown(diff, c) for c in columns))
    return "\n".join(part for part in parts if part)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py compare",
                                description="Differences between two run folders, per category and method: "
                                            "each metric, time and memory column in A, in B, and B - A.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the earlier or reference run folder")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run compared with it")
    p.add_argument("--output", type=Path, default=None, metavar="FILE",
                   help="Markdown file to write (default: RUN_B/compare-<RUN_A name>.md); "
                        "a CSV with the same stem is written beside it")
    return p


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    a, b = read_results(options.run_a), read_results(options.run_b)
    settings_a, settings_b = read_settings(options.run_a), read_settings(options.run_b)
    columns = compared_columns(a, b, settings_b.pro_fpr_limit)
    diff = differences(a, b, columns)
    markdown = compare_markdown(options.run_a, options.run_b, a, b, settings_a, settings_b, diff, columns)
    output = options.output or options.run_b / f"compare-{options.run_a.resolve().name}.md"
    csv = output.with_suffix(".csv")
    write_text_atomic(output, markdown)
    write_atomic(csv, lambda tmp: diff.to_csv(tmp, index=False))
    print(markdown)
    print(f"comparison written to {output} and {csv}")
    return 0
