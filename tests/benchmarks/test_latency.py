"""Latency of the hot paths, tracked with pytest-benchmark (see "Latency tracking" in the README).

Plain ``pytest`` runs each once, untimed (``--benchmark-disable`` in pyproject), so
they are also smoke tests: each asserts on its result. Sizes are fixed and
realistic: resnet18 at 224 x 224 (layer1 [N, 64, 56, 56], layer2 [N, 128, 28, 28],
layer3 [N, 256, 14, 14], avgpool [N, 512]), 40 training images, predict on a
batch of 4. Inputs are seeded, so every commit times the same work.
"""

import numpy as np
import pytest

from bench.profile_inputs import FULL, patch_like_features, resnet18_features, structured_feature_maps, structured_features
from methods.bank_clusters import cluster_bank
from methods.bank_index import nearest_in_clusters
from methods.coreset import greedy_coreset
from methods.nearest import nearest_neighbors
from methods.padim import Padim
from methods.patchcore import PatchCore
from methods.spade import Spade

TRAIN_IMAGES = 40
BATCH = 4
LAYERS = ("layer1", "layer2", "layer3", "avgpool")
# A 10 % PatchCore memory bank of TRAIN_IMAGES x 784 patches.
BANK = TRAIN_IMAGES * 784 // 10


@pytest.fixture(scope="module")
def train():
    return resnet18_features(TRAIN_IMAGES, FULL, LAYERS, seed=1)


@pytest.fixture(scope="module")
def batch():
    return resnet18_features(BATCH, FULL, LAYERS, seed=2)


def check_prediction(prediction, n=BATCH, size=(224, 224)):
    assert prediction.scores.shape == (n,) and np.isfinite(prediction.scores).all()
    assert prediction.maps.shape == (n, *size) and np.isfinite(prediction.maps).all()


@pytest.mark.benchmark(group="predict (batch of 4 at 224)")
def test_patchcore_predict(benchmark, batch):
    method = PatchCore()
    # The bank is set, not fitted: predict's cost depends on its size only (the coreset is timed below).
    method.memory_bank_ = patch_like_features(BANK, 384, seed=3)
    check_prediction(benchmark.pedantic(method.predict, args=(batch,), rounds=10, warmup_rounds=1))


@pytest.mark.benchmark(group="predict (batch of 4 at 224)")
def test_padim_predict(benchmark, train, batch):
    method = Padim().fit(train)
    check_prediction(benchmark.pedantic(method.predict, args=(batch,), rounds=10, warmup_rounds=1))


@pytest.mark.benchmark(group="predict (batch of 4 at 224)")
def test_spade_predict(benchmark, train, batch):
    method = Spade(top_k=50).fit(train)  # K capped at the 40 training images
    check_prediction(benchmark.pedantic(method.predict, args=(batch,), rounds=3))


@pytest.mark.benchmark(group="kernels")
def test_coreset_selection(benchmark):
    features = patch_like_features(20_000, 384, seed=4)
    chosen = benchmark.pedantic(greedy_coreset, args=(features, 2_000), kwargs={"seed": 0}, rounds=3)
    assert chosen.shape == (2_000,) and len(np.unique(chosen)) == 2_000


@pytest.mark.benchmark(group="kernels")
@pytest.mark.parametrize("k", [1, 9])
def test_nearest_neighbors(benchmark, k):
    queries = patch_like_features(784, 384, seed=5)
    bank = patch_like_features(16_000, 384, seed=6)
    dist, idx = benchmark.pedantic(nearest_neighbors, args=(queries, bank), kwargs={"k": k}, rounds=10)
    assert dist.shape == idx.shape == (784, k)
    assert np.isfinite(dist).all() and np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.benchmark(group="extraction (batch of 8 at 224)")
def test_feature_extraction(benchmark):
    from bench.backbone import Backbone

    net = Backbone("resnet18", weights="random", seed=0)
    images = np.random.default_rng(7).standard_normal((8, 3, 224, 224), dtype=np.float32)
    layers = ("layer1", "layer2", "layer3", "avgpool")
    net.extract(images, layers, 8)  # traces the model once: not what is tracked
    features = benchmark.pedantic(net.extract, args=(images, layers, 8), rounds=5)
    assert features["layer3"].shape == (8, 256, 14, 14) and features["avgpool"].shape == (8, 512)
    assert all(np.isfinite(f).all() for f in features.values())


def structured_rows(n_images, channels, side, seed):
    """``[n_images * side^2, channels]`` positions of spatially structured maps (one category)."""
    maps = structured_feature_maps(n_images, channels, side, seed)
    return np.ascontiguousarray(maps.transpose(0, 2, 3, 1).reshape(-1, channels))


@pytest.fixture(scope="module")
def structured_bank():
    """A resnet18-sized PatchCore bank (16,000 x 384) and one image's 784 queries, structured."""
    bank = structured_rows(21, 384, 28, seed=1)[:16_000]
    return bank, structured_rows(1, 384, 28, seed=2)


@pytest.mark.benchmark(group="nearest, structured 784 x 16000 x 384")
def test_nearest_brute_structured(benchmark, structured_bank):
    bank, queries = structured_bank
    dist, idx = benchmark.pedantic(nearest_neighbors, args=(queries, bank), kwargs={"k": 1}, rounds=5)
    assert dist.shape == idx.shape == (784, 1) and np.isfinite(dist).all()


@pytest.mark.benchmark(group="nearest, structured 784 x 16000 x 384")
def test_nearest_pruned_structured(benchmark, structured_bank):
    bank, queries = structured_bank
    clustered = cluster_bank(bank, seed=0)  # fit time: not what is tracked
    found = benchmark.pedantic(nearest_in_clusters, args=(queries, clustered), rounds=5)
    ref, _ = nearest_neighbors(queries, bank, k=1)
    np.testing.assert_allclose(found.distances, ref[:, 0], rtol=1e-5)
    assert found.computed_fraction < 0.5


@pytest.mark.benchmark(group="SPADE predict, structured (batch of 2 at 224)")
@pytest.mark.parametrize("search", ["pruned", "brute"])
def test_spade_predict_structured(benchmark, search):
    train = structured_features(TRAIN_IMAGES, FULL, LAYERS, seed=1)
    batch = structured_features(2, FULL, LAYERS, seed=2)
    method = Spade(top_k=50, search=search).fit(train)
    check_prediction(benchmark.pedantic(method.predict, args=(batch,), rounds=2), n=2)
