"""Every built-in dataset end to end: ``bench.py --data-path TREE`` on a tiny tree of its layout prints a table.

The trees are written as each publisher ships its files (``tests/trees_*.py``).
A run without ``--dataset`` must detect the layout; a run with it must read it.
"""

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
import pytest

from bench.cli import main
from bench.dataset_choice import detected
from bench.plugins import available_datasets, plugin_manager
from bench.scoring import masks_given
from datasets.base import Sample
from datasets.errors import DatasetError
from metrics import MetricWarning
from reports.runfolder import read_results

SMALL = ["--resize", "72", "--crop", "64", "--weights", "random", "--bootstrap", "0", "--methods", "padim"]
BUILT_IN = ("mvtec_ad2", "visa", "mvtec_loco", "btad", "mpdd", "folder")


def tree(name: str, root: Path) -> Path:
    return getattr(importlib.import_module(f"trees_{name}"), f"write_{name}_tree")(root)


def run_dir(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def registered():
    return available_datasets(plugin_manager())


def test_every_built_in_is_registered(registered):
    assert set(BUILT_IN) | {"mvtec_ad"} <= set(registered)


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_layout_is_detected_as_itself_only(name, registered, tmp_path):
    assert detected(registered, tree(name, tmp_path / name)) == [name]


def test_list_datasets_marks_the_layout_of_the_data_path(tmp_path, capsys):
    root = tree("btad", tmp_path / "data")
    assert main(["--list-datasets", "--data-path", str(root)]) == 0
    marked = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "[detected in" in line]
    assert marked == ["btad"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_built_in_runs_and_prints_a_table(name, tmp_path, capsys):
    root = tree(name, tmp_path / "data")
    assert main(["--dataset", name, "--data-path", str(root), "--output", str(tmp_path / "runs"), *SMALL]) == 0
    printed = capsys.readouterr().out
    folder = run_dir(tmp_path / "runs")
    results = read_results(folder)
    assert json.loads((folder / "run.json").read_text())["dataset"] == name
    assert results["error"].isna().all()
    assert results["image_auroc"].between(0, 1).all()
    table = printed.split("### Image AUROC")[1].split("###")[0]
    for category in results["category"]:
        assert f"| {category}" in table


def test_loco_run_shows_spro_beside_au_pro_for_logical_structural_and_both(tmp_path, capsys):
    root = tree("mvtec_loco", tmp_path / "data")
    assert main(["--data-path", str(root), "--category", "breakfast_box", "--output", str(tmp_path / "runs"),
                 *SMALL]) == 0
    printed = capsys.readouterr().out
    results = pd.read_csv(run_dir(tmp_path / "runs") / "results.csv")
    for metric in ("image_auroc", "pro", "spro"):
        for subset in ("", ".logical", ".structural", ".mean_of_subsets"):
            assert results[f"{metric}{subset}"].between(0, 1).all(), f"{metric}{subset}"
    assert printed.index("### AU-PRO (MVTec protocol") < printed.index("### AU-sPRO (saturated per-region overlap")
    assert ("### AU-sPRO (saturated per-region overlap, MVTec LOCO protocol, FPR up to 0.3): logical anomalies"
            in printed)


def test_a_dask_worker_reads_the_runs_dataset(tmp_path, monkeypatch):
    from bench.cli import parse
    from bench.grid import unit_task
    from bench.units import Naming, Unit

    monkeypatch.setattr("bench.grid.log.setup", lambda quiet: None)  # a worker's quiet logging, not this process's
    root = tree("mvtec_loco", tmp_path / "data")
    options, _ = parse(["--dataset", "mvtec_loco", *SMALL])
    (row, files), = unit_task(Unit("breakfast_box", "resnet18", (("padim", 0),)), options, str(root),
                              Naming(several_backbones=False, several_seeds=False))
    assert "error" not in row and 0 <= row["spro.logical"] <= 1
    assert list(files) == ["predictions/breakfast_box/padim.npz"]


def test_a_folder_without_masks_scores_images_only_and_says_so(tmp_path, caplog):
    root = tree("folder", tmp_path / "data")  # bolts has masks, labels has none
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)  # no warning about an empty test set
        assert main(["--data-path", str(root), "--output", str(tmp_path / "runs"),
                     *[a for a in SMALL if a not in ("--bootstrap", "0")], "--bootstrap", "20"]) == 0
    results = read_results(run_dir(tmp_path / "runs")).set_index("category")
    assert results.loc["bolts", ["pixel_auroc", "pro", "pixel_auroc_low"]].notna().all()
    assert results.loc["labels", ["pixel_auroc", "pro", "pixel_auroc_low", "pro_high"]].isna().all()
    assert results.loc["labels", ["image_auroc", "image_auroc_low"]].notna().all()
    assert "[labels] the dataset gives no masks for the defective images" in caplog.text
    assert "[bolts] the dataset gives no masks" not in caplog.text


def test_some_defective_images_without_masks_fail_the_category_by_name(tmp_path):
    root = tree("folder", tmp_path / "data")
    mask = sorted((root / "bolts" / "masks").iterdir())[-1]
    mask.unlink()
    # with masks/ present the loader itself refuses; a plugin that gives some masks gets the harness's check
    samples = [Sample(Path("a.png"), 1, "bad", Path("a_mask.png")), Sample(Path("b.png"), 1, "bad")]
    with pytest.raises(DatasetError, match=r"1 of 2 defective test images have no mask \(the first: b.png\)"):
        masks_given(samples)
    assert main(["--data-path", str(root), "--category", "bolts", "--output", str(tmp_path / "runs"), *SMALL]) == 1
    assert mask.stem.removesuffix("_mask") in read_results(run_dir(tmp_path / "runs"))["error"].item()


def test_the_pro_panel_of_a_category_without_masks_is_left_empty(monkeypatch):
    from reports import figures

    drawn = []
    monkeypatch.setattr(figures, "to_png", lambda fig: drawn.append(fig) or b"")
    prediction = {"roc_fpr": np.array([0.0, 0.5, 1.0]), "roc_tpr": np.array([0.0, 1.0, 1.0]),
                  "pro_fpr": np.array([0.0, np.nan]), "pro_overlap": np.array([0.0, np.nan])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no artists with labels" legend warning
        figures.curves({"padim": prediction}, 0.3, "labels", {"padim": 0.9}, {"padim": float("nan")})
    roc, pro = drawn[0].axes
    assert roc.get_legend() is not None and pro.get_legend() is None
    assert not [line for line in pro.lines if "AU-PRO" in str(line.get_label())]


def test_the_readme_table_lists_exactly_the_built_ins(registered):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Real data sets")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")][1:]  # below the header
    named = [line.split("`")[1] for line in rows]
    assert named == ["mvtec_ad", *BUILT_IN]
    assert set(named) == set(registered)


def test_a_defective_image_whose_mask_reads_empty_is_named(tmp_path, caplog):
    root = tree("btad", tmp_path / "data")
    mask = sorted((root / "02" / "ground_truth" / "ko").iterdir())[0]
    Image.fromarray(np.zeros(Image.open(mask).size[::-1], np.uint8)).save(mask)
    assert main(["--data-path", str(root), "--category", "02", "--output", str(tmp_path / "runs"), *SMALL]) == 0
    expected = "[02] 1 defective test images have no defect pixel in their mask at the evaluated size"
    assert f"{expected} (the first: {mask})" in caplog.text
