"""Result rows -> comparison tables: one table per metric, categories as rows, methods as columns.

A run has one row per (category, method, seed). A cell is the mean over the
seeds, shown as ``mean ± std`` when there are several; the accuracy metrics
with a bootstrap interval (``<key>_low``, ``<key>_high`` in the rows) show it as
``[low, high]`` after the value, averaged over the seeds. The ``mean`` row is
the mean over categories, and its spread the std over seeds of that mean.

A run of several backbones has a row per (category, backbone, method, seed).
``configurations`` turns such rows into rows of one "method" each, the
configuration ``patchcore · wide_resnet50_2``, so every table, figure,
statistical test and comparison built on ``method`` shows the backbones side
by side without a code path of its own; every consumer calls it first.
Columns go backbone-major (all methods on the first backbone, then all on the
next, each in the run's order): the harness's question is which method is
best, and methods are only fairly compared on the same features, so each
backbone's methods sit together, and a backbone's effect on a method is the
same stride to the right in every table. Rows of one backbone are left as they
are, so those tables look as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    """A results column shown as a table: its title, whether higher is better, its number format."""

    key: str
    title: str
    higher_is_better: bool
    fmt: str
    # whether rows may carry a bootstrap interval, ``<key>_low`` and ``<key>_high``
    interval: bool = False


ACCURACY = (
    Column("image_auroc", "Image AUROC", True, ".3f", interval=True),
    Column("pixel_auroc", "Pixel AUROC (all test pixels)", True, ".3f", interval=True),
    Column("pro", "AU-PRO (MVTec protocol, FPR up to {fpr_limit})", True, ".3f", interval=True),
    Column("spro", "AU-sPRO (saturated per-region overlap, MVTec LOCO protocol, FPR up to {fpr_limit})", True,
           ".3f"),
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

# ``image_auroc.logical``: a metric on every good image and the defects of one subset a dataset scores
# apart (MVTec LOCO's logical and structural anomalies); the plain column is on every test image.
SUBSET = "."
SUBSET_METRICS = ("image_auroc", "pro", "spro")
MEAN_OF_SUBSETS = "mean_of_subsets"  # the plain mean of a row's subset values, sorted last


def table_columns(fpr_limit: float, *results: pd.DataFrame) -> tuple[Column, ...]:
    """The columns of a run's tables, titles filled in with the run's settings; with ``results``, the
    subset columns they hold follow the accuracy columns, grouped by metric."""
    accuracy = {c.key: c for c in ACCURACY}
    subsets = dict.fromkeys(key.partition(SUBSET)[2] for frame in results for key in frame.columns
                            if key.partition(SUBSET)[0] in SUBSET_METRICS and key.partition(SUBSET)[2])
    subsets = sorted(subsets, key=lambda name: name == MEAN_OF_SUBSETS)
    per_subset = tuple(replace(accuracy[metric], key=f"{metric}{SUBSET}{subset}", interval=False,
                               title=f"{accuracy[metric].title}: {subset_title(subset)}")
                       for metric in SUBSET_METRICS for subset in subsets)
    return tuple(replace(c, title=c.title.format(fpr_limit=fpr_limit)) for c in ACCURACY + per_subset + SPEED + MEMORY)


def subset_title(subset: str) -> str:
    if subset == MEAN_OF_SUBSETS:
        return "mean of the subsets' values (the publisher's 'mean')"
    return f"{subset} anomalies and every good image"


def base_metric(column: Column) -> str:
    """The key of the metric a column shows: ``pro`` for ``pro`` and for ``pro.logical``."""
    return column.key.partition(SUBSET)[0]


@dataclass(frozen=True)
class MetricTable:
    """One column of a run as categories (and ``mean``) x methods: the mean over seeds, its std over
    seeds (NaN with one seed) and the seed-averaged interval bounds (NaN without an interval)."""

    mean: pd.DataFrame
    std: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    seeds: int

    def cell(self, row, method, fmt: str) -> str:
        """``0.912``, ``0.912 ± 0.013``, ``0.912 [0.871, 0.950]`` or both, as this table has them."""
        return cell_text(self.mean.loc[row, method], self.std.loc[row, method], self.low.loc[row, method],
                         self.high.loc[row, method], fmt)

    def texts(self, fmt: str) -> pd.DataFrame:
        return pd.DataFrame({m: [self.cell(r, m, fmt) for r in self.mean.index] for m in self.mean.columns},
                            index=self.mean.index)


# The raw method name of a configuration row; ``method`` then holds the configuration's label.
METHOD_NAME = "method_name"
SEPARATOR = " · "


def several_backbones(results: pd.DataFrame) -> bool:
    """Whether the rows (category, backbone, method, ...) hold more than one backbone."""
    return "backbone" in results and results["backbone"].nunique() > 1


def configuration_label(method: str, backbone) -> str:
    """``patchcore · resnet18``; the method alone where the backbone is unknown (NaN)."""
    return str(method) if pd.isna(backbone) else f"{method}{SEPARATOR}{backbone}"


def split_label(label: str) -> tuple[str, str]:
    """``(method, backbone)`` of a configuration label, ``(label, "")`` of a plain method's name."""
    method, separator, backbone = label.rpartition(SEPARATOR)
    return (method, backbone) if separator else (label, "")


def configurations(results: pd.DataFrame, always: bool = False) -> pd.DataFrame:
    """Rows of several backbones (or of one when ``always``) with ``method`` relabelled as the configuration
    ``configuration_label(method, backbone)``, the raw name kept in ``method_name``, sorted stably by
    (category, backbone, method) in order of first appearance: backbone-major columns (module docstring).

    Other rows, and rows relabelled already, are returned as they are: every consumer may call it.
    """
    if METHOD_NAME in results or "backbone" not in results or not (always or several_backbones(results)):
        return results
    out = results.copy()
    out[METHOD_NAME] = out["method"]
    out["method"] = [configuration_label(m, b) for m, b in zip(out[METHOD_NAME], out["backbone"])]
    # factorize numbers values by first appearance; lexsort is stable and sorts on its last key first
    ranks = [pd.factorize(out[key], use_na_sentinel=False)[0] for key in (METHOD_NAME, "backbone", "category")]
    return out.iloc[np.lexsort(ranks)]


def configuration_parts(results: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    """``method`` label -> (method, backbone) as the run's prediction files are named: the backbone is
    None in rows ``configurations`` left alone (one backbone: the runner leaves it out of file names)."""
    if METHOD_NAME not in results:
        return {str(m): (str(m), None) for m in results["method"]}
    return {str(label): (str(method), None if pd.isna(backbone) else str(backbone))
            for label, method, backbone in zip(results["method"], results[METHOD_NAME], results["backbone"])}


def seed_count(results: pd.DataFrame) -> int:
    """How many seeds the rows were run with (1 for rows without a seed column)."""
    return int(results["seed"].nunique()) if "seed" in results and results["seed"].notna().any() else 1


def _by_seed(results: pd.DataFrame, key: str) -> pd.DataFrame:
    """``[(category, method), seeds]`` values of ``key``, NaN where a row failed or is missing."""
    frame = results[["category", "method"]].copy()
    frame["seed"] = results["seed"].fillna(-1) if "seed" in results else -1
    frame["value"] = pd.to_numeric(results[key], errors="coerce") if key in results else np.nan
    wide = frame.groupby(["category", "method", "seed"], sort=False)["value"].first().unstack("seed")
    pairs = pd.MultiIndex.from_product([list(dict.fromkeys(results["category"])),
                                        list(dict.fromkeys(results["method"]))], names=["category", "method"])
    return wide.reindex(pairs)


def _grid(values: pd.Series, mean_row: pd.Series) -> pd.DataFrame:
    """``(category, method)`` values and per-method mean-row values -> categories + ``mean`` x methods."""
    table = values.unstack("method")
    table = table.reindex(index=list(dict.fromkeys(values.index.get_level_values("category"))),
                          columns=list(dict.fromkeys(values.index.get_level_values("method"))))
    table.loc["mean"] = mean_row.reindex(table.columns)
    table.index.name = "category"
    table.columns.name = None
    return table


def metric_tables(results: pd.DataFrame, key: str) -> MetricTable:
    """``results`` rows (category, method, seed, key) -> a ``MetricTable``.

    NaN is never skipped: a method with a failed seed has no mean in that
    category, and one with a failed category no mean row, so a failure never
    makes a method look better.
    """
    results = configurations(results)
    wide = _by_seed(results, key)
    # mean over categories, per seed: [methods, seeds]
    per_seed = wide.groupby(level="method", sort=False).mean().where(
        ~wide.isna().groupby(level="method", sort=False).any())
    seeds = wide.shape[1]
    mean = _grid(wide.mean(axis=1, skipna=False), per_seed.mean(axis=1, skipna=False))
    std = (_grid(wide.std(axis=1, skipna=False, ddof=1), per_seed.std(axis=1, skipna=False, ddof=1))
           if seeds > 1 else mean * np.nan)
    bounds = []
    for end in ("low", "high"):
        bound = _by_seed(results, f"{key}_{end}").reindex(wide.index)
        bounds.append(_grid(bound.mean(axis=1, skipna=False), pd.Series(dtype=np.float64)))
    return MetricTable(mean, std, *bounds, seeds=seeds)


def metric_table(results: pd.DataFrame, key: str) -> pd.DataFrame:
    """The mean over seeds of ``key``: categories (and ``mean``) x methods."""
    return metric_tables(results, key).mean


def cell_text(mean: float, std: float, low: float, high: float, fmt: str) -> str:
    if pd.isna(mean):
        return "–"
    if np.isinf(mean):
        return "inf" if mean > 0 else "-inf"
    text = format(mean, fmt)
    if not pd.isna(std):
        text += f" ± {format(std, fmt)}"
    if not (pd.isna(low) or pd.isna(high)):
        text += f" [{format(low, fmt)}, {format(high, fmt)}]"
    return text


def table_subtitle(column: Column, table: MetricTable) -> str:
    """What a table's cells are: direction, then seeds and interval when the cells show them."""
    parts = ["higher is better" if column.higher_is_better else "lower is better"]
    if table.seeds > 1:
        parts.append(f"mean ± std over {table.seeds} seeds")
    if table.low.notna().any().any():
        parts.append("[95 % bootstrap interval over test images" + (", averaged over seeds]" if table.seeds > 1
                                                                    else "]"))
    return "; ".join(parts)


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
    results = configurations(results)
    parts = []
    for column in columns:
        if not has_values(results, column):
            continue
        table = metric_tables(results, column.key)
        if table.seeds > 1 or table.low.notna().any().any():
            texts = table.texts(column.fmt)
            body = texts.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * texts.shape[1])
        else:
            body = table.mean.to_markdown(floatfmt=column.fmt)  # one seed, no interval: as before seeds
        parts.append(f"### {column.title} ({table_subtitle(column, table)})\n\n{body}\n")
    if "error" in results and results["error"].notna().any():
        shown = ["category", "method", *(["seed"] if seed_count(results) > 1 else []), "error"]
        failed = results[results["error"].notna()][shown]
        parts.append(f"### Failures\n\n{failed.to_markdown(index=False)}\n")
    return "\n".join(parts)
