"""``python bench.py profile``: how long the expensive steps take at MVTec scale, on synthetic inputs.

One row per step: backbone feature extraction, the greedy coreset (with the
plain reference loop beside it on the same inputs), nearest-neighbour search,
and the predict step of PatchCore, PaDiM and SPADE. Every input is seeded, so
two runs time the same work. Printed as a Markdown table; ``--output FILE``
writes it too.

Default sizes are those of one MVTec AD category with resnet18 at 224 x 224;
``--quick`` shrinks everything to run in seconds. The inputs and their sizes
come from ``bench.profile_inputs``, the plain reference loop from
``methods.coreset_reference``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.profile_inputs import FULL, QUICK, Sizes, gaussian_features, patch_like_features, resnet18_features


@dataclass(frozen=True)
class Row:
    what: str
    size: str
    seconds: float
    per_unit: str
    notes: str = ""


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

    from methods.coreset_reference import plain_greedy

    with threadpool_limits(limits=threads, user_api="blas"):
        used = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        seconds, ref = best_time(lambda: plain_greedy(points, start, steps + 1, dtype=np.float32), 1)
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
    p.add_argument("--profile", choices=["steps", "scale"], default="steps",
                   help="steps (default): each expensive step timed alone; scale: each fast path beside what it "
                        "replaces (pruned vs brute-force search with recall, PaDiM fit vs its FLOP floor, SPADE, "
                        "coresets vs the plain loop, cold vs warm start) and one wide_resnet50_2 category of "
                        "300 + 105 images end to end (about 9 minutes; about 10 GB of memory)")
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
                   help="comma-separated row groups to leave out: extract, coreset, search, methods; with "
                        "--profile scale: search, padim, spade, coreset, start, category")
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
    if options.profile == "scale":
        from bench.profile_scale import QUICK_SCALE, SCALE, SECTIONS, scale_report

        unknown = skip - set(SECTIONS)
        if unknown:
            parser().error(f"unknown section(s) for --skip with --profile scale: {', '.join(sorted(unknown))}")
        body = scale_report(QUICK_SCALE if options.quick else SCALE, options.seed, frozenset(skip))
        return emit(f"## patchbench profile --profile scale{' (--quick)' if options.quick else ''}\n\n"
                    f"{describe_machine()}\n\n{body}", options.output)
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
    return emit(markdown(rows, header), options.output)


def emit(table: str, output: Path | None) -> int:
    """Print the table and, with ``--output``, write it too."""
    print(table, end="")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table, encoding="utf-8")
    return 0
