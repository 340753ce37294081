"""report.html and ``bench.py compare`` on small run folders the tests write themselves."""

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import metrics
from bench.cli import main as cli_main
from datasets.mvtec import Sample
from reports.examples import Examples, mean_ranks, pick_examples
from reports.figures import (BUILTIN_COLORS, accuracy_latency_figure, examples_figure, method_colors,
                             metric_bars_figure)
from reports.html import best_cells, tables_html, write_report
from reports.predictions import prediction_path, save_predictions
from bench.versions import versions
from reports.runfolder import RunSettings, read_results
from reports.tables import ACCURACY, table_columns

CATEGORIES = ("alpha", "beta")
METHODS = ("m1", "m2")
SIZE = 24
# Known numbers: per category, per method. Image AUROC best: alpha m2, beta m1, mean m2.
IMAGE_AUROC = {("alpha", "m1"): 0.60, ("alpha", "m2"): 0.90, ("beta", "m1"): 0.80, ("beta", "m2"): 0.70}
PREDICT_MS = {"m1": 2.0, "m2": 20.0}
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def write_images(root: Path, category: str, rng) -> list[Sample]:
    """Three good and three defective test images (a bright square) with their masks."""
    samples = []
    for i in range(3):
        path = root / category / "test" / "good" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(path, 0, "good"))
    for i in range(3):
        image = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        image[4 + i:12 + i, 6:14] = 250
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        mask[4 + i:12 + i, 6:14] = 255
        path = root / category / "test" / "crack" / f"{i:03d}.png"
        mask_path = root / category / "ground_truth" / "crack" / f"{i:03d}_mask.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        Image.fromarray(mask).save(mask_path)
        samples.append(Sample(path, 1, "crack", mask_path))
    return samples


def result_row(category: str, method: str, weights: str) -> dict:
    row = {"category": category, "method": method, "backbone": "resnet18", "weights": weights,
           "image_auroc": IMAGE_AUROC[category, method]}
    for i, column in enumerate(ACCURACY[1:]):
        row[column.key] = 0.5 + 0.05 * i
    row.update(extract_s=1.0, fit_s=0.5 if method == "m1" else 0.1, predict_ms_per_image=PREDICT_MS[method],
               images_per_s=1000.0 / PREDICT_MS[method], fit_peak_mb=500.0, predict_peak_mb=510.0,
               model_mb=3.0, n_train=5, n_test=6, seed=0)
    return row


def make_run(folder: Path, data: Path, weights: str = "random", failed: tuple = ()) -> Path:
    """A run folder as the runner leaves it; categories in ``failed`` have error rows and no predictions."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    settings = RunSettings(argv=["--methods", "m1,m2"], data=str(data), categories=list(CATEGORIES),
                           backbone="resnet18", weights=weights, resize=SIZE, crop=SIZE, seed=0,
                           pro_fpr_limit=0.3, versions=versions())
    (folder / "run.json").write_text(settings.to_json())
    rows = []
    for category in CATEGORIES:
        samples = write_images(data, category, rng)
        if category in failed:
            rows += [{"category": category, "method": m, "backbone": "resnet18", "weights": weights, "seed": 0,
                      "error": f"RuntimeError: {category} ran out of memory"} for m in METHODS]
            continue
        labels = np.array([s.label for s in samples])
        masks = np.stack([np.zeros((SIZE, SIZE), np.uint8) if s.mask_path is None
                          else (np.asarray(Image.open(s.mask_path)) > 0).astype(np.uint8) for s in samples])
        for method in METHODS:
            maps = masks * rng.uniform(0.5, 1.0) + rng.uniform(0, 0.6, masks.shape)
            scores = maps.reshape(len(samples), -1).max(axis=1)
            save_predictions(prediction_path(folder, category, method), samples, labels, masks,
                             scores, maps, metrics.evaluate(labels, scores, masks, maps))
            rows.append(result_row(category, method, weights))
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("good")
    folder = make_run(base / "run", base / "data")
    path = write_report(folder)
    return folder, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("failed")
    folder = make_run(base / "run", base / "data", weights="imagenet", failed=("beta",))
    return folder, write_report(folder).read_text(encoding="utf-8")


def figures(page: str) -> dict[str, list[bytes]]:
    """figure kind -> decoded PNGs of that kind."""
    found: dict[str, list[bytes]] = {}
    for kind, data in re.findall(r'<figure class="([\w-]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"',
                                 page):
        found.setdefault(kind, []).append(base64.b64decode(data, validate=True))
    return found


def table_cells(page: str, metric: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """row -> method -> (text, highlighted) of the HTML table of ``metric``."""
    table = re.search(rf'<table class="metric" data-metric="{metric}">(.*?)</table>', page, flags=re.S).group(1)
    methods = re.findall(r"<th>([^<]*)</th>", table.split("</thead>")[0])[1:]
    out = {}
    for row, body in re.findall(r"<tr(?: class=\"mean\")?><th>([^<]*)</th>(.*?)</tr>", table.split("<tbody>")[1]):
        cells = re.findall(r'<td class="([^"]*)"[^>]*>([^<]*)</td>', body)
        out[row] = {m: (text, "best" in css.split()) for m, (css, text) in zip(methods, cells)}
    return out


def test_report_has_every_section(good_run):
    folder, page = good_run
    assert (folder / "report.html").is_file()
    assert '<h2 id="settings">Settings</h2>' in page
    for label in ("data", "backbone", "weights", "seed", "device", "python version", "numpy version",
                  "paddle version", "patchbench version"):
        assert f"<th>{label}</th>" in page, label
    for column in table_columns(0.3):
        if column.key in ("fit_gpu_peak_mb", "predict_gpu_peak_mb"):
            continue  # not in these results: no table expected
        direction = "higher is better" if column.higher_is_better else "lower is better"
        assert f'id="table-{column.key}">{column.title} <span class="direction">({direction})' in page, column.key
    kinds = figures(page)
    assert len(kinds.get("bars", [])) == 1
    assert len(kinds.get("accuracy-latency", [])) == 1
    assert len(kinds.get("curves", [])) == len(CATEGORIES)
    assert len(kinds.get("examples", [])) == len(CATEGORIES)
    for category in CATEGORIES:
        assert f'alt="ROC and PRO curves, {category}"' in page
        assert f'alt="Example test images, {category}"' in page
    assert 'id="random-weights-warning"' in page and "not comparable with published results" in page
    assert "Failures" not in page


def test_report_is_self_contained_with_valid_pngs(good_run):
    _, page = good_run
    assert not re.search(r"<script|<link|src=\"(?!data:image/png;base64,)|url\(", page)
    pngs = [png for found in figures(page).values() for png in found]
    assert len(pngs) == len(re.findall(r"<img ", page)) == 2 + 2 * len(CATEGORIES)
    for png in pngs:
        assert png.startswith(PNG_HEADER)
        with Image.open(io.BytesIO(png)) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_best_method_highlighted_per_row(good_run):
    _, page = good_run
    auroc = table_cells(page, "image_auroc")
    assert auroc["alpha"] == {"m1": ("0.600", False), "m2": ("0.900", True)}
    assert auroc["beta"] == {"m1": ("0.800", True), "m2": ("0.700", False)}
    assert auroc["mean"]["m2"] == ("0.800", True) and not auroc["mean"]["m1"][1]
    latency = table_cells(page, "predict_ms_per_image")  # lower is better
    assert latency["alpha"] == {"m1": ("2.0", True), "m2": ("20.0", False)}
    tied = table_cells(page, "extract_s")  # the same for both: nothing to mark
    assert not any(best for cells in tied.values() for _, best in cells.values())
    assert 'class="num best"' in page  # ...while rows that differ are marked


def test_best_cells_nan_ties_and_direction():
    table = pd.DataFrame({"a": [0.5, np.nan, 0.30001, np.nan, 0.4, 0.2, np.nan],
                          "b": [0.7, 0.2, 0.3, np.nan, 0.40001, 0.2, 0.2],
                          "c": [0.1, 0.1, 0.2, np.nan, 0.4, np.nan, np.nan]},
                         index=["x", "y", "z", "w", "v", "u", "s"])
    high = best_cells(table, higher_is_better=True, fmt=".3f")
    assert high.loc["x"].tolist() == [False, True, False]
    assert high.loc["y"].tolist() == [False, True, False]  # NaN is never best
    assert high.loc["z"].tolist() == [True, True, False]   # equal as printed: both marked
    assert not high.loc["w"].any()                         # an all-NaN row has no best
    assert not high.loc["v"].any()                         # all equal as printed: no best
    assert not high.loc["u"].any()                         # ...NaN aside
    assert not high.loc["s"].any()                         # one value alone is better than nothing
    low = best_cells(table, higher_is_better=False, fmt=".3f")
    assert low.loc["x"].tolist() == [False, False, True]


def test_examples_put_worst_defects_then_worst_good_images_first():
    labels = np.array([0, 0, 0, 1, 1, 1])
    # Two methods on different scales agree: image 3 is the lowest defect, image 1 the highest good one.
    scores = np.array([[0.1, 0.9, 0.2, 0.05, 0.8, 0.7],
                       [10., 95., 30., 4.0, 90., 60.]])
    ranks = mean_ranks(scores)
    assert ranks.shape == (6,) and ranks.min() >= 0 and ranks.max() <= 1
    assert pick_examples(labels, ranks, k=4).tolist() == [3, 5, 1, 2]
    assert pick_examples(np.array([1, 1, 1, 0]), np.array([0.9, 0.1, 0.5, 0.3]), k=4).tolist() == [1, 2, 0, 3]
    assert pick_examples(np.array([0, 0, 0, 0]), np.array([0.1, 0.9, 0.4, 0.2]), k=2).tolist() == [1, 2]


def test_failed_category_still_gets_a_report(failed_run):
    folder, page = failed_run
    assert '<h2 id="failures">Failures</h2>' in page
    assert "RuntimeError: beta ran out of memory" in page
    assert not (folder / "predictions" / "beta").exists()
    kinds = figures(page)
    assert len(kinds["curves"]) == len(kinds["examples"]) == 1  # alpha only
    assert 'id="category-beta"' in page and "No saved predictions" in page
    assert table_cells(page, "image_auroc")["beta"]["m1"] == ("–", False)
    assert 'id="random-weights-warning"' not in page  # imagenet weights: no banner


def test_old_folder_without_run_file_predictions_or_images(tmp_path):
    """An old run: no run.json, some predictions never saved, the data set moved away."""
    folder = make_run(tmp_path / "run", tmp_path / "data")
    (folder / "run.json").unlink()
    prediction_path(folder, "alpha", "m2").unlink()
    for saved in (folder / "predictions" / "beta").iterdir():
        saved.unlink()
    for image in (tmp_path / "data").rglob("*.png"):
        image.unlink()
    page = write_report(folder).read_text(encoding="utf-8")
    kinds = figures(page)
    assert len(kinds["curves"]) == len(kinds["examples"]) == 1  # alpha, with m1 alone
    assert 'id="category-beta"' in page and "No saved predictions" in page
    assert 'id="table-image_auroc"' in page and "could not be drawn" not in page


def write_results(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


def row(category, method, auroc, fit_s, **extra) -> dict:
    return {"category": category, "method": method, "image_auroc": auroc, "fit_s": fit_s,
            "predict_peak_mb": 100.0, **extra}


def test_compare_computes_b_minus_a(tmp_path, capsys):
    run_a = write_results(tmp_path / "run-a", [row("alpha", "m1", 0.50, 2.0), row("alpha", "m2", 0.70, 1.0),
                                               row("beta", "m1", 0.60, 4.0)])
    run_b = write_results(tmp_path / "run-b", [row("alpha", "m1", 0.75, 3.0), row("alpha", "m2", 0.70, 0.5),
                                               row("gamma", "m1", 0.90, 1.0)])
    assert cli_main(["compare", str(run_a), str(run_b)]) == 0
    markdown_path, csv_path = run_b / "compare-run-a.md", run_b / "compare-run-a.csv"
    assert markdown_path.is_file() and csv_path.is_file()
    diff = pd.read_csv(csv_path).set_index(["category", "method"])
    assert diff.loc[("alpha", "m1"), "image_auroc_diff"] == pytest.approx(0.25)
    assert diff.loc[("alpha", "m1"), "fit_s_diff"] == pytest.approx(1.0)
    assert diff.loc[("alpha", "m1"), "fit_s_rel_pct"] == pytest.approx(50.0)
    assert diff.loc[("alpha", "m2"), "fit_s_rel_pct"] == pytest.approx(-50.0)
    assert "image_auroc_rel_pct" not in diff  # relative change only for times and memory
    assert diff.loc[("beta", "m1"), "in"] == "A only" and diff.loc[("gamma", "m1"), "in"] == "B only"
    markdown = markdown_path.read_text()
    assert capsys.readouterr().out.startswith(markdown)
    assert "## Only in A" in markdown and "| beta       | m1       |" in markdown
    assert "## Only in B" in markdown and "| gamma      | m1       |" in markdown
    assert "| alpha      | m1       | 0.500 | 0.750 | +0.250  |" in markdown
    assert "2.00 → 3.00 (+1.00, +50.0%)" in markdown  # m1's mean fit time: alpha is its only pair


def test_compare_output_option_and_errors(tmp_path, capsys):
    run_a = write_results(tmp_path / "a", [row("alpha", "m1", 0.5, 1.0)])
    out = tmp_path / "reports" / "diff.md"
    assert cli_main(["compare", str(run_a), str(run_a), "--output", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".csv").is_file()
    missing = tmp_path / "no-such-run"
    assert cli_main(["compare", str(missing), str(run_a)]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["compare", str(run_a), str(empty)]) == 2
    assert str(empty / "results.csv") in capsys.readouterr().err


def with_gpu_columns(folder: Path, fit_mb: float, predict_mb: float) -> Path:
    """``folder``'s results.csv as a run on a device with (non-zero) or without (zero) a GPU records it."""
    results = pd.read_csv(folder / "results.csv")
    results["fit_gpu_peak_mb"], results["predict_gpu_peak_mb"] = fit_mb, predict_mb
    results.to_csv(folder / "results.csv", index=False)
    return folder


def test_gpu_memory_is_shown_only_for_a_run_with_a_gpu(tmp_path):
    cpu = with_gpu_columns(make_run(tmp_path / "cpu", tmp_path / "data-cpu"), 0.0, 0.0)
    page = write_report(cpu).read_text(encoding="utf-8")
    assert "Peak GPU memory" not in page and "gpu_peak_mb" not in page
    assert 'id="table-fit_peak_mb"' in page  # the other memory tables stay

    # The same rows from a GPU: the tables are there (no second report needed, tables_html decides).
    gpu = read_results(with_gpu_columns(cpu, 120.0, 80.0))
    tables = tables_html(gpu, table_columns(0.3))
    assert 'id="table-fit_gpu_peak_mb"' in tables and 'id="table-predict_gpu_peak_mb"' in tables


def test_compare_leaves_out_gpu_memory_unless_a_run_had_a_gpu(tmp_path):
    cpu_a = write_results(tmp_path / "a", [row("alpha", "m1", 0.5, 1.0, fit_gpu_peak_mb=0.0)])
    cpu_b = write_results(tmp_path / "b", [row("alpha", "m1", 0.6, 1.0, fit_gpu_peak_mb=np.nan)])
    assert cli_main(["compare", str(cpu_a), str(cpu_b)]) == 0
    assert "Peak GPU memory" not in (cpu_b / "compare-a.md").read_text()
    assert not any("gpu" in c for c in pd.read_csv(cpu_b / "compare-a.csv").columns)

    gpu_b = write_results(tmp_path / "gpu", [row("alpha", "m1", 0.6, 1.0, fit_gpu_peak_mb=300.0)])
    assert cli_main(["compare", str(cpu_a), str(gpu_b)]) == 0
    assert "Peak GPU memory during fit" in (gpu_b / "compare-a.md").read_text()


def test_a_method_keeps_its_colour_whatever_runs_beside_it():
    first = method_colors(["m1", "patchcore", "my-plugin"])
    second = method_colors(["my-plugin", "spade", "padim", "patchcore", "m1"])
    assert all(first[m] == second[m] for m in first)
    assert {m: second[m] for m in BUILTIN_COLORS} == BUILTIN_COLORS
    assert len(set(second.values())) == len(second)
    # Another process, another hash seed than this one's: the same colour (Python's hash() would differ).
    script = "from reports.figures import method_color; print(method_color('my-plugin'))"
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": seed}, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == first["my-plugin"]


def accuracy_rows(categories, latency_ms: dict[str, float]) -> pd.DataFrame:
    """Rows whose image AUROC is in 0.6-0.9 and pixel F1-max in 0.01-0.3, as on hard data."""
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"category": c, "method": m, "image_auroc": rng.uniform(0.6, 0.9),
                          "pixel_f1_max": rng.uniform(0.01, 0.3), "predict_ms_per_image": ms}
                         for c in categories for m, ms in latency_ms.items()])


def test_bars_of_small_values_get_an_axis_to_their_size():
    results = accuracy_rows(["alpha", "beta"], {"m1": 2.0, "m2": 3.0})
    columns = tuple(c for c in ACCURACY if c.key in ("image_auroc", "pixel_f1_max"))
    fig = metric_bars_figure(results, columns)
    top = {ax.get_title(): ax.get_ylim()[1] for ax in fig.axes if ax.get_visible()}
    assert top["Image AUROC"] >= 1.0  # reaches 0.5: the whole 0-1 scale
    assert results["pixel_f1_max"].max() < top["Pixel F1-max"] < 0.5


def test_latency_axis_of_one_category_has_readable_ticks():
    fig, averaged = accuracy_latency_figure(accuracy_rows(["alpha"], {"m1": 5.1, "m2": 5.4}))
    assert averaged == ["alpha"]
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    labelled = [t for t in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
                if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high]
    assert len(labelled) > 1
    assert low < 5.1 and 5.4 < high


def test_example_maps_have_a_colour_bar_per_method():
    k, size, methods = 2, 96, ["m1", "m2"]
    rng = np.random.default_rng(0)
    examples = Examples(
        names=["crack/000.png", "good/000.png"], labels=np.array([1, 0]),
        images=[rng.integers(0, 255, (size, size, 3), dtype=np.uint8), None],
        truths=[np.zeros((size, size), bool), None], methods=methods,
        maps=rng.uniform(0, 3, (len(methods), k, size, size)).astype(np.float32),
        scores=rng.uniform(0, 3, (len(methods), k)), image_thresholds=np.array([1.0, 1.5]),
        pixel_thresholds=np.array([1.0, 1.5]), map_ranges=np.array([[0.0, 3.0], [0.5, 2.0]]))
    fig = examples_figure(examples, "alpha")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == len(methods)
    fig.canvas.draw()
    ends = [(ax.get_xticklabels()[0].get_text(), ax.get_xticklabels()[-1].get_text()) for ax in bars]
    assert ends == [("0", "3"), ("0.5", "2")]  # each method's own scale, in map units


def test_bar_whiskers_are_the_interval_else_the_std_over_seeds():
    from reports.figures import whiskers
    from reports.tables import metric_tables

    rows = pd.DataFrame({"category": ["a"] * 4 + ["b"] * 4, "method": ["m", "m", "n", "n"] * 2,
                         "seed": [0, 1] * 4, "image_auroc": [0.8, 0.9, 0.6, 0.6, 0.7, 0.7, 0.5, 0.7],
                         "image_f1_max": [0.8, 0.9, 0.6, 0.6, 0.7, 0.7, 0.5, 0.7]})
    rows["image_auroc_low"], rows["image_auroc_high"] = rows["image_auroc"] - 0.1, rows["image_auroc"] + 0.2
    # interval: mean - seed-averaged low, seed-averaged high - mean; the mean row has no interval: its std
    np.testing.assert_allclose(whiskers(metric_tables(rows, "image_auroc"), "m"),
                               [[0.1, 0.1, np.std([0.75, 0.8], ddof=1)], [0.2, 0.2, np.std([0.75, 0.8], ddof=1)]])
    std_a = np.std([0.8, 0.9], ddof=1)
    np.testing.assert_allclose(whiskers(metric_tables(rows, "image_f1_max"), "m")[:, 0], [std_a, std_a])
    assert whiskers(metric_tables(rows[rows["seed"] == 0], "image_f1_max"), "m") is None
