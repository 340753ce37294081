"""The greedy coreset against the textbook float64 loop (``methods.coreset_reference``): same
selection, bounds that never skip a point that moves, seeding, the projection, the Paddle path
against the NumPy one."""

import io
import sys

import numpy as np
import pytest

from methods import backend as kernel_backend
from methods.coreset import greedy_coreset, random_projection
from methods.coreset_layout import LeafLayout
from methods.coreset_paddle import greedy_paddle
from methods.coreset_pruned import PrunedSearch, greedy_numpy
from methods.coreset_reference import plain_greedy


def tie_gaps(points, selected):
    """Per step, in float64: how far the chosen point's squared distance to the chosen set is
    below the largest one (0 when it is the farthest point)."""
    points = points.astype(np.float64)
    min_sq = np.full(len(points), np.inf)
    gaps = []
    for prev, nxt in zip(selected[:-1], selected[1:]):
        min_sq = np.minimum(min_sq, ((points - points[prev]) ** 2).sum(axis=1))
        min_sq[prev] = -np.inf
        gaps.append(min_sq.max() - min_sq[nxt])
    return np.array(gaps)


def float32_tie(points):
    """A gap in squared distance too small for float32's ``|x|^2 - 2 x.c + |c|^2`` to resolve:
    8x its typical (root-d) rounding error."""
    largest_sq = (points.astype(np.float64) ** 2).sum(axis=1).max()
    return 8 * np.sqrt(points.shape[1]) * 2.0**-24 * largest_sq


def low_rank(n, d, rank, seed, offset=0.0, noise=0.02):
    """Points near a ``rank``-dimensional subspace: what patch features look like, and what the
    bounds can prune."""
    rng = np.random.default_rng(seed)
    x = offset + rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + noise * rng.normal(size=(n, d))
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "n,d,n_select,seed",
    [(1, 4, 1, 0), (2, 3, 2, 0), (300, 16, 30, 1), (1000, 64, 100, 2), (2500, 5, 400, 3),
     (4000, 128, 200, 4)],
)
def test_selection_is_the_plain_loops(n, d, n_select, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    got = greedy_coreset(x, n_select, projection_dim=None, seed=seed)
    assert got.dtype == np.int64 and got.shape == (n_select,)
    assert got[0] == np.random.default_rng(seed).integers(n)
    # Every choice is the farthest point, up to what float32 cannot tell apart; on the NumPy path,
    # whose products this loop mirrors, the very same points.
    assert (tie_gaps(x, got) <= float32_tie(x)).all()
    if not kernel_backend.use_paddle():
        np.testing.assert_array_equal(got, plain_greedy(x, got[0], n_select))


@pytest.mark.parametrize("leaf_size,prefix_dims", [(2, 2), (4, 8), (16, 32)])
def test_pruned_selection_is_the_plain_loops(leaf_size, prefix_dims):
    x = low_rank(3000, 48, 4, seed=5)
    got = greedy_numpy(x, 11, 300, leaf_size=leaf_size, prefix_dims=prefix_dims)
    np.testing.assert_array_equal(got, plain_greedy(x, 11, 300))


@pytest.mark.parametrize("leaf_size,prefix_dims", [(2, 2), (16, 32)])
def test_far_from_the_origin_the_selection_differs_only_at_float32_ties(leaf_size, prefix_dims):
    # |x| ~ 280 against distances ~ 1: |x|^2 - 2 x.c + |c|^2 cancels most of its digits, and the
    # plain float32 loop itself parts from float64 at near-ties. Each choice must still be the
    # farthest point up to float32's resolution.
    x = low_rank(3000, 48, 4, seed=5, offset=40.0)
    got = greedy_numpy(x, 11, 300, leaf_size=leaf_size, prefix_dims=prefix_dims)
    assert len(set(got.tolist())) == 300
    assert tie_gaps(x, got).max() <= float32_tie(x)


def test_the_bounds_never_skip_a_point_that_moves():
    """Step by step: every minimum is min(old minimum, exact distance to the new centre) up to
    float32 rounding, while most points are never read."""
    x = low_rank(4000, 24, 3, seed=6, offset=25.0)
    layout = LeafLayout.build(x, leaf_size=4, group_leaves=4, prefix_dims=4)
    search = PrunedSearch(layout)
    flat = layout.points.reshape(-1, 24).astype(np.float64)
    norms = np.sqrt((flat * flat).sum(axis=1))
    centre = 3
    for _ in range(300):
        before = search.min_sq.reshape(-1).astype(np.float64)
        slot = layout.slot_of[centre]
        exact = ((flat - flat[slot]) ** 2).sum(axis=1)
        centre = search.add_centre(centre)
        after = search.min_sq.reshape(-1).astype(np.float64)
        real = np.isfinite(after)
        tolerance = 1e-5 * (norms + norms[slot]) ** 2
        expected = np.minimum(before, exact)
        assert np.all(np.abs(after[real] - expected[real]) <= tolerance[real])
    assert search.stats["pruned"] > 250
    assert search.stats["rows"] / search.stats["pruned"] < 0.2 * len(x)


def test_features_without_structure_fall_back_to_the_plain_pass():
    x = np.random.default_rng(7).normal(size=(3000, 64)).astype(np.float32)
    layout = LeafLayout.build(x, leaf_size=8)
    search = PrunedSearch(layout)
    got = [5]
    for _ in range(99):
        got.append(search.add_centre(got[-1]))
    assert search.stats["plain"] > 50
    np.testing.assert_array_equal(got, plain_greedy(x, 5, 100))


def test_duplicates_are_chosen_once_and_ties_go_either_way():
    x = low_rank(200, 12, 3, seed=8)
    dup = np.repeat(x, 3, axis=0)  # every point three times
    for got in (greedy_numpy(dup, 0, 250, leaf_size=4, prefix_dims=4), greedy_coreset(dup, 250, seed=0)):
        assert len(set(got.tolist())) == 250
        ref = plain_greedy(dup, got[0], 250)
        # While distinct points remain, the same points (maybe another copy)...
        np.testing.assert_array_equal(dup[got[:200]], dup[ref[:200]])
        # ...then only copies at distance 0 (up to rounding) are left.
        assert tie_gaps(dup, got).max() <= float32_tie(dup)


def test_lowest_index_wins_an_exact_tie():
    # Two points at the same distance from the start (exact in float32): the plain loop takes the lower.
    x = np.array([[0, 0], [3, 4], [-3, -4], [5, 0], [0, 1]], dtype=np.float32)
    assert greedy_numpy(x, 0, 3).tolist() == plain_greedy(x, 0, 3).tolist() == [0, 1, 2]


def test_selection_is_made_on_the_projection():
    x = np.random.default_rng(2).normal(size=(500, 200)).astype(np.float32)
    got = greedy_coreset(x, 40, projection_dim=32, seed=5)
    projected = random_projection(x, 32, seed=5)
    assert projected.shape == (500, 32)
    np.testing.assert_array_equal(got, plain_greedy(projected, got[0], 40))
    # The projection roughly keeps distances (Johnson-Lindenstrauss), so it is no arbitrary map.
    ratio = np.linalg.norm(projected[0] - projected[1]) / np.linalg.norm(x[0] - x[1])
    assert 0.6 < ratio < 1.4


def test_seeding():
    x = low_rank(2000, 40, 5, seed=4)
    a = greedy_coreset(x, 50, seed=7)
    np.testing.assert_array_equal(a, greedy_coreset(x, 50, seed=7))
    b = greedy_coreset(x, 50, seed=8)
    assert a[0] == np.random.default_rng(7).integers(2000) and b[0] == np.random.default_rng(8).integers(2000)
    assert not np.array_equal(a, b)


def test_all_points_or_an_impossible_size():
    x = np.random.default_rng(3).normal(size=(40, 3)).astype(np.float32)
    assert sorted(greedy_coreset(x, 40).tolist()) == list(range(40))
    for bad in (0, 41):
        with pytest.raises(ValueError):
            greedy_coreset(x, bad)


def test_layout_is_a_permutation_in_balls_that_hold_their_points():
    x = low_rank(1000, 20, 3, seed=9)
    layout = LeafLayout.build(x, leaf_size=6, group_leaves=4, prefix_dims=5)
    assert layout.order.shape[1] in range(6, 13) and layout.n_leaves & (layout.n_leaves - 1) == 0
    assert sorted(layout.order[layout.valid].tolist()) == list(range(1000))
    np.testing.assert_array_equal(layout.points[layout.valid], x[layout.order[layout.valid]])
    prefix = layout.prefix.astype(np.float64)
    to_centre = np.linalg.norm(prefix - layout.centre[:, None, :], axis=2)  # [B, L]
    assert np.all((to_centre <= layout.radius[:, None])[layout.valid])
    groups = prefix.reshape(layout.n_groups, -1, prefix.shape[2])
    to_group = np.linalg.norm(groups - layout.group_centre[:, None, :], axis=2)  # [G, B/G * L]
    assert np.all((to_group <= layout.group_radius[:, None])[layout.valid.reshape(layout.n_groups, -1)])


def test_no_progress_bar_off_a_terminal(capsys):
    greedy_coreset(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32), 100)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("paddle", [False, True])
def test_progress_callback_counts_up_to_the_selection(paddle, capsys):
    x = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    calls = []
    with kernel_backend.backend("paddle" if paddle else "numpy"):
        got = greedy_coreset(x, 700, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert len(got) == 700 and capsys.readouterr().err == ""
    done = [d for d, _ in calls]
    assert len(calls) > 2 and done == sorted(done) and calls[-1] == (700, 700)
    assert {total for _, total in calls} == {700}


# --- the Paddle path (the GPU's), here on CPU tensors --------------------------------------------


@pytest.mark.parametrize("n,d,n_select", [(1, 3, 1), (700, 20, 40), (1500, 128, 25)])
def test_paddle_path_is_the_numpy_path(n, d, n_select):
    x = np.random.default_rng(n).normal(size=(n, d)).astype(np.float32)
    with kernel_backend.backend("paddle"):
        got = greedy_coreset(x, n_select, projection_dim=16, seed=1)
    with kernel_backend.backend("numpy"):
        ref = greedy_coreset(x, n_select, projection_dim=16, seed=1)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)


def test_paddle_path_takes_a_tensor_and_breaks_ties_like_numpy():
    import paddle

    x = np.array([[0, 0], [3, 4], [-3, -4], [5, 0], [0, 1]], dtype=np.float32)
    assert greedy_paddle(paddle.to_tensor(x), 0, 5).tolist() == greedy_numpy(x, 0, 5).tolist()
    dup = np.repeat(low_rank(20, 6, 2, seed=3), 2, axis=0)
    got = greedy_paddle(dup, 4, 30)
    assert len(set(got.tolist())) == 30
    np.testing.assert_array_equal(dup[got[:20]], dup[plain_greedy(dup, 4, 20)])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_quiet_hides_the_coreset_bar_even_on_a_terminal(monkeypatch):
    from bench import log

    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    shown = {}
    for quiet in (False, True):
        log.setup(quiet=quiet)
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        greedy_coreset(x, 50, projection_dim=None, seed=0)
        monkeypatch.undo()
        shown[quiet] = "coreset" in terminal.getvalue()
    log.setup()
    assert shown == {False: True, True: False}


# --- the lazy loop (where the bounds lose) and what each test ruled out -------------------------


def _inputs(kind, n, seed):
    """Texture-like, object-like and Gaussian features, projected as PatchCore does."""
    from bench.profile_inputs import gaussian_features, patch_like_features
    from bench.profile_inputs import texture_like_features

    make = {"texture": texture_like_features, "object": patch_like_features, "gaussian": gaussian_features}[kind]
    return random_projection(make(n, dim=96, seed=seed), 48, seed)


def _movers(points, selected):
    """(point, step) pairs whose minimum the plain float64 loop lowers: any exact loop computes them."""
    x = points.astype(np.float64)
    min_sq = np.full(len(x), np.inf)
    count = 0
    for centre in selected[:-1]:
        dist = ((x - x[centre]) ** 2).sum(axis=1)
        count += int(np.count_nonzero(dist < min_sq))
        min_sq = np.minimum(min_sq, dist)
        min_sq[centre] = -np.inf
    return count


@pytest.mark.parametrize("kind", ["texture", "object", "gaussian"])
@pytest.mark.parametrize("lazy", [True, None])
def test_lazy_selection_is_the_plain_loops(kind, lazy):
    from methods.coreset_stats import CoresetStats

    x = _inputs(kind, 3000, seed=3)
    stats = CoresetStats(points=len(x), selected=300)
    got = greedy_numpy(x, 17, 300, stats=stats, lazy=lazy)
    np.testing.assert_array_equal(got, plain_greedy(x, 17, 300))
    assert stats.lazy_steps > (250 if lazy else 0) or kind == "object"


def test_textures_hand_over_to_the_lazy_loop_and_low_rank_features_keep_the_tree():
    from methods.coreset_stats import CoresetStats

    counts = {}
    for kind, x in (("texture", _inputs("texture", 4000, seed=1)), ("low rank", low_rank(4000, 48, 3, seed=1))):
        counts[kind] = CoresetStats(points=len(x), selected=400)
        np.testing.assert_array_equal(greedy_numpy(x, 0, 400, stats=counts[kind]), plain_greedy(x, 0, 400))
    assert counts["texture"].lazy_steps > 300 and counts["texture"].fractions()["lazy"] > 0.2
    assert counts["low rank"].lazy_steps == 0 and counts["low rank"].pruned_steps > 250


def test_lazy_duplicates_are_chosen_once_and_the_lowest_index_wins_a_tie():
    x = np.array([[0, 0], [3, 4], [-3, -4], [5, 0], [0, 1]], dtype=np.float32)
    assert greedy_numpy(x, 0, 5, lazy=True).tolist() == plain_greedy(x, 0, 5).tolist()
    dup = np.repeat(low_rank(200, 12, 3, seed=8), 3, axis=0)
    got = greedy_numpy(dup, 0, 250, lazy=True)
    assert len(set(got.tolist())) == 250
    ref = plain_greedy(dup, 0, 250)
    np.testing.assert_array_equal(dup[got[:200]], dup[ref[:200]])
    assert tie_gaps(dup, got).max() <= float32_tie(dup)
    # Exact ties everywhere: points on a grid, many at the same distance; the lowest index each time.
    grid = np.stack(np.meshgrid(np.arange(12), np.arange(12)), axis=-1).reshape(-1, 2).astype(np.float32)
    grid = np.concatenate([grid, grid[::-1]])
    np.testing.assert_array_equal(greedy_numpy(grid, 5, 200, lazy=True), plain_greedy(grid, 5, 200))


@pytest.mark.parametrize("lazy", [False, True, None])
def test_statistics_add_up_to_every_point_step(lazy):
    from methods.coreset_stats import RULED_OUT, CoresetStats

    x = _inputs("texture", 2000, seed=4) if lazy is not False else low_rank(2000, 24, 3, seed=4)
    stats = CoresetStats(points=len(x), selected=200)
    got = greedy_numpy(x, 9, 200, stats=stats, lazy=lazy)
    counts = [getattr(stats, name) for name in (*RULED_OUT, "full")]
    assert min(counts) >= 0 and sum(counts) == len(x) * 199 == stats.point_steps
    assert sum(stats.fractions().values()) == pytest.approx(1.0)
    assert stats.plain_steps + stats.pruned_steps + stats.lazy_steps == 199
    # Every lowered minimum needs its distance computed; a plain step computes all of them.
    assert stats.full >= max(_movers(x, got), len(x) * stats.plain_steps)
    if lazy is False:
        assert stats.lazy == 0 and stats.pruned_steps > 0 and min(stats.leaf, stats.point) > 0
    else:
        assert stats.group == stats.leaf == stats.point == 0 and stats.full < 0.9 * stats.point_steps


def test_plain_steps_compute_every_point():
    from methods.coreset_stats import CoresetStats

    x = np.random.default_rng(7).normal(size=(1500, 64)).astype(np.float32)
    stats = CoresetStats(points=len(x), selected=40)
    greedy_numpy(x, 5, 40, stats=stats, lazy=False)
    assert stats.plain_steps == 39 and stats.full == 39 * 1500


@pytest.mark.parametrize("paddle", [False, True])
def test_each_coreset_logs_what_its_tests_ruled_out(paddle, caplog):
    x = _inputs("texture", 1000, seed=2)
    stats = {}
    with caplog.at_level("INFO", logger="patchbench.coreset"), kernel_backend.backend(
        "paddle" if paddle else "numpy"
    ):
        greedy_coreset(x, 100, seed=0, stats=stats)
    lines = [r.getMessage() for r in caplog.records if r.name == "patchbench.coreset"]
    assert len(lines) == 1 and "100 of 1000 points" in lines[0] and "computed in full" in lines[0]
    fractions = [stats[f"fraction_{name}"] for name in ("group", "leaf", "point", "lazy", "full")]
    assert sum(fractions) == pytest.approx(1.0) and stats["point_steps"] == 1000 * 99
    if paddle:
        assert stats["fraction_full"] == 1.0 and stats["plain_steps"] == 99


def test_lazy_products_split_into_blocks_select_the_same(monkeypatch):
    from methods import coreset_lazy

    x = _inputs("texture", 1500, seed=6)
    whole = greedy_numpy(x, 2, 150, lazy=True)
    monkeypatch.setattr(coreset_lazy, "BLOCK", 40)  # fewer distances than one row of some products
    np.testing.assert_array_equal(greedy_numpy(x, 2, 150, lazy=True), whole)
    np.testing.assert_array_equal(whole, plain_greedy(x, 2, 150))


@pytest.mark.parametrize("seed", range(6))
def test_lazy_loop_on_small_integer_points_is_the_plain_loop_tie_for_tie(seed):
    # Small integers: every float32 distance is exact, so ties are exact and frequent, and the
    # lowest index must win each of them, as in the float64 loop.
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 400)), int(rng.integers(1, 6))
    x = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    n_select = int(rng.integers(1, n + 1))
    start = int(rng.integers(n))
    np.testing.assert_array_equal(greedy_numpy(x, start, n_select, lazy=True), plain_greedy(x, start, n_select))
