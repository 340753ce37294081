"""The shared device copies of a category's features, and the methods' embeddings built on them.

Run on Paddle's CPU place (no GPU here): the device copies and the upload count
behave the same on any place.
"""

import copy
import dataclasses
import pickle
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

import methods.backend  # noqa: E402
from bench.cli import parse  # noqa: E402
from bench.units import Naming, Unit, run_unit  # noqa: E402
from methods.base import AnomalyMethod, FeatureSet, Prediction  # noqa: E402
from methods.device_embedding import (  # noqa: E402
    padim_embedding_tensor,
    padim_positions_tensor,
    padim_samples_tensor,
    patchcore_embedding_tensor,
    spade_pooled_tensor,
    spade_positions_tensor,
    spade_queries_tensor,
)
from methods.maps import resize_bilinear, resize_nearest  # noqa: E402
from methods.maps_paddle import local_average_tensor, resize_bilinear_tensor, resize_nearest_tensor  # noqa: E402
from methods.coreset import greedy_coreset, random_projection  # noqa: E402
from methods.gaussians import pack_upper, whitened_distances_numpy, whitened_distances_paddle  # noqa: E402
from methods.padim import Padim, channel_subset, padim_embedding, padim_samples  # noqa: E402
from methods.patchcore import PatchCore, local_average, patch_embedding  # noqa: E402
from methods.spade import Spade, positions_last, queries  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALL_LAYERS = ("layer1", "layer2", "layer3", "avgpool")


@pytest.fixture(autouse=True)
def paddle_on_cpu():
    previous = paddle.device.get_device()
    paddle.device.set_device("cpu")
    with methods.backend.backend("paddle"):
        yield
    paddle.device.set_device(previous)


def odd_features(n=3, seed=0) -> FeatureSet:
    """Grids whose ratios are not whole (7x6 <- 4x3 <- 3x2), so a resize convention that differs shows."""
    rng = np.random.default_rng(seed)
    layers = {
        "layer1": rng.normal(size=(n, 5, 7, 6)),
        "layer2": rng.normal(size=(n, 6, 4, 3)),
        "layer3": rng.normal(size=(n, 7, 3, 2)),
        "avgpool": rng.normal(size=(n, 7)),
    }
    return FeatureSet({k: v.astype(np.float32) for k, v in layers.items()}, image_size=(28, 24))


@pytest.mark.parametrize("size", [(7, 6), (2, 5), (4, 3), (11, 1)])
def test_paddle_resizes_match_the_numpy_ones(size):
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 3)).astype(np.float32)
    t = paddle.to_tensor(x)
    np.testing.assert_allclose(resize_bilinear_tensor(t, size).numpy(), resize_bilinear(x, size), atol=1e-5)
    np.testing.assert_array_equal(resize_nearest_tensor(t, size).numpy(), resize_nearest(x, size))


def test_local_average_divides_border_positions_by_nine():
    x = np.random.default_rng(2).normal(size=(2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(local_average_tensor(paddle.to_tensor(x)).numpy(), local_average(x), atol=1e-6)
    corner = local_average_tensor(paddle.ones([1, 1, 3, 3])).numpy()[0, 0, 0, 0]
    assert corner == pytest.approx(4 / 9)


def test_patchcore_embedding_on_the_device_equals_the_numpy_one():
    features = odd_features()
    np.testing.assert_allclose(patchcore_embedding_tensor(features).numpy(), patch_embedding(features),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_features", [1, 5, 11, 18])
@pytest.mark.parametrize("rows", [slice(None), slice(2, 5), slice(6, 99)])
def test_padim_embedding_on_the_device_equals_the_numpy_one(n_features, rows):
    features = odd_features()
    channels = channel_subset(18, n_features, seed=n_features)
    np.testing.assert_array_equal(padim_embedding_tensor(features, channels, rows).numpy(),
                                  padim_embedding(features, channels, rows))
    np.testing.assert_array_equal(padim_samples_tensor(features, channels, rows).numpy(),
                                  padim_samples(features, channels, rows))
    padim = Padim(n_features=n_features)
    padim.channels_ = channels
    np.testing.assert_array_equal(padim_positions_tensor(features, channels, rows).numpy(),
                                  padim._positions(features, rows))


def test_padim_does_not_upload_a_layer_it_keeps_no_channel_of():
    features = odd_features()
    padim_embedding_tensor(features, np.array([0, 3]))  # both in layer1's 5 channels
    assert features.device_copies.held() == ("layer1",)


@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3"])
def test_spade_arrays_on_the_device_equal_the_numpy_ones(layer):
    features = odd_features()
    np.testing.assert_array_equal(spade_positions_tensor(features, layer).numpy(), positions_last(features[layer]))
    rows = spade_queries_tensor(features, layer).numpy()
    for i in range(len(features)):
        np.testing.assert_array_equal(rows[i], queries(features[layer][i]))
    np.testing.assert_array_equal(spade_pooled_tensor(features).numpy(), features["avgpool"])


def every_embedding(features: FeatureSet) -> None:
    patchcore_embedding_tensor(features)
    padim_embedding_tensor(features, np.arange(0, 18, 2))
    for layer in ("layer1", "layer2", "layer3"):
        spade_queries_tensor(features, layer)
    spade_pooled_tensor(features)


def test_every_method_shares_one_upload_per_layer_until_released():
    features = odd_features()
    first = features.tensor("layer2")
    for _ in range(2):
        every_embedding(features)
    assert features.device_copies.uploads == len(ALL_LAYERS)
    assert features.device_copies.held() == tuple(sorted(ALL_LAYERS))
    assert features.tensor("layer2") is first
    assert first.dtype == paddle.float32 and first.stop_gradient

    gone = weakref.ref(first)
    del first
    features.release()
    assert gone() is None, "release left a reference to the device copy"
    assert features.device_copies.held() == ()
    every_embedding(features)
    assert features.device_copies.uploads == 2 * len(ALL_LAYERS)


def test_device_copies_are_the_sets_own():
    layers = odd_features().layers
    a, b = FeatureSet(layers, (28, 24)), FeatureSet(layers, (28, 24))
    a.tensor("layer1")
    assert (a.device_copies.uploads, b.device_copies.uploads) == (1, 0)
    assert a == b  # device copies take no part in equality
    float64 = FeatureSet({"layer1": layers["layer1"].astype(np.float64)}, (28, 24))
    assert float64.tensor("layer1").dtype == paddle.float32


@pytest.mark.parametrize("duplicate", [lambda f: pickle.loads(pickle.dumps(f)), copy.deepcopy,
                                       lambda f: dataclasses.replace(f, image_size=(28, 24))])
def test_a_copied_set_arrives_without_device_copies(duplicate):
    features = odd_features()
    features.tensor("layer3")
    twin = duplicate(features)
    assert twin.device_copies.held() == () and twin.device_copies.uploads == 0
    np.testing.assert_array_equal(twin["layer3"], features["layer3"])
    assert features.device_copies.held() == ("layer3",)


def test_importing_the_method_api_and_embeddings_imports_no_paddle():
    code = ("import sys, methods.base, methods.device_embedding, methods.maps_paddle\n"
            "print('paddle' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def the_three_methods() -> list[AnomalyMethod]:
    """PatchCore (projected to fewer dimensions than its 13, b = 9 of a 15-row bank), PaDiM (every
    channel, so it reads every layer; grid rows in blocks of 2 on the device) and SPADE (K = 2)."""
    return [PatchCore(coreset_ratio=0.25, projection_dim=4, seed=3),
            Padim(n_features=18, seed=1, budget_bytes=3000),
            Spade(top_k=2)]


def fit_and_predict(train: FeatureSet, test: FeatureSet) -> list[tuple[AnomalyMethod, Prediction]]:
    return [(method.fit(train), method.predict(test)) for method in the_three_methods()]


def on_the_host(train: FeatureSet, test: FeatureSet) -> list[tuple[AnomalyMethod, Prediction]]:
    """The NumPy path on fresh sets over the same arrays: the reference, and it uploads nothing."""
    twins = FeatureSet(train.layers, train.image_size), FeatureSet(test.layers, test.image_size)
    with methods.backend.backend("numpy"):
        results = fit_and_predict(*twins)
    assert [twin.device_copies.uploads for twin in twins] == [0, 0]
    return results


def assert_same_predictions(got, want):
    for (method, a), (_, b) in zip(got, want):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5, err_msg=method.name)
        np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-5, err_msg=method.name)


def test_the_methods_share_one_upload_per_layer_and_predict_as_on_the_host():
    train, test = odd_features(n=5, seed=3), odd_features(n=3, seed=4)
    on_device = fit_and_predict(train, test)

    # PatchCore fits on the device; PaDiM and SPADE fit on the host (their fitted state is
    # NumPy). All three predict on the device, from the same copies.
    assert train.device_copies.held() == ("layer2", "layer3")
    assert train.device_copies.uploads == 2
    assert test.device_copies.held() == tuple(sorted(ALL_LAYERS))
    assert test.device_copies.uploads == len(ALL_LAYERS)
    reference = on_the_host(train, test)
    np.testing.assert_allclose(on_device[0][0].memory_bank_, reference[0][0].memory_bank_, atol=1e-5)
    assert_same_predictions(on_device, reference)

    copies = [weakref.ref(split.tensor(name)) for split in (train, test) for name in split.device_copies.held()]
    assert (train.device_copies.uploads, test.device_copies.uploads) == (2, 4)  # reading them uploaded nothing
    train.release()
    test.release()
    assert train.device_copies.held() == test.device_copies.held() == ()
    assert [ref() for ref in copies] == [None] * 6, "a method kept a reference to a released device copy"


def poison(features: FeatureSet) -> None:
    """Turn the host arrays to NaN: whatever still reads them (rather than the device copies) gives NaN."""
    for array in features.layers.values():
        array[...] = np.nan


def test_predict_on_the_device_reads_no_host_feature():
    train, test = odd_features(n=5, seed=3), odd_features(n=3, seed=4)
    reference = on_the_host(copy.deepcopy(train), copy.deepcopy(test))
    for name in ALL_LAYERS:
        test.tensor(name)
    poison(test)
    fitted = [method.fit(train) for method in the_three_methods()]
    assert_same_predictions([(method, method.predict(test)) for method in fitted], reference)
    assert test.device_copies.uploads == len(ALL_LAYERS)


def test_patchcore_fit_on_the_device_reads_no_host_feature():
    train = odd_features(n=5, seed=3)
    want = PatchCore(coreset_ratio=0.25, projection_dim=4, seed=3)
    with methods.backend.backend("numpy"):
        want.fit(copy.deepcopy(train))
    train.tensor("layer2"), train.tensor("layer3")
    poison(train)
    got = PatchCore(coreset_ratio=0.25, projection_dim=4, seed=3).fit(train)
    np.testing.assert_allclose(got.memory_bank_, want.memory_bank_, atol=1e-5)


def test_patchcore_keeps_its_device_bank_until_the_bank_changes():
    train, test = odd_features(n=5, seed=3), odd_features(n=3, seed=4)
    model = PatchCore(coreset_ratio=0.25, projection_dim=4).fit(train)
    bank, norms = model.device_bank()
    model.predict(test)
    assert model.device_bank()[0] is bank
    np.testing.assert_array_equal(bank.numpy(), model.memory_bank_)
    np.testing.assert_allclose(norms.numpy(), (model.memory_bank_ ** 2).sum(axis=1), rtol=1e-6)
    model.memory_bank_ = model.memory_bank_[:7].copy()  # as a loaded model's bank
    assert model.device_bank()[0] is not bank
    assert model.device_bank()[0].shape == [7, model.memory_bank_.shape[1]]


def test_random_projection_of_a_tensor_stays_on_the_device_and_selects_alike():
    x = np.random.default_rng(5).normal(size=(200, 24)).astype(np.float32)
    projected = random_projection(paddle.to_tensor(x), 8, seed=2)
    assert isinstance(projected, paddle.Tensor)
    np.testing.assert_allclose(projected.numpy(), random_projection(x, 8, seed=2), rtol=1e-5, atol=1e-5)
    assert random_projection(paddle.to_tensor(x), 64, seed=2).shape == [200, 24]
    np.testing.assert_array_equal(greedy_coreset(paddle.to_tensor(x), 40, projection_dim=8, seed=2, progress=print),
                                  greedy_coreset(x, 40, projection_dim=8, seed=2, progress=print))
    with methods.backend.backend("numpy"):  # a tensor given to the NumPy loop comes back to the host
        np.testing.assert_array_equal(greedy_coreset(paddle.to_tensor(x), 40, projection_dim=8, seed=2,
                                                     progress=print),
                                      greedy_coreset(x, 40, projection_dim=8, seed=2, progress=print))


def test_whitened_distances_of_device_samples_equal_the_host_ones():
    rng = np.random.default_rng(6)
    n, p, d = 4, 9, 7
    x = rng.normal(size=(n, p, d)).astype(np.float32)
    mean = rng.normal(size=(p, d)).astype(np.float32)
    u = np.triu(rng.normal(size=(p, d, d))).astype(np.float32)
    whitener = pack_upper(u)
    samples = paddle.to_tensor(np.ascontiguousarray(x.transpose(1, 2, 0)))  # [P, d, N]
    want = np.linalg.norm(np.einsum("npd,pde->npe", x - mean, u), axis=2)
    for budget in (1, 10**6):  # a position per chunk, and all at once
        np.testing.assert_allclose(whitened_distances_paddle(samples, mean, whitener, budget_bytes=budget),
                                   want, rtol=1e-5)
        np.testing.assert_allclose(whitened_distances_numpy(x, mean, whitener, budget_bytes=budget), want,
                                   rtol=1e-5)


class FakeBackbone:
    """Random features of the right shapes, with no network: the harness's side of a unit is under test."""

    name = "resnet18"
    weights_id = weights_used = "random"
    shapes = {"layer1": (4, 8, 8), "layer2": (6, 4, 4), "layer3": (8, 2, 2), "avgpool": (8,)}

    def extract(self, images, layers, batch_size=8, progress=None):
        rng = np.random.default_rng(len(images))
        return {layer: rng.normal(size=(len(images), *self.shapes[layer])).astype(np.float32) for layer in layers}


def device_user(name_: str, seen: list):
    """A method whose fit and predict read layer2 from the device, recording what they were handed."""

    class DeviceUser(AnomalyMethod):
        name = name_
        layers = ("layer2", "layer3")

        def fit(self, features):
            seen.append(("fit", features, id(features.tensor("layer2"))))
            return self

        def predict(self, features):
            seen.append(("predict", features, id(features.tensor("layer2"))))
            n, (h, w) = len(features), features.image_size
            scores = np.arange(n, dtype=np.float64)
            return Prediction(scores=scores, maps=np.broadcast_to(scores[:, None, None], (n, h, w)).astype(np.float32))

    return DeviceUser


def test_a_unit_leaves_no_device_copies_behind(synthetic_root):
    seen: list = []
    methods = {"first": device_user("first", seen), "second": device_user("second", seen)}
    options, _ = parse(["--data-path", str(synthetic_root), "--category", "weave", "--methods", "patchcore",
                        "--resize", "72", "--crop", "64", "--no-cache", "--bootstrap", "0"])
    rows = []
    unit = Unit("weave", "resnet18", (("first", 0), ("second", 0), ("first", 1)))
    run_unit(unit, methods, options, synthetic_root, Naming(False, True), lambda row, files: rows.append(row),
             backbones=lambda name: FakeBackbone())

    assert [row.get("error") for row in rows] == [None] * 3
    assert len(seen) == 6
    for step in ("fit", "predict"):
        handed = [(features, tensor_id) for kind, features, tensor_id in seen if kind == step]
        assert len({id(features) for features, _ in handed}) == 1  # one FeatureSet per split ...
        assert len({tensor_id for _, tensor_id in handed}) == 1  # ... one device tensor for every method
        features = handed[0][0]
        assert features.device_copies.uploads == 1
        assert features.device_copies.held() == (), f"the {step} split kept its device copies after the unit"
