"""PatchCore's patch scores, image scores and memory bank against brute force written here."""

import numpy as np
import pytest

from methods.base import FeatureSet
from methods.coreset import greedy_coreset
from methods.maps import anomaly_map
from methods.patchcore import PatchCore, patch_embedding


def random_features(n, seed, size=(32, 32)):
    rng = np.random.default_rng(seed)
    return FeatureSet(
        {
            "layer2": rng.normal(size=(n, 6, 8, 8)).astype(np.float32),
            "layer3": rng.normal(size=(n, 10, 4, 4)).astype(np.float32),
        },
        image_size=size,
    )


def loop_average(x):
    """3x3 mean with zero padding, counting the padding (PyTorch AvgPool2d(3, 1, 1))."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
    return out / 9.0


def test_patch_embedding_is_pooled_layer2_and_resized_layer3():
    import paddle
    import paddle.nn.functional as F

    f = random_features(2, 0)
    emb = patch_embedding(f)
    assert emb.shape == (2, 8, 8, 16)
    np.testing.assert_allclose(emb[..., :6], loop_average(f["layer2"]).transpose(0, 2, 3, 1), atol=1e-5)
    l3 = F.interpolate(paddle.to_tensor(loop_average(f["layer3"])), size=(8, 8), mode="bilinear",
                       align_corners=False).numpy()
    np.testing.assert_allclose(emb[..., 6:], l3.transpose(0, 2, 3, 1), atol=1e-5)


def brute_scores(patches, bank, b):
    """Per test image: all patch-to-bank distances, then Eq. 7 by the book."""
    scores, grids = [], []
    for p in patches.astype(np.float64):
        d = np.linalg.norm(p[:, None, :] - bank[None, :, :], axis=2)  # [P, K]
        patch_scores = d.min(axis=1)
        worst = patch_scores.argmax()
        m_star = d[worst].argmin()
        to_m = np.linalg.norm(bank - bank[m_star], axis=1)
        support = np.argsort(to_m, kind="stable")[:b]
        dist = d[worst, support]
        soft = np.exp(dist) / np.exp(dist).sum()
        scores.append((1 - soft[0]) * patch_scores[worst])
        grids.append(patch_scores)
    return np.array(scores), np.array(grids)


@pytest.mark.parametrize("num_neighbors", [1, 3, 9])
def test_scores_and_maps_match_brute_force(num_neighbors):
    train, test = random_features(5, 1), random_features(3, 2)
    model = PatchCore(coreset_ratio=0.25, num_neighbors=num_neighbors, seed=0).fit(train)
    bank = model.memory_bank_.astype(np.float64)
    assert bank.shape == (80, 16)  # 25% of 5 * 8 * 8 patches

    pred = model.predict(test)
    patches = patch_embedding(test).reshape(3, 64, 16)
    ref_scores, ref_grids = brute_scores(patches, bank, num_neighbors)
    if num_neighbors == 1:
        ref_scores = ref_grids.max(axis=1)
    np.testing.assert_allclose(pred.scores, ref_scores, rtol=1e-4)
    np.testing.assert_allclose(pred.maps, anomaly_map(ref_grids.reshape(3, 8, 8), (32, 32)), rtol=1e-4, atol=1e-4)
    assert pred.maps.shape == (3, 32, 32)


def test_memory_bank_is_the_greedy_coreset_of_training_patches():
    train = random_features(4, 3)
    model = PatchCore(coreset_ratio=0.1, seed=11).fit(train)
    patches = patch_embedding(train).reshape(-1, 16)
    expected = patches[greedy_coreset(patches, 26, projection_dim=128, seed=11)]
    np.testing.assert_array_equal(model.memory_bank_, expected)
    assert model.model_size_bytes() == expected.nbytes


def test_reweighting_is_stable_for_large_distances():
    train = random_features(2, 4)
    test = FeatureSet({k: v * 1e4 for k, v in random_features(1, 5).layers.items()}, (32, 32))
    pred = PatchCore(coreset_ratio=0.5).fit(train).predict(test)
    assert np.all(np.isfinite(pred.scores))


def test_anomalous_patch_scores_higher():
    train = random_features(6, 6)
    test = random_features(2, 7)
    test.layers["layer2"][1, :, 3, 3] += 25.0
    pred = PatchCore(coreset_ratio=0.5).fit(train).predict(test)
    assert pred.scores[1] > pred.scores[0]
    peak = np.unravel_index(pred.maps[1].argmax(), (32, 32))
    assert abs(peak[0] - 14) <= 3 and abs(peak[1] - 14) <= 3


@pytest.mark.parametrize("bank_size", [1, 2, 3])
def test_any_bank_size_from_one_scores_with_nine_neighbours(bank_size):
    train, test = random_features(1, 8), random_features(2, 9)
    ratio = bank_size / 64  # one training image: 8 x 8 patches
    model = PatchCore(coreset_ratio=ratio, num_neighbors=9, seed=0).fit(train)
    assert model.memory_bank_.shape == (bank_size, 16)
    pred = model.predict(test)
    patches = patch_embedding(test).reshape(2, 64, 16)
    ref_scores, ref_grids = brute_scores(patches, model.memory_bank_.astype(np.float64), bank_size)
    if bank_size == 1:
        ref_scores = ref_grids.max(axis=1)  # nothing to re-weight by: the plain maximum, as for b = 1
    np.testing.assert_allclose(pred.scores, ref_scores, rtol=1e-4)


@pytest.mark.parametrize("ratio_flag, neighbors_flag", [
    ("--patchcore-coreset-ratio", "--patchcore-num-neighbors"),
    ("--coreset-ratio", "--num-neighbors"),  # the first spellings, kept so old command lines still run
])
def test_flags_reach_the_method_and_the_method_is_registered(ratio_flag, neighbors_flag):
    from bench.cli import parse
    from bench.plugins import available_methods

    options, manager = parse([ratio_flag, "0.25", neighbors_flag, "3", "--seed", "5"])
    assert available_methods(manager)["patchcore"] is PatchCore
    model = PatchCore.from_config(options)
    assert (model.coreset_ratio, model.num_neighbors, model.seed) == (0.25, 3, 5)
    defaults = PatchCore.from_config(parse([])[0])
    assert (defaults.coreset_ratio, defaults.num_neighbors) == (0.1, 9)


@pytest.mark.parametrize("flag", ["--patchcore-coreset-ratio", "--coreset-ratio"])
def test_a_bad_value_is_reported_under_the_spelling_typed(flag, capsys):
    from bench.cli import parse

    with pytest.raises(SystemExit) as exit_info:
        parse([flag, "0"])
    assert exit_info.value.code == 2
    assert f"error: argument {flag}: must be a number > 0 and <= 1, got 0" in capsys.readouterr().err


def structured_features(n, seed, category=0):
    """Spatially structured layer2/layer3 maps (what the pruned search's bounds work on)."""
    from bench.profile_inputs import structured_feature_maps

    return FeatureSet(
        {
            "layer2": structured_feature_maps(n, 12, 8, seed, category=category),
            "layer3": structured_feature_maps(n, 20, 4, seed, category=category),
        },
        image_size=(32, 32),
    )


@pytest.mark.parametrize("make", [random_features, structured_features])
@pytest.mark.parametrize("ratio", [0.3, 1.0])
def test_pruned_search_predicts_what_brute_force_does(make, ratio, always_prune):
    train, test = make(12, 1), make(3, 2)
    pruned = PatchCore(coreset_ratio=ratio, seed=0, search="pruned").fit(train)
    brute = PatchCore(coreset_ratio=ratio, seed=0, search="brute").fit(train)
    np.testing.assert_array_equal(pruned.memory_bank_, brute.memory_bank_)
    assert pruned.prunes() and not brute.prunes()
    a, b = pruned.predict(test), brute.predict(test)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-6, atol=1e-7)
    # And both against brute force written here.
    patches = patch_embedding(test).reshape(3, 64, -1)
    ref_scores, ref_grids = brute_scores(patches, pruned.memory_bank_.astype(np.float64), 9)
    np.testing.assert_allclose(a.scores, ref_scores, rtol=1e-4)
    assert pruned.model_size_bytes() == pruned.memory_bank_.nbytes  # the clusters are not fitted state


def test_search_choice_is_checked_and_auto_prunes_large_banks_only():
    from methods import patchcore as patchcore_module
    from methods.backend import backend

    with pytest.raises(Exception, match="search must be one of"):
        PatchCore(search="fast")
    model = PatchCore(coreset_ratio=1.0).fit(random_features(1, 3))
    assert not model.prunes()  # 64 rows
    model.memory_bank_ = np.zeros((patchcore_module.PRUNE_MIN_ROWS, 16), np.float32)
    assert model.prunes()
    with backend("paddle"):
        assert not model.prunes()  # the device path stays brute force
