"""Latency of the bootstrap intervals and of a result row's statistics step, tracked with pytest-benchmark
(see "Latency tracking" in the README).

Plain ``pytest`` runs each once, untimed (``--benchmark-disable`` in pyproject),
as a smoke test that asserts on its result. The size is one MVTec AD category:
150 test maps of 224 x 224 (7.5M pixels), 1000 image-level resamples. The
untimed run takes ~2 s on a 2-core machine (making the data and the one
exact ``pixel_auroc`` included), so CI runs the full size.
"""

import numpy as np
import pytest

import metrics
from bench.units import intervals
from methods.base import Prediction

N, SIZE, RESAMPLES = 150, 224, 1000


@pytest.fixture(scope="module")
def category():
    """Seeded masks (60 % of the images defective, one rectangle each) and float32 maps.

    Each map is an image offset plus pixel noise plus a gap on the defect, so the
    pixels of an image are correlated and no two scores are likely to tie.
    """
    rng = np.random.default_rng(0)
    masks = np.zeros((N, SIZE, SIZE), dtype=bool)
    for i in np.flatnonzero(rng.random(N) < 0.6):
        y, x = rng.integers(0, SIZE - 40, 2)
        h, w = rng.integers(5, 40, 2)
        masks[i, y:y + h, x:x + w] = True
    maps = rng.standard_normal((N, SIZE, SIZE), dtype=np.float32)
    maps += rng.normal(0, 0.5, (N, 1, 1)).astype(np.float32)
    maps[masks] += 2.0
    return masks, maps


@pytest.mark.benchmark(group="bootstrap (150 x 224 x 224, 1000 resamples)")
def test_pixel_auroc_bootstrap(benchmark, category):
    masks, maps = category
    low, high = benchmark.pedantic(metrics.bootstrap_ci, args=(metrics.pixel_auroc, masks, maps),
                                   kwargs={"n_resamples": RESAMPLES, "seed": 0}, rounds=3)
    exact = metrics.pixel_auroc(masks, maps)
    assert 0.5 < low < exact < high < 1 and high - low < 0.05


@pytest.mark.benchmark(group="bootstrap (150 x 224 x 224, 1000 resamples)")
def test_statistics_step_of_one_row(benchmark, category):
    """What ``--bootstrap 1000`` adds to each (category, method, seed) row: three intervals."""
    masks, maps = category
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.max(axis=(1, 2))
    bounds = benchmark.pedantic(intervals, args=(labels, masks, Prediction(scores, maps), RESAMPLES, 0, 0.3),
                                rounds=3)
    for key, exact in (("image_auroc", metrics.image_auroc(labels, scores)),
                       ("pro", metrics.au_pro(masks, maps))):
        assert bounds[f"{key}_low"] < exact < bounds[f"{key}_high"], key
