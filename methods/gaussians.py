"""One Gaussian per patch position, fitted fast and stored small; Mahalanobis distances to it.

Fit, per position p of ``x`` ``[N, P, d]``, a chunk of positions at a time:

1. mean ``mu_p`` summed in float64; the samples centred in float32 with it;
2. the covariance as one float32 SYRK (``ssyrk``, one triangle: ``N d^2`` FLOP)
   ``Sigma_p = Xc^T Xc / (N - 1) + eps I``;
3. one float32 Cholesky ``Sigma_p = L L^T`` (``spotrf``, ``d^3 / 3`` FLOP) and
   the inverse of the factor (``strtri``, ``d^3 / 3`` FLOP), kept as
   ``U = L^-T`` (upper triangular): ``Sigma_p^-1 = U U^T``, so the Mahalanobis
   distance of a row vector ``x`` is ``|(x - mu_p) U|``, one matrix product.

``U`` is stored packed, ``d (d + 1) / 2`` float32 per position (``whitener``
``[P, d(d+1)/2]``, layout in ``pack_upper``: two triangles in one rectangular
tile, then the off-diagonal block), about half of a full ``d x d`` inverse
covariance (1.9 GB instead of 3.8 GB for 3,136 positions at d = 550). The
distances run BLAS (``strmm``, ``sgemm``: ``N d^2`` FLOP per position) on the
packed blocks directly; nothing is unpacked.

Why float32 is accurate enough, and how it is checked. The float32 products
have a forward error of at most about ``N u sqrt(S_ii S_jj)`` per entry (``u``
the float32 unit roundoff), i.e. ``(N + 4) * eps32`` relative to the largest
variance is a safe bound; measured on post-ReLU-like features with N = 300 and
d = 550 it is about 1e-6. The first position of every chunk is recomputed in
float64 (``np.cov``-style from the same float32 samples), and a relative error
above the bound raises ``MethodError`` (non-finite or huge features). What the
rounding does to the distances is amplified by the condition number of
``Sigma`` (up to about 1e5 with eps = 0.01): measured at d = 550, N = 300 (8
positions, 220 test points each, condition ~8e4), distances are within 4.3e-5
(median) and 2.3e-4 (max) relative of the float64 ones. Nearly all of that is
the float32 covariance (with a float64 Cholesky and inverse: 3.5e-5 / 2.2e-4;
with a float64 covariance too: 4e-8 / 2e-7, at twice the SYRK's time); the
float64 inverse stored as float32 that PaDiM kept before gave 1e-7 / 1.5e-6.
If the float32 Cholesky fails (covariance not numerically positive definite in
float32) that position is redone in float64.

BLAS runs on one thread: the matrices are small, and on this two-core machine
(idle, load 0.5) a second BLAS thread or a second Python thread over positions
gained at most 1.2x for the SYRK and nothing for the Cholesky and inverse at
d = 550, while it cost much at d = 100. One thread reached about 95 GFLOP/s in
the SYRK and 50 GFLOP/s in ``spotrf`` + ``strtri``.
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


def split(d: int) -> tuple[int, int]:
    """Sizes ``(a, b)``, ``a = ceil(d / 2)``, of the two diagonal blocks of a packed factor."""
    a = (d + 1) // 2
    return a, d - a


def pack_upper(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, d, d]`` upper triangular (zeros below) -> ``[M, d(d+1)/2]``, the triangles packed.

    The layout (LAPACK's "rectangular full packed" idea): with ``U`` split at
    ``a = ceil(d/2)`` into ``U11`` ``[a, a]``, ``U12`` ``[a, b]`` and ``U22``
    ``[b, b]``, each packed row holds a ``[b+1, a]`` tile, row-major, whose
    upper triangle is ``U11`` and whose rows ``1..b``, columns ``0..b-1`` hold
    ``U22^T`` in their lower triangle, then ``U12`` row-major. Every block is a
    plain strided matrix, so the distances run BLAS on it without unpacking.
    """
    m, d, _ = u.shape
    a, b = split(d)
    if out is None:
        out = np.empty((m, packed_size(d)), dtype=u.dtype)
    tile = out[:, : (b + 1) * a].reshape(m, b + 1, a)
    tile[:, :a] = u[:, :a, :a]  # its lower part is 0
    tile[:, a:] = 0.0
    tile[:, 1:, :b] += u[:, a:, a:].transpose(0, 2, 1)  # U22^T fills the zeros below the diagonal
    out[:, (b + 1) * a :] = u[:, :a, a:].reshape(m, a * b)
    return out


def factor_blocks(packed: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Views of ``pack_upper``'s layout: ``tile`` ``[M, b+1, a]`` and ``U12`` ``[M, a, b]``."""
    m = len(packed)
    a, b = split(d)
    return packed[:, : (b + 1) * a].reshape(m, b + 1, a), packed[:, (b + 1) * a :].reshape(m, a, b)


def unpack_upper(packed: np.ndarray, d: int, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, d(d+1)/2]`` -> ``[M, d, d]`` float32: ``pack_upper``'s triangles back, zeros below."""
    m = len(packed)
    a, b = split(d)
    tile, u12 = factor_blocks(packed, d)
    if out is None:
        out = np.empty((m, d, d), dtype=np.float32)
    out = out[:m]
    out[:, :a, :a] = np.triu(tile[:, :a])
    out[:, :a, a:] = u12
    out[:, a:, :a] = 0.0
    out[:, a:, a:] = np.triu(tile[:, 1:, :b].transpose(0, 2, 1))
    return out


def fit_flop(n: int, p: int, d: int) -> int:
    """Floating-point operations of ``fit_gaussians`` on ``[n, p, d]``: per position the SYRK
    (``n d^2``), the Cholesky and the triangular inverse (``d^3 / 3`` each)."""
    return int(p * (n * d * d + 2 * d**3 // 3))


def distance_flop(n: int, p: int, d: int) -> int:
    """Floating-point operations of ``whitened_distances`` on ``[n, p, d]``: ``n d^2`` per position."""
    return int(p * n * d * d)


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
            # [pc, d, N]: a free view when x is position-major (PaDiM's padim_samples).
            samples = np.ascontiguousarray(x[:, start:stop].transpose(1, 2, 0), dtype=np.float32)
            mu = samples.sum(axis=2, dtype=np.float64) / n
            # A NaN or inf anywhere makes its position's mean non-finite; the float64 check below sees only
            # the chunk's first position, and LAPACK's Cholesky lets NaN through.
            bad = np.flatnonzero(~np.isfinite(mu).all(axis=1))
            if len(bad):
                raise MethodError(
                    f"PaDiM's training features at position {start + int(bad[0])} hold non-finite values "
                    "(NaN or inf): check the backbone's input images and weights"
                )
            mean[start:stop] = mu
            centred = samples - mu.astype(np.float32)[:, :, None]
            for i in range(stop - start):
                # factors[i].T is Fortran-ordered: LAPACK works on it in place. Its lower
                # triangle is the C-ordered upper one, so L ends up as factors[i] = L^T
                # and L^-1 as factors[i] = L^-T = U. centred[i].T is the Fortran [N, d].
                work = factors[i].T
                blas.ssyrk(alpha, centred[i].T, beta=0.0, c=work, trans=1, lower=1, overwrite_c=1)
                if i == 0:
                    error = covariance_error(samples[i].T, work)
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
                    factors[i] = _factor_float64(samples[i].T, mu[i], eps)
            pack_upper(factors[: stop - start], out=whitener[start:stop])
    return mean, whitener


def _distance_step(n: int, d: int, p: int, budget_bytes: int) -> int:
    # Per position: the centred samples (whitened in place), and the blocks (copied for Paddle).
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


# Below this many FLOP per position (N d^2) the three BLAS calls' overhead outweighs their
# work, and batched products over masked copies of the blocks win: resnet18's d = 100 with a
# batch of 4 ran 55 ms through BLAS against ~30 ms batched; d = 550 with 16 images the reverse.
BLAS_CALL_FLOP = 2_000_000
L2_BYTES = 2**20


def _whiten_by_blas(delta: np.ndarray, tiles: np.ndarray, corners: np.ndarray) -> None:
    """``delta`` ``[pc, d, N]`` := ``U^T delta`` per position, BLAS on the packed blocks in place."""
    b = corners.shape[2]
    a = delta.shape[1] - b
    for i in range(len(delta)):
        # (x - mu)^T U, by blocks: [d1 d2] [[U11 U12] [0 U22]] = [d1 U11, d1 U12 + d2 U22];
        # in place, second block first, since it reads d1.
        first, second = delta[i, :a].T, delta[i, a:].T  # Fortran [N, a], [N, b]
        if b:
            blas.strmm(1.0, tiles[i, 1:, :b].T, second, side=1, lower=0, overwrite_b=1)
            blas.sgemm(1.0, first, corners[i].T, beta=1.0, c=second, trans_b=1, overwrite_c=1)
        blas.strmm(1.0, tiles[i, :a].T, first, side=1, lower=1, trans_a=1, overwrite_b=1)


def _whiten_batched(delta: np.ndarray, tiles: np.ndarray, corners: np.ndarray) -> None:
    """``_whiten_by_blas`` for small blocks: batched products over triangles cut from the tiles,
    a few positions at a time so the copies stay in cache."""
    b = corners.shape[2]
    a = delta.shape[1] - b
    step = max(1, L2_BYTES // (4 * delta.shape[1] ** 2))
    for start in range(0, len(delta), step):
        part = slice(start, start + step)
        first, second = delta[part, :a], delta[part, a:]
        if b:
            second[...] = np.matmul(np.tril(tiles[part, 1:, :b]), second)
            second += np.matmul(corners[part].transpose(0, 2, 1), first)
        first[...] = np.matmul(np.triu(tiles[part, :a]).transpose(0, 2, 1), first)


def whitened_distances_numpy(
    x: np.ndarray, mean: np.ndarray, whitener: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """NumPy ``whitened_distances``: per position two triangular products and one general one on
    the packed blocks (``N d^2`` FLOP, nothing unpacked), or for small ones the same as batched
    products over masked copies of the blocks."""
    n, p, d = x.shape
    out = np.empty((p, n), dtype=np.float32)
    step = _distance_step(n, d, p, budget_bytes)
    with single_threaded_blas():
        for start in range(0, p, step):
            stop = min(p, start + step)
            # [pc, d, N]: rows of the C array are columns of BLAS's Fortran [N, d] = (x - mu)^T.
            delta = np.array(x[:, start:stop].transpose(1, 2, 0), dtype=np.float32, order="C")
            delta -= mean[start:stop, :, None]
            tiles, corners = factor_blocks(whitener[start:stop], d)
            if n * d * d >= BLAS_CALL_FLOP:
                _whiten_by_blas(delta, tiles, corners)
            else:
                _whiten_batched(delta, tiles, corners)
            out[start:stop] = np.sqrt(np.einsum("pdn,pdn->pn", delta, delta))
    return np.ascontiguousarray(out.T)


def whitened_distances_paddle(
    x, mean: np.ndarray, whitener: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> np.ndarray:
    """Paddle ``whitened_distances``: same result; the factor is unpacked on the host.

    x: a NumPy ``[N, P, d]`` (any strides), uploaded a chunk of positions at a
    time, or a Paddle tensor ``[P, d, N]`` already on the device, in
    ``padim_samples_tensor``'s position-major layout (each chunk is then a slice
    of it: no upload). Returns ``[N, P]`` float32.
    """
    import paddle

    on_device = isinstance(x, paddle.Tensor)
    p, d, n = x.shape if on_device else (x.shape[1], x.shape[2], x.shape[0])
    out = np.empty((p, n), dtype=np.float32)
    a, b = split(d)
    step = _distance_step(n, d, p, budget_bytes)
    with paddle.no_grad():
        for start in range(0, p, step):
            stop = min(p, start + step)
            if on_device:
                delta = x[start:stop]  # [pc, d, N]
            else:
                delta = paddle.to_tensor(
                    np.ascontiguousarray(x[:, start:stop].transpose(1, 2, 0), dtype=np.float32)
                )
            mu = paddle.to_tensor(np.ascontiguousarray(mean[start:stop], dtype=np.float32))
            tiles, corners = (paddle.to_tensor(np.ascontiguousarray(block))
                              for block in factor_blocks(whitener[start:stop], d))
            delta = delta - mu.unsqueeze(2)  # a new tensor: a shared device copy is never changed
            # U^T (x - mu) by blocks: [[U11^T 0] [U12^T U22^T]] [d1; d2], the triangles cut from the tile.
            first = paddle.bmm(paddle.triu(tiles[:, :a]).transpose([0, 2, 1]), delta[:, :a])
            squared = (first * first).sum(axis=1)
            if b:
                second = (paddle.bmm(corners.transpose([0, 2, 1]), delta[:, :a])
                          + paddle.bmm(paddle.tril(tiles[:, 1:, :b]), delta[:, a:]))
                squared = squared + (second * second).sum(axis=1)
            out[start:stop] = paddle.sqrt(squared).numpy()
    return np.ascontiguousarray(out.T)
