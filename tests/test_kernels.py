"""Nearest neighbours, map resizing and Mahalanobis distances against plain computations written
here; the Paddle kernels against the NumPy ones; the backend choice. (The greedy coreset: test_coreset.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import methods.padim as padim_module
from methods.base import MethodError
from methods import backend as kernel_backend
from methods import nearest as nearest_module
from methods.maps import anomaly_map, resize_bilinear, resize_nearest
from methods.nearest import nearest_neighbors, nearest_neighbors_numpy, nearest_neighbors_paddle
from methods.padim import gaussian_per_position, mahalanobis, mahalanobis_numpy, mahalanobis_paddle


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


# --- Paddle kernels against the NumPy ones, and the backend choice ---------------------------

@pytest.mark.parametrize("k", [1, 3, 9])
def test_paddle_nearest_neighbors_match_numpy(k):
    rng = np.random.default_rng(10)
    q = rng.normal(size=(57, 12)).astype(np.float32)
    b = rng.normal(size=(40, 12)).astype(np.float32)
    ref_d, ref_i = nearest_neighbors_numpy(q, b, k=k, budget_bytes=40 * 4 * 5)
    # budget halved inside the Paddle path: chunks of 2 rows, so borders are exercised too.
    d, i = nearest_neighbors_paddle(q, b, k=k, budget_bytes=40 * 4 * 5)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (57, k)
    np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, brute_knn(q, b, k)[0], rtol=1e-4, atol=1e-4)


def test_paddle_nearest_neighbors_take_tensors_and_norms_and_cap_k():
    import paddle

    rng = np.random.default_rng(11)
    q = rng.normal(size=(9, 5)).astype(np.float32)
    b = rng.normal(size=(4, 5)).astype(np.float32)
    norms = (b * b).sum(axis=1)
    d, i = nearest_neighbors_paddle(q, paddle.to_tensor(b), k=10, bank_sq_norms=paddle.to_tensor(norms))
    ref_d, ref_i = nearest_neighbors_numpy(q, b, k=10)
    assert d.shape == (9, 4)
    np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(i, ref_i)
    same = np.ones((3, 4), np.float32)
    d, _ = nearest_neighbors_paddle(same[:1], same, k=2)
    assert np.all(d >= 0) and np.all(d < 1e-3)


def test_numpy_nearest_neighbors_choose_by_the_plain_expansion_bit_for_bit():
    """Folding -2 into the queries and reusing one buffer must not change a single choice."""
    rng = np.random.default_rng(12)
    q = (3 * rng.normal(size=(200, 33))).astype(np.float32)
    b = (3 * rng.normal(size=(150, 33))).astype(np.float32)
    # The reference takes the same chunks of 7 rows: BLAS may sum differently for other shapes.
    blocks = []
    for start in range(0, 200, 7):
        chunk = q[start : start + 7]
        block = chunk @ b.T
        block *= -2.0
        block += np.einsum("ij,ij->i", b, b)[None, :]
        block += np.einsum("ij,ij->i", chunk, chunk)[:, None]
        blocks.append(block)
    block = np.concatenate(blocks)
    idx = block.argmin(axis=1)
    d, i = nearest_neighbors_numpy(q, b, k=1, budget_bytes=150 * 4 * 7)
    np.testing.assert_array_equal(i[:, 0], idx)
    direct = np.linalg.norm(q.astype(np.float64) - b[idx].astype(np.float64), axis=1)
    np.testing.assert_allclose(d[:, 0], direct, rtol=1e-6)


@pytest.mark.parametrize("use_paddle", [False, True])
def test_small_distances_far_from_the_origin_are_exact_whatever_the_chunks(use_paddle):
    """Queries a hair from a bank of large vectors: the float32 expansion alone would lose most
    digits, and lose them differently for every chunk shape."""
    rng = np.random.default_rng(13)
    bank = (50 + rng.normal(size=(400, 64))).astype(np.float32)
    queries = bank[rng.integers(400, size=300)] + np.float32(1e-3) * rng.normal(size=(300, 64)).astype(np.float32)
    full = np.linalg.norm(queries.astype(np.float64)[:, None] - bank.astype(np.float64)[None], axis=2)
    ref_i = np.argsort(full, axis=1)[:, :3]
    ref_d = np.take_along_axis(full, ref_i, axis=1)
    search = nearest_neighbors_paddle if use_paddle else nearest_neighbors_numpy
    results = [search(queries, bank, k=3, budget_bytes=400 * 4 * rows) for rows in (1, 7, 300)]
    for d, i in results:
        np.testing.assert_array_equal(i[:, 0], ref_i[:, 0])
        np.testing.assert_allclose(d[:, 0], ref_d[:, 0], rtol=1e-4)
        assert np.all(np.diff(d, axis=1) >= 0)
    for d, _ in results[1:]:
        np.testing.assert_allclose(d[:, 0], results[0][0][:, 0], rtol=1e-6)


def loop_mahalanobis(x, mean, cov_inv):
    x, mean, cov_inv = (a.astype(np.float64) for a in (x, mean, cov_inv))
    out = np.zeros(x.shape[:2])
    for n in range(x.shape[0]):
        for p in range(x.shape[1]):
            delta = x[n, p] - mean[p]
            out[n, p] = np.sqrt(delta @ cov_inv[p] @ delta)
    return out


def random_gaussians(n, p, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d, p)).astype(np.float32).transpose(0, 2, 1)  # strided, as PaDiM passes it
    mean = rng.normal(size=(p, d)).astype(np.float32)
    a = rng.normal(size=(p, d, d))
    cov_inv = (a @ a.transpose(0, 2, 1) / d + np.eye(d)).astype(np.float32)  # symmetric positive definite
    return x, mean, cov_inv


@pytest.mark.parametrize("budget", [1 << 30, 700])
def test_mahalanobis_kernels_match_a_loop(budget):
    x, mean, cov_inv = random_gaussians(5, 13, 6, 13)
    ref = loop_mahalanobis(x, mean, cov_inv)
    got = mahalanobis_numpy(x, mean, cov_inv, budget_bytes=budget)
    assert got.shape == (5, 13) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(mahalanobis_paddle(x, mean, cov_inv, budget_bytes=budget), got, rtol=1e-5)


def test_gaussian_per_position_is_np_cov_plus_eps_inverted():
    x = np.random.default_rng(14).normal(size=(12, 9, 4)).astype(np.float32)
    mean, cov_inv = gaussian_per_position(x, 0.01, budget_bytes=1500)  # a few positions per chunk
    for p in range(9):
        np.testing.assert_allclose(mean[p], x[:, p].mean(axis=0), rtol=1e-5, atol=1e-6)
        ref = np.linalg.inv(np.cov(x[:, p].astype(np.float64), rowvar=False) + 0.01 * np.eye(4))
        np.testing.assert_allclose(cov_inv[p], ref, rtol=1e-5, atol=1e-6)


def test_backend_choice(monkeypatch):
    monkeypatch.delenv(kernel_backend.ENV_VAR, raising=False)
    monkeypatch.setattr(kernel_backend, "paddle_has_gpu", lambda: False)
    assert kernel_backend.requested_backend() == "auto" and not kernel_backend.use_paddle()
    monkeypatch.setattr(kernel_backend, "paddle_has_gpu", lambda: True)
    assert kernel_backend.use_paddle()
    monkeypatch.setenv(kernel_backend.ENV_VAR, "numpy")
    assert not kernel_backend.use_paddle()
    with kernel_backend.backend("paddle"):  # explicit beats the environment
        assert kernel_backend.use_paddle()
        with kernel_backend.backend("numpy"):
            assert not kernel_backend.use_paddle()
        assert kernel_backend.use_paddle()
    assert not kernel_backend.use_paddle()
    monkeypatch.setenv(kernel_backend.ENV_VAR, "cuda")
    with pytest.raises(MethodError, match="PATCHBENCH_KERNELS"):
        kernel_backend.use_paddle()
    with pytest.raises(MethodError):
        kernel_backend.set_backend("gpu")


def test_dispatchers_follow_the_backend(monkeypatch):
    calls = []
    monkeypatch.setattr(nearest_module, "nearest_neighbors_paddle", lambda *a, **kw: calls.append("nn") or "paddle")
    monkeypatch.setattr(padim_module, "mahalanobis_paddle", lambda *a, **kw: calls.append("maha") or "paddle")
    x, mean, cov_inv = random_gaussians(2, 3, 2, 0)
    with kernel_backend.backend("paddle"):
        assert nearest_module.nearest_neighbors(x[0], x[1]) == "paddle"
        assert mahalanobis(x, mean, cov_inv) == "paddle"
    with kernel_backend.backend("numpy"):
        assert nearest_module.nearest_neighbors(x[0], x[1])[0].shape == (3, 1)
        assert mahalanobis(x, mean, cov_inv).shape == (2, 3)
    assert calls == ["nn", "maha"]


def test_importing_the_methods_does_not_import_paddle():
    code = (
        "import sys, methods.backend, methods.nearest, methods.padim, methods.spade; "
        "from methods.nearest import nearest_neighbors; import numpy as np; "
        "import os; os.environ['PATCHBENCH_KERNELS'] = 'numpy'; "
        "nearest_neighbors(np.zeros((2, 3), np.float32), np.ones((4, 3), np.float32)); "
        "sys.exit(1 if 'paddle' in sys.modules else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
