"""Reports of a run of several backbones: configurations side by side in results.md, report.html and compare.

A hand-written run folder of 2 backbones x 2 methods x 2 categories x 1 seed
(predictions named ``<method>.<backbone>.npz``), and a one-backbone run whose
results.md must read exactly as before backbones were an axis.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import metrics
from reports.compare import compared_columns, differences
from reports.compare import main as compare_main
from reports.figures import BUILTIN_COLORS, method_color
from reports.html import load_category, write_report
from reports.predictions import prediction_path, save_predictions
from reports.runfolder import RunFolder, RunSettings, read_results, read_settings
from reports.statistics import statistics_html
from reports.tables import configuration_parts, configurations, metric_tables
from report_fixtures import tiny_test_set

CATEGORIES = ("alpha", "beta")
BACKBONES = ("resnet18", "wide_resnet50_2")
METHODS = ("m1", "m2")
# Backbone-major: both methods on resnet18, then both on wide_resnet50_2 (reports.tables' docstring).
LABELS = ["m1 · resnet18", "m2 · resnet18", "m1 · wide_resnet50_2", "m2 · wide_resnet50_2"]
# (category, backbone, method) -> the Image AUROC the row records; every value distinct.
IMAGE_AUROC = {("alpha", "resnet18", "m1"): 0.61, ("alpha", "resnet18", "m2"): 0.72,
               ("alpha", "wide_resnet50_2", "m1"): 0.83, ("alpha", "wide_resnet50_2", "m2"): 0.94,
               ("beta", "resnet18", "m1"): 0.65, ("beta", "resnet18", "m2"): 0.70,
               ("beta", "wide_resnet50_2", "m1"): 0.87, ("beta", "wide_resnet50_2", "m2"): 0.90}
STRENGTH = {"m1": 2.0, "m2": 0.5}  # how far the saved scores separate the classes (unit noise)
GOOD = BAD = 8
SIDE = 8
RESAMPLES = 50


def several_settings() -> RunSettings:
    return RunSettings(argv=["--backbone", ",".join(BACKBONES)], data="/data", dataset="mvtec_ad",
                       categories=list(CATEGORIES),
                       backbone=BACKBONES[0], backbones=list(BACKBONES),
                       weights="resnet18: random, wide_resnet50_2: imagenet", seed=0, seeds=[0],
                       bootstrap=RESAMPLES, methods={m: {} for m in METHODS})


def make_run(folder: Path) -> Path:
    """The run folder as the runner leaves it, rows written method-major to show the order is the tables'."""
    folder.mkdir(parents=True)
    labels, masks, samples = tiny_test_set(GOOD, BAD, SIDE)
    rng = np.random.default_rng(0)
    rows = []
    for method, backbone, category in itertools.product(METHODS, BACKBONES, CATEGORIES):
        maps = STRENGTH[method] * masks + rng.standard_normal(masks.shape)
        scores = STRENGTH[method] * labels + rng.standard_normal(len(labels))
        save_predictions(prediction_path(folder, category, method, None, backbone), samples, labels, masks,
                         scores, maps, metrics.evaluate(labels, scores, masks, maps))
        rows.append({"category": category, "backbone": backbone, "method": method, "seed": 0,
                     "weights": "random" if backbone == "resnet18" else "imagenet",
                     "image_auroc": IMAGE_AUROC[category, backbone, method],
                     "fit_s": 1.0 + BACKBONES.index(backbone)})
    (folder / "run.json").write_text(several_settings().to_json(), encoding="utf-8")
    RunFolder(folder, several_settings()).write(rows)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("backbones") / "run")


def markdown_table(markdown: str, title: str) -> dict[str, dict[str, str]]:
    """row -> column -> text of the results.md table whose heading starts with ``title``."""
    block = markdown.split(f"### {title}")[1].split("###")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    head = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head[1:], cells[1:]))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_settings_name_every_backbone_and_read_back(run):
    settings = read_settings(run)
    assert settings == several_settings() and settings.several_backbones
    assert settings.header()["backbone"] == "resnet18, wide_resnet50_2"
    assert '"format_version": 3' in (run / "run.json").read_text()
    one = RunSettings(backbone="resnet18")
    assert one.header()["backbone"] == "resnet18" and not one.several_backbones
    assert '"format_version": 2' in one.to_json()


def test_prediction_file_names():
    run_dir = Path("run")
    assert prediction_path(run_dir, "c", "m") == run_dir / "predictions" / "c" / "m.npz"
    assert prediction_path(run_dir, "c", "m", 3) == run_dir / "predictions" / "c" / "m.seed3.npz"
    assert prediction_path(run_dir, "c", "m", backbone="wide_resnet50_2").name == "m.wide_resnet50_2.npz"
    assert prediction_path(run_dir, "c", "m", 3, "resnet18").name == "m.resnet18.seed3.npz"


def test_results_md_shows_four_configurations_with_their_numbers(run):
    markdown = (run / "results.md").read_text(encoding="utf-8")
    assert "- backbone: resnet18, wide_resnet50_2\n" in markdown
    assert "- weights: resnet18: random, wide_resnet50_2: imagenet\n" in markdown
    auroc = markdown_table(markdown, "Image AUROC")
    assert list(auroc) == [*CATEGORIES, "mean"]
    assert list(auroc["alpha"]) == LABELS
    for (category, backbone, method), value in IMAGE_AUROC.items():
        assert auroc[category][f"{method} · {backbone}"] == f"{value:.3f}"
    for backbone, method in itertools.product(BACKBONES, METHODS):
        mean = np.mean([IMAGE_AUROC[c, backbone, method] for c in CATEGORIES])
        assert auroc["mean"][f"{method} · {backbone}"] == f"{mean:.3f}"
    fit = markdown_table(markdown, "Fit (s)")
    assert [fit["mean"][label] for label in LABELS] == ["1.00", "1.00", "2.00", "2.00"]


def test_configurations_keep_the_method_and_backbone(run):
    results = read_results(run)
    shown = configurations(results)
    assert list(dict.fromkeys(shown["method"])) == LABELS
    assert configurations(shown) is shown  # every consumer may call it again
    assert configuration_parts(shown)["m2 · wide_resnet50_2"] == ("m2", "wide_resnet50_2")
    assert list(metric_tables(results, "image_auroc").mean.columns) == LABELS
    one = results[results["backbone"] == "resnet18"]
    assert configurations(one) is one and configuration_parts(one)["m1"] == ("m1", None)


def test_report_finds_every_configurations_predictions_and_pairs_them(run):
    page = write_report(run).read_text(encoding="utf-8")
    assert "No saved predictions" not in page and "could not be drawn" not in page
    for category in CATEGORIES:
        assert set(load_category(run, read_results(run), category, read_settings(run))) == set(LABELS)
        assert f'alt="ROC and PRO curves, {category}"' in page and f'alt="Example test images, {category}"' in page
    head = re.search(r'<table class="metric" data-metric="image_auroc"><thead>(.*?)</thead>', page).group(1)
    assert re.findall(r"<th>([^<]*)</th>", head)[1:] == LABELS
    paired = set(re.findall(r'<tr data-category="([^"]*)" data-first="([^"]*)" data-second="([^"]*)"', page))
    assert paired == {(c, a, b) for c in CATEGORIES for a, b in itertools.combinations(LABELS, 2)}
    wilcoxon = re.search(r'<table class="wilcoxon" data-metric="image_auroc">(.*?)</table>', page, re.S).group(1)
    assert set(re.findall(r'<tr data-first="([^"]*)" data-second="([^"]*)">', wilcoxon)) == set(
        itertools.combinations(LABELS, 2))
    assert "grouped by backbone" in page
    assert "Random here: resnet18.</div>" in page  # its rows say random; wide_resnet50_2's say imagenet


def test_statistics_of_one_backbones_rows_still_find_their_files(run):
    """Rows of one backbone of a run of several: the settings say the files are named with the backbone."""
    results = read_results(run)
    page = statistics_html(run, results[results["backbone"] == "wide_resnet50_2"], read_settings(run))
    paired = set(re.findall(r'<tr data-category="([^"]*)" data-first="([^"]*)" data-second="([^"]*)"', page))
    assert paired == {(c, "m1 · wide_resnet50_2", "m2 · wide_resnet50_2") for c in CATEGORIES}
    assert "no usable predictions" not in page


def test_compare_with_itself_keeps_every_backbone_row(run, tmp_path):
    results = read_results(run)
    columns = compared_columns(results, results, 0.3)
    diff = differences(results, results, columns)
    assert list(diff.columns[:3]) == ["category", "backbone", "method"]
    assert len(diff) == 8 and len(diff[["category", "backbone", "method"]].drop_duplicates()) == 8
    assert (diff["in"] == "both").all()
    assert (diff[[f"{c.key}_diff" for c in columns]] == 0).all().all()
    keyed = diff.set_index(["category", "backbone", "method"])["image_auroc_a"]
    assert keyed.to_dict() == pytest.approx(IMAGE_AUROC)
    output = tmp_path / "compare.md"
    assert compare_main([str(run), str(run), "--output", str(output)]) == 0
    markdown = output.read_text(encoding="utf-8")
    assert re.search(r"\| category\s+\| backbone\s+\| method\s+\| A", markdown)
    assert all(label in markdown.split("## Means per method")[1].split("##")[0] for label in LABELS)


def test_compare_with_a_one_backbone_run_meets_the_same_backbone(run, tmp_path):
    one = read_results(run)
    one = one[one["backbone"] == "resnet18"]
    folder = tmp_path / "one"
    folder.mkdir()
    one.to_csv(folder / "results.csv", index=False)
    diff = differences(read_results(folder), read_results(run), compared_columns(one, one, 0.3))
    both = diff[diff["in"] == "both"]
    assert set(both["backbone"]) == {"resnet18"} and len(both) == 4 and (both["image_auroc_diff"] == 0).all()
    assert set(diff.loc[diff["in"] == "B only", "backbone"]) == {"wide_resnet50_2"}


def test_configuration_colours_are_their_methods_shades():
    assert method_color("patchcore · resnet18") == BUILTIN_COLORS["patchcore"]
    wide = method_color("patchcore · wide_resnet50_2")
    assert wide != BUILTIN_COLORS["patchcore"] and method_color("x · y") == method_color("x · y")


ONE_BACKBONE_MD = (
    "# patchbench results\n\n- data: /data\n- categories: alpha, beta, gamma\n- backbone: resnet18\n"
    "- weights: imagenet\n- image: resize 32, crop 32\n- seed: 0\n- PRO FPR limit: 0.3\n\n"
    "### Image AUROC (higher is better)\n\n| category   |   patchcore |   padim |\n"
    "|:-----------|------------:|--------:|\n| alpha      |       0.500 |   0.600 |\n"
    "| beta       |       0.550 |   0.650 |\n| gamma      |       0.700 | nan     |\n"
    "| mean       |       0.583 | nan     |\n\n### Fit (s) (lower is better)\n\n"
    "| category   |   patchcore |   padim |\n|:-----------|------------:|--------:|\n"
    "| alpha      |        1.25 |    2.25 |\n| beta       |        1.25 |    2.25 |\n"
    "| gamma      |        2.00 |  nan    |\n| mean       |        1.50 |  nan    |\n\n"
    "### Predict (ms / image) (lower is better)\n\n| category   |   patchcore |   padim |\n"
    "|:-----------|------------:|--------:|\n| alpha      |         3.0 |     4.0 |\n"
    "| beta       |         3.0 |     4.0 |\n| gamma      |         4.0 |   nan   |\n"
    "| mean       |         3.3 |   nan   |\n\n### Failures\n\n"
    "| category   | method   | error                       |\n|:-----------|:---------|:----------------------------|\n"
    "| gamma      | padim    | RuntimeError: out of memory |\n")


def test_a_one_backbone_results_md_is_as_before(tmp_path):
    """The text ``RunFolder.write`` gave for these rows before backbones were an axis (commit 6bead84)."""
    rows = []
    for c in ("alpha", "beta"):
        for i, m in enumerate(("patchcore", "padim")):
            rows.append({"category": c, "method": m, "backbone": "resnet18", "weights": "imagenet", "seed": 0,
                         "image_auroc": 0.5 + 0.1 * i + (0.05 if c == "beta" else 0), "fit_s": 1.25 + i,
                         "predict_ms_per_image": 3.0 + i})
    rows.append({"category": "gamma", "method": "padim", "backbone": "resnet18", "weights": "imagenet", "seed": 0,
                 "error": "RuntimeError: out of memory"})
    rows.append({"category": "gamma", "method": "patchcore", "backbone": "resnet18", "weights": "imagenet",
                 "seed": 0, "image_auroc": 0.7, "fit_s": 2.0, "predict_ms_per_image": 4.0})
    settings = RunSettings(argv=["--methods", "patchcore,padim"], data="/data", categories=["alpha", "beta", "gamma"],
                           backbone="resnet18", weights="imagenet", resize=32, crop=32, seed=0)
    assert RunFolder.create(tmp_path, settings).write(rows) == ONE_BACKBONE_MD
