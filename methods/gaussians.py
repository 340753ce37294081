"""One Gaussian per patch position, fitted fast and stored small; Mahalanobis distances to it.

Fit, per position p of ``x`` ``[N, P, d]``, a chunk of positions at a time:

1. mean ``mu_p`` summed in float64; the samples centred in float32 with it;
2. the covariance as one float32 SYRK (``ssyrk``, one triangle: ``N d^2`` FLOP)
   ``Sigma_p = Xc^T Xc / (N - 1) + eps I``;
3. one float32 Cholesky ``Sigma_p = L L^T`` (``spotrf``, ``d^3 / 3`` FLOP) and
   the inverse of the factor (``strtri``, ``d^3 / 3`` FLOP), kept as
   ``U = L^-T`` (upper triangular): ``Sigma_p^-1 = U U^T``, so the Mahalanobis
   distance of a row vector ``x`` is ``|(x - mu_p) U|``, one matrix product.

``U`` is stored packed: its upper triangle row by row, ``d (d + 1) / 2`` float32
per position (``whitener`` ``[P, d(d+1)/2]``), about half of a full ``d x d``
inverse covariance (1.9 GB instead of 3.6 GB for 3,136 positions at d = 550).

Why float32 is accurate enough, and how it is checked. The float32 products
have a forward error of at most about ``N u sqrt(S_ii S_jj)`` per entry (``u``
the float32 unit roundoff), i.e. ``(N + 4) * eps32`` relative to the largest
variance is a safe bound; measured on post-ReLU-like features with N = 300 and
d = 550 it is about 1e-6. The first position of every chunk is recomputed in
float64 (``np.cov``-style from the same float32 samples), and a relative error
above the bound raises ``MethodError`` (non-finite or huge features). What the
rounding does to the distances is amplified by the condition number of
``Sigma`` (up to about 1e5 with eps = 0.01): measured at d = 550, N = 300 (8
positions, 220 test points each, condition ~8e4), distances are within 3.5e-5
(median) and 2.2e-4 (max) relative of the float64 ones; the float32 Cholesky
and inverse add little to that (float64 ones: 3.5e-5 / 2.2e-4). If the float32
Cholesky fails (covariance not numerically positive definite in float32) that
position is redone in float64.

BLAS runs on one thread: the matrices are small, and on this two-core machine
a second BLAS thread (or a second Python thread) gained nothing for the SYRK,
Cholesky and inverse at d = 550 while it cost much at d = 100.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, lapack
from threadpoolctl import threadpool_limits

from methods.backend import use_paddle
from methods.base import MethodError

DEFAULT_BUDGET_BYTES = 64 * 2**20
EPS32 = float(np.finfo(np.float32).eps)


def single_threaded_blas():
    """Context that runs BLAS/LAPACK (NumPy's and SciPy's) on one thread.

    PaDiM's products and factorisations are many small matrices; on this two-core
    machine OpenBLAS's threads cost far more than they give at d = 100 (3136
    covariances and inverses, N = 200: 2.1 s on one thread, 17 s on two) and gain
    nothing at d = 550.
    """
    return threadpool_limits(limits=1, user_api="blas")


def positions_per_chunk(bytes_per_position: int, budget_bytes: int, n_positions: int) -> int:
    return int(min(n_positions, max(1, budget_bytes // max(1, bytes_per_position))))


def packed_size(d: int) -> int:
    return d * (d + 1) // 2


def packed_dim(size: int) -> int:
    """``d`` such that ``d (d + 1) / 2 == size``; MethodError if there is none."""
    d = int((np.sqrt(8 * size + 1) - 1) // 2)
    if packed_size(d) != size:
        raise MethodError(f"{size} values are no packed triangle (d (d + 1) / 2 for an integer d)")
    return d


def pack_upper(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, d, d]`` -> ``[M, d(d+1)/2]``: each upper triangle, row by row (``u[m, i, i:]``)."""
    m, d, _ = u.shape
    if out is None:
        out = np.empty((m, packed_size(d)), dtype=u.dtype)
    start = 0
    # One slice per row, vectorised over the M matrices: far cheaper than a fancy-index gather.
    for i in range(d):
        out[:, start : start + d - i] = u[:, i, i:]
        start += d - i
    return out


def unpack_upper(packed: np.ndarray, d: int, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, d(d+1)/2]`` -> ``[M, d, d]`` float32: the upper triangles back, zeros below."""
    m = len(packed)
    if out is None:
        out = np.empty((m, d, d), dtype=np.float32)
    out = out[:m]
    start = 0
    for i in range(d):
        out[:, i, :i] = 0.0
        out[:, i, i:] = packed[:, start : start + d - i]
        start += d - i
    return out


def covariance_bound(n: int) -> float:
    """Largest relative error (to the largest variance) the float32 covariance of ``n`` samples may have."""
    return (n + 4) * EPS32


def covariance_error(samples: np.ndarray, lower: np.ndarray) -> float:
    """Relative error of a float32 covariance against its float64 recomputation.

    samples: ``[N, d]`` float32, the uncentred samples; lower: ``[d, d]``, a
    covariance whose lower triangle (row index >= column index) holds
    ``sum_k (x_k - mu)(x_k - mu)^T / (N - 1)``. Returns ``max |error|`` over the
    lower triangle divided by the largest float64 variance (by 1 if all are 0).
    """
    x = samples.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite features give NaN: the check fails
        x -= x.mean(axis=0)
        reference = x.T @ x / (len(x) - 1)
        # Only the lower triangle: the other may hold anything (SYRK writes one).
        error = np.abs(np.tril(lower).astype(np.float64) - np.tril(reference)).max()
    scale = np.diag(reference).max()
    return float(error / scale) if scale > 0 else float(error)


def _factor_float64(samples: np.ndarray, mu: np.ndarray, eps: float) -> np.ndarray:
    """``U = L^-T`` ``[d, d]`` of one position in float64 (the fallback): upper triangular, C order."""
    xc = samples.astype(np.float64) - mu
    cov = xc.T @ xc / (len(xc) - 1) + eps * np.eye(xc.shape[1])
    factor, info = lapack.dpotrf(cov, lower=1, clean=1)
    if info == 0:
        factor, info = lapack.dtrtri(factor, lower=1)
    if info != 0:
        raise MethodError(
            f"PaDiM's covariance is not positive definite even in float64 (LAPACK info {info}): "
            "the features hold non-finite values, or eps is too small for them"
        )
    return factor.T  # (L^-1)^T


def fit_gaussians(
    x: np.ndarray, eps: float, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and packed whitening factor of the Gaussian at every position (see the module docstring).

    x: ``[N, P, d]`` float32, any strides (e.g. a transposed view of the
    ``[N, d, h, w]`` embedding). Returns ``mean`` ``[P, d]`` and ``whitener``
    ``[P, d(d+1)/2]``, both float32: ``whitener[p]`` is the packed upper triangle
    of ``U = L^-T`` with ``L L^T = cov(x[:, p]) + eps I``, so that
    ``|(y - mean[p]) U|`` is ``y``'s Mahalanobis distance.
    Raises MethodError for N < 2 or a covariance that fails its float64 check.
    """
    n, p, d = x.shape
    if n < 2:
        raise MethodError(f"PaDiM needs at least 2 training images to estimate a covariance, got {n}")
    mean = np.empty((p, d), dtype=np.float32)
    whitener = np.empty((p, packed_size(d)), dtype=np.float32)
    # Per position: the samples [N, d] and the covariance/factor [d, d], float32.
    step = positions_per_chunk(4 * (n * d + d * d), budget_bytes, p)
    bound = covariance_bound(n)
    alpha = 1.0 / (n - 1)
    factors = np.empty((step, d, d), dtype=np.float32)
    with single_threaded_blas():
        for start in range(0, p, step):
            stop = min(p, start + step)
            samples = np.ascontiguousarray(x[:, start:stop].transpose(1, 0, 2), dtype=np.float32)  # [pc, N, d]
            mu = samples.sum(axis=1, dtype=np.float64) / n
            mean[start:stop] = mu
            centred = samples - mu.astype(np.float32)[:, None, :]
            for i in range(stop - start):
                # factors[i].T is Fortran-ordered: LAPACK works on it in place. Its lower
                # triangle is the C-ordered upper one, so L ends up as factors[i] = L^T
                # and L^-1 as factors[i] = L^-T = U.
                work = factors[i].T
                blas.ssyrk(alpha, centred[i].T, beta=0.0, c=work, trans=0, lower=1, overwrite_c=1)
                if i == 0:
                    error = covariance_error(samples[i], work)
                    if not error <= bound:
                        raise MethodError(
                            f"PaDiM's float32 covariance at position {start} is off from its float64 "
                            f"recomputation by {error:.3g} of the largest variance, more than the bound "
                            f"{bound:.3g} for {n} images: the features hold non-finite or huge values"
                        )
                work[np.diag_indices(d)] += np.float32(eps)
                _, info = lapack.spotrf(work, lower=1, clean=1, overwrite_a=1)
                if info == 0:
                    _, info = lapack.strtri(work, lower=1, overwrite_c=1)
                if info != 0:  # not positive definite in float32: redo this one in float64
                    factors[i] = _factor_float64(samples[i], mu[i], eps)
            pack_upper(factors[: stop - start], out=whitener[start:stop])
    return mean, whitener


def _distance_step(n: int, d: int, p: int, budget_bytes: int) -> int:
    # Per position: the centred samples, their product with U, and U unpacked, float32.
    return positions_per_chunk(4 * (2 * n * d + d * d), budget_bytes, p)


def whitened_distances(
    x: np.ndarray, mean: np.ndarray, whitener: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """Mahalanobis distance of each ``x[n, p]`` to the Gaussian ``(mean[p], whitener[p])`` of ``fit_gaussians``.

    x: ``[N, P, d]`` (any strides); mean: ``[P, d]``; whitener: ``[P, d(d+1)/2]``.
    Returns ``[N, P]`` float32. Runs in Paddle when ``methods.backend.use_paddle()``.
    """
    impl = whitened_distances_paddle if use_paddle() else whitened_distances_numpy
    return impl(x, mean, whitener, budget_bytes=budget_bytes)


def whitened_distances_numpy(
    x: np.ndarray, mean: np.ndarray, whitener: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """NumPy ``whitened_distances``: ``|(x - mu) U|`` as batched products over a chunk of positions."""
    n, p, d = x.shape
    out = np.empty((p, n), dtype=np.float32)
    step = _distance_step(n, d, p, budget_bytes)
    dense = np.empty((step, d, d), dtype=np.float32)
    with single_threaded_blas():
        for start in range(0, p, step):
            stop = min(p, start + step)
            delta = np.ascontiguousarray(x[:, start:stop].transpose(1, 0, 2), dtype=np.float32)
            delta -= mean[start:stop, None, :]
            white = np.matmul(delta, unpack_upper(whitener[start:stop], d, out=dense))  # [pc, N, d]
            out[start:stop] = np.sqrt(np.einsum("pnd,pnd->pn", white, white))
    return np.ascontiguousarray(out.T)


def whitened_distances_paddle(
    x: np.ndarray, mean: np.ndarray, whitener: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """Paddle ``whitened_distances``: same arguments and result; the factor is unpacked on the host."""
    import paddle

    n, p, d = x.shape
    out = np.empty((p, n), dtype=np.float32)
    step = _distance_step(n, d, p, budget_bytes)
    dense = np.empty((step, d, d), dtype=np.float32)
    with paddle.no_grad():
        for start in range(0, p, step):
            stop = min(p, start + step)
            delta = paddle.to_tensor(
                np.ascontiguousarray(x[:, start:stop].transpose(1, 0, 2), dtype=np.float32)
            )
            mu = paddle.to_tensor(np.ascontiguousarray(mean[start:stop], dtype=np.float32))
            factor = paddle.to_tensor(unpack_upper(whitener[start:stop], d, out=dense))
            white = paddle.bmm(delta - mu.unsqueeze(1), factor)  # [pc, N, d]
            out[start:stop] = paddle.sqrt((white * white).sum(axis=-1)).numpy()
    return np.ascontiguousarray(out.T)
