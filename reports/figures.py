"""Matplotlib figures of a run, each returned as PNG bytes.

Built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot,
which keeps every figure alive in a global registry and may pick an interactive
backend: neither suits a report written at the end of a benchmark or a test.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, hsv_to_rgb, to_hex, to_rgb, to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image
from scipy.ndimage import binary_erosion

from reports.examples import Examples
from reports.tables import (METHOD_NAME, Column, MetricTable, configurations, metric_table, metric_tables,
                            split_label)

DPI = 100
# Fixed, so a built-in method looks the same in every report whatever else ran beside it.
BUILTIN_COLORS = {"patchcore": "#1f77b4", "padim": "#ff7f0e", "spade": "#2ca02c"}
BACKBONE_SHADES = {"resnet18": 1.0, "wide_resnet50_2": 0.6}


def method_color(name: str) -> str:
    """The colour of method ``name`` in every figure of every report.

    Built-in methods have fixed colours. Any other name gets a hue from a
    digest of the name: the same in every run and process (``hash()`` is
    salted per process), independent of which methods a run holds. Saturation
    and value are fixed so every hue reads on white and none is the grey of a
    failed row's cross. A configuration ``patchcore · wide_resnet50_2`` is its
    method's colour times its backbone's shade: a method's bars read as one family.
    """
    method, backbone = split_label(name)
    if backbone:
        shade = BACKBONE_SHADES.get(backbone, 0.45 + 0.5 * _fraction(backbone))
        return to_hex(np.array(to_rgb(method_color(method))) * shade)
    if name in BUILTIN_COLORS:
        return BUILTIN_COLORS[name]
    return to_hex(hsv_to_rgb((_fraction(name), 0.75, 0.8)))


def _fraction(name: str) -> float:
    """A number in [0, 1) from a digest of ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") / 2**32


def method_colors(methods: list[str]) -> dict[str, str]:
    """``method_color`` of each of ``methods``."""
    return {m: method_color(m) for m in methods}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as a palette PNG.

    256 colours lose nothing visible in line plots and heat maps but make the
    file 3-4 times smaller than matplotlib's RGBA PNG; a report embeds dozens.
    The canvas is rendered once and encoded once (savefig would encode twice).
    Maximum coverage rather than median cut: median cut shares colours out by
    pixel count, so the few pixels of a colour bar lost their pure colours to
    the many half-blended ones of the overlays above it.
    """
    canvas = fig.canvas
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    fig.clear()  # frees the artists now rather than at the next garbage collection
    palette = rgb.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="png", optimize=True)
    return out.getvalue()


# An accuracy column whose largest value reaches this is drawn on the whole 0-1 axis.
FULL_SCALE_FROM = 0.5


def accuracy_top(values: np.ndarray) -> float:
    """Top of the 0-based y axis of an accuracy panel holding ``values`` (NaN allowed).

    The 0-1 scale when the values reach ``FULL_SCALE_FROM``; otherwise a bit
    above the largest value: pixel F1-max or AP of 0.01-0.3 are slivers on a
    0-1 axis, and differences between methods vanish.
    """
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return 1.02 if top >= FULL_SCALE_FROM else max(1.15 * top, 0.05)


def metric_bars_figure(results: pd.DataFrame, columns: tuple[Column, ...]) -> Figure:
    """Grouped bars, one panel per accuracy column: categories (+ mean) on x, one bar per method.

    ``results``: rows of (category, method, seed, column keys). Bars are means
    over seeds; whiskers the 95 % interval where the rows have one, else the
    std over seeds where there are several. A missing value (a failed row) is
    drawn as a grey cross at the foot of its bar's place.
    """
    results = configurations(results)
    methods = list(dict.fromkeys(results["method"]))
    colors = method_colors(methods)
    n_categories = results["category"].nunique() + 1
    ncols = 2 if n_categories <= 7 and len(columns) > 1 else 1
    nrows = -(-len(columns) // ncols)
    panel_width = max(4.5, 0.22 * n_categories * len(methods) + 1.5)
    fig = new_figure(min(panel_width * ncols, 13.0), 2.3 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    width = 0.8 / len(methods)
    for ax, column in zip(axes, columns):
        tables = metric_tables(results, column.key)
        table = tables.mean
        x = np.arange(len(table.index))
        for j, method in enumerate(methods):
            values = table[method].to_numpy(dtype=np.float64)
            offset = x - 0.4 + width * (j + 0.5)
            ax.bar(offset, np.nan_to_num(values, nan=0.0), width, color=colors[method],
                   label=method if ax is axes[0] else None)
            ax.errorbar(offset, values, yerr=whiskers(tables, method), fmt="none", ecolor="0.25",
                        elinewidth=0.7, capsize=1.5)
            failed = np.isnan(values)
            ax.plot(offset[failed], np.zeros(failed.sum()), "x", color="0.4", markersize=5)
        ax.set_title(column.title, fontsize=9)
        ax.set_xticks(x, [str(c) for c in table.index], fontsize=7,
                      rotation=30 if len(x) > 6 else 0, ha="right" if len(x) > 6 else "center")
        ax.set_ylim(0, accuracy_top(table.to_numpy(dtype=np.float64)))
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        # The mean is not one more category: a line keeps it from being read as one.
        ax.axvline(len(x) - 1.5, color="0.6", linewidth=0.8)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    # a legend column per backbone (configurations come backbone-major): one row of them would not fit
    ncols = results["backbone"].nunique() if METHOD_NAME in results else len(methods)
    fig.legend(loc="outside upper center", ncols=max(ncols, 1), fontsize=8, frameon=False)
    return fig


def whiskers(tables: MetricTable, method: str) -> np.ndarray | None:
    """``[2, rows]`` distances below and above the mean: the interval's where there is one, else the std's."""
    mean = tables.mean[method].to_numpy(dtype=np.float64)
    low, high = (tables.low[method].to_numpy(dtype=np.float64), tables.high[method].to_numpy(dtype=np.float64))
    std = tables.std[method].to_numpy(dtype=np.float64)
    below = np.where(np.isnan(low), std, mean - low)
    above = np.where(np.isnan(high), std, high - mean)
    if np.isnan(below).all():
        return None
    return np.clip(np.nan_to_num(np.stack([below, above])), 0.0, None)


# The latency axis spans at least this ratio (max / min): at least three of its 1-2-5 ticks are labelled.
MIN_LATENCY_SPAN = 16.0


def latency_limits(latencies: np.ndarray) -> tuple[float, float] | None:
    """x limits of the log latency axis for ``latencies`` (ms), or None when none is finite and > 0.

    The values padded by a factor 1.6 each way, widened about their geometric
    centre to ``MIN_LATENCY_SPAN``: one category, or methods of similar speed,
    would leave a span without a single 1, 2 or 5 in it, and so an axis with
    one tick or none.
    """
    finite = latencies[np.isfinite(latencies) & (latencies > 0)]
    if not finite.size:
        return None
    low, high = finite.min() / 1.6, finite.max() * 1.6
    if high / low < MIN_LATENCY_SPAN:
        centre, half = np.sqrt(low * high), np.sqrt(MIN_LATENCY_SPAN)
        low, high = centre / half, centre * half
    return float(low), float(high)


def accuracy_latency_figure(results: pd.DataFrame) -> tuple[Figure, list[str]]:
    """Mean image AUROC against mean predict time per image (log x), one big point per method.

    Means run over the categories every method finished, so a method that
    failed somewhere is not compared on an easier subset. Faint points are the
    single categories. Returns the figure and the categories averaged over.
    """
    auroc = metric_table(results, "image_auroc").drop(index="mean")
    latency = metric_table(results, "predict_ms_per_image").drop(index="mean")
    complete = auroc.notna().all(axis=1) & latency.notna().all(axis=1)
    categories = [str(c) for c in auroc.index[complete]]
    methods = list(auroc.columns)
    colors = method_colors(methods)
    fig = new_figure(6.0, 3.8)
    ax = fig.subplots()
    for method in methods:
        x, y = latency.loc[complete, method], auroc.loc[complete, method]
        ax.scatter(x, y, s=14, color=to_rgba(colors[method], 0.35), linewidths=0)
        if len(categories):
            ax.scatter([x.mean()], [y.mean()], s=80, color=colors[method], edgecolors="black",
                       linewidths=0.6, zorder=3, label=method)
            ax.annotate(method, (x.mean(), y.mean()), textcoords="offset points", xytext=(7, 5), fontsize=8)
    ax.set_xscale("log")
    # Plain numbers at 1, 2 and 5 of each decade: matplotlib's default 2x10^0 labels crowd on a short axis.
    ax.xaxis.set_major_formatter(FuncFormatter(_log_label))
    ax.xaxis.set_minor_formatter(FuncFormatter(_log_label))
    limits = latency_limits(latency.loc[complete].to_numpy(dtype=np.float64))
    if limits:
        ax.set_xlim(*limits)
    ax.set_xlabel("predict time (ms / image, log scale)", fontsize=8)
    ax.set_ylabel("image AUROC", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.tick_params(which="both", labelsize=7)
    ax.grid(alpha=0.3, which="both")
    noun = "category" if len(categories) == 1 else "categories"
    ax.set_title(f"Mean over {len(categories)} {noun} (large points); single categories (small)",
                 fontsize=9)
    if len(categories):
        ax.legend(fontsize=8, loc="lower right")
    return fig, categories


def _log_label(value: float, _position) -> str:
    leading = f"{value:.0e}"[0]
    return f"{value:g}" if leading in "125" else ""


def curves(predictions: dict[str, dict], fpr_limit: float, category: str,
           image_auroc: dict[str, float], au_pro: dict[str, float]) -> bytes:
    """Image ROC (left) and per-region overlap against pixel FPR (right) of one category.

    ``predictions``: method -> saved prediction (``roc_fpr``/``roc_tpr``, ``pro_fpr``/``pro_overlap``).
    The PRO panel shades the FPR range beyond ``fpr_limit``, which AU-PRO leaves out; it is empty
    for a category without masks (AU-PRO NaN).
    """
    colors = method_colors(list(predictions))
    fig = new_figure(8.0, 3.0)
    roc, pro = fig.subplots(1, 2)
    for method, pred in predictions.items():
        roc.plot(pred["roc_fpr"], pred["roc_tpr"], color=colors[method], linewidth=1.4,
                 label=f"{method} (AUROC {image_auroc.get(method, np.nan):.3f})")
        if np.isfinite(au_pro.get(method, np.nan)):  # NaN: the category has no masks, so no PRO curve
            pro.plot(pred["pro_fpr"], pred["pro_overlap"], color=colors[method], linewidth=1.4,
                     label=f"{method} (AU-PRO {au_pro[method]:.3f})")
    roc.plot([0, 1], [0, 1], ":", color="0.5", linewidth=0.8)
    roc.set_title(f"{category}: image ROC", fontsize=9)
    roc.set_xlabel("false positive rate (good images)", fontsize=8)
    roc.set_ylabel("true positive rate (defective images)", fontsize=8)
    pro.axvspan(fpr_limit, 1.0, color="0.92", zorder=0)
    pro.axvline(fpr_limit, color="0.3", linestyle="--", linewidth=0.9)
    pro.text(fpr_limit, 0.03, f" FPR limit {fpr_limit:g}", fontsize=7, color="0.3")
    pro.set_title(f"{category}: PRO (per-region overlap)", fontsize=9)
    pro.set_xlabel("pixel false positive rate", fontsize=8)
    pro.set_ylabel("mean overlap per defect region", fontsize=8)
    for ax in (roc, pro):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right") if ax.get_legend_handles_labels()[0] else None  # no masks
    return to_png(fig)


PANEL_GAP = 4     # pixels between panels of a row
ROW_GAP = 18      # pixels between rows: room for the score under each map
MASK_EDGE = np.array([255, 40, 40], dtype=np.uint8)
MAP_COLORMAP = "jet"


def map_norm(low: float, high: float) -> Normalize:
    """A method's map colour scale, ``low`` (blue) to ``high`` (red), clipped; the overlays and their
    colour bar share it. Constant maps (``high <= low``) get a range of 1 rather than a division by 0."""
    return Normalize(low, high if high > low else low + 1.0, clip=True)


def overlay(image: np.ndarray | None, heat: np.ndarray, low: float, high: float) -> np.ndarray:
    """``[S, S, 3]`` uint8 image and ``[S, S]`` map -> the map in 'jet' blended half over the image.

    The map is coloured on ``map_norm(low, high)``, in float64; without an image
    (``None``: the file is gone) the colours are blended with themselves. The
    one anomaly-map overlay: the report's examples and ``bench.py predict`` draw it.
    """
    colored = colormaps[MAP_COLORMAP](map_norm(low, high)(heat))[..., :3] * 255.0
    base = image.astype(np.float64) if image is not None else colored
    return (0.5 * base + 0.5 * colored).round().astype(np.uint8)


def mask_panel(predicted: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """``[S, S]`` bool prediction -> ``[S, S, 3]`` uint8, white on black, the ground truth's edge in red."""
    panel = np.repeat((predicted.astype(np.uint8) * 255)[..., None], 3, axis=2)
    if truth is not None and truth.any():
        edge = truth & ~binary_erosion(truth, iterations=1, border_value=0)
        panel[edge] = MASK_EDGE
    return panel


def missing_panel(size: int) -> np.ndarray:
    """A hatched grey square for a file that could not be read."""
    yy, xx = np.mgrid[:size, :size]
    return np.where(((xx + yy) // 6) % 2 == 0, 200, 225).astype(np.uint8)[..., None].repeat(3, axis=2)


def examples_mosaic(examples: Examples) -> np.ndarray:
    """All panels of the examples figure as one ``[H, W, 3]`` uint8 picture.

    Drawn as one array rather than one matplotlib axes per panel: ~40 axes per
    category made a report of 15 categories take half a minute.
    """
    k, m = len(examples.names), len(examples.methods)
    size = examples.maps.shape[-1]
    ncols = 2 + 2 * m
    mosaic = np.full((k * (size + ROW_GAP), ncols * (size + PANEL_GAP) - PANEL_GAP, 3), 255, dtype=np.uint8)
    for row in range(k):
        image, truth = examples.images[row], examples.truths[row]
        panels = [image if image is not None else missing_panel(size),
                  np.repeat((truth.astype(np.uint8) * 255)[..., None], 3, axis=2) if truth is not None
                  else missing_panel(size)]
        for j in range(m):
            heat = examples.maps[j, row]
            panels.append(overlay(image, heat, *examples.map_ranges[j]))
            panels.append(mask_panel(heat > examples.pixel_thresholds[j], truth))
        top = row * (size + ROW_GAP)
        for col, panel in enumerate(panels):
            left = col * (size + PANEL_GAP)
            mosaic[top:top + size, left:left + size] = panel
    return mosaic


COLORBAR_HEIGHT = 8  # pixels of each method's colour bar under the mosaic
COLORBAR_ROOM = 34   # pixels of margin below the mosaic: the bars and their tick labels


def examples_figure(examples: Examples, category: str) -> Figure:
    """One row per chosen test image: image, ground truth, then per method its map and thresholded mask.

    Maps are overlaid on the image with one colour scale per method over the
    whole category, so rows can be compared; a colour bar under each method's
    map column gives that scale in map units. Masks are ``map > pixel_threshold``
    (the method's pixel F1-max threshold) with the ground truth's edge in red.
    """
    mosaic = examples_mosaic(examples)
    size = examples.maps.shape[-1]
    height, width = mosaic.shape[:2]
    left, right, top, bottom = 110, 10, 44, 4 + COLORBAR_ROOM  # pixels of margin for the labels
    total_w, total_h = left + width + right, top + height + bottom
    fig = Figure(figsize=(total_w / DPI, total_h / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / total_w, bottom / total_h, width / total_w, height / total_h))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    label_panels(ax, examples)
    for j in range(len(examples.methods)):
        # Under the method's map column, in figure fractions from the pixel layout above.
        x = left + (2 + 2 * j) * (size + PANEL_GAP)
        box = (x / total_w, (COLORBAR_ROOM - COLORBAR_HEIGHT) / total_h, size / total_w, COLORBAR_HEIGHT / total_h)
        map_colorbar(fig, box, *examples.map_ranges[j])
    fig.text(4 / total_w, (COLORBAR_ROOM - COLORBAR_HEIGHT / 2) / total_h, "map colour scale", ha="left",
             va="center", fontsize=7)
    fig.text(0.5, 1 - 4 / total_h, f"{category}: worst-scored defects, then highest-scored good images",
             ha="center", va="top", fontsize=9)
    return fig


def label_panels(ax, examples: Examples) -> None:
    """Column titles above, image names left of and scores under the panels of ``examples_mosaic``."""
    size = examples.maps.shape[-1]
    step = size + PANEL_GAP
    # a configuration's backbone on a line of its own: one line runs into the next column's title
    titles = ["image", "ground truth"] + [f"{method} {kind}" + (f"\n{backbone}" if backbone else "")
                                          for method, backbone in map(split_label, examples.methods)
                                          for kind in ("map", "mask")]
    for col, title in enumerate(titles):
        ax.text(col * step + size / 2, -5, title, ha="center", va="bottom", fontsize=8 - title.count("\n"),
                clip_on=False)
    for row, name in enumerate(examples.names):
        top_px = row * (size + ROW_GAP)
        kind = "defect" if examples.labels[row] else "good"
        ax.text(-8, top_px + size / 2, f"{kind}\n{name}", ha="right", va="center", fontsize=8, clip_on=False)
        for j in range(len(examples.methods)):
            score, threshold = examples.scores[j, row], examples.image_thresholds[j]
            verdict = "flagged" if score >= threshold else "passed"
            ax.text((2 + 2 * j) * step + size / 2, top_px + size + 2, f"score {score:.3g} ({verdict})",
                    ha="center", va="top", fontsize=7)


def map_colorbar(fig: Figure, box: tuple[float, float, float, float], low: float, high: float) -> None:
    """A horizontal colour bar of ``map_norm(low, high)`` in ``box`` (figure fractions), ticks at both
    ends and the middle. The overlays blend it half with the image, so it is their hue, not their shade."""
    norm = map_norm(low, high)
    cax = fig.add_axes(box, label="<colorbar>")  # matplotlib's own label for colour bar axes
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=MAP_COLORMAP), cax=cax, orientation="horizontal")
    ticks = np.linspace(norm.vmin, norm.vmax, 3)
    bar.set_ticks(ticks, labels=[f"{v:.3g}" for v in ticks])
    bar.ax.tick_params(labelsize=6, length=2, pad=1)
    bar.outline.set_linewidth(0.5)
