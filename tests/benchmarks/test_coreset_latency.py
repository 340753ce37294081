"""Latency of the greedy coreset on a small real-photo category's worth of patch features.

40 training images at 224 x 224 with resnet18 give 31,360 layer2+layer3 patch
features; PatchCore keeps 10 % (3,136). Texture-like features are where the
pruning bounds rule out little and the lazy loop takes over; object-like ones
keep the tree (Gaussian noise, the worst case, is in ``bench.py profile``). Plain ``pytest`` runs each once,
untimed, and checks what the loop did (machine-independent counts), not how long.
"""

import numpy as np
import pytest

from bench.profile_inputs import patch_like_features
from methods.coreset import greedy_coreset
from bench.profile_inputs import texture_like_features

POINTS = 40 * 784
SELECT = POINTS // 10
INPUTS = {"texture": texture_like_features, "object": patch_like_features}


@pytest.mark.benchmark(group="coreset")
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_coreset_of_one_small_category(benchmark, kind):
    features = INPUTS[kind](POINTS, 384, seed=0)
    stats = {}
    chosen = benchmark.pedantic(
        greedy_coreset, args=(features, SELECT), kwargs={"seed": 0, "stats": stats}, rounds=3
    )
    assert chosen.shape == (SELECT,) and len(np.unique(chosen)) == SELECT
    fractions = {name: stats[f"fraction_{name}"] for name in ("group", "leaf", "point", "lazy", "full")}
    assert sum(fractions.values()) == pytest.approx(1.0)
    benchmark.extra_info.update(fractions)
    # Where the bounds lose (no low-dimensional structure) the lazy loop does the work.
    assert (stats["lazy_steps"] > SELECT // 2) == (kind != "object")
