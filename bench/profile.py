"""``python bench.py profile``: how long the expensive steps take at MVTec scale, on synthetic inputs.

One row per step: backbone feature extraction, the greedy coreset (with the
plain reference loop beside it on the same inputs), nearest-neighbour search,
and the predict step of PatchCore, PaDiM and SPADE. Every input is seeded, so
two runs time the same work. Printed as a Markdown table; ``--output FILE``
writes it too.

Default sizes are those of one MVTec AD category with resnet18 at 224 x 224
(784 layer2 positions per image; about 200 training images give 160,000 patch
features of 384 dims; a 10 % memory bank holds 16,000). ``--quick`` shrinks
everything to run in seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# resnet18 channels of layer1..layer3 and the grid each has at 224 x 224.
RESNET18 = {"layer1": (64, 56), "layer2": (128, 28), "layer3": (256, 14)}
RESNET18_POOLED = 512  # avgpool pools layer4


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one profile."""

    image_size: int = 224
    images: int = 32  # for feature extraction
    batch_size: int = 8
    points: int = 160_000  # coreset input, 384-dim patch features
    reference_steps: int = 500  # steps of the plain loop timed, the rest extrapolated
    queries: int = 784  # one image's layer2 positions
    bank: int = 16_000  # a 10 % memory bank of 160,000
    train_images: int = 40  # PaDiM's Gaussians
    spade_train_images: int = 60  # SPADE needs more than its K = 50 neighbours
    predict_images: int = 8

    @property
    def grid(self) -> dict[str, tuple[int, int]]:
        """Channels and side of layer1..3 at this image size."""
        scale = self.image_size / 224
        return {name: (c, max(1, round(side * scale))) for name, (c, side) in RESNET18.items()}


FULL = Sizes()
QUICK = Sizes(image_size=64, images=4, batch_size=4, points=6_000, reference_steps=100, queries=64,
              bank=600, train_images=6, spade_train_images=6, predict_images=2)


@dataclass(frozen=True)
class Row:
    what: str
    size: str
    seconds: float
    per_unit: str
    notes: str = ""


# --- seeded inputs -----------------------------------------------------------------------------


def patch_like_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 features shaped like CNN patch features, seeded.

    Non-negative (post-ReLU) mixtures of a 48-dim latent with a decaying
    spectrum around 8 "scene" clusters: after the 128-dim projection, 90 % of
    the variance lies in about 13 directions and 99 % in about 80. Real
    ImageNet features of one MVTec category are structured like this; pure
    noise (``gaussian_features``) is the coreset's worst case.
    """
    rng = np.random.default_rng(seed)
    latent = 48
    scale = (1.0 / np.arange(1, latent + 1) ** 0.8).astype(np.float32)
    scenes = 2 * rng.standard_normal((8, latent), dtype=np.float32)
    z = scenes[rng.integers(8, size=n)] + rng.standard_normal((n, latent), dtype=np.float32)
    mixing = rng.standard_normal((latent, dim), dtype=np.float32)
    x = (z * scale) @ mixing
    x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    return np.maximum(x, 0, out=x)


def gaussian_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 standard normal: no structure for the coreset's bounds to use."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def resnet18_features(n: int, sizes: Sizes, layers, seed: int):
    """A ``FeatureSet`` of ``n`` images with resnet18's layer shapes (and ``avgpool`` ``[n, 512]``)."""
    from methods.base import FeatureSet

    rng = np.random.default_rng(seed)
    out = {}
    for name in layers:
        if name == "avgpool":
            out[name] = np.abs(rng.standard_normal((n, RESNET18_POOLED), dtype=np.float32))
            continue
        channels, side = sizes.grid[name]
        out[name] = np.abs(rng.standard_normal((n, channels, side, side), dtype=np.float32))
    return FeatureSet(out, (sizes.image_size, sizes.image_size))


# --- timing ------------------------------------------------------------------------------------


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other work) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def per(seconds: float, count: int, unit: str) -> str:
    value = seconds / max(1, count)
    return f"{value * 1e3:.2f} ms/{unit}" if value < 1 else f"{value:.2f} s/{unit}"


# --- the rows ----------------------------------------------------------------------------------


def extraction_row(sizes: Sizes, backbone: str, seed: int) -> Row:
    from bench.backbone import Backbone

    net = Backbone(backbone, weights="random", seed=seed)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((sizes.images, 3, sizes.image_size, sizes.image_size), dtype=np.float32)
    layers = ("layer1", "layer2", "layer3")
    net.extract(images[: sizes.batch_size], layers, sizes.batch_size)  # trace and warm up, untimed
    seconds, _ = best_time(lambda: net.extract(images, layers, sizes.batch_size), 2)
    side = sizes.image_size
    size = f"{sizes.images} images {side}x{side}, batch {sizes.batch_size}"
    return Row(f"feature extraction ({backbone})", size, seconds, per(seconds, sizes.images, "image"),
               f"random weights, layer1-3, {net.device}; best of 2 after a warm-up batch")


def plain_coreset(points: np.ndarray, start: int, steps: int) -> np.ndarray:
    """The straightforward greedy loop for ``steps`` steps: ``[steps + 1]`` indices.

    points: ``[N, d]`` float32. Each step is one matrix-vector product over all
    points and an in-place ``np.minimum``; the reference the project's coreset
    is measured against.
    """
    sq = np.einsum("ij,ij->i", points, points)
    min_sq = np.full(len(points), np.inf, dtype=np.float32)
    dist = np.empty(len(points), dtype=np.float32)
    chosen = [start]
    for _ in range(steps):
        centre = chosen[-1]
        np.matmul(points, points[centre], out=dist)
        dist *= -2.0
        dist += sq
        dist += sq[centre]
        np.minimum(min_sq, dist, out=min_sq)
        min_sq[centre] = -np.inf
        chosen.append(int(np.argmax(min_sq)))
    return np.array(chosen, dtype=np.int64)


def coreset_rows(sizes: Sizes, seed: int, full_reference: bool) -> list[Row]:
    """The project's coreset on patch-like and on unstructured features, and the plain loop."""
    from methods.backend import use_paddle
    from methods.coreset import greedy_coreset, random_projection

    n_select = max(1, sizes.points // 10)
    size = f"{n_select:,} of {sizes.points:,} x 384 -> 128"
    backend = "paddle" if use_paddle() else "numpy"
    rows = []
    patch_like = patch_like_features(sizes.points, 384, seed)
    seconds, chosen = best_time(lambda: greedy_coreset(patch_like, n_select, seed=seed), 1)
    rows.append(Row("coreset (greedy k-center), patch-like features", size, seconds,
                    per(seconds, n_select - 1, "step"), f"{backend}; includes the projection"))
    noise = gaussian_features(sizes.points, 384, seed)
    noise_seconds, _ = best_time(lambda: greedy_coreset(noise, n_select, seed=seed), 1)
    rows.append(Row("coreset, unstructured (Gaussian) features", size, noise_seconds,
                    per(noise_seconds, n_select - 1, "step"), f"{backend}; worst case: nothing to prune"))

    points = random_projection(patch_like, 128, seed)
    steps = n_select - 1 if full_reference else min(n_select - 1, sizes.reference_steps)
    start = int(np.random.default_rng(seed).integers(len(points)))
    for threads in (None, 1):
        rows.append(reference_row(points, start, steps, n_select, threads, chosen, seconds, size))
    return rows


def reference_row(points, start, steps, n_select, threads, chosen, project_seconds, size) -> Row:
    """The plain loop on the project's (projected) inputs and start, on ``threads`` BLAS threads
    (None: the default), compared with the project's selection ``chosen``."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        used = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        seconds, ref = best_time(lambda: plain_coreset(points, start, steps), 1)
    total = seconds * (n_select - 1) / max(1, steps)
    prefix = chosen[: len(ref)]
    same = len(ref) if np.array_equal(ref, prefix) else int(np.argmax(ref != prefix))
    timed = "all steps"
    if steps < n_select - 1:
        timed = f"{steps:,} of {n_select - 1:,} steps timed, total extrapolated"
    agree = "same selection"
    if same < len(ref):
        agree = f"same first {same:,} picks, then a float32 tie went the other way"
    which = "default" if threads is None else "limited to"
    return Row(f"coreset, plain reference loop, {used} BLAS thread{'s' if used > 1 else ''}", size, total,
               per(seconds, steps, "step"),
               f"same inputs; {timed}; {agree}; BLAS threads {which} {used}; "
               f"{total / project_seconds:.1f}x the project's time")


def search_rows(sizes: Sizes, seed: int) -> list[Row]:
    from methods.nearest import nearest_neighbors

    queries = patch_like_features(sizes.queries, 384, seed + 1)
    bank = patch_like_features(sizes.bank, 384, seed + 2)
    rows = []
    for k in (1, 9):
        seconds, (dist, _) = best_time(lambda: nearest_neighbors(queries, bank, k=k), 3)
        assert dist.shape == (sizes.queries, k)
        size = f"{sizes.queries:,} queries x {sizes.bank:,} bank x 384"
        rows.append(Row(f"nearest neighbours, k={k}", size, seconds, per(seconds, sizes.queries, "query"),
                        "best of 3"))
    return rows


def predict_row(name: str, method, test, size: str, notes: str) -> Row:
    """Times ``method.predict(test)`` of a fitted method (best of 2)."""
    seconds, prediction = best_time(lambda: method.predict(test), 2)
    assert np.isfinite(prediction.scores).all()
    return Row(f"{name} predict", size, seconds, per(seconds, len(test), "image"), f"best of 2; {notes}")


def method_rows(sizes: Sizes, seed: int) -> list[Row]:
    from methods.padim import Padim
    from methods.patchcore import PatchCore
    from methods.spade import Spade

    n = sizes.predict_images
    side = sizes.image_size
    rows = []

    patchcore = PatchCore(seed=seed)
    # The bank is given, not fitted: predict's cost depends on its size only (the coreset is timed above).
    patchcore.memory_bank_ = patch_like_features(sizes.bank, 384, seed + 2)
    test = resnet18_features(n, sizes, ("layer2", "layer3"), seed + 3)
    rows.append(predict_row("PatchCore", patchcore, test, f"{n} images {side}x{side}, bank {sizes.bank:,} x 384",
                            "nearest patch + Eq. 7 re-weighting (b = 9) + maps"))

    pyramid = ("layer1", "layer2", "layer3")
    padim = Padim(seed=seed).fit(resnet18_features(sizes.train_images, sizes, pyramid, seed + 4))
    test = resnet18_features(n, sizes, pyramid, seed + 5)
    grid = sizes.grid["layer1"][1]
    rows.append(predict_row("PaDiM", padim, test, f"{n} images, {grid}x{grid} Gaussians of d = 100",
                            f"fitted on {sizes.train_images} images; Mahalanobis + maps"))

    layers = pyramid + ("avgpool",)
    spade = Spade(top_k=50).fit(resnet18_features(sizes.spade_train_images, sizes, layers, seed + 6))
    test = resnet18_features(n, sizes, layers, seed + 7)
    k = min(50, sizes.spade_train_images)
    rows.append(predict_row("SPADE", spade, test, f"{n} images, K = {k} of {sizes.spade_train_images} train",
                            f"galleries of {k} images per level (layer1: {k * grid * grid:,} x 64)"))
    return rows


# --- output ------------------------------------------------------------------------------------


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| what | size | seconds | per-unit | notes |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {r.what} | {r.size} | {r.seconds:.3g} | {r.per_unit} | {r.notes} |" for r in rows]
    return "\n".join(lines) + "\n"


def describe_machine() -> str:
    import os
    import platform

    from threadpoolctl import threadpool_info

    from bench.threads import cpu_count

    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {cpu_count()} cores, load average {load}; BLAS: {blas}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py profile",
        description="Time feature extraction, the greedy coreset (beside the plain reference loop), "
                    "nearest-neighbour search and each method's predict at MVTec scale, on seeded "
                    "synthetic inputs. Prints a Markdown table.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test that runs in seconds")
    p.add_argument("--points", type=int, default=None,
                   help="coreset input features (default 160,000 of 384 dims; 10%% are selected)")
    p.add_argument("--full-reference", action="store_true",
                   help="run the plain reference coreset loop for all steps instead of timing "
                        f"{FULL.reference_steps} and extrapolating")
    p.add_argument("--backbone", default="resnet18", choices=["resnet18", "wide_resnet50_2"],
                   help="backbone of the feature-extraction row (other rows use resnet18's feature sizes)")
    p.add_argument("--seed", type=int, default=0, help="seed of every synthetic input (default 0)")
    p.add_argument("--skip", default="", metavar="ROWS",
                   help="comma-separated row groups to leave out: extract, coreset, search, methods")
    p.add_argument("--output", type=Path, default=None, help="also write the table to this Markdown file")
    return p


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    sizes = QUICK if options.quick else FULL
    if options.points is not None:
        if options.points < 2:
            parser().error("--points must be at least 2")
        sizes = Sizes(**{**sizes.__dict__, "points": options.points})
    skip = {s.strip() for s in options.skip.split(",") if s.strip()}
    unknown = skip - {"extract", "coreset", "search", "methods"}
    if unknown:
        parser().error(f"unknown row group(s) for --skip: {', '.join(sorted(unknown))}")
    groups = [
        ("extract", lambda: [extraction_row(sizes, options.backbone, options.seed)]),
        ("coreset", lambda: coreset_rows(sizes, options.seed, options.full_reference)),
        ("search", lambda: search_rows(sizes, options.seed)),
        ("methods", lambda: method_rows(sizes, options.seed)),
    ]
    rows: list[Row] = []
    for name, make in groups:
        if name not in skip:
            rows += make()
    header = f"## patchbench profile{' (--quick)' if options.quick else ''}\n\n{describe_machine()}"
    table = markdown(rows, header)
    print(table, end="")
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(table, encoding="utf-8")
    return 0
