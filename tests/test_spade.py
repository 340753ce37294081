"""SPADE's image scores and pixel maps against full distance matrices and sorting written here."""

import numpy as np
import pytest

from methods.backend import backend
from methods.base import FeatureSet
from methods.maps import resize_bilinear, smooth
from methods.spade import Spade
from feature_fixtures import random_features

SIZE = (32, 32)


def distance_matrix(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def brute_spade(train, test, k):
    """Every distance computed, sorted, averaged; galleries built position by position."""
    pooled = distance_matrix(test["avgpool"], train["avgpool"])  # [N_test, N_train]
    order = np.argsort(pooled, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(pooled, order, axis=1).mean(axis=1)
    level_maps = []
    for name in ("layer1", "layer2", "layer3"):
        tr, te = train[name], test[name]
        _, c, h, w = te.shape
        grids = np.zeros((len(te), h, w))
        for n in range(len(te)):
            gallery = np.array([tr[m, :, i, j] for m in order[n] for i in range(h) for j in range(w)])
            queries = np.array([te[n, :, i, j] for i in range(h) for j in range(w)])
            grids[n] = distance_matrix(queries, gallery).min(axis=1).reshape(h, w)
        level_maps.append(resize_bilinear(grids, SIZE))
    return scores, smooth(np.mean(level_maps, axis=0), 4.0)


@pytest.mark.parametrize("k,budget", [(3, 1 << 30), (5, 2000)])  # 2000 bytes: many tiny chunks
def test_scores_and_maps_match_brute_force(k, budget):
    train, test = random_features(9, 1), random_features(4, 2)
    pred = Spade(top_k=k, budget_bytes=budget).fit(train).predict(test)
    ref_scores, ref_maps = brute_spade(train, test, k)
    assert pred.scores.shape == (4,) and pred.maps.shape == (4, *SIZE)
    np.testing.assert_allclose(pred.scores, ref_scores, rtol=1e-5)
    np.testing.assert_allclose(pred.maps, ref_maps, rtol=1e-4, atol=1e-4)


def test_k_is_capped_at_the_training_set_size():
    train, test = random_features(6, 3), random_features(2, 4)
    model = Spade(top_k=50).fit(train)
    _, neighbors = model.neighbors(test["avgpool"])
    assert neighbors.shape == (2, 6)
    pred = model.predict(test)
    # Every training image is a neighbour: the score is the mean distance to all of them.
    np.testing.assert_allclose(pred.scores, distance_matrix(test["avgpool"], train["avgpool"]).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(pred.maps, brute_spade(train, test, 6)[1], rtol=1e-4, atol=1e-4)


def test_only_the_k_nearest_images_form_the_gallery():
    train, test = random_features(8, 5), random_features(1, 6)
    # Make training image 0 a copy of the test image's pyramid but far away in pooled space:
    # with K = 2 it is not retrieved, so the map must not drop to zero.
    layers = {name: array.copy() for name, array in train.layers.items()}
    for name in ("layer1", "layer2", "layer3"):
        layers[name][0] = test[name][0]
    layers["avgpool"][0] = test["avgpool"][0] + 100.0
    train = FeatureSet(layers, SIZE)
    pred = Spade(top_k=2).fit(train).predict(test)
    assert pred.maps.min() > 0.5
    assert Spade(top_k=8).fit(train).predict(test).maps.max() < 1e-2  # float32 cancellation, not 0


def test_fitted_state_is_the_training_features_position_last():
    train = random_features(5, 7)
    model = Spade(top_k=3).fit(train)
    assert model.train_layer1_.shape == (5, 8, 8, 4) and model.train_layer1_.flags.c_contiguous
    np.testing.assert_array_equal(model.train_layer2_, train["layer2"].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(model.train_pooled_, train["avgpool"])
    expected = sum(train[name].nbytes for name in ("layer1", "layer2", "layer3", "avgpool"))
    assert model.model_size_bytes() == expected


def test_paddle_path_matches_numpy_path():
    train, test = random_features(7, 8), random_features(3, 9)
    with backend("numpy"):
        ref = Spade(top_k=4, budget_bytes=3000).fit(train).predict(test)
    with backend("paddle"):
        got = Spade(top_k=4, budget_bytes=3000).fit(train).predict(test)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-4, atol=1e-4)


def test_an_injected_anomaly_scores_higher_where_it_is():
    train = random_features(20, 10)
    clean = random_features(1, 11)
    layers = {name: array.copy() for name, array in clean.layers.items()}
    layers["layer1"][0, :, 5, 2] += 8.0  # image rows 20..23, cols 8..11
    layers["avgpool"][0] += 3.0
    dirty = FeatureSet(layers, SIZE)
    model = Spade(top_k=5).fit(train)
    a, b = model.predict(clean), model.predict(dirty)
    assert b.scores[0] > 1.5 * a.scores[0]
    row, col = np.unravel_index(b.maps[0].argmax(), SIZE)
    assert abs(row - 21.5) <= 3 and abs(col - 9.5) <= 3
    assert b.maps[0].max() > 1.2 * a.maps[0].max()


def test_flag_reaches_the_method_and_the_method_is_registered():
    from bench.cli import parse
    from bench.plugins import available_methods

    options, manager = parse(["--spade-top-k", "7"])
    assert available_methods(manager)["spade"] is Spade
    assert Spade.from_config(options).top_k == 7
    assert Spade.from_config(parse([])[0]).top_k == 50
    with pytest.raises(SystemExit):
        parse(["--spade-top-k", "0"])


def structured(n, seed):
    """Spatially structured pyramid maps and pooled vectors (what the pruned search's bounds work on)."""
    from bench.profile_inputs import Sizes, structured_features

    return structured_features(n, Sizes(image_size=32), ("layer1", "layer2", "layer3", "avgpool"), seed)


@pytest.mark.parametrize("make", [random_features, structured])
@pytest.mark.parametrize("k", [3, 9])  # 9 of 9: every training image, no row mask
def test_pruned_pixel_search_gives_the_brute_force_maps(make, k, always_prune):
    train, test = make(9, 1), make(3, 2)
    pruned = Spade(top_k=k, search="pruned").fit(train)
    brute = Spade(top_k=k, search="brute").fit(train)
    assert all(pruned.prunes(name) and not brute.prunes(name) for name in ("layer1", "layer2", "layer3"))
    a, b = pruned.predict(test), brute.predict(test)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-6, atol=1e-6)
    if make is random_features:
        np.testing.assert_allclose(a.maps, brute_spade(train, test, k)[1], rtol=1e-4, atol=1e-4)
    # The clusters are derived state, not saved: the fitted arrays are the training features only.
    expected = sum(train[name].nbytes for name in ("layer1", "layer2", "layer3", "avgpool"))
    assert pruned.model_size_bytes() == expected


def test_search_choice_is_checked_and_auto_prunes_large_galleries_only():
    from methods import spade as spade_module

    with pytest.raises(Exception, match="search must be one of"):
        Spade(search="fast")
    model = Spade(top_k=3).fit(random_features(5, 3))
    assert not model.prunes("layer1")  # 3 x 64 rows
    model.train_layer1_ = np.zeros((1, spade_module.PRUNE_MIN_ROWS, 1, 4), np.float32)
    assert model.prunes("layer1") and not model.prunes("layer2")
    with backend("paddle"):
        assert not model.prunes("layer1")  # the device path stays brute force
