"""``python bench.py profile --profile scale``: each fast path beside the work it replaces, at MVTec scale.

One run, one Markdown table of comparisons (the project's time, the reference
it is measured against, their ratio, and what was checked), then one category
end to end (``bench.profile_category``):

- PatchCore's nearest-neighbour search, pruned against brute force, at
  resnet18's and wide_resnet50_2's bank sizes, with the recall against brute
  force (it must be 1.0);
- PaDiM's fit at 550 dimensions against its arithmetic floor (its FLOP count
  at 100 GFLOP/s);
- SPADE's predict at resnet18;
- the greedy coreset of a texture-like and an object-like category beside the
  plain loop, with what share of the points each bound ruled out;
- a cold start (nothing cached) against a warm one (the saved inference model
  reused), whole-process wall time against the sum of the run's phases.

Every input is seeded. ``--quick`` shrinks every size to run in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bench.profile import best_time
from bench.profile_category import FULL_CATEGORY, QUICK_CATEGORY, CategorySize, category_markdown, run_category


@dataclass(frozen=True)
class Comparison:
    """One line of the scale table: ``seconds`` of the project's way against ``reference_seconds`` of
    ``reference`` on the same input."""

    what: str
    size: str
    seconds: float
    reference: str
    reference_seconds: float
    notes: str = ""

    @property
    def ratio(self) -> float:
        """The project's time as a multiple of the reference's: below 1 is faster."""
        return self.seconds / self.reference_seconds if self.reference_seconds > 0 else float("inf")


def comparison_markdown(rows: list[Comparison]) -> str:
    lines = ["| what | size | seconds | against | its seconds | seconds / its seconds | notes |",
             "| --- | --- | ---: | --- | ---: | ---: | --- |"]
    lines += [f"| {r.what} | {r.size} | {r.seconds:.3g} | {r.reference} | {r.reference_seconds:.3g} "
              f"| {r.ratio:.2f} | {r.notes} |" for r in rows]
    return "\n".join(lines) + "\n"


# --- PaDiM fit against its arithmetic floor ------------------------------------------------------

FLOOR_FLOPS = 100e9  # the floor: arithmetic at ~100 GFLOP/s on 2 cores


def wide_resnet_shaped(n: int, image_size: int, seed: int):
    """A seeded ``FeatureSet`` of ``n`` images with wide_resnet50_2's layer1..3 shapes (256, 512, 1024
    channels at 1/4, 1/8, 1/16 of the input), post-ReLU-like."""
    from methods.base import FeatureSet

    rng = np.random.default_rng(seed)
    side = image_size // 4
    layers = {name: np.abs(rng.standard_normal((n, c, side // k, side // k), dtype=np.float32))
              for name, c, k in (("layer1", 256, 1), ("layer2", 512, 2), ("layer3", 1024, 4))}
    return FeatureSet(layers, (image_size, image_size))


def padim_fit_comparison(images: int, image_size: int, seed: int) -> Comparison:
    from methods.gaussians import fit_flop
    from methods.padim import Padim

    train = wide_resnet_shaped(images, image_size, seed)
    seconds, model = best_time(lambda: Padim(seed=seed).fit(train), 1)
    side = image_size // 4
    d = len(model.channels_)
    flop = fit_flop(images, side * side, d)
    return Comparison(
        "PaDiM fit", f"{images} images, {side}x{side} Gaussians of d = {d} (of 1,792)", seconds,
        "arithmetic floor (FLOP at 100 GFLOP/s)", flop / FLOOR_FLOPS,
        f"{flop / 1e9:.0f} GFLOP (SYRK, Cholesky, triangular inverse), {flop / seconds / 1e9:.0f} GFLOP/s; "
        f"model {model.model_size_bytes() / 2**20:,.0f} MB (the full inverses would be "
        f"{side * side * d * d * 4 / 2**20:,.0f} MB)")


# --- the greedy coreset beside the plain loop ----------------------------------------------------


def coreset_comparisons(points: int, seed: int) -> list[Comparison]:
    """Texture-like and object-like patch features: the project's coreset (projection included) and the
    plain reference loop on the same projected points from the same start, with what each bound ruled out."""
    from bench.profile_inputs import patch_like_features, texture_like_features
    from methods.coreset import greedy_coreset, random_projection
    from methods.coreset_reference import plain_greedy

    n_select = max(2, points // 10)
    rows = []
    for kind, make in (("texture-like", texture_like_features), ("object-like", patch_like_features)):
        features = make(points, 384, seed)
        stats: dict = {}
        seconds, chosen = best_time(lambda: greedy_coreset(features, n_select, seed=seed, stats=stats), 1)
        projected = random_projection(features, 128, seed)
        plain_seconds, plain = best_time(
            lambda: plain_greedy(projected, int(chosen[0]), n_select, dtype=np.float32), 1)
        same = "same selection" if np.array_equal(plain, chosen) else (
            f"same first {int(np.argmax(plain != chosen)):,} picks, then a float32 tie went the other way")
        ruled = ", ".join(f"{name} {100 * stats[f'fraction_{name}']:.1f} %"
                          for name in ("group", "leaf", "point", "lazy"))
        rows.append(Comparison(
            f"coreset, {kind} features", f"{n_select:,} of {points:,} x 384 -> 128", seconds,
            "plain greedy loop", plain_seconds,
            f"{same}; point-steps ruled out by {ruled}; computed in full {100 * stats['fraction_full']:.1f} %"))
    return rows


# --- PatchCore's search: pruned against brute force ----------------------------------------------


def scaled_grid(table: dict[str, tuple[int, int]], image_size: int) -> dict[str, tuple[int, int]]:
    """Channels and side of each layer at ``image_size`` (the tables hold them at 224)."""
    return {name: (c, max(1, round(side * image_size / 224))) for name, (c, side) in table.items()}


def recall(found: np.ndarray, found_rows: np.ndarray, brute: np.ndarray, brute_rows: np.ndarray) -> float:
    """Share of queries whose pruned neighbour is brute force's, or exactly as near (the direct distances
    equal up to float32 rounding, or nearer: brute force's float32 expansion can misrank near ties)."""
    tolerance = 4 * np.finfo(np.float32).eps * np.maximum(brute, 1e-30)
    return float(np.mean((found_rows == brute_rows) | (found <= brute + tolerance)))


def search_comparison(backbone: str, train, test, data: str, seed: int) -> Comparison:
    """PatchCore fitted on ``train`` (the memory bank is its coreset, as in a run), then the nearest bank
    entries of ``test``'s patches by brute force and by the pruned search. ``data`` says what the features are."""
    from methods.bank_index import nearest_in_clusters
    from methods.nearest import nearest_neighbors_numpy
    from methods.patchcore import PatchCore, patch_embedding

    model = PatchCore(seed=seed, search="pruned").fit(train)
    queries = patch_embedding(test).reshape(-1, model.memory_bank_.shape[1])
    bank = model.clustered_bank()
    brute_seconds, (brute, brute_rows) = best_time(lambda: nearest_neighbors_numpy(queries, model.memory_bank_), 3)
    seconds, found = best_time(lambda: nearest_in_clusters(queries, bank), 3)
    rows = bank.source[found.rows]
    n_bank, dim = model.memory_bank_.shape
    return Comparison(
        f"PatchCore nearest bank entry ({backbone}, {data})",
        f"{len(queries):,} queries ({len(test)} image{'s' if len(test) > 1 else ''}) x {n_bank:,} bank x {dim}",
        seconds, "brute force (chunked GEMM)", brute_seconds,
        f"recall {recall(found.distances, rows, brute[:, 0], brute_rows[:, 0]):.4f}; full distances for "
        f"{100 * found.computed_fraction:.1f} % of pairs; bank = PatchCore's coreset of {len(train)} images; "
        "best of 3")


def structured_pair(backbone: str, train_images: int, test_images: int, image_size: int, seed: int):
    """Seeded structured layer2 and layer3 features of ``backbone``'s shapes: train and test ``FeatureSet``."""
    from bench.profile_inputs import FULL, RESNET18, WIDE_RESNET50, structured_features

    grid = scaled_grid({"resnet18": RESNET18, "wide_resnet50_2": WIDE_RESNET50}[backbone], image_size)
    sizes = FULL if image_size == FULL.image_size else type(FULL)(image_size=image_size)
    layers = ("layer2", "layer3")
    return (structured_features(train_images, sizes, layers, seed + 11, grid=grid),
            structured_features(test_images, sizes, layers, seed + 12, grid=grid))


def backbone_pair(backbone: str, scene: str, train_images: int, test_images: int, image_size: int, seed: int):
    """layer2 and layer3 of ``backbone`` (random weights: no download) on a synthetic category's good
    training and test images: train and test ``FeatureSet``."""
    import tempfile

    from bench.backbone import Backbone
    from datasets import load_split, read_images
    from datasets.synthetic import ImageCounts, build_synthetic
    from methods.base import FeatureSet

    counts = ImageCounts(train=train_images, test_good=test_images, per_defect=0)
    net = Backbone(backbone, weights="random", seed=seed)
    pair = []
    with tempfile.TemporaryDirectory(prefix="patchbench-profile-") as tmp:
        root = build_synthetic(tmp, seed, categories=[scene], counts=counts)
        for split in ("train", "test"):
            paths = [sample.image_path for sample in load_split(root, scene, split)]
            images = read_images(paths, resize=image_size * 8 // 7, crop=image_size)
            pair.append(FeatureSet(net.extract(images, ("layer2", "layer3")), (image_size, image_size)))
    return pair


# --- SPADE's predict: pruned galleries against brute force ---------------------------------------


def spade_comparison(train_images: int, test_images: int, image_size: int, seed: int) -> Comparison:
    """SPADE (K = 50) on seeded structured resnet18-shaped features, its exact pixel search pruned and
    brute force; the maps must agree."""
    from bench.profile_inputs import FULL, structured_features
    from methods.spade import PYRAMID, POOLED, Spade

    sizes = FULL if image_size == FULL.image_size else type(FULL)(image_size=image_size)
    layers = PYRAMID + (POOLED,)
    train = structured_features(train_images, sizes, layers, seed + 13)
    test = structured_features(test_images, sizes, layers, seed + 14)
    pruned, brute = Spade(search="pruned").fit(train), Spade(search="brute").fit(train)
    brute_seconds, expected = best_time(lambda: brute.predict(test), 2)
    seconds, got = best_time(lambda: pruned.predict(test), 2)
    difference = float(np.abs(got.maps - expected.maps).max())
    k = min(pruned.top_k, train_images)
    side = sizes.grid["layer1"][1]
    return Comparison(
        "SPADE predict (resnet18)", f"{test_images} images, K = {k} of {train_images} train, {image_size} px "
        f"(layer1 gallery {k * side * side:,} x 64)", seconds, "brute-force pixel search", brute_seconds,
        f"{1000 * seconds / test_images:.0f} ms/image against {1000 * brute_seconds / test_images:.0f}; "
        f"largest map difference {difference:.1e}; structured features; best of 2")


# --- the whole profile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleSizes:
    """Sizes of one scale profile: MVTec AD's by default, ``QUICK_SCALE`` to run in seconds."""

    image_size: int = 224
    resnet18_bank_images: int = 204  # 159,936 patches -> a 10 % coreset of ~16,000
    wide_resnet_bank_images: int = 300  # 235,200 patches -> 23,520
    query_images: int = 4
    padim_images: int = 300
    spade_train: int = 60
    spade_test: int = 8
    coreset_points: int = 31_360  # 40 training images at 224 px
    start_resize: tuple[str, ...] = ()
    category: CategorySize = FULL_CATEGORY


SCALE = ScaleSizes()
QUICK_SCALE = ScaleSizes(image_size=64, resnet18_bank_images=8, wide_resnet_bank_images=6, query_images=1,
                         padim_images=6, spade_train=6, spade_test=2, coreset_points=2_000,
                         start_resize=("--resize", "72", "--crop", "64"), category=QUICK_CATEGORY)
SECTIONS = ("search", "padim", "spade", "coreset", "start", "category")


def scale_report(sizes: ScaleSizes, seed: int = 0, skip: frozenset[str] = frozenset()) -> str:
    """Run every section not in ``skip``; the Markdown the command prints."""
    from bench.startup import measure_start, table

    # The coreset's INFO line per selection would interleave with the table.
    logging.getLogger("patchbench.coreset").setLevel(logging.WARNING)
    # First, while this process has no other child: the run's peak RSS is then its own.
    category = None if "category" in skip else run_category(sizes.category, seed)
    parts = []
    rows: list[Comparison] = []
    if "search" not in skip:
        for backbone, images in (("resnet18", sizes.resnet18_bank_images),
                                 ("wide_resnet50_2", sizes.wide_resnet_bank_images)):
            pair = structured_pair(backbone, images, sizes.query_images, sizes.image_size, seed)
            rows.append(search_comparison(backbone, *pair, "structured features", seed))
            for scene in ("chip", "weave"):
                pair = backbone_pair(backbone, scene, images, sizes.query_images, sizes.image_size, seed)
                rows.append(search_comparison(backbone, *pair, f"{scene}, random weights", seed))
    if "padim" not in skip:
        rows.append(padim_fit_comparison(sizes.padim_images, sizes.image_size, seed))
    if "spade" not in skip:
        rows.append(spade_comparison(sizes.spade_train, sizes.spade_test, sizes.image_size, seed))
    if "coreset" not in skip:
        rows += coreset_comparisons(sizes.coreset_points, seed)
    if rows:
        parts.append("### Each fast path against what it replaces\n\n" + comparison_markdown(rows))
    if "start" not in skip:
        measured = measure_start(("resnet18", "wide_resnet50_2"), extra_args=("--weights", "random",
                                                                            *sizes.start_resize))
        parts.append("### Cold and warm start: one small category (chip, 24 train + 23 test images), "
                     "whole process against the sum of its phases\n\n" + table(measured) + "\n")
    if category is not None:
        parts.append(category_markdown(category, sizes.category))
    return "\n".join(parts)
