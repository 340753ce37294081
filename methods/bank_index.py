"""Exact nearest bank row (k = 1) without computing most of the distances: clusters ruled out by bounds.

The bank is stored cluster by cluster (``methods.bank_clusters``): centre
``c_j`` and a radius ``r_j`` that holds every member. For a batch of queries:

1. ``|q - c_j|`` for every (query, cluster): one product ``[M, D] x [D, C]``.
2. Each query searches the cluster of its nearest centre in full; the best
   value found there (or a caller's guess, e.g. the same position of a
   similar image) bounds its nearest distance from above: ``u_q``.
3. Cluster ``j`` is ruled out for query ``q`` when ``|q - c_j| - r_j > u_q``
   (the triangle inequality: every member is farther than a row already seen).
   Each cluster then meets, in one product, only the queries it is not ruled
   out for. When that leaves more than ``DENSE_FRACTION`` of the brute-force
   work (a cost model counting calls too), every query meets the whole bank
   instead; when the centre distances alone already predict that, step 2 is
   skipped (unstructured data: no bounds pay, and they cost a few % on top);
   below ``MIN_PRUNE_FLOPS`` nothing is tried. The dense pass keeps the
   near-tie handling below, so every path returns the same rows.

Why it is exact in float32. Products give ``v = |q|^2 - 2 q.b + |b|^2`` with
an error of at most ``e_q = rounding_slack(D) * (|q| + |b|)^2 / 2`` (Higham's
bound for the two dot products and two additions, whatever the BLAS order;
``methods.coreset_bounds`` doubles it; for the rows that matter, ``|b| <=
|q| + D`` with ``D`` a bound on the best distance so far, see
``_Search.width``; the centre test uses the largest centre norm). So:

- the upper bound ``u_q = sqrt(v_best + e_q)`` (float64, rounded up) is above
  the exact distance of the row that gave ``v_best``;
- ``r_j`` is measured in float64 from the stored float32 row and centre and
  rounded up, so it holds every member exactly;
- cluster ``j`` is skipped for ``q`` only when ``v_qc - e_qc > (u_q + r_j)^2``
  (``e_qc`` with the largest centre norm); then the exact
  ``|q - c_j| > u_q + r_j`` and every member is strictly farther, in exact
  arithmetic, than a row that is searched. The threshold is formed in float32
  from inputs rounded up and scaled by ``1 + THRESHOLD_ROUNDING`` (its four
  operations err by < 3e-7 together), so its rounding can only keep more.

Among the rows searched, the expansion alone cannot order rows closer than
``2 e_q`` (brute force, ``methods.nearest``, picks among those by rounding
noise). Here every row whose value comes within ``2 e_q`` of the best is kept
and the winner is taken by the direct ``|q - b|``, ties to the lowest bank
index. The result is the true nearest row up to the rounding of that direct
distance (a relative ~D * 2^-24 in the squared distance): at least as near as
brute force's pick, and with the same distance as brute force returns
whenever brute force's pick is the nearest.

Everything above runs in the bank's stored coordinates: rows less the bank's
mean (``ClusteredBank.offset``), queries less the same offset, both rounded to
float32. Smaller norms make ``e_q`` (and the near ties) ~10x smaller on CNN
features. The rounding of that subtraction moves each vector by at most
``eta = u (|q'| + |b'|)`` (``u`` = 2^-24, per component ``|fl(x) - x| <= u |x|``),
so a pair's stored-coordinate distance is within ``eta`` of its own distance,
and the row nearest in the bank as given is within ``2 eta`` of the best found
in stored coordinates: the bounds keep ``2 eta`` more (``u_q``, and the width
grows by ``4 eta (D + eta)``), and the winner's direct distance is taken on the
rows and query as given (``ClusteredBank.raw``), as brute force takes it.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from methods.bank_clusters import ClusteredBank
from methods.coreset_bounds import UNIT_ROUNDOFF, rounding_slack
from methods.nearest import DEFAULT_BUDGET_BYTES, chunk_rows, squared_norms

# Above this share of brute force's multiply-adds left after pruning (overheads counted), search everything.
DENSE_FRACTION = 0.5
# Below this many brute-force flops (~20 ms) the bounds' fixed costs (centre distances, calls) do not pay.
MIN_PRUNE_FLOPS = 1.5e9
# The same test on guessed bounds (the nearest centre as the nearest row): measured 1.1-1.25 x the real
# share on structured data, hence the margin over DENSE_FRACTION.
ESTIMATE_FRACTION = 0.6
# What one small product costs beyond its multiply-adds (about 50-100 us of Python and NumPy calls).
CALL_FLOPS = 3e6
# Below this share of a cluster's rows in the gallery its rows are gathered; above, masked by infinite norms.
GATHER_BELOW = 0.5
# Threads for the per-cluster products (each runs BLAS on one thread; NumPy releases the GIL in them).
THREADS = min(2, os.cpu_count() or 1)
# Fewer jobs than this per thread: not worth a thread pool.
JOBS_PER_THREAD = 8
# float64 rounding of the bounds themselves (they are computed from float32 inputs).
BOUND_ROUNDING = 1e-12
# float32 rounding of the few operations that form the pruning threshold (each ~6e-8 relative).
THRESHOLD_ROUNDING = 1e-5


@dataclass(frozen=True)
class Nearest:
    """distances: ``[M]`` float32 direct ``|q - b|``; rows: ``[M]`` int64 stored-row index (map
    through ``ClusteredBank.source``); pairs: (query, row) expansions computed; total: M x rows searched over."""

    distances: np.ndarray
    rows: np.ndarray
    pairs: int
    total: int

    @property
    def computed_fraction(self) -> float:
        return self.pairs / max(1, self.total)


def round_up_float32(x: np.ndarray) -> np.ndarray:
    """float64 ``x`` as float32 values no smaller than ``x`` (a plain cast rounds to nearest)."""
    y = x.astype(np.float32)
    return np.where(y < x, np.nextafter(y, np.float32(np.inf)), y)


class _Search:
    """The running state of one batch: the best expansion value per query and the near-best rows seen."""

    def __init__(self, queries, bank: ClusteredBank, row_mask, budget_bytes, raw_queries):
        self.q = queries  # less bank.offset (the stored coordinates)
        self.q_raw = raw_queries
        self.qn = squared_norms(queries)
        self.bank = bank
        self.row_mask = row_mask
        # Rows outside the gallery get an infinite norm: their values are +inf, never chosen.
        self.norms = bank.sq_norms if row_mask is None else np.where(row_mask, bank.sq_norms, np.float32(np.inf))
        self.budget_bytes = budget_bytes
        self.slack = rounding_slack(queries.shape[1])
        self.q_norm = np.sqrt(self.qn.astype(np.float64))
        # The error bound of a value with any row (the bank's largest norm): only a first, loose bound.
        self.e_any = self.slack / 2 * (self.q_norm + bank.max_norm) ** 2 * (1 + BOUND_ROUNDING)
        self.best = np.full(len(queries), np.inf)
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pairs = 0

    def width(self, best: np.ndarray, at) -> np.ndarray:
        """Twice the error bound of the values that matter for queries ``at`` with best value ``best``:
        the width within which values cannot be ordered.

        The best row and any row nearer than it lie within ``D = sqrt(best + e_any)`` of ``q``, so
        their norms are at most ``|q| + D`` and their values err by at most
        ``slack/2 (2|q| + D)^2``: far less than ``e_any`` when the bank has rows of large norm.
        ``best`` only falls during a search, so a width taken earlier covers the final one.
        """
        reach = np.sqrt(np.maximum(best + self.e_any[at], 0))
        eta = self.offset_error(reach, at)
        return (self.slack * (2 * self.q_norm[at] + reach) ** 2 + 4 * eta * (reach + eta)) * (1 + BOUND_ROUNDING)

    def offset_error(self, reach: np.ndarray, at) -> np.ndarray:
        """How far the offset's rounding may move a distance between query ``at`` and a row within
        ``reach`` of it: ``u (|q'| + |b'|)`` with ``|b'| <= |q'| + reach``, doubled for safety."""
        return 2 * UNIT_ROUNDOFF * (2 * self.q_norm[at] + reach)

    def upper_bound(self) -> np.ndarray:
        """``[M]`` float64 above the exact stored-coordinate distance of each query's best row so far,
        plus the ``2 eta`` that the row nearest in the bank as given may lie beyond it."""
        everyone = slice(None)
        upper = np.sqrt(self.best + self.width(self.best, everyone) / 2)
        return (upper + 2 * self.offset_error(upper, everyone)) * (1 + BOUND_ROUNDING)

    def columns(self, start: int, stop: int, n_in: int, gather: bool = False):
        """Stored-row ids ``[n]``, rows ``[n, D]`` and norms ``[n]`` to multiply for rows ``start:stop``:
        the gallery's rows copied out when few are in it (or ``gather``), else all, masked by norms."""
        if self.row_mask is not None and (gather or n_in < GATHER_BELOW * (stop - start)):
            cols = start + np.flatnonzero(self.row_mask[start:stop])
            return cols, self.bank.rows[cols], self.bank.sq_norms[cols]
        return np.arange(start, stop), self.bank.rows[start:stop], self.norms[start:stop]

    def meet(self, qs: np.ndarray, start: int, stop: int, n_in: int, prepared=None) -> None:
        """Queries ``qs`` against the gallery rows among stored rows ``start:stop`` (``n_in`` of them);
        ``prepared``: their ``columns`` already taken (the dense pass shares one copy)."""
        if n_in == 0:
            return
        cols, rows, norms = self.columns(start, stop, n_in) if prepared is None else prepared
        step = chunk_rows(len(rows), self.budget_bytes // THREADS)
        # One block buffer per call: a fresh one per chunk would page-fault on every chunk.
        buffer = np.empty((min(step, len(qs)), len(rows)), dtype=np.float32)
        for at in range(0, len(qs), step):
            part = qs[at : at + step]
            block = buffer[: len(part)]
            # -2 q.b + |b|^2: |q|^2 is added per query in float64 after the minimum, a pass saved
            # (one rounding fewer than the bound e_q allows for).
            np.matmul(self.q[part] * np.float32(-2.0), rows.T, out=block)  # [m, n]
            block += norms[None, :]
            self.pairs += block.size
            arg = block.argmin(axis=1)
            q_sq = self.qn[part].astype(np.float64)
            mins = block[np.arange(len(part)), arg] + q_sq
            best = np.minimum(self.best[part], mins)
            near = mins <= best + self.width(best, part)
            if not near.any():
                continue
            sub, arg, mins, q_sq, best = part[near], arg[near], mins[near], q_sq[near], best[near]
            self.best[sub] = best
            self.found.append((sub, cols[arg], mins))
            # Other rows within the width of the best: rare, so look for them only where the
            # second smallest value says there are any (a full scan with nonzero costs 20 %).
            near_block = block if len(sub) == len(part) else block[near]
            near_block[np.arange(len(sub)), arg] = np.inf
            limit = round_up_float32(best + self.width(best, sub) - q_sq)
            for r in np.flatnonzero(near_block.min(axis=1) <= limit):
                hits = np.flatnonzero(near_block[r] <= limit[r])
                self.found.append((np.full(len(hits), sub[r]), cols[hits], near_block[r, hits] + q_sq[r]))

    def fork(self) -> "_Search":
        """A copy that searches on its own from the current best values (``join`` merges it back)."""
        twin = copy.copy(self)
        twin.best, twin.found, twin.pairs = self.best.copy(), [], 0
        return twin

    def join(self, twins: list["_Search"]) -> None:
        """Merge forks: each recorded what is within the width of its own best, which is no smaller
        than the merged best, so the merged records hold everything ``result`` keeps."""
        for twin in twins:
            np.minimum(self.best, twin.best, out=self.best)
            self.found.extend(twin.found)
            self.pairs += twin.pairs

    def meet_all(self, jobs: list[tuple], min_jobs: int | None = None) -> None:
        """``meet(*job)`` for every job, on ``THREADS`` threads when there are ``min_jobs`` per thread
        (default ``JOBS_PER_THREAD``)."""
        workers = min(THREADS, len(jobs) // (JOBS_PER_THREAD if min_jobs is None else min_jobs))
        with threadpool_limits(limits=1, user_api="blas"):
            if workers <= 1:
                for job in jobs:
                    self.meet(*job)
                return
            twins = [self.fork() for _ in range(workers)]

            def run(k: int) -> None:
                for job in jobs[k::workers]:  # interleaved: clusters of every size on every thread
                    twins[k].meet(*job)

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, range(workers)))
        self.join(twins)

    def meet_dense(self) -> None:
        """Every query against every gallery row, in query blocks shared among the threads (so the
        passes after each product, a large part of the cost at small D, run in parallel too)."""
        n_in = len(self.bank.rows) if self.row_mask is None else int(self.row_mask.sum())
        prepared = self.columns(0, len(self.bank.rows), n_in, gather=True)
        step = chunk_rows(n_in, self.budget_bytes // THREADS)
        blocks = max(THREADS, -(-len(self.q) // step))
        jobs = [(qs, 0, len(self.bank.rows), n_in, prepared) for qs in np.array_split(np.arange(len(self.q)), blocks)]
        self.meet_all(jobs, min_jobs=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The nearest row of every query by direct distance among the rows within ``width`` of its best.

        A query with a NaN compares false with everything, so nothing is found for it: its distance is
        NaN (as brute force gives) and its row 0, so the outputs stay aligned with the queries.
        """
        m = len(self.q)
        out_d, out_r = np.full(m, np.nan, dtype=np.float32), np.zeros(m, dtype=np.int64)
        if not self.found:
            return out_d, out_r
        qi, ri, v = (np.concatenate(parts) for parts in zip(*self.found))
        keep = v <= self.best[qi] + self.width(self.best[qi], qi)
        qi, ri = qi[keep], ri[keep]
        # A block of candidates at a time: where the rounding width is wide against the gaps between
        # rows (large norms, high D) there are dozens per query, and all at once took 28 GB (82,320
        # wide_resnet50_2 queries).
        dist = np.empty(len(qi), dtype=np.float32)
        step = max(1, self.budget_bytes // (4 * self.q.shape[1]))
        source = self.bank.source
        for at in range(0, len(qi), step):
            # As given, not in stored coordinates: the distance brute force returns.
            diff = self.bank.raw[source[ri[at : at + step]]]
            diff -= self.q_raw[qi[at : at + step]]
            dist[at : at + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        order = np.lexsort((self.bank.source[ri], dist, qi))
        first = order[np.r_[True, qi[order][1:] != qi[order][:-1]]]
        out_d[qi[first]], out_r[qi[first]] = dist[first], ri[first]
        return out_d, out_r


def nearest_in_clusters(
    queries: np.ndarray,
    bank: ClusteredBank,
    *,
    radii: np.ndarray | None = None,
    row_mask: np.ndarray | None = None,
    guess: np.ndarray | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> Nearest:
    """The nearest stored row of each query, exactly (see the module docstring).

    queries: ``[M, D]``; bank: a ``ClusteredBank`` of ``[N, D]``. Optional, to
    search a subset (a gallery): row_mask ``[N]`` bool, the rows to search;
    radii ``[C]`` float64, cluster radii valid for those rows (``-inf``: no
    member). guess: ``[M]`` stored-row indices of a likely near row each (must
    be in ``row_mask``), tightening the first upper bound.
    """
    raw = np.ascontiguousarray(queries, dtype=np.float32)
    q = raw - bank.offset  # the bank's stored coordinates
    m, dim = q.shape
    if m == 0:
        return Nearest(np.empty(0, np.float32), np.empty(0, np.int64), 0, 0)
    radii = bank.radii if radii is None else radii
    starts, stops = bank.offsets[:-1], bank.offsets[1:]
    sizes = stops - starts if row_mask is None else np.add.reduceat(row_mask.astype(np.int64), starts)
    live = (sizes > 0) & (radii > -np.inf)
    # Rows a product over cluster j multiplies: all its rows unless few are in the gallery (``meet``).
    multiplied = np.where(sizes < GATHER_BELOW * (stops - starts), sizes, stops - starts)
    search = _Search(q, bank, row_mask, budget_bytes, raw)
    total = m * int(sizes[live].sum())

    if 2.0 * dim * total < MIN_PRUNE_FLOPS:  # a few ms of products: bounds cannot win back their cost
        search.meet_dense()
        distances, rows = search.result()
        return Nearest(distances=distances.astype(np.float32), rows=rows, pairs=search.pairs, total=total)

    if guess is not None:
        g = np.asarray(guess, dtype=np.int64)
        value = search.qn + bank.sq_norms[g] - 2 * np.einsum("ij,ij->i", q, bank.rows[g])
        search.best = value.astype(np.float64)
        search.found.append((np.arange(m), g, search.best.copy()))

    # v[q, j] = |q - c_j|^2 by the float32 expansion, off by at most e_q (the largest centre norm in it).
    v = q @ (bank.centres.T * np.float32(-2.0))  # [M, C]; scaling by 2 is exact, and no [M, D] copy
    v += search.qn[:, None]
    v += bank.centre_sq_norms[None, :]
    if not live.all():
        v[:, ~live] = np.inf
    c_max = float(np.sqrt(bank.centre_sq_norms.max()))
    q_norm = search.q_norm
    e_q = (search.slack / 2 * (q_norm + c_max) ** 2 * (1 + THRESHOLD_ROUNDING)).astype(np.float32)
    r = np.where(live, radii * (1 + 1e-6), np.nan).astype(np.float32)
    first = v.argmin(axis=1)
    everyone = np.arange(m)

    def plan(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Open clusters ``[C, M]`` for upper bounds ``u`` ``[M]``, the busy ones, and their cost in flops.

        Cluster j stays open for q unless v - e_q > (u_q + r_j)^2 (module docstring); inputs rounded
        up, the threshold's own float32 rounding covered by THRESHOLD_ROUNDING; NaN radius: never open.
        """
        threshold = (u * (1 + 1e-6)).astype(np.float32)[:, None] + r[None, :]
        threshold *= threshold
        threshold += e_q[:, None]
        threshold *= np.float32(1 + THRESHOLD_ROUNDING)
        open_t = np.ascontiguousarray((v <= threshold).T)  # [C, M]
        open_t[first, everyone] = False
        counts = open_t.sum(axis=1)
        busy = np.flatnonzero(counts)
        return open_t, busy, 2.0 * dim * float(counts[busy] @ multiplied[busy]) + CALL_FLOPS * len(busy)

    dense_flops = 2.0 * dim * total
    # A guess at the bounds before any row is read: the nearest centre (or the given guess) as the
    # nearest row. Hopeless cases (no structure) then skip straight to the dense pass.
    n_first = len(np.unique(first))
    first_flops = 2.0 * dim * float(multiplied[first].sum()) + CALL_FLOPS * n_first
    guessed = plan(np.sqrt(np.maximum(np.minimum(v.min(axis=1), search.best), 0)))[2]
    hopeless = first_flops + guessed > ESTIMATE_FRACTION * dense_flops
    if not hopeless:
        # Each query's nearest live centre: its cluster gives the first real candidate.
        by_first = np.argsort(first, kind="stable")
        bounds = np.searchsorted(first[by_first], np.arange(len(radii) + 1))
        # Small products: a second BLAS thread costs more in hand-offs than it saves (50 us against
        # ms), so the threads take whole products instead.
        search.meet_all([(by_first[bounds[j] : bounds[j + 1]], starts[j], stops[j], sizes[j])
                         for j in np.flatnonzero(np.diff(bounds))])
        open_t, busy, pruned_flops = plan(search.upper_bound())
    if hopeless or first_flops + pruned_flops > DENSE_FRACTION * dense_flops:
        search.meet_dense()
    else:
        search.meet_all([(np.flatnonzero(open_t[j]), starts[j], stops[j], sizes[j]) for j in busy])
    distances, rows = search.result()
    return Nearest(distances=distances.astype(np.float32), rows=rows, pairs=search.pairs, total=total)
