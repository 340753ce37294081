"""Result rows -> comparison tables: one table per metric, categories as rows, methods as columns."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd


@dataclass(frozen=True)
class Column:
    """A results column shown as a table: its title, whether higher is better, its number format."""

    key: str
    title: str
    higher_is_better: bool
    fmt: str


ACCURACY = (
    Column("image_auroc", "Image AUROC", True, ".3f"),
    Column("pixel_auroc", "Pixel AUROC (all test pixels)", True, ".3f"),
    Column("pro", "AU-PRO (MVTec protocol, FPR up to {fpr_limit})", True, ".3f"),
    Column("image_f1_max", "Image F1-max", True, ".3f"),
    Column("pixel_f1_max", "Pixel F1-max", True, ".3f"),
    Column("image_ap", "Image average precision", True, ".3f"),
    Column("pixel_ap", "Pixel average precision", True, ".3f"),
)
SPEED = (
    Column("extract_s", "Feature extraction (s, train + test, shared by all methods)", False, ".2f"),
    Column("fit_s", "Fit (s)", False, ".2f"),
    Column("predict_ms_per_image", "Predict (ms / image)", False, ".1f"),
    Column("images_per_s", "Predict throughput (images / s)", True, ".1f"),
)
MEMORY = (
    Column("fit_peak_mb", "Peak RSS during fit (MB)", False, ".0f"),
    Column("predict_peak_mb", "Peak RSS during predict (MB)", False, ".0f"),
    Column("fit_gpu_peak_mb", "Peak GPU memory during fit (MB)", False, ".0f"),
    Column("predict_gpu_peak_mb", "Peak GPU memory during predict (MB)", False, ".0f"),
    Column("model_mb", "Model size (MB)", False, ".2f"),
)
TABLES = ACCURACY + SPEED + MEMORY


def table_columns(fpr_limit: float) -> tuple[Column, ...]:
    """The columns of a run's tables, titles filled in with the run's settings."""
    return tuple(replace(c, title=c.title.format(fpr_limit=fpr_limit)) for c in TABLES)


def metric_table(results: pd.DataFrame, key: str) -> pd.DataFrame:
    """``results`` rows (category, method, key) -> categories x methods, with a ``mean`` row.

    The mean is NaN for a method that has no value in some category, so a
    failed category never makes a method look better on average.
    """
    table = results.pivot_table(index="category", columns="method", values=key, aggfunc="first",
                                sort=False, dropna=False)
    table = table.reindex(index=list(dict.fromkeys(results["category"])),
                          columns=list(dict.fromkeys(results["method"])))
    table.loc["mean"] = table.mean(axis=0, skipna=False)
    table.index.name = "category"
    table.columns.name = None
    return table


def has_values(results: pd.DataFrame, column: Column) -> bool:
    """Whether ``results`` recorded anything worth a table in ``column``.

    Not when the column is missing or all NaN (failed rows, older runs). The
    GPU memory columns need a non-zero value too: without a GPU the probes
    record 0, and a table of zeros would read as "used no GPU memory" (and even
    mark it best). Every table writer (results.md, report.html, compare) asks
    this one rule.
    """
    if column.key not in results or results[column.key].isna().all():
        return False
    return not column.key.endswith("gpu_peak_mb") or bool(results[column.key].fillna(0).any())


def markdown_tables(results: pd.DataFrame, columns: tuple[Column, ...] = TABLES) -> str:
    """Every column of ``results`` that ``has_values`` as a titled Markdown table, failures listed last."""
    parts = []
    for column in columns:
        if not has_values(results, column):
            continue
        direction = "higher is better" if column.higher_is_better else "lower is better"
        table = metric_table(results, column.key)
        parts.append(f"### {column.title} ({direction})\n\n{table.to_markdown(floatfmt=column.fmt)}\n")
    if "error" in results and results["error"].notna().any():
        failed = results[results["error"].notna()][["category", "method", "error"]]
        parts.append(f"### Failures\n\n{failed.to_markdown(index=False)}\n")
    return "\n".join(parts)
