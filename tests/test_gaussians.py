"""PaDiM's per-position Gaussians (methods.gaussians) against float64 NumPy and SciPy written here:
np.cov, np.linalg.cholesky and scipy.spatial.distance.mahalanobis."""

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

import methods.gaussians as gaussians
from methods.backend import backend
from methods.base import MethodError
from methods.gaussians import (
    covariance_error,
    fit_gaussians,
    pack_upper,
    packed_dim,
    unpack_upper,
    whitened_distances,
)


def post_relu_samples(n, p, d, seed, rank=16):
    """``[n, p, d]`` float32: per position, a ReLU of a low-rank latent plus noise (correlated,
    non-negative, ill-conditioned once n < d, like CNN patch features)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, p, d), dtype=np.float32)
    for j in range(p):
        mix = rng.normal(size=(rank, d)) / np.arange(1, rank + 1)[:, None] ** 0.8
        z = rng.normal(size=(n, rank)) @ mix + rng.normal(0.5, 0.5, size=d) + 0.2 * rng.normal(size=(n, d))
        out[:, j] = np.maximum(z, 0)
    return out


def reference(samples, eps):
    """float64 mean and regularised covariance of ``[N, d]`` samples."""
    x = samples.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False) + eps * np.eye(x.shape[1])


@pytest.mark.parametrize("d", [1, 2, 5, 6])
def test_packing_keeps_each_triangle_entry_once(d):
    u = np.triu(np.random.default_rng(d).normal(size=(3, d, d))).astype(np.float32)
    packed = pack_upper(u)
    assert packed.shape == (3, d * (d + 1) // 2)
    rows, cols = np.triu_indices(d)
    # Every entry of the triangle, and nothing else, is stored: same multiset of values.
    np.testing.assert_array_equal(np.sort(packed, axis=1), np.sort(u[:, rows, cols], axis=1))
    np.testing.assert_array_equal(unpack_upper(packed, d), u)


def test_packed_layout_is_the_documented_tile_and_corner():
    u = np.triu(np.arange(1, 37, dtype=np.float32).reshape(1, 6, 6))
    packed = pack_upper(u)[0]
    tile, corner = packed[:12].reshape(4, 3), packed[12:].reshape(3, 3)
    np.testing.assert_array_equal(np.triu(tile[:3]), u[0, :3, :3])
    np.testing.assert_array_equal(np.tril(tile[1:]), u[0, 3:, 3:].T)
    np.testing.assert_array_equal(corner, u[0, :3, 3:])


def test_packed_dim():
    assert packed_dim(15) == 5 and packed_dim(1) == 1
    with pytest.raises(MethodError, match="packed triangle"):
        packed_dim(14)


@pytest.mark.parametrize("budget", [1 << 30, 20_000])  # one chunk; chunks of a few positions
def test_mean_covariance_and_cholesky_match_float64(budget):
    x = post_relu_samples(40, 7, 12, seed=1)
    mean, whitener = fit_gaussians(x, 0.01, budget_bytes=budget)
    assert mean.shape == (7, 12) and whitener.shape == (7, 78)
    assert mean.dtype == whitener.dtype == np.float32
    factors = unpack_upper(whitener, 12).astype(np.float64)  # U = L^-T
    for p in range(7):
        mu, cov = reference(x[:, p], 0.01)
        np.testing.assert_allclose(mean[p], mu, rtol=1e-6, atol=1e-6)
        lower = np.linalg.cholesky(cov)
        u = factors[p]
        assert np.all(np.diag(u) > 0)
        # U is the transposed inverse of the float64 Cholesky factor, so U^-T U^-1 is the covariance.
        np.testing.assert_allclose(u, np.linalg.inv(lower).T, rtol=1e-4, atol=1e-5)
        back = np.linalg.inv(u).T
        np.testing.assert_allclose(back @ back.T, cov, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernels", ["numpy-blas", "numpy-batched", "paddle"])
@pytest.mark.parametrize("d", [1, 7, 8])  # odd d: the blocks are not contiguous
def test_distances_match_scipy_mahalanobis(kernels, d, monkeypatch):
    # NumPy whitens through BLAS calls per position above a size, batched below it: test both.
    monkeypatch.setattr(gaussians, "BLAS_CALL_FLOP", 0 if kernels == "numpy-blas" else 10**12)
    kernels = kernels.split("-")[0]
    x = post_relu_samples(30, 5, d, seed=2)
    test = np.random.default_rng(3).normal(0.5, 1.0, size=(4, 5, d)).astype(np.float32)
    before = test.copy()
    mean, whitener = fit_gaussians(x, 0.01)
    with backend(kernels):
        got = whitened_distances(test, mean, whitener, budget_bytes=3000)  # a few positions per chunk
    assert got.shape == (4, 5) and got.dtype == np.float32
    np.testing.assert_array_equal(test, before)  # the input is not whitened in place
    for p in range(5):
        mu, cov = reference(x[:, p], 0.01)
        inverse = np.linalg.inv(cov)
        for n in range(4):
            assert got[n, p] == pytest.approx(scipy_mahalanobis(test[n, p], mu, inverse), rel=1e-4)


def test_float32_distances_stay_within_the_documented_error_at_padim_size():
    """d = 550, N = 300 (Wide-ResNet-50-2's PaDiM): the module docstring says about 2e-4 at most."""
    x = post_relu_samples(300, 3, 550, seed=4, rank=64)
    rng = np.random.default_rng(5)
    test = x[rng.integers(300, size=40)] + rng.normal(0, 0.3, size=(40, 3, 550)).astype(np.float32)
    mean, whitener = fit_gaussians(x, 0.01)
    got = whitened_distances(test, mean, whitener)
    for p in range(3):
        mu, cov = reference(x[:, p], 0.01)
        delta = test[:, p].astype(np.float64) - mu
        exact = np.sqrt(np.einsum("nd,nd->n", delta @ np.linalg.inv(cov), delta))
        np.testing.assert_allclose(got[:, p], exact, rtol=1e-3)


def test_covariance_error_is_the_largest_deviation_over_the_largest_variance():
    samples = post_relu_samples(20, 1, 6, seed=6)[:, 0]
    _, cov = reference(samples, 0.0)
    assert covariance_error(samples, cov) < 1e-12
    off = cov.copy()
    off[4, 1] += 1e-3  # lower triangle: counted
    off[1, 4] += 5.0  # upper triangle: ignored (SYRK writes only the lower one)
    assert covariance_error(samples, off) == pytest.approx(1e-3 / np.diag(cov).max(), rel=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_features_at_any_position_fail(value):
    # Position 1: not the first of its chunk, so the float64 check alone would not see it.
    x = post_relu_samples(10, 4, 5, seed=7)
    x[3, 1, 2] = value
    with pytest.raises(MethodError, match="position 1 hold non-finite values"):
        fit_gaussians(x, 0.01)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_features_fail_the_float64_check():
    # Finite, but its square overflows float32: the SYRK's covariance is not the float64 one.
    x = post_relu_samples(10, 4, 5, seed=7)
    x[3, 0, 2] = 1e25
    with pytest.raises(MethodError, match="position 0 is off from its float64 recomputation"):
        fit_gaussians(x, 0.01)


def test_a_failed_float32_cholesky_is_redone_in_float64(monkeypatch):
    x = post_relu_samples(25, 4, 6, seed=8)
    expected = fit_gaussians(x, 0.01)
    calls = []

    def failing_spotrf(a, **kwargs):
        calls.append(1)
        return a, 3  # LAPACK's "leading minor of order 3 is not positive definite"

    monkeypatch.setattr(gaussians.lapack, "spotrf", failing_spotrf)
    mean, whitener = fit_gaussians(x, 0.01, budget_bytes=1000)
    assert len(calls) == 4
    np.testing.assert_array_equal(mean, expected[0])
    np.testing.assert_allclose(whitener, expected[1], rtol=1e-4, atol=1e-5)


def test_too_few_images():
    with pytest.raises(MethodError, match="at least 2"):
        fit_gaussians(np.zeros((1, 3, 2), dtype=np.float32), 0.01)
