"""Result rows -> comparison tables: one table per metric, categories as rows, methods as columns."""

from __future__ import annotations

from dataclasses import dataclass

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
    Column("pixel_auroc", "Pixel AUROC", True, ".3f"),
)
SPEED = (
    Column("extract_s", "Feature extraction (s, train + test)", False, ".2f"),
    Column("fit_s", "Fit (s)", False, ".2f"),
    Column("predict_ms_per_image", "Predict (ms / image)", False, ".1f"),
)
MEMORY = (
    Column("fit_peak_mb", "Peak RSS during fit (MB)", False, ".0f"),
    Column("predict_peak_mb", "Peak RSS during predict (MB)", False, ".0f"),
    Column("model_mb", "Model size (MB)", False, ".1f"),
)
TABLES = ACCURACY + SPEED + MEMORY


def metric_table(results: pd.DataFrame, key: str) -> pd.DataFrame:
    """``results`` rows (category, method, key) -> categories x methods, with a ``mean`` row."""
    table = results.pivot_table(index="category", columns="method", values=key, aggfunc="first", sort=False)
    table = table.reindex(columns=list(dict.fromkeys(results["method"])))
    table.loc["mean"] = table.mean(axis=0, skipna=False)
    table.index.name = "category"
    table.columns.name = None
    return table


def markdown_tables(results: pd.DataFrame, columns: tuple[Column, ...] = TABLES) -> str:
    """Every present column of ``results`` as a titled Markdown table."""
    parts = []
    for column in columns:
        if column.key not in results or results[column.key].isna().all():
            continue
        direction = "higher is better" if column.higher_is_better else "lower is better"
        table = metric_table(results, column.key)
        parts.append(f"### {column.title} ({direction})\n\n{table.to_markdown(floatfmt=column.fmt)}\n")
    return "\n".join(parts)
