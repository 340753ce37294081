"""Nearest neighbours, greedy coreset and map resizing against plain computations written here."""

import numpy as np
import pytest

from methods.coreset import greedy_coreset, random_projection
from methods.maps import anomaly_map, resize_bilinear, resize_nearest
from methods.nearest import nearest_neighbors


def brute_knn(q, b, k):
    d = np.sqrt(((q[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


@pytest.mark.parametrize("k", [1, 3, 9])
def test_nearest_neighbors_match_brute_force(k):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(57, 12)).astype(np.float32)
    b = rng.normal(size=(40, 12)).astype(np.float32)
    # A tiny budget forces many chunks, so chunk borders are exercised.
    d, i = nearest_neighbors(q, b, k=k, budget_bytes=40 * 4 * 5)
    ref_d, ref_i = brute_knn(q, b, k)
    np.testing.assert_allclose(d, ref_d, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(i, ref_i)


def test_nearest_neighbors_caps_k_and_handles_coincident_points():
    b = np.ones((3, 4), dtype=np.float32)
    d, i = nearest_neighbors(b[:1], b, k=10)
    assert d.shape == (1, 3) and i.shape == (1, 3)
    assert np.all(d >= 0) and np.all(d < 1e-3)


def plain_greedy(points, start, n_select):
    """Textbook k-center greedy in float64: farthest point from the chosen set, one at a time."""
    points = points.astype(np.float64)
    chosen = [start]
    min_d = np.linalg.norm(points - points[start], axis=1)
    while len(chosen) < n_select:
        nxt = int(np.argmax(min_d))
        chosen.append(nxt)
        min_d = np.minimum(min_d, np.linalg.norm(points - points[nxt], axis=1))
    return np.array(chosen)


@pytest.mark.parametrize("n,d,n_select", [(300, 16, 30), (1000, 64, 100)])
def test_greedy_coreset_is_the_plain_greedy_selection(n, d, n_select):
    x = np.random.default_rng(1).normal(size=(n, d)).astype(np.float32)
    got = greedy_coreset(x, n_select, projection_dim=None, seed=3)
    assert got.dtype == np.int64 and got.shape == (n_select,)
    np.testing.assert_array_equal(got, plain_greedy(x, got[0], n_select))


def test_greedy_coreset_selects_on_the_projection():
    x = np.random.default_rng(2).normal(size=(500, 200)).astype(np.float32)
    got = greedy_coreset(x, 40, projection_dim=32, seed=5)
    projected = random_projection(x, 32, seed=5)
    assert projected.shape == (500, 32)
    np.testing.assert_array_equal(got, plain_greedy(projected, got[0], 40))
    # The projection roughly keeps distances (Johnson-Lindenstrauss), so it is no arbitrary map.
    ratio = np.linalg.norm(projected[0] - projected[1]) / np.linalg.norm(x[0] - x[1])
    assert 0.6 < ratio < 1.4


def test_greedy_coreset_is_seeded_and_distinct():
    x = np.random.default_rng(4).normal(size=(400, 8)).astype(np.float32)
    a = greedy_coreset(x, 50, seed=7)
    np.testing.assert_array_equal(a, greedy_coreset(x, 50, seed=7))
    assert not np.array_equal(a, greedy_coreset(x, 50, seed=8))
    dup = np.repeat(x[:5], 4, axis=0)
    assert len(set(greedy_coreset(dup, 12, seed=0).tolist())) == 12


def test_greedy_coreset_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        greedy_coreset(np.zeros((5, 2), np.float32), 6)


def test_resizes_match_paddle_interpolate():
    import paddle
    import paddle.nn.functional as F

    x = np.random.default_rng(5).normal(size=(2, 3, 7, 5)).astype(np.float32)
    for size in [(14, 10), (28, 28), (4, 3)]:
        ref = F.interpolate(paddle.to_tensor(x), size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(resize_bilinear(x, size), ref, rtol=1e-5, atol=1e-5)
        ref = F.interpolate(paddle.to_tensor(x), size=size, mode="nearest").numpy()
        np.testing.assert_array_equal(resize_nearest(x, size), ref)


def test_anomaly_map_upsamples_then_blurs():
    grid = np.zeros((1, 4, 4), np.float32)
    grid[0, 1, 1] = 1.0
    m = anomaly_map(grid, (32, 32), sigma=4)
    assert m.shape == (1, 32, 32)
    peak = np.unravel_index(m[0].argmax(), m[0].shape)
    assert abs(peak[0] - 12) <= 2 and abs(peak[1] - 12) <= 2
    assert m.max() < resize_bilinear(grid, (32, 32)).max()  # blurred, so the peak spreads
