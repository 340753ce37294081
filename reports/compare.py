"""``python bench.py compare RUN_A RUN_B``: what changed between two runs, per (category, method).

Writes ``RUN_B/compare-<RUN_A name>.md`` (or ``--output FILE``) and a CSV of the
same numbers beside it: for every metric, time and memory column the value in
A, in B, and B - A (plus the relative change for times and memory, where a
ratio is what people quote).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from reports.atomic import write_atomic, write_text_atomic
from reports.runfolder import RunSettings, read_results, read_settings
from reports.tables import MEMORY, SPEED, Column, has_values, table_columns

KEY = ["category", "method"]
RELATIVE = {c.key for c in SPEED + MEMORY}


def compared_columns(a: pd.DataFrame, b: pd.DataFrame, fpr: float) -> tuple[Column, ...]:
    """The table columns either run has values in (``has_values``: no GPU columns without a GPU), in the
    tables' order."""
    return tuple(c for c in table_columns(fpr) if has_values(a, c) or has_values(b, c))


def _numbers(results: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    frame = results.drop_duplicates(KEY, keep="last").set_index(KEY)
    return pd.DataFrame({c.key: pd.to_numeric(frame[c.key], errors="coerce") if c.key in frame
                         else np.nan for c in columns}, index=frame.index)


def differences(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """One row per (category, method) of either run: ``in`` ("both", "A only", "B only"), then for
    each column ``<key>_a``, ``<key>_b``, ``<key>_diff`` (B - A) and, for times and memory,
    ``<key>_rel_pct`` (100 (B - A) / A; NaN when A is 0).

    Rows keep A's order, then B's new rows.
    """
    na, nb = _numbers(a, columns), _numbers(b, columns)
    index = na.index.append(nb.index[~nb.index.isin(na.index)])
    na, nb = na.reindex(index), nb.reindex(index)
    out = pd.DataFrame(index=index)
    out["in"] = np.where(index.isin(_keys(a)) & index.isin(_keys(b)), "both",
                         np.where(index.isin(_keys(a)), "A only", "B only"))
    for c in columns:
        va, vb = na[c.key], nb[c.key]
        out[f"{c.key}_a"], out[f"{c.key}_b"], out[f"{c.key}_diff"] = va, vb, vb - va
        if c.key in RELATIVE:
            out[f"{c.key}_rel_pct"] = relative_pct(va, vb)
    return out.reset_index()


def _keys(results: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(results[KEY])


def relative_pct(a: pd.Series, b: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 100.0 * (b - a) / a.abs()
    return rel.where(a != 0)


def method_means(diff: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Per (column, method): means in A and in B over the categories both runs finished, their
    difference, and the relative change for times and memory.

    Only pairs with a finite value on both sides count, so a category that
    failed in one run moves neither mean.
    """
    rows = []
    both = diff[diff["in"] == "both"]
    for c in columns:
        for method, group in both.groupby("method", sort=False):
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
    """One column's A, B, B - A (and %) for the rows both runs have."""
    both = diff[diff["in"] == "both"]
    table = pd.DataFrame({
        "category": both["category"], "method": both["method"],
        "A": [_fmt(v, column.fmt) for v in both[f"{column.key}_a"]],
        "B": [_fmt(v, column.fmt) for v in both[f"{column.key}_b"]],
        "B − A": [_fmt(v, column.fmt, sign=True) for v in both[f"{column.key}_diff"]],
    })
    if column.key in RELATIVE:
        table["B − A (%)"] = [_fmt(v, ".1f", sign=True) for v in both[f"{column.key}_rel_pct"]]
    return f"### {column.title} ({_direction(column)})\n\n{table.to_markdown(index=False, disable_numparse=True)}\n"


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
        return ("Same settings (data, categories, backbone, weights, image, seed, PRO FPR limit and "
                "each method's hyper-parameters).\n")
    table = pd.DataFrame(changed, columns=["setting", "A", "B"]).astype(str)
    return table.to_markdown(index=False, disable_numparse=True) + "\n"


def failures_markdown(a: pd.DataFrame, b: pd.DataFrame) -> str:
    parts = [results.loc[results["error"].notna(), KEY + ["error"]].assign(run=name)
             for name, results in (("A", a), ("B", b))]
    failed = pd.concat(parts, ignore_index=True)[["run", *KEY, "error"]]
    return "" if failed.empty else f"## Failed rows\n\n{failed.to_markdown(index=False)}\n"


def compare_markdown(run_a: Path, run_b: Path, a: pd.DataFrame, b: pd.DataFrame, settings_a: RunSettings,
                     settings_b: RunSettings, diff: pd.DataFrame, columns: tuple[Column, ...]) -> str:
    parts = [f"# patchbench comparison\n\n- A: {run_a}\n- B: {run_b}\n",
             "## Settings that differ\n\n" + settings_markdown(settings_a, settings_b),
             "## Means per method\n\n" + means_markdown(method_means(diff, columns), columns)]
    for label, which in (("Only in A", "A only"), ("Only in B", "B only")):
        only = diff.loc[diff["in"] == which, KEY]
        if not only.empty:
            parts.append(f"## {label}\n\n{only.to_markdown(index=False)}\n")
    failures = failures_markdown(a, b)
    if failures:
        parts.append(failures)
    parts.append("## Per category and method\n\n" + "\n".join(column_markdown(diff, c) for c in columns))
    return "\n".join(parts)


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
