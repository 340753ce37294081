"""The single-metric functions of metrics/ against computations by definition and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metric_fixtures import (
    brute_force_f1,
    random_image_data,
    random_pixel_data,
    reference_area,
    reference_pro_curve,
)
from sklearn import metrics as skm

import metrics
from metrics import MetricError, MetricWarning


# ------------------------------------------------- classification vs scikit-learn


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [1, 3])
def test_image_auroc_and_ap_match_sklearn(seed, decimals):
    labels, scores = random_image_data(seed, decimals=decimals)
    assert metrics.image_auroc(labels, scores) == pytest.approx(
        skm.roc_auc_score(labels, scores), abs=1e-12
    )
    assert metrics.average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_pixel_auroc_and_ap_match_sklearn(seed):
    masks, maps = random_pixel_data(seed, shape=(6, 24, 24), decimals=2)
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(
        skm.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12
    )
    assert metrics.pixel_average_precision(masks, maps) == pytest.approx(
        skm.average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12
    )


def test_pixel_auroc_float32_maps_match_sklearn():
    # float32 maps (what methods return) go through the sort without a cast
    masks, maps = random_pixel_data(7, shape=(5, 20, 20), decimals=3)
    maps32 = maps.astype(np.float32)
    assert metrics.pixel_auroc(masks, maps32) == pytest.approx(
        skm.roc_auc_score(masks.ravel(), maps32.ravel()), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_matches_sklearn(seed):
    labels, scores = random_image_data(seed)
    fpr, tpr = metrics.roc_curve(labels, scores)
    ref_fpr, ref_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)


def test_auroc_known_values():
    assert metrics.image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.image_auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # all tied: one ROC point (1, 1), area of the diagonal
    assert metrics.image_auroc([0, 1, 0, 1], [5, 5, 5, 5]) == 0.5


# ----------------------------------------------------------------- F1-max


@pytest.mark.parametrize("seed", range(4))
def test_f1_max_matches_brute_force(seed):
    labels, scores = random_image_data(seed, n=40)
    best, f1_at = brute_force_f1(labels, scores)
    f1, threshold = metrics.f1_max(labels, scores)
    assert f1 == pytest.approx(best, abs=1e-12)
    # the threshold reaches the best F1, and is the highest one that does
    assert f1_at[threshold] == pytest.approx(best, abs=1e-12)
    assert threshold == max(t for t, v in f1_at.items() if v >= best - 1e-12)


def test_f1_max_tie_returns_the_highest_threshold():
    # t=4: TP 1, FP 0 -> 2/3; t=1: TP 2, FP 2 -> 2/3; thresholds in between are worse
    assert metrics.f1_max([1, 0, 0, 1], [4.0, 3.0, 2.0, 1.0]) == (pytest.approx(2 / 3), 4.0)


@pytest.mark.parametrize("seed", range(2))
def test_pixel_f1_max_matches_brute_force(seed):
    masks, maps = random_pixel_data(seed)
    best, f1_at = brute_force_f1(masks, maps)
    f1, threshold = metrics.pixel_f1_max(masks, maps)
    assert f1 == pytest.approx(best, abs=1e-12)
    assert f1_at[threshold] == pytest.approx(best, abs=1e-12)


# ---------------------------------------------------------------------- PRO


@pytest.mark.parametrize("seed", range(4))
def test_pro_curve_matches_reference_loop(seed):
    masks, maps = random_pixel_data(seed)
    fpr, pro = metrics.pro_curve(masks, maps)
    ref_fpr, ref_pro = reference_pro_curve(masks, maps)
    assert fpr.shape == ref_fpr.shape  # one point per distinct score, plus (0, 0)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-6, rtol=0)
    np.testing.assert_allclose(pro, ref_pro, atol=1e-6, rtol=0)
    assert (fpr[-1], pro[-1]) == (1.0, pytest.approx(1.0))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("limit", [0.3, 0.05, 0.5, 1.0])
def test_au_pro_matches_reference_integration(seed, limit):
    masks, maps = random_pixel_data(seed)
    ref_fpr, ref_pro = reference_pro_curve(masks, maps)
    assert metrics.au_pro(masks, maps, fpr_limit=limit) == pytest.approx(
        reference_area(ref_fpr, ref_pro, limit), abs=1e-6
    )


def test_au_pro_limit_exactly_on_a_curve_point():
    # no interpolated segment: the area stops at the point itself
    masks, maps = random_pixel_data(11)
    fpr, pro = metrics.pro_curve(masks, maps)
    limit = float(fpr[np.searchsorted(fpr, 0.3)])  # an existing FPR value near 0.3
    assert limit in fpr and limit != 0.3
    assert metrics.au_pro(masks, maps, fpr_limit=limit) == pytest.approx(
        reference_area(fpr, pro, limit), abs=1e-9
    )


def test_au_pro_many_thresholds_matches_integrated_full_curve():
    # au_pro only sorts the scores above the limit; it must agree with the full curve
    rng = np.random.default_rng(3)
    masks, maps = random_pixel_data(3, shape=(12, 40, 40), decimals=4)
    maps = (maps + rng.normal(0, 0.2, maps.shape)).astype(np.float32)
    fpr, pro = metrics.pro_curve(masks, maps)
    for limit in (0.01, 0.3, 0.7):
        assert metrics.au_pro(masks, maps, fpr_limit=limit) == pytest.approx(
            reference_area(fpr, pro, limit), abs=1e-9
        )


def test_perfect_map_scores_one():
    masks, _ = random_pixel_data(0)
    maps = masks.astype(np.float32) * 0.7 + 0.1
    assert metrics.au_pro(masks, maps) == pytest.approx(1.0, abs=1e-12)
    assert metrics.pixel_auroc(masks, maps) == 1.0
    assert metrics.pixel_average_precision(masks, maps) == 1.0
    assert metrics.pixel_f1_max(masks, maps) == (1.0, pytest.approx(0.8))


@pytest.mark.parametrize("limit", [0.3, 0.1, 1.0])
def test_constant_map_scores_half_the_limit(limit):
    # one curve point (1, 1): PRO = FPR, area limit**2 / 2, normalised limit / 2
    masks, _ = random_pixel_data(1)
    maps = np.full(masks.shape, 0.25)
    fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(pro, [0, 1])
    assert metrics.au_pro(masks, maps, fpr_limit=limit) == pytest.approx(limit / 2, abs=1e-12)


def test_one_of_two_regions_found_at_zero_false_positives():
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[0, 1:3, 1:3] = 1  # region A, 4 pixels
    masks[1, 4:7, 2:5] = 1  # region B, 9 pixels, in another image
    maps = np.zeros(masks.shape)
    maps[0, 1:3, 1:3] = 1.0  # only A stands out
    fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 1])
    # (0, 0.5) -> (1, 1): PRO at 0.3 is 0.65; area 0.3 * (0.5 + 0.65) / 2, over 0.3
    assert metrics.au_pro(masks, maps) == pytest.approx(0.575, abs=1e-12)


def test_regions_use_8_connectivity_and_weigh_equally():
    masks = np.zeros((1, 8, 8), dtype=np.uint8)
    masks[0, 1, 1] = masks[0, 2, 2] = 1  # touch only at a corner: one region of 2 pixels
    masks[0, 5:7, 4:7] = 1  # a second region of 6 pixels
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0  # half of the diagonal region
    maps[0, 5:7, 4:7] = 0.5  # all of the big region
    fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1])
    # 8-connected, per-region mean: 1/2 * (1/2) then 1/2 * (1/2 + 1); with 4-connectivity
    # it would be 1/3 and 2/3, weighting by pixels would give 1/8 and 7/8
    np.testing.assert_allclose(pro, [0, 0.25, 0.75, 1])


def test_regions_do_not_span_images():
    masks = np.zeros((2, 6, 6), dtype=np.uint8)
    masks[0, 2, 2] = 1  # 1 pixel
    masks[1, 2, 2:4] = 1  # 2 pixels, one right "behind" image 0's pixel
    maps = np.zeros(masks.shape)
    maps[0, 2, 2] = 1.0
    _, pro = metrics.pro_curve(masks, maps)
    # two regions, the first fully found: 1/2 (one merged 3-pixel region would give 1/3)
    assert pro[1] == pytest.approx(0.5)


def test_fpr_counts_the_pixels_of_good_images():
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[0, 3, 3] = 1
    maps = np.zeros(masks.shape)
    maps[0, 3, 3] = 1.0
    maps[1, 0, 0] = 1.0  # a false positive in the good image
    fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 1 / 127, 1])
    np.testing.assert_allclose(pro, [0, 1, 1])


def test_float32_and_float64_maps_give_the_same_result():
    masks, maps = random_pixel_data(5, decimals=3)
    maps32 = maps.astype(np.float32)
    assert metrics.au_pro(masks, maps32) == pytest.approx(
        metrics.au_pro(masks, maps32.astype(np.float64)), abs=1e-12
    )


def test_inputs_are_not_modified():
    masks, maps = random_pixel_data(2)
    masks_before, maps_before = masks.copy(), maps.copy()
    metrics.au_pro(masks, maps)
    metrics.pro_curve(masks, maps)
    metrics.pixel_auroc(masks, maps)
    np.testing.assert_array_equal(masks, masks_before)
    np.testing.assert_array_equal(maps, maps_before)


# ---------------------------------------------------------- degenerate inputs


def test_defined_metrics_do_not_warn():
    labels, scores = random_image_data(0)
    masks, maps = random_pixel_data(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        metrics.image_auroc(labels, scores)
        metrics.average_precision(labels, scores)
        metrics.f1_max(labels, scores)
        metrics.roc_curve(labels, scores)
        metrics.pixel_auroc(masks, maps)
        metrics.au_pro(masks, maps)
        metrics.pro_curve(masks, maps)


@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize(
    "metric", [metrics.image_auroc, metrics.pixel_auroc, metrics.au_pro], ids=lambda f: f.__name__
)
def test_metrics_needing_both_classes_warn_and_return_nan(metric, label):
    if metric is metrics.image_auroc:
        args = (np.full(5, label), np.arange(5.0))
    else:
        args = (np.full((2, 4, 4), label), np.random.default_rng(0).random((2, 4, 4)))
    with pytest.warns(MetricWarning, match="undefined"):
        assert np.isnan(metric(*args))


@pytest.mark.parametrize(
    "metric, pixel",
    [
        (metrics.average_precision, False),
        (metrics.f1_max, False),
        (metrics.pixel_average_precision, True),
        (metrics.pixel_f1_max, True),
    ],
)
def test_ap_and_f1_without_positives_warn_and_return_nan(metric, pixel):
    shape = (2, 4, 4) if pixel else (6,)
    with pytest.warns(MetricWarning, match="no defect"):
        result = metric(np.zeros(shape, dtype=np.uint8), np.arange(np.prod(shape)).reshape(shape))
    assert np.all(np.isnan(result))


def test_ap_and_f1_without_negatives_are_one():
    # only positives: every threshold has precision 1 -- defined, so no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        assert metrics.average_precision([1, 1, 1], [0.2, 0.5, 0.9]) == 1.0
        assert metrics.f1_max([1, 1, 1], [0.2, 0.5, 0.9]) == (1.0, 0.2)


def test_degenerate_curves_have_nan_on_the_undefined_axis():
    with pytest.warns(MetricWarning):
        fpr, tpr = metrics.roc_curve([1, 1], [0.1, 0.2])
    assert np.isnan(fpr).all() and np.allclose(tpr, [0, 0.5, 1])
    with pytest.warns(MetricWarning):
        fpr, pro = metrics.pro_curve(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))
    assert np.isnan(pro).all() and np.allclose(fpr, [0, 1])


def _call(name, bad_scores):
    """Call public function ``name`` with ``bad_scores`` as its scores or maps."""
    if name in ("image_auroc", "average_precision", "f1_max", "roc_curve"):
        labels = np.array([0, 1, 0, 1, 1])
        scores = np.linspace(0, 1, 5)
        scores[[1, 3]] = bad_scores
        return getattr(metrics, name)(labels, scores, method="padim")
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    masks[1, 1:3, 1:3] = 1
    maps = np.random.default_rng(0).random(masks.shape)
    maps[0, 0, :2] = bad_scores
    if name == "evaluate":
        return metrics.evaluate([0, 1], [0.2, 0.7], masks, maps, method="padim")
    if name in ("au_spro", "spro_curve"):  # regions with saturation areas in place of masks
        regions = [[(mask.astype(bool), 1.0)] if mask.any() else [] for mask in masks]
        return getattr(metrics, name)(maps, regions, method="padim")
    return getattr(metrics, name)(masks, maps, method="padim")


ALL_FUNCTIONS = [
    name for name in metrics.__all__ if name not in ("Evaluation", "MetricError", "MetricWarning")
    and getattr(metrics, name).__module__ not in ("metrics.bootstrap", "metrics.ranktests")
]


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@pytest.mark.parametrize("bad", [[np.nan, np.nan], [np.inf, -np.inf], [np.nan, np.inf]])
def test_non_finite_scores_raise_naming_the_method(name, bad):
    with pytest.raises(MetricError, match=r"method 'padim' returned 2 NaN/inf"):
        _call(name, bad)


@pytest.mark.parametrize(
    "name", ["pixel_auroc", "pixel_average_precision", "pixel_f1_max", "au_pro", "pro_curve"]
)
def test_shape_mismatch_raises(name):
    with pytest.raises(MetricError, match=r"shape \(2, 8, 8\).*shape \(2, 4, 4\)"):
        getattr(metrics, name)(np.zeros((2, 4, 4)), np.zeros((2, 8, 8)), method="spade")


def test_image_length_mismatch_raises():
    with pytest.raises(MetricError, match="one score per test image"):
        metrics.image_auroc([0, 1, 1], [0.1, 0.2])


def test_non_binary_masks_raise():
    masks = np.zeros((1, 4, 4), dtype=np.uint8)
    masks[0, 0, 0] = 255
    with pytest.raises(MetricError, match="0 or 1"):
        metrics.au_pro(masks, np.zeros((1, 4, 4)))


@pytest.mark.parametrize("limit", [0, -0.1, 1.5])
def test_bad_fpr_limit_raises(limit):
    masks, maps = random_pixel_data(0)
    with pytest.raises(MetricError, match="fpr_limit"):
        metrics.au_pro(masks, maps, fpr_limit=limit)

