"""sPRO / AU-sPRO (MVTec LOCO AD protocol): hand-computed cases, a brute-force reference, AU-PRO as a special case, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

import metrics
from metrics import MetricError, MetricWarning
from metrics.pro import area_up_to
from tests.metric_fixtures import random_pixel_data, reference_area


def row_mask(shape, row, cols):
    mask = np.zeros(shape, dtype=bool)
    mask[row, cols] = True
    return mask


# Most hand cases use two 2x10 images: image 0 has its region in row 0, image 1 is good.


def two_images():
    return np.zeros((2, 2, 10))


# ------------------------------------------------------------- hand-computed cases


def test_region_covered_beyond_its_saturation_counts_as_fully_found():
    # region: row 0 of image 0 (10 px), saturation 4 px. Negatives: row 1 of image 0 and all of
    # image 1 = 30 px. Scores: 3 good-image pixels 2.0, 5 region pixels 1.0, the rest 0.
    # t=2: FPR 3/30 = 0.1, sPRO 0; t=1: FPR 0.1, sPRO min(5/4, 1) = 1; t=0: (1, 1).
    # AU-sPRO(0.3) = (0 over [0, 0.1] + 1 * 0.2) / 0.3 = 2/3.
    maps = two_images()
    maps[1, 0, :3] = 2.0
    maps[0, 0, :5] = 1.0
    region = row_mask((2, 10), 0, slice(0, 10))
    fpr, spro = metrics.spro_curve(maps, [[(region, 4)], []])
    np.testing.assert_allclose(fpr, [0, 0.1, 0.1, 1], rtol=1e-12)
    np.testing.assert_allclose(spro, [0, 0, 1, 1], rtol=1e-12)
    assert metrics.au_spro(maps, [[(region, 4)], []]) == pytest.approx(2 / 3, rel=1e-12)
    # unsaturated (saturation = area) it is PRO: 0.5 at FPR 0.1, then towards (1, 1): at 0.3
    # sPRO = 0.5 + 0.5 * 0.2 / 0.9 = 11/18; area 0.2 * (1/2 + 11/18) / 2 = 1/9; / 0.3 = 10/27.
    assert metrics.au_spro(maps, [[(region, 10)], []]) == pytest.approx(10 / 27, rel=1e-12)


def test_partial_coverage_below_saturation_is_linear():
    # region: row 0 of image 0 (10 px), saturation 8. 30 negatives as above.
    # t=3: 2 region px -> (0, 2/8); t=2: 4 more region px + 6 negatives -> (6/30, 6/8); then (1, 1).
    # area: [0, 0.2]: 0.2 * (0.25 + 0.75) / 2 = 0.1; at 0.3 sPRO = 0.75 + 0.25 * 0.1 / 0.8 = 0.78125,
    # [0.2, 0.3]: 0.1 * (0.75 + 0.78125) / 2 = 0.0765625. AU-sPRO = 0.1765625 / 0.3.
    maps = two_images()
    maps[0, 0, :2] = 3.0
    maps[0, 0, 2:6] = 2.0
    maps[1, 1, :6] = 2.0
    regions = [[(row_mask((2, 10), 0, slice(0, 10)), 8)], []]
    fpr, spro = metrics.spro_curve(maps, regions)
    np.testing.assert_allclose(fpr, [0, 0, 0.2, 1], rtol=1e-12)
    np.testing.assert_allclose(spro, [0, 0.25, 0.75, 1], rtol=1e-12)
    assert metrics.au_spro(maps, regions) == pytest.approx(0.1765625 / 0.3, rel=1e-12)


def test_fractional_saturation_saturates_at_its_ceiling():
    # saturation 2.5 px: 2 flagged px give 2/2.5 = 0.8, the third gives min(3/2.5, 1) = 1
    maps = two_images()
    maps[0, 0, :2] = 3.0
    maps[0, 0, 2] = 2.0
    maps[0, 0, 3] = 1.0
    fpr, spro = metrics.spro_curve(maps, [[(row_mask((2, 10), 0, slice(0, 10)), 2.5)], []])
    np.testing.assert_allclose(fpr, [0, 0, 0, 0, 1])
    np.testing.assert_allclose(spro, [0, 0.8, 1, 1, 1], rtol=1e-12)


def test_two_regions_with_different_saturations_weigh_equally():
    # A: row 0 of image 0, 10 px, saturation 2. B: cols 0-3 of row 0 of image 1, 4 px, saturation 4.
    # 2 px of each flagged at FPR 0: sPRO = (min(2/2, 1) + 2/4) / 2 = 0.75 (pixel-weighted
    # coverage would be 4/14, PRO with these regions (2/10 + 2/4) / 2 = 0.35).
    maps = two_images()
    maps[0, 0, :2] = 1.0
    maps[1, 0, :2] = 1.0
    regions = [[(row_mask((2, 10), 0, slice(0, 10)), 2)], [(row_mask((2, 10), 0, slice(0, 4)), 4)]]
    fpr, spro = metrics.spro_curve(maps, regions)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(spro, [0, 0.75, 1], rtol=1e-12)


def test_fpr_counts_pixels_outside_every_region_of_every_image():
    # image 0: A = row 0 cols 0-4, B = row 0 cols 3-7 (overlapping channels), 5 px each, saturation 5.
    # Negatives: row 0 cols 8-9 and row 1 of image 0 (12) + image 1 (20) = 32.
    # A false positive in the defect image (score 5) counts: FPR 1/32 (over good images only: 0).
    # A pixel in B only (col 7, score 4) is no false positive, though it is outside A:
    # FPR stays 1/32 and sPRO = (0 + 1/5) / 2 = 0.1.
    maps = two_images()
    maps[0, 1, 0] = 5.0
    maps[0, 0, 7] = 4.0
    a, b = row_mask((2, 10), 0, slice(0, 5)), row_mask((2, 10), 0, slice(3, 8))
    fpr, spro = metrics.spro_curve(maps, [[(a, 5), (b, 5)], []])
    np.testing.assert_allclose(fpr, [0, 1 / 32, 1 / 32, 1], rtol=1e-12)
    np.testing.assert_allclose(spro, [0, 0, 0.1, 1], rtol=1e-12)


def test_perfect_map_scores_one():
    maps = two_images()
    maps[0, 0, 2:7] = 0.9
    region = row_mask((2, 10), 0, slice(2, 7))
    assert metrics.au_spro(maps, [[(region, 3)], []]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_map_that_ranks_defects_last_scores_zero(limit):
    # every defect pixel scored below every other pixel: sPRO is 0 until FPR 1, area 0
    rng = np.random.default_rng(0)
    maps = rng.random((2, 2, 10)) + 1.0
    maps[0, 0, :] = 0.0
    regions = [[(row_mask((2, 10), 0, slice(0, 10)), 4)], []]
    fpr, spro = metrics.spro_curve(maps, regions)
    assert np.all(spro[:-1] == 0) and fpr[-2] == 1.0
    assert metrics.au_spro(maps, regions, fpr_limit=limit) == 0.0


@pytest.mark.parametrize("limit", [0.3, 0.1])
def test_constant_map_scores_half_the_limit(limit):
    # one threshold: (0, 0) -> (1, 1) whatever the saturation; area limit**2 / 2, normalised limit / 2
    maps = np.full((2, 2, 10), 0.25)
    regions = [[(row_mask((2, 10), 0, slice(0, 10)), 4)], []]
    assert metrics.au_spro(maps, regions, fpr_limit=limit) == pytest.approx(limit / 2, rel=1e-12)


# ------------------------------------------------------------ brute-force reference


def random_loco_case(seed, shape=(5, 9, 9)):
    """Good image 0, 0-3 overlapping regions (rectangles or scattered pixels) per other image,
    saturations fractional, integral or above the area; scores with ties."""
    rng = np.random.default_rng(seed)
    n, h, w = shape
    maps = np.round(rng.random(shape), 1)
    regions = [[]]
    for i in range(1, n):
        image = []
        for _ in range(rng.integers(0, 4)):
            if rng.random() < 0.5:
                mask = rng.random((h, w)) < 0.2
            else:
                mask = np.zeros((h, w), dtype=bool)
                y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
                mask[y : y + rng.integers(1, 4), x : x + rng.integers(1, 5)] = True
            if not mask.any():
                continue
            area = mask.sum()
            saturation = rng.choice([rng.uniform(0.5, 1.3 * area), float(rng.integers(1, area + 1))])
            maps[i][mask] = np.round(maps[i][mask] + 0.3 * rng.random(), 1)
            image.append((mask, saturation))
        regions.append(image)
    if not any(regions):
        regions[1] = [(np.eye(h, w, dtype=bool), 3.0)]
    return maps, regions


def reference_spro_curve(maps, regions):
    """By the definition: every distinct score as threshold, highest first, loops over regions."""
    fprs, spros = [0.0], [0.0]
    outside = np.stack([~np.any([m for m, _ in image], axis=0) if image else np.ones(maps.shape[1:], bool)
                        for image in regions])
    for t in np.unique(maps)[::-1]:
        flagged = maps >= t
        fprs.append(np.count_nonzero(flagged & outside) / np.count_nonzero(outside))
        terms = [min(np.count_nonzero(flagged[i] & mask) / min(sat, mask.sum()), 1.0)
                 for i, image in enumerate(regions) for mask, sat in image]
        spros.append(sum(terms) / len(terms))
    return np.array(fprs), np.array(spros)


@pytest.mark.parametrize("seed", range(8))
def test_spro_curve_matches_brute_force(seed):
    maps, regions = random_loco_case(seed)
    fpr, spro = metrics.spro_curve(maps, regions)
    ref_fpr, ref_spro = reference_spro_curve(maps, regions)
    assert fpr.shape == ref_fpr.shape
    np.testing.assert_allclose(fpr, ref_fpr, rtol=1e-12, atol=0)
    np.testing.assert_allclose(spro, ref_spro, rtol=1e-12, atol=0)
    for limit in (0.05, 0.3, 1.0):
        assert metrics.au_spro(maps, regions, fpr_limit=limit) == pytest.approx(
            reference_area(ref_fpr, ref_spro, limit), rel=1e-12, abs=1e-15
        )


def test_au_spro_on_many_thresholds_matches_integrated_full_curve():
    # au_spro sorts only the scores down to the limit; float32 maps, many distinct scores
    maps, regions = random_loco_case(3, shape=(10, 40, 40))
    maps = (maps + np.random.default_rng(1).normal(0, 0.2, maps.shape)).astype(np.float32)
    fpr, spro = metrics.spro_curve(maps, regions)
    for limit in (0.01, 0.05, 0.3, 0.7):
        assert metrics.au_spro(maps, regions, fpr_limit=limit) == pytest.approx(
            area_up_to(fpr, spro, limit) / limit, rel=1e-12
        )


@pytest.mark.parametrize("seed", range(4))
def test_equals_pro_for_connected_components_saturated_at_their_area(seed):
    # PRO's regions are 8-connected components and its FPR pixels are those outside every
    # region of every image, as here: with saturation = area both curves coincide.
    masks, maps = random_pixel_data(seed)
    regions = []
    for mask in masks:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions.append([(labels == k, float(np.count_nonzero(labels == k))) for k in range(1, count + 1)])
    fpr, spro = metrics.spro_curve(maps, regions)
    pro_fpr, pro = metrics.pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, pro_fpr, rtol=1e-12)
    np.testing.assert_allclose(spro, pro, rtol=1e-12)
    assert metrics.au_spro(maps, regions) == pytest.approx(metrics.au_pro(masks, maps), rel=1e-12)


# ------------------------------------------------------------------------ errors


def one_region():
    return two_images(), [[(row_mask((2, 10), 0, slice(0, 4)), 2)], []]


def test_nan_map_names_the_method():
    maps, regions = one_region()
    maps[1, 0, 0] = np.nan
    with pytest.raises(MetricError, match="'padim'.*NaN/inf"):
        metrics.au_spro(maps, regions, method="padim")
    maps[1, 0, 0] = np.inf
    with pytest.raises(MetricError, match="'padim'"):
        metrics.spro_curve(maps, regions, method="padim")


@pytest.mark.parametrize("saturation", [0, -1.0, math.nan, math.inf])
def test_bad_saturation_is_refused(saturation):
    maps, _ = one_region()
    with pytest.raises(MetricError, match="region 0 of image 0 has saturation"):
        metrics.au_spro(maps, [[(row_mask((2, 10), 0, slice(0, 4)), saturation)], []])


def test_region_mask_of_wrong_shape_is_refused():
    maps, _ = one_region()
    with pytest.raises(MetricError, match=r"region 0 of image 0 has a mask of shape \(10, 2\)"):
        metrics.spro_curve(maps, [[(np.ones((10, 2), dtype=bool), 2)], []])


def test_region_list_of_wrong_length_is_refused():
    maps, regions = one_region()
    with pytest.raises(MetricError, match="3 region lists for 2 anomaly maps"):
        metrics.au_spro(maps, regions + [[]])


def test_empty_region_and_soft_mask_are_refused():
    maps, _ = one_region()
    with pytest.raises(MetricError, match="region 0 of image 1 is empty"):
        metrics.au_spro(maps, [[], [(np.zeros((2, 10), dtype=bool), 2)]])
    with pytest.raises(MetricError, match="must be 0 or 1"):
        metrics.au_spro(maps, [[(np.full((2, 10), 0.5), 2)], []])


def test_maps_not_three_dimensional_are_refused():
    with pytest.raises(MetricError, match=r"shape \(2, 10\)"):
        metrics.au_spro(np.zeros((2, 10)), [[], []])


def test_no_regions_or_no_negatives_give_nan_with_a_warning():
    maps = two_images()
    with pytest.warns(MetricWarning, match="AU-sPRO is undefined"):
        assert math.isnan(metrics.au_spro(maps, [[], []]))
    with pytest.warns(MetricWarning, match="sPRO curve is undefined"):
        fpr, spro = metrics.spro_curve(maps, [[], []])
    assert np.isnan(spro).all()
    everything = np.ones((2, 10), dtype=bool)
    with pytest.warns(MetricWarning, match="no defect-free pixels"):
        assert math.isnan(metrics.au_spro(maps, [[(everything, 3)], [(everything, 3)]]))


def test_fpr_limit_is_checked():
    maps, regions = one_region()
    with pytest.raises(MetricError, match="fpr_limit"):
        metrics.au_spro(maps, regions, fpr_limit=0)
