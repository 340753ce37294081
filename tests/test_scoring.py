"""A row's accuracy columns: every test image, each subset scored with the good images, and sPRO."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metrics
from bench.scoring import score, subset_images
from datasets.base import Sample
from methods.base import Prediction
from reports.tables import markdown_tables, table_columns


def samples(defects: list[str]) -> list[Sample]:
    return [Sample(Path(f"{i}.png"), int(d != "good"), d) for i, d in enumerate(defects)]


def test_subset_images_are_the_good_ones_and_the_subsets_defects():
    test = samples(["good", "logical_anomalies", "structural_anomalies", "good", "logical_anomalies"])
    chosen = subset_images({"logical": ("logical_anomalies",), "structural": ("structural_anomalies",)}, test)
    assert {k: v.tolist() for k, v in chosen.items()} == {"logical": [0, 1, 3, 4], "structural": [0, 2, 3]}


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    defects = ["good"] * 4 + ["logical_anomalies"] * 3 + ["structural_anomalies"] * 3
    labels = np.array([int(d != "good") for d in defects])
    masks = np.zeros((10, 8, 8), dtype=np.uint8)
    for i in range(4, 10):
        masks[i, i % 5: i % 5 + 3, 2:5] = 1
    # logical defects stand out, structural ones hardly: the subsets' numbers differ
    boost = np.array([0.0] * 4 + [1.0] * 3 + [0.02] * 3)[:, None, None]
    maps = rng.random(masks.shape) + masks * boost
    scores = maps.reshape(10, -1).max(axis=1)
    regions = [[(m.astype(bool), 4.0)] if m.any() else [] for m in masks]
    return samples(defects), labels, masks, Prediction(scores=scores, maps=maps), regions


def test_subset_columns_are_the_metrics_of_the_subset_alone(case):
    test, labels, masks, prediction, regions = case
    subsets = subset_images({"logical": ("logical_anomalies",), "structural": ("structural_anomalies",)}, test)
    evaluation, columns = score(labels, masks, prediction, fpr_limit=0.3, method="m", subsets=subsets,
                                regions=regions)
    assert columns["image_auroc"] == evaluation.image_auroc
    for name, index in subsets.items():
        assert columns[f"image_auroc.{name}"] == metrics.image_auroc(labels[index], prediction.scores[index])
        expected_pro = metrics.au_pro(masks[index], prediction.maps[index])
        assert columns[f"pro.{name}"] == pytest.approx(expected_pro, abs=1e-12)
        assert columns[f"spro.{name}"] == metrics.au_spro(prediction.maps[index], [regions[i] for i in index])
    assert columns["spro"] == metrics.au_spro(prediction.maps, regions)
    assert columns["image_auroc.logical"] != columns["image_auroc.structural"]  # the case tells them apart
    for key in ("image_auroc", "pro", "spro"):
        assert columns[f"{key}.mean_of_subsets"] == pytest.approx(
            (columns[f"{key}.logical"] + columns[f"{key}.structural"]) / 2, abs=1e-15)


def test_no_subsets_no_regions_is_the_plain_evaluation(case):
    _, labels, masks, prediction, _ = case
    evaluation, columns = score(labels, masks, prediction, fpr_limit=0.3, method="m")
    assert columns == evaluation.columns()


def test_tables_show_spro_and_each_subset_after_the_accuracy_columns(case):
    test, labels, masks, prediction, regions = case
    subsets = subset_images({"logical": ("logical_anomalies",), "structural": ("structural_anomalies",)}, test)
    _, columns = score(labels, masks, prediction, fpr_limit=0.3, method="m", subsets=subsets, regions=regions)
    results = pd.DataFrame([{"category": "pushpins", "method": "padim", "seed": 0, **columns}])
    keys = [c.key for c in table_columns(0.05, results)]
    assert keys[keys.index("spro"):keys.index("spro") + 1] == ["spro"]
    assert keys[keys.index("pixel_ap") + 1:keys.index("pixel_ap") + 8] == [
        "image_auroc.logical", "image_auroc.structural", "image_auroc.mean_of_subsets", "pro.logical",
        "pro.structural", "pro.mean_of_subsets", "spro.logical"]
    markdown = markdown_tables(results, table_columns(0.05, results))
    assert "### AU-sPRO (saturated per-region overlap, MVTec LOCO protocol, FPR up to 0.05)" in markdown
    assert "### Image AUROC: logical anomalies and every good image" in markdown
    assert "### AU-PRO (MVTec protocol, FPR up to 0.05): mean of the subsets' values" in markdown
    structural = markdown.split("FPR up to 0.05): structural anomalies")[-1].split("###")[0]
    assert f"{columns['spro.structural']:.3f}" in structural.split("AU-sPRO")[-1]
    plain = results[["category", "method", "seed", "image_auroc"]]
    assert "sPRO" not in markdown_tables(plain, table_columns(0.3, plain))
