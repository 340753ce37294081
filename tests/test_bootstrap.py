"""metrics.bootstrap_ci / paired_bootstrap_ci: coverage by simulation, fast paths equal to the generic path."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from metric_fixtures import random_image_data, random_pixel_data
from scipy import stats

import metrics
from metrics import MetricError, MetricWarning
from metrics._bootstrap_fast import au_pro_kernel, pixel_auroc_kernel
from metrics.bootstrap import resample_indices

TRIALS = 500
GOOD = BAD = 20
GAP = 1.0  # mean gap d between the classes, unit variance: AUROC = Phi(d / sqrt 2)


def generic(metric):
    """The same metric, hidden from the fast-path dispatch."""
    return lambda *arrays: metric(*arrays)


# ------------------------------------------------------------------ coverage


def test_image_auroc_interval_covers_the_true_auroc():
    truth = stats.norm.cdf(GAP / np.sqrt(2))
    labels = np.repeat([0, 1], [GOOD, BAD])
    covered = 0
    for trial in range(TRIALS):
        rng = np.random.default_rng(1000 + trial)
        scores = rng.standard_normal(GOOD + BAD) + GAP * labels
        low, high = metrics.bootstrap_ci(metrics.image_auroc, labels, scores,
                                         n_resamples=500, seed=trial)
        covered += low <= truth <= high
    # observed 0.950 (475 / 500) with these seeds
    assert 0.90 <= covered / TRIALS <= 0.99, covered


def simulated_pixels(rng, side=8, defect=4, spread=1.0):
    """GOOD good and BAD defective images of side x side pixels; each image has its own offset.

    Defective images carry a defect x defect square of pixels scoring GAP higher. Pixel score =
    image offset N(0, spread^2) + pixel noise N(0, 1) (+ GAP on a defect), so the pixels of an
    image are correlated: the image, not the pixel, is the independent unit.
    """
    masks = np.zeros((GOOD + BAD, side, side), dtype=bool)
    masks[GOOD:, 2:2 + defect, 2:2 + defect] = True
    offsets = rng.normal(0, spread, GOOD + BAD)[:, None, None]
    maps = offsets + rng.standard_normal(masks.shape) + GAP * masks
    return masks, maps


def expected_pixel_auroc(side=8, defect=4, spread=1.0):
    """E[pixel AUROC] of ``simulated_pixels``: pairs of one image share its offset, others do not."""
    pos = BAD * defect**2
    neg_bad = side**2 - defect**2
    neg = GOOD * side**2 + BAD * neg_bad
    same = BAD * defect**2 * neg_bad / (pos * neg)  # fraction of (defect, normal) pairs in one image
    return (same * stats.norm.cdf(GAP / np.sqrt(2))
            + (1 - same) * stats.norm.cdf(GAP / np.sqrt(2 + 2 * spread**2)))


def test_image_resampled_pixel_auroc_interval_covers_the_truth():
    truth = expected_pixel_auroc()
    covered = 0
    for trial in range(TRIALS):
        masks, maps = simulated_pixels(np.random.default_rng(5000 + trial))
        low, high = metrics.bootstrap_ci(metrics.pixel_auroc, masks, maps,
                                         n_resamples=500, seed=trial)
        covered += low <= truth <= high
    # observed 0.944 (472 / 500) with these seeds
    assert 0.90 <= covered / TRIALS <= 0.99, covered


def test_resampling_pixels_instead_of_images_would_be_far_too_narrow():
    # why the image is the unit: treating the 2560 correlated pixels as independent
    masks, maps = simulated_pixels(np.random.default_rng(7))
    low, high = metrics.bootstrap_ci(metrics.pixel_auroc, masks, maps, n_resamples=300)
    flat_low, flat_high = metrics.bootstrap_ci(
        metrics.image_auroc, masks.reshape(-1), maps.reshape(-1), n_resamples=300)
    assert (flat_high - flat_low) < 0.5 * (high - low)


# --------------------------------------------------- fast paths = generic path


@pytest.mark.parametrize("seed", range(3))
def test_image_auroc_fast_path_equals_generic(seed):
    labels, scores = random_image_data(seed, decimals=1)  # ties
    fast = metrics.bootstrap_ci(metrics.image_auroc, labels, scores, n_resamples=300, seed=seed)
    slow = metrics.bootstrap_ci(generic(metrics.image_auroc), labels, scores, n_resamples=300,
                                seed=seed)
    assert fast == pytest.approx(slow, abs=1e-12)


@pytest.mark.parametrize("metric", [metrics.pixel_auroc, metrics.au_pro,
                                    functools.partial(metrics.au_pro, fpr_limit=0.05)],
                         ids=["pixel_auroc", "au_pro", "au_pro_0.05"])
@pytest.mark.parametrize("decimals", [2, None])
def test_pixel_fast_paths_equal_generic(metric, decimals):
    # fewer distinct scores than bins here, so the binned kernels are exact
    masks, maps = random_pixel_data(3, shape=(12, 16, 16), decimals=decimals or 15)
    fast = metrics.bootstrap_ci(metric, masks, maps, n_resamples=200, seed=1)
    slow = metrics.bootstrap_ci(generic(metric), masks, maps, n_resamples=200, seed=1)
    assert fast == pytest.approx(slow, abs=1e-9)


def test_binned_kernels_stay_within_the_stated_error():
    # more distinct scores (245k) than bins (2**16), white-noise maps (the hard case): the
    # docstring's bounds, 1e-5 for pixel AUROC and 2e-4 for AU-PRO (2**12 bins), hold
    rng = np.random.default_rng(0)
    masks = np.zeros((15, 128, 128), dtype=bool)
    masks[8:, 20:34, 10:30] = True
    masks[10:, 50:54, 50:60] = True
    maps = rng.normal(0, 0.5, (15, 1, 1)) + rng.standard_normal(masks.shape) + 1.5 * masks
    maps = maps.astype(np.float32)
    whole = np.ones((1, 15))
    assert abs(pixel_auroc_kernel(masks, maps)(whole)[0] - metrics.pixel_auroc(masks, maps)) < 1e-5
    assert abs(au_pro_kernel(masks, maps)(whole)[0] - metrics.au_pro(masks, maps)) < 2e-4
    counts = np.random.default_rng(1).integers(0, 3, (5, 15)).astype(float)
    for row in counts:
        chosen = np.repeat(np.arange(15), row.astype(int))
        assert abs(pixel_auroc_kernel(masks, maps)(row[None])[0]
                   - metrics.pixel_auroc(masks[chosen], maps[chosen])) < 1e-5


def test_paired_fast_path_equals_generic_and_the_difference():
    labels, first = random_image_data(4, decimals=2)
    second = np.round(first + np.random.default_rng(0).normal(0, 0.2, first.size), 2)
    diff, low, high = metrics.paired_bootstrap_ci(metrics.image_auroc, labels, first, second,
                                                  n_resamples=300, seed=2)
    assert diff == pytest.approx(metrics.image_auroc(labels, first)
                                 - metrics.image_auroc(labels, second))
    assert low <= diff <= high
    slow = metrics.paired_bootstrap_ci(generic(metrics.image_auroc), labels, first, second,
                                       n_resamples=300, seed=2)
    assert (diff, low, high) == pytest.approx(slow, abs=1e-12)


def test_paired_interval_is_narrower_than_the_unpaired_ones():
    # two methods that share most of their per-image noise: the paired difference is far tighter
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 30)
    shared = rng.standard_normal(60) + labels
    first, second = shared + 0.1 * rng.standard_normal(60), shared + 0.1 * rng.standard_normal(60)
    _, low, high = metrics.paired_bootstrap_ci(metrics.image_auroc, labels, first, second)
    single_low, single_high = metrics.bootstrap_ci(metrics.image_auroc, labels, first)
    assert high - low < 0.5 * (single_high - single_low)
    masks, maps = random_pixel_data(0)
    assert metrics.paired_bootstrap_ci(metrics.pixel_auroc, masks, maps, maps,
                                       n_resamples=50) == (0.0, 0.0, 0.0)


# ----------------------------------------------------------- resampling rules


def test_resamples_are_stratified_and_seeded():
    labels = np.array([0, 1, 1, 0, 0, 1, 0])
    indices = resample_indices(labels, 50, seed=4)
    assert indices.shape == (50, 7)
    assert (labels[indices].sum(axis=1) == 3).all()  # every resample keeps 3 defective images
    assert np.array_equal(indices, resample_indices(labels, 50, seed=4))
    assert not np.array_equal(indices, resample_indices(labels, 50, seed=5))
    masks = np.zeros((7, 2, 2))
    masks[[1, 2, 5], 0, 0] = 1  # masks give the same strata, hence the same resamples
    assert np.array_equal(indices, resample_indices(masks, 50, seed=4))


def test_every_array_follows_the_same_indices():
    seen = []

    def metric(labels, scores, ids):
        assert np.array_equal(scores, ids * 10.0)
        seen.append(labels.sum())
        return float(np.mean(scores))

    labels = np.array([0, 1, 0, 1])
    ids = np.arange(4)
    low, high = metrics.bootstrap_ci(metric, labels, ids * 10.0, ids, n_resamples=20, level=0.9)
    assert len(seen) == 20 and set(seen) == {2} and 0 <= low <= high <= 30


def test_undefined_resamples_are_dropped_and_all_undefined_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        assert np.isnan(metrics.bootstrap_ci(metrics.image_auroc, [1, 1, 1], [0.1, 0.2, 0.3],
                                             n_resamples=10)).all()
        assert np.isnan(metrics.bootstrap_ci(generic(metrics.image_auroc), [1, 1, 1],
                                             [0.1, 0.2, 0.3], n_resamples=10)).all()
    calls = iter(range(100))
    low, high = metrics.bootstrap_ci(lambda y, s: np.nan if next(calls) % 2 else 0.5,
                                     [0, 1], [0.1, 0.2], n_resamples=10)
    assert (low, high) == (0.5, 0.5)


def test_bad_arguments_raise():
    with pytest.raises(MetricError, match="same first axis"):
        metrics.bootstrap_ci(metrics.image_auroc, [0, 1, 1], [0.1, 0.2])
    with pytest.raises(MetricError, match="level"):
        metrics.bootstrap_ci(metrics.image_auroc, [0, 1], [0.1, 0.2], level=95)
    with pytest.raises(MetricError, match="n_resamples"):
        metrics.bootstrap_ci(metrics.image_auroc, [0, 1], [0.1, 0.2], n_resamples=0)
    with pytest.raises(MetricError, match="NaN/inf"):
        metrics.bootstrap_ci(metrics.image_auroc, [0, 1], [0.1, np.nan])
    with pytest.raises(MetricError, match="same test images"):
        metrics.paired_bootstrap_ci(metrics.image_auroc, [0, 1], [0.1, 0.2], [0.1, 0.2, 0.3])


def test_unstratified_resamples_draw_from_all_rows():
    labels = np.array([0] * 6 + [1] * 4)
    stratified = metrics.bootstrap.resample_indices(labels, 200, seed=0)
    plain = metrics.bootstrap.resample_indices(labels, 200, seed=0, stratify=False)
    assert (labels[stratified].sum(axis=1) == 4).all()  # the class balance of the test set, always
    assert len(np.unique(labels[plain].sum(axis=1))) > 3  # any balance
    assert plain.min() == 0 and plain.max() == 9


def test_expanded_level_widens_small_samples_to_the_t_interval():
    # Hesterberg (2015): normal quantile of the level = sqrt(n / (n - 1)) * t quantile
    assert metrics.expanded_level(0.95, 10) == pytest.approx(0.9829, abs=1e-4)
    assert metrics.expanded_level(0.95, 6) == pytest.approx(0.9951, abs=1e-4)
    assert metrics.expanded_level(0.95, 1000) == pytest.approx(0.95, abs=1e-3)  # large n: unchanged
    assert metrics.expanded_level(0.95, 2) < 1  # still a level percentile_interval takes
    with pytest.raises(metrics.MetricError):
        metrics.expanded_level(0.95, 1)
