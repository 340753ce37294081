"""PaDiM's Gaussians, Mahalanobis maps and image scores against brute force written here."""

import numpy as np
import pytest

from methods.backend import backend
from methods.base import FeatureSet, MethodError
from methods.maps import anomaly_map
from methods.gaussians import unpack_upper
from methods.padim import Padim, channel_subset, feature_count, padim_embedding
from feature_fixtures import random_features

SIZE = (32, 32)


def full_embedding(f):
    """The whole concatenation, [N, 18, 8, 8]: layer2/3 blown up by repeating rows and columns."""
    up2 = f["layer2"].repeat(2, axis=2).repeat(2, axis=3)
    up3 = f["layer3"].repeat(4, axis=2).repeat(4, axis=3)
    return np.concatenate([f["layer1"], up2, up3], axis=1).astype(np.float64)


def brute_padim(train, test, d, seed):
    """np.cov + np.linalg.inv per position, then the Mahalanobis distance one vector at a time."""
    channels = np.sort(np.random.default_rng(seed).choice(18, d, replace=False))
    tr = full_embedding(train)[:, channels]  # [N, d, 8, 8]
    te = full_embedding(test)[:, channels]
    means = np.zeros((64, d))
    inverses = np.zeros((64, d, d))
    grids = np.zeros((len(te), 8, 8))
    for i in range(8):
        for j in range(8):
            samples = tr[:, :, i, j]
            mu = samples.mean(axis=0)
            inv = np.linalg.inv(np.cov(samples, rowvar=False) + 0.01 * np.eye(d))
            means[i * 8 + j], inverses[i * 8 + j] = mu, inv
            for n in range(len(te)):
                delta = te[n, :, i, j] - mu
                grids[n, i, j] = np.sqrt(delta @ inv @ delta)
    return channels, means, inverses, grids


@pytest.mark.parametrize("budget", [1 << 30, 3000])  # one chunk; many chunks of a few positions
def test_gaussians_scores_and_maps_match_brute_force(budget):
    train, test = random_features(30, 1), random_features(4, 2)
    model = Padim(n_features=10, seed=3, budget_bytes=budget).fit(train)
    channels, means, inverses, grids = brute_padim(train, test, 10, 3)
    np.testing.assert_array_equal(model.channels_, channels)
    assert model.mean_.shape == (64, 10) and model.mean_.dtype == np.float32
    assert model.whitener_.shape == (64, 55) and model.whitener_.dtype == np.float32
    np.testing.assert_allclose(model.mean_, means, rtol=1e-5, atol=1e-6)
    factors = unpack_upper(model.whitener_, 10).astype(np.float64)
    np.testing.assert_allclose(factors @ factors.transpose(0, 2, 1), inverses, rtol=1e-4, atol=1e-5)

    pred = model.predict(test)
    ref_maps = anomaly_map(grids, SIZE)
    assert pred.maps.shape == (4, *SIZE) and pred.scores.shape == (4,)
    np.testing.assert_allclose(pred.maps, ref_maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pred.scores, ref_maps.reshape(4, -1).max(axis=1), rtol=1e-4)
    assert model.model_size_bytes() == model.mean_.nbytes + model.whitener_.nbytes + model.channels_.nbytes


def test_paddle_path_matches_numpy_path():
    train, test = random_features(25, 4), random_features(3, 5)
    with backend("numpy"):
        ref = Padim(n_features=12, seed=1, budget_bytes=5000).fit(train).predict(test)
    with backend("paddle"):
        got = Padim(n_features=12, seed=1, budget_bytes=5000).fit(train).predict(test)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-4)


def test_embedding_selects_from_each_layer_as_from_the_concatenation():
    f = random_features(3, 6)
    channels = np.array([0, 3, 4, 9, 10, 17])  # two from each layer, at the layer borders
    np.testing.assert_array_equal(padim_embedding(f, channels), full_embedding(f)[:, channels].astype(np.float32))


def resnet18_like(n, seed=0):
    return random_features(n, seed, channels=(64, 128, 256))


def test_resnet18_keeps_100_of_448_seeded_channels():
    f = resnet18_like(3)
    a = Padim(seed=7).fit(f)
    assert a.channels_.shape == (100,) and a.whitener_.shape == (64, 100 * 101 // 2)
    np.testing.assert_array_equal(a.channels_, np.sort(np.random.default_rng(7).choice(448, 100, replace=False)))
    np.testing.assert_array_equal(a.channels_, Padim(seed=7).fit(f).channels_)
    assert not np.array_equal(a.channels_, Padim(seed=8).fit(f).channels_)
    assert np.all(np.diff(a.channels_) > 0)


def test_feature_count_rules():
    assert feature_count(448, None) == 100
    assert feature_count(1792, None) == 550
    assert feature_count(1792, 200) == 200
    assert feature_count(18, 18) == 18
    with pytest.raises(MethodError, match="--padim-features"):
        feature_count(18, 19)
    sub = channel_subset(1792, 550, 0)
    assert sub.shape == (550,) and len(set(sub.tolist())) == 550 and sub.max() < 1792


def test_unknown_channel_count_needs_the_flag():
    f = random_features(3, 0)  # 4 + 6 + 8 = 18 channels: no default
    with pytest.raises(MethodError, match="--padim-features") as err:
        Padim().fit(f)
    assert "18 channels" in str(err.value)
    assert Padim(n_features=5).fit(f).channels_.shape == (5,)


def test_needs_two_training_images_and_a_matching_test_grid():
    with pytest.raises(MethodError, match="at least 2"):
        Padim(n_features=5).fit(random_features(1, 0))
    model = Padim(n_features=5).fit(random_features(4, 0))
    with pytest.raises(MethodError, match="same backbone"):
        model.predict(random_features(2, 1, channels=(4, 6, 9)))


def test_an_injected_anomaly_scores_higher_where_it_is():
    train = random_features(40, 8)
    clean = random_features(1, 9)
    layers = {name: array.copy() for name, array in clean.layers.items()}
    # Layer1 cell (5, 2), i.e. image rows 20..23 and cols 8..11, and the cells over it in layer2/3.
    layers["layer1"][0, :, 5, 2] += 6.0
    layers["layer2"][0, :, 2, 1] += 6.0
    layers["layer3"][0, :, 1, 0] += 6.0
    dirty = FeatureSet(layers, SIZE)
    model = Padim(n_features=10, seed=0).fit(train)
    a, b = model.predict(clean), model.predict(dirty)
    assert b.scores[0] > 2 * a.scores[0]
    row, col = np.unravel_index(b.maps[0].argmax(), SIZE)
    assert abs(row - 21.5) <= 3 and abs(col - 9.5) <= 3


def test_flag_reaches_the_method_and_the_method_is_registered():
    from bench.cli import parse
    from bench.plugins import available_methods

    options, manager = parse(["--padim-features", "12", "--seed", "5"])
    assert available_methods(manager)["padim"] is Padim
    model = Padim.from_config(options)
    assert (model.n_features, model.seed) == (12, 5)
    assert Padim.from_config(parse([])[0]).n_features is None
    with pytest.raises(SystemExit):
        parse(["--padim-features", "0"])


def old_format(model):
    """The model as saved before the packed factor: full float32 inverse covariances in ``cov_inv_``."""
    old = Padim(**model.get_params())
    for key, value in vars(model).items():
        if key.endswith("_") and key != "whitener_":
            setattr(old, key, value)
    factors = unpack_upper(model.whitener_, len(model.channels_)).astype(np.float64)
    old.cov_inv_ = (factors @ factors.transpose(0, 2, 1)).astype(np.float32)
    return old


@pytest.mark.parametrize("kernels", ["numpy", "paddle"])
def test_a_model_saved_with_full_inverses_still_loads_and_predicts(tmp_path, kernels):
    from bench.models import load_model, save_model

    train, test = random_features(20, 11), random_features(3, 12)
    model = Padim(n_features=9, seed=2).fit(train)
    folder = save_model(old_format(model), tmp_path / "old", backbone="resnet18", weights_id="random-seed0",
                        weights_used="random", resize=40, crop=32, layers=Padim.layers)
    loaded, _ = load_model(folder, {"padim": Padim})
    assert not hasattr(loaded, "whitener_") and loaded.cov_inv_.shape == (64, 9, 9)
    with backend(kernels):
        got, expected = loaded.predict(test), model.predict(test)
    np.testing.assert_allclose(got.maps, expected.maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-4)


def test_the_model_keeps_a_packed_triangle_not_a_full_inverse():
    model = Padim(seed=0).fit(resnet18_like(4))  # d = 100, 64 positions
    full_inverses = 64 * 100 * 100 * 4
    assert model.whitener_.nbytes == 64 * 5050 * 4 == full_inverses * 101 // 200
    assert model.model_size_bytes() == model.whitener_.nbytes + model.mean_.nbytes + model.channels_.nbytes
    assert model.model_size_bytes() < 0.52 * full_inverses


def test_a_model_without_gaussians_says_to_fit():
    model = Padim(n_features=5).fit(random_features(4, 0))
    del model.whitener_
    with pytest.raises(MethodError, match="fit it"):
        model.predict(random_features(2, 1))


@pytest.mark.parametrize("rows", [slice(0, 1), slice(3, 6), slice(7, 8), slice(5, 5)])
def test_embedding_of_some_rows_is_those_rows_of_the_whole(rows):
    f = random_features(3, 7)
    channels = np.array([1, 3, 4, 9, 10, 17])
    np.testing.assert_array_equal(padim_embedding(f, channels, rows), padim_embedding(f, channels)[:, :, rows])


def test_fit_in_blocks_of_rows_equals_fit_in_one():
    train = random_features(12, 13)
    one = Padim(n_features=7, seed=4).fit(train)
    rows = Padim(n_features=7, seed=4, budget_bytes=4 * 12 * 7 * 8 * 3).fit(train)  # 3 grid rows a block
    np.testing.assert_array_equal(rows.mean_, one.mean_)
    np.testing.assert_allclose(rows.whitener_, one.whitener_, rtol=1e-6, atol=1e-6)
