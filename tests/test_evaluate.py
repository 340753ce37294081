"""metrics.evaluate: every number and curve equal to the single-metric functions (and scikit-learn),
from one sort of the image scores and one of the pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metric_fixtures import random_evaluation_data, random_pixel_data, reference_area, reference_pro_curve
from sklearn import metrics as skm

import metrics
from metrics import MetricError, MetricWarning


SCALARS = {  # Evaluation field -> the single-metric function giving the same number
    "image_auroc": lambda l, s, m, p, limit: metrics.image_auroc(l, s),
    "image_ap": lambda l, s, m, p, limit: metrics.average_precision(l, s),
    "image_f1_max": lambda l, s, m, p, limit: metrics.f1_max(l, s)[0],
    "image_threshold": lambda l, s, m, p, limit: metrics.f1_max(l, s)[1],
    "pixel_auroc": lambda l, s, m, p, limit: metrics.pixel_auroc(m, p),
    "pixel_ap": lambda l, s, m, p, limit: metrics.pixel_average_precision(m, p),
    "pixel_f1_max": lambda l, s, m, p, limit: metrics.pixel_f1_max(m, p)[0],
    "pixel_threshold": lambda l, s, m, p, limit: metrics.pixel_f1_max(m, p)[1],
    "pro": lambda l, s, m, p, limit: metrics.au_pro(m, p, fpr_limit=limit),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 2])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_evaluate_equals_the_single_functions(seed, decimals, limit):
    labels, scores, masks, maps = random_evaluation_data(seed, decimals=decimals)
    result = metrics.evaluate(labels, scores, masks, maps, fpr_limit=limit, method="m")
    for field, single in SCALARS.items():
        assert getattr(result, field) == pytest.approx(single(labels, scores, masks, maps, limit),
                                                       abs=1e-12, rel=0), field
    assert result.fpr_limit == limit
    fpr, tpr = metrics.roc_curve(labels, scores)
    np.testing.assert_allclose(result.roc_fpr, fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.roc_tpr, tpr, rtol=0, atol=1e-12)
    fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(result.pro_fpr, fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.pro_overlap, pro, rtol=0, atol=1e-12)
    assert result.thresholds == (result.image_threshold, result.pixel_threshold)
    assert result.columns() == {key: getattr(result, key) for key in (
        "image_auroc", "pixel_auroc", "pro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap")}


@pytest.mark.parametrize("seed", range(3))
def test_evaluate_equals_sklearn(seed):
    labels, scores, masks, maps = random_evaluation_data(seed, decimals=2)
    result = metrics.evaluate(labels, scores, masks, maps)
    assert result.image_auroc == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert result.image_ap == pytest.approx(skm.average_precision_score(labels, scores), abs=1e-12)
    assert result.pixel_auroc == pytest.approx(skm.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert result.pixel_ap == pytest.approx(
        skm.average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12
    )
    ref_fpr, ref_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(result.roc_fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(result.roc_tpr, ref_tpr, atol=1e-12)


def test_evaluate_au_pro_matches_the_reference_integration():
    labels, scores, masks, maps = random_evaluation_data(4, n=4, size=16, decimals=1)
    ref_fpr, ref_pro = reference_pro_curve(masks, maps)
    for limit in (0.3, 0.05, 1.0):
        assert metrics.evaluate(labels, scores, masks, maps, fpr_limit=limit).pro == pytest.approx(
            reference_area(ref_fpr, ref_pro, limit), abs=1e-6
        )


@pytest.fixture
def count_sorts(monkeypatch):
    """Sizes of the arrays sorted through ``_ranking.sort_scores``, and the number of region labellings."""
    import metrics._ranking
    import metrics.pro

    sorted_sizes, labellings = [], []
    sort, label = metrics._ranking.sort_scores, metrics.pro.ndimage.label

    def counting_sort(values):
        sorted_sizes.append(values.size)
        return sort(values)

    def counting_label(*args, **kwargs):
        labellings.append(1)
        return label(*args, **kwargs)

    monkeypatch.setattr(metrics._ranking, "sort_scores", counting_sort)
    monkeypatch.setattr(metrics.pro.ndimage, "label", counting_label)
    return sorted_sizes, labellings


def test_evaluate_sorts_each_level_once_and_labels_regions_once(count_sorts):
    sorted_sizes, labellings = count_sorts
    labels, scores, masks, maps = random_evaluation_data(0, n=10, size=16)
    metrics.evaluate(labels, scores, masks, maps)
    assert sorted(sorted_sizes) == [labels.size, maps.size]  # the image scores, then all pixels
    assert len(labellings) == 1
    # the count is real: the single functions a row needed sort the pixels again and again
    sorted_sizes.clear()
    for pixel_metric in (metrics.pixel_auroc, metrics.pixel_average_precision, metrics.pixel_f1_max,
                         metrics.pro_curve):
        pixel_metric(masks, maps)
    assert sorted_sizes == [maps.size] * 4


def test_evaluate_sorts_once_when_metrics_are_undefined(count_sorts):
    sorted_sizes, labellings = count_sorts
    with pytest.warns(MetricWarning):
        metrics.evaluate(np.zeros(3), [0.1, 0.2, 0.3], np.zeros((3, 4, 4)), np.zeros((3, 4, 4)))
    assert sorted(sorted_sizes) == [3, 48] and len(labellings) == 1


def test_evaluate_does_not_modify_inputs_and_its_curves_are_read_only():
    labels, scores, masks, maps = random_evaluation_data(1)
    before = [a.copy() for a in (labels, scores, masks, maps)]
    result = metrics.evaluate(labels, scores, masks, maps)
    for a, b in zip((labels, scores, masks, maps), before):
        np.testing.assert_array_equal(a, b)
    for curve in (result.roc_fpr, result.roc_tpr, result.pro_fpr, result.pro_overlap):
        with pytest.raises(ValueError, match="read-only"):
            curve[0] = 0.5
    with pytest.raises(AttributeError):
        result.pro = 1.0


def test_evaluate_defined_does_not_warn():
    labels, scores, masks, maps = random_evaluation_data(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        result = metrics.evaluate(labels, scores, masks, maps)
    assert not np.isnan(list(result.columns().values())).any()


def test_evaluate_without_good_samples_nans_what_needs_them_with_one_warning_per_level():
    masks = np.zeros((3, 4, 4), dtype=np.uint8)
    masks[:, :2] = 1
    maps = np.random.default_rng(0).random(masks.shape)
    maps[:, 2:] = 1.0  # defect-free pixels (the images are all defective)
    with pytest.warns(MetricWarning) as caught:
        result = metrics.evaluate([1, 1, 1], [0.1, 0.5, 0.9], masks, maps)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "image AUROC and the image ROC curve are undefined" in messages[0]
    assert "no good images" in messages[0]
    assert np.isnan(result.image_auroc) and np.isnan(result.roc_fpr).all()
    assert (result.image_ap, result.image_f1_max, result.image_threshold) == (1.0, 1.0, 0.1)
    assert not np.isnan([result.pixel_auroc, result.pro, result.pixel_ap]).any()


def test_evaluate_without_defects_is_nan_but_for_the_curves_false_positive_rates():
    with pytest.warns(MetricWarning) as caught:
        result = metrics.evaluate([0, 0], [0.3, 0.4], np.zeros((2, 4, 4)), np.ones((2, 4, 4)))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "image AUROC, the image ROC curve, image AP and image F1-max are undefined" in messages[0]
    assert "pixel AUROC, AU-PRO, the PRO curve, pixel AP and pixel F1-max are undefined" in messages[1]
    assert all("no defect" in m for m in messages)
    assert caught[0].filename == __file__  # the warning points at the caller of evaluate
    assert np.isnan(list(result.columns().values())).all()
    assert np.isnan([result.image_threshold, result.pixel_threshold]).all()
    np.testing.assert_allclose(result.roc_fpr, [0, 0.5, 1])
    np.testing.assert_allclose(result.pro_fpr, [0, 1])
    assert np.isnan(result.roc_tpr).all() and np.isnan(result.pro_overlap).all()


def test_evaluate_with_no_images_is_nan():
    with pytest.warns(MetricWarning):
        result = metrics.evaluate(np.zeros(0), np.zeros(0), np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    assert np.isnan(list(result.columns().values())).all()


def test_evaluate_bad_image_scores_raise_naming_the_method():
    masks, maps = random_pixel_data(0, shape=(3, 4, 4))
    with pytest.raises(MetricError, match=r"method 'padim' returned 1 NaN/inf image scores"):
        metrics.evaluate([0, 1, 1], [0.1, np.nan, 0.3], masks, maps, method="padim")


@pytest.mark.parametrize(
    "labels, scores, masks, maps, match",
    [
        ([0, 1], [0.1, 0.2, 0.3], np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), "one score per test image"),
        ([0, 1], [0.1, 0.2], np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), r"shape \(2, 4, 5\)"),
        ([0, 1], [0.1, 0.2], np.zeros((3, 4, 4)), np.zeros((3, 4, 4)), "3 anomaly maps for 2 image labels"),
        ([0, 2], [0.1, 0.2], np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), "0 or 1"),
        ([0, 1], [0.1, 0.2], np.full((2, 4, 4), 255), np.zeros((2, 4, 4)), "0 or 1"),
    ],
)
def test_evaluate_bad_input_raises(labels, scores, masks, maps, match):
    with pytest.raises(MetricError, match=match):
        metrics.evaluate(labels, scores, masks, maps, method="spade")


@pytest.mark.parametrize("limit", [0, -0.1, 1.5])
def test_evaluate_bad_fpr_limit_raises(limit):
    labels, scores, masks, maps = random_evaluation_data(0)
    with pytest.raises(MetricError, match="fpr_limit"):
        metrics.evaluate(labels, scores, masks, maps, fpr_limit=limit)
