"""The saved prediction file takes its thresholds and curves from a metrics.Evaluation, without sorting again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from metric_fixtures import random_evaluation_data

import metrics
import metrics._ranking
from datasets.mvtec import Sample
from reports.predictions import CURVE_POINTS, load_predictions, save_predictions, thin

KEYS = {"image_paths", "mask_paths", "labels", "scores", "maps", "image_threshold", "pixel_threshold",
        "roc_fpr", "roc_tpr", "pro_fpr", "pro_overlap"}


@pytest.fixture
def prediction():
    # 80 x 40 x 40 pixels with nearly all scores distinct: a PRO curve long enough to be thinned
    labels, scores, masks, maps = random_evaluation_data(5, n=80, size=40)
    samples = [Sample(Path(f"test/{'crack' if y else 'good'}/{i:03d}.png"), int(y), "crack" if y else "good",
                      Path(f"ground_truth/crack/{i:03d}_mask.png") if y else None)
               for i, y in enumerate(labels)]
    return samples, labels, masks, scores, maps


def test_saved_curves_and_thresholds_are_the_evaluations(prediction, tmp_path, monkeypatch):
    samples, labels, masks, scores, maps = prediction
    evaluation = metrics.evaluate(labels, scores, masks, maps)
    sorts = []
    monkeypatch.setattr(metrics._ranking, "sort_scores", lambda v: sorts.append(v.size) or np.sort(v))
    saved = load_predictions(save_predictions(tmp_path / "m.npz", samples, labels, masks, scores, maps,
                                              evaluation))
    assert sorts == []  # nothing sorted again
    assert set(saved) == KEYS
    assert len(evaluation.pro_fpr) > CURVE_POINTS and len(saved["pro_fpr"]) == CURVE_POINTS
    # what the file held before evaluate existed: the curves computed by the single functions
    fpr, tpr = metrics.roc_curve(labels, scores)
    np.testing.assert_array_equal(saved["roc_fpr"], fpr)
    np.testing.assert_array_equal(saved["roc_tpr"], tpr)
    pro_fpr, pro_overlap = thin(*metrics.pro_curve(masks, maps))
    np.testing.assert_allclose(saved["pro_fpr"], pro_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(saved["pro_overlap"], pro_overlap, rtol=0, atol=1e-12)
    assert float(saved["image_threshold"]) == metrics.f1_max(labels, scores)[1]
    assert float(saved["pixel_threshold"]) == metrics.pixel_f1_max(masks, maps)[1]
    assert saved["image_threshold"].dtype == saved["pixel_threshold"].dtype == np.float64
    assert saved["labels"].dtype == np.int8 and saved["maps"].dtype == np.float16
