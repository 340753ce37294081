"""The pruned k = 1 search (methods.bank_index, bank_clusters, spade_gallery) against float64 brute force."""

import numpy as np
import pytest

import methods.bank_index as bank_index
from bench.profile_inputs import patch_like_features, structured_feature_maps
from methods.bank_clusters import cluster_bank, kmeans
from methods.bank_index import nearest_in_clusters
from methods.spade_gallery import gallery_index, gallery_nearest


pytestmark = pytest.mark.usefixtures("always_prune")  # tests/conftest.py


def brute(q, b):
    """float64 distances ``[M, N]``, their row minima ``[M]`` (float64 expansion: its rounding is ~1e-16
    of the squared norms, far below every tolerance here)."""
    q, b = q.astype(np.float64), b.astype(np.float64)
    d = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ b.T + (b * b).sum(1)[None, :], 0))
    return d, d.min(axis=1)


def check_exact(q, b, dist, idx, rtol=1e-5):
    """Returned distances are the true minima, and each returned row is at that distance (ties allowed)."""
    d, ref = brute(q, b)
    np.testing.assert_allclose(dist, ref, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(d[np.arange(len(q)), idx], ref, rtol=rtol, atol=1e-6)


def search(q, b, n_clusters=None, seed=0, **kwargs):
    bank = cluster_bank(b, n_clusters=n_clusters, seed=seed)
    found = nearest_in_clusters(q, bank, **kwargs)
    return found, bank.source[found.rows]


def structured_rows(n_images, channels, side, seed):
    maps = structured_feature_maps(n_images, channels, side, seed)
    return np.ascontiguousarray(maps.transpose(0, 2, 3, 1).reshape(-1, channels))


@pytest.fixture(scope="module")
def structured():
    return structured_rows(30, 24, 16, seed=1), structured_rows(2, 24, 16, seed=2)


@pytest.mark.parametrize("dense,threads", [(False, 1), (False, 2), (True, 1)])
def test_structured_data_exact_and_pruned(structured, dense, threads, monkeypatch):
    bank, q = structured
    monkeypatch.setattr(bank_index, "THREADS", threads)
    monkeypatch.setattr(bank_index, "JOBS_PER_THREAD", 1)  # two threads whenever there are two jobs
    if dense:  # the fallback: every query meets the whole bank
        monkeypatch.setattr(bank_index, "DENSE_FRACTION", 0.0)
    found, idx = search(q, bank, n_clusters=60)
    check_exact(q, bank, found.distances, idx)
    assert found.distances.dtype == np.float32 and idx.dtype == np.int64
    if dense:
        assert found.computed_fraction >= 1.0
    else:
        assert found.computed_fraction < 0.5  # the bounds must rule most of the bank out here


@pytest.mark.parametrize("n_clusters", [1, 7, 300])
@pytest.mark.parametrize("dense", [False, True])
def test_unstructured_and_clustered_data_exact(n_clusters, dense, monkeypatch):
    if dense:
        monkeypatch.setattr(bank_index, "MIN_PRUNE_FLOPS", np.inf)
    rng = np.random.default_rng(3)
    noise_b, noise_q = rng.normal(size=(300, 20)).astype(np.float32), rng.normal(size=(90, 20)).astype(np.float32)
    found, idx = search(noise_q, noise_b, n_clusters=n_clusters)
    check_exact(noise_q, noise_b, found.distances, idx)
    b, q = patch_like_features(400, 32, seed=4), patch_like_features(70, 32, seed=5)
    found, idx = search(q, b, n_clusters=n_clusters)
    check_exact(q, b, found.distances, idx)


def test_duplicates_and_exact_ties_go_to_the_lowest_bank_index():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(40, 8)).astype(np.float32)
    bank = np.concatenate([base, base[::-1], base])  # each row three times
    q = np.concatenate([base[:10], base[5:15] + np.float32(0.01)])
    found, idx = search(q, bank, n_clusters=12)
    check_exact(q, bank, found.distances, idx)
    np.testing.assert_array_equal(found.distances[:10], 0)
    d, _ = brute(q, bank)
    np.testing.assert_array_equal(idx, [np.flatnonzero(row == row.min())[0] for row in d])
    # Equidistant rows, no duplicates: two rows symmetric about every query.
    bank = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.float32)
    found, idx = search(np.zeros((3, 2), np.float32), bank, n_clusters=2)
    np.testing.assert_array_equal(idx, 0)
    np.testing.assert_array_equal(found.distances, 1)


@pytest.mark.parametrize("n_rows", [1, 2, 3])
def test_tiny_banks(n_rows):
    rng = np.random.default_rng(7)
    b, q = rng.normal(size=(n_rows, 5)).astype(np.float32), rng.normal(size=(11, 5)).astype(np.float32)
    found, idx = search(q, b)
    check_exact(q, b, found.distances, idx)
    empty, _ = search(q[:0], b)
    assert empty.distances.shape == empty.rows.shape == (0,)


def test_small_distances_far_from_the_origin_stay_exact():
    """The float32 expansion loses most digits here: the bounds' margins and the direct re-check must not."""
    rng = np.random.default_rng(8)
    bank = (50 + rng.normal(size=(600, 64))).astype(np.float32)
    q = bank[rng.integers(600, size=200)] + np.float32(1e-3) * rng.normal(size=(200, 64)).astype(np.float32)
    found, idx = search(q, bank, n_clusters=25)
    check_exact(q, bank, found.distances, idx, rtol=1e-4)
    d, _ = brute(q, bank)
    np.testing.assert_array_equal(idx, d.argmin(axis=1))


def test_many_near_ties_are_resolved_a_block_at_a_time():
    """Far from the origin every row is within the rounding width of the best: dozens of candidates per
    query, whose direct distances must be taken a block at a time (all at once took 28 GB at MVTec
    scale) and give the same rows as in one block."""
    rng = np.random.default_rng(10)
    bank = (50 + rng.normal(size=(600, 64))).astype(np.float32)
    q = bank[rng.integers(600, size=200)] + np.float32(1e-3) * rng.normal(size=(200, 64)).astype(np.float32)
    one, idx_one = search(q, bank, n_clusters=25)
    small, idx_small = search(q, bank, n_clusters=25, budget_bytes=64 * 4 * 7)  # 7 candidates a block
    np.testing.assert_array_equal(idx_small, idx_one)
    np.testing.assert_array_equal(small.distances, one.distances)
    check_exact(q, bank, small.distances, idx_small, rtol=1e-4)


def test_distances_are_taken_on_the_rows_as_given():
    """The search runs less the bank's mean, but the distance returned is the direct one on the rows and
    queries as given, computed as brute force computes it (bit for bit)."""
    rng = np.random.default_rng(11)
    bank = (20 + rng.normal(size=(800, 48))).astype(np.float32)
    q = (20 + rng.normal(size=(150, 48))).astype(np.float32)
    found, idx = search(q, bank, n_clusters=20)
    clustered = cluster_bank(bank, n_clusters=20)
    assert np.abs(clustered.offset - 20).max() < 0.2 and np.abs(clustered.rows.mean(axis=0)).max() < 1e-3
    diff = bank[idx] - q
    np.testing.assert_array_equal(found.distances, np.sqrt(np.einsum("ij,ij->i", diff, diff)))
    check_exact(q, bank, found.distances, idx)


@pytest.mark.parametrize("bad", [[4], list(range(10))])
def test_nan_queries_keep_the_outputs_aligned(bad):
    """A NaN query finds nothing (every comparison is false): NaN for it, as brute force gives, and every
    other query's answer in its own place."""
    rng = np.random.default_rng(12)
    bank = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(10, 16)).astype(np.float32)
    q[bad, 3] = np.nan
    found, idx = search(q, bank, n_clusters=12)
    assert found.distances.shape == (10,) and idx.shape == (10,)
    assert np.isnan(found.distances[bad]).all()
    good = np.setdiff1d(np.arange(10), bad)
    if len(good):
        check_exact(q[good], bank, found.distances[good], idx[good])


def test_near_ties_are_ordered_by_the_direct_distance():
    """Two rows whose distances differ far below the expansion's rounding: the nearer must win."""
    rng = np.random.default_rng(9)
    centre = (100 + rng.normal(size=(1, 48))).astype(np.float32)
    step = np.zeros((1, 48), np.float32)
    step[0, 0] = 1e-2
    q = centre + step * 10
    bank = np.concatenate([centre + step * 9.9, centre + step * 9.8, centre - step * 5, centre + 30])
    found, idx = search(q, bank[[1, 0, 2, 3]], n_clusters=2)
    assert idx[0] == 1  # the row at 0.1 steps, not the one at 0.2


def test_row_mask_radii_and_guess_restrict_the_search(structured):
    bank, q = structured
    clustered = cluster_bank(bank, n_clusters=40, seed=1)
    rng = np.random.default_rng(10)
    keep = rng.random(len(bank)) < 0.3
    mask = keep[clustered.source]
    # Radii of the subset only: tighter than the bank's, still holding every kept member.
    diff = clustered.rows.astype(np.float64) - clustered.centres[clustered.labels].astype(np.float64)
    member = np.where(mask, np.linalg.norm(diff, axis=1), -np.inf)
    radii = np.full(len(clustered.centres), -np.inf)
    np.maximum.at(radii, clustered.labels, member)
    guess = np.flatnonzero(mask)[rng.integers(mask.sum(), size=len(q))]
    found = nearest_in_clusters(q, clustered, radii=radii * (1 + 1e-12), row_mask=mask, guess=guess)
    check_exact(q, bank[keep], found.distances, np.searchsorted(np.flatnonzero(keep), clustered.source[found.rows]))
    assert mask[found.rows].all()


def test_kmeans_is_seeded_and_labels_every_row():
    x = patch_like_features(500, 16, seed=11)
    a, b = kmeans(x, 20, seed=3), kmeans(x, 20, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].min() == 0 and a[0].max() == len(a[1]) - 1 and len(np.unique(a[0])) == len(a[1])


@pytest.mark.parametrize("k,queries_like_train", [(5, True), (12, True), (5, False)])
def test_gallery_search_matches_brute_force_over_the_gallery(k, queries_like_train):
    train = structured_feature_maps(12, 16, 10, seed=12).transpose(0, 2, 3, 1).reshape(12, 100, 16)
    index = gallery_index(np.ascontiguousarray(train), seed=0, n_clusters=15)
    test = structured_rows(1, 16, 10 if queries_like_train else 7, seed=13)  # 7 x 7: no same-position guess
    images = np.random.default_rng(14).permutation(12)[:k]
    found = gallery_nearest(index, test, images)
    gallery = train[images].reshape(-1, 16)
    _, ref = brute(test, gallery)
    np.testing.assert_allclose(found.distances, ref, rtol=1e-5, atol=1e-6)
    assert np.isin(index.image_of_row[found.rows], images).all()


def test_strays_get_clusters_of_their_own():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(400, 6)).astype(np.float32) * np.float32(0.1)
    x[:3] += 50  # three strays
    clustered = cluster_bank(x, n_clusters=1, seed=0)
    stray_clusters = np.unique(clustered.labels[np.isin(clustered.source, [0, 1, 2])])
    assert len(clustered.centres) >= 2 and not np.isin(clustered.labels[clustered.source >= 3], stray_clusters).any()
    assert clustered.radii.min() < 1  # the bulk's ball no longer reaches out to the strays
    diff = clustered.rows.astype(np.float64) - clustered.centres[clustered.labels]
    assert np.all(np.linalg.norm(diff, axis=1) <= clustered.radii[clustered.labels])
