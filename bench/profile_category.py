"""One MVTec-sized category run end to end, for ``bench.py profile --profile scale``.

The synthetic scenes are drawn at MVTec AD's size (300 good training images,
105 test images) and the real command runs on them in a child process, so its
numbers are those a user gets: feature extraction, and per method the fit, the
per-image predict time, the peak memory of each phase (the harness's own
probes) and the model size, read back from the run's ``results.csv``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from datasets.synthetic import ImageCounts, build_synthetic

REPO = Path(__file__).resolve().parents[1]
METHODS = ("patchcore", "padim", "spade")


@dataclass(frozen=True)
class CategorySize:
    """The category profiled: which scene, how many images, which backbone, at what size."""

    scene: str = "chip"
    counts: ImageCounts = ImageCounts(train=300, test_good=45, per_defect=20)  # 105 test images
    backbone: str = "wide_resnet50_2"
    resize: int = 256
    crop: int = 224

    @property
    def test_images(self) -> int:
        from datasets.synthetic_scenes import SCENES

        return self.counts.test_good + self.counts.per_defect * len(SCENES[self.scene].defects)


FULL_CATEGORY = CategorySize()
QUICK_CATEGORY = CategorySize(counts=ImageCounts(train=6, test_good=2, per_defect=1), backbone="resnet18",
                              resize=64, crop=64)


@dataclass(frozen=True)
class CategoryRun:
    """What the run measured: one row per method of ``results.csv``, the whole process's wall time
    and peak RSS."""

    results: pd.DataFrame
    wall_s: float
    peak_rss_mb: float


def run_category(size: CategorySize, seed: int = 0, methods=METHODS, workdir: Path | None = None) -> CategoryRun:
    """Draw the category and run ``bench.py`` on it (random weights: no download; no feature cache, so
    the extraction is timed)."""
    with tempfile.TemporaryDirectory(prefix="patchbench-profile-", dir=workdir) as tmp:
        root = build_synthetic(Path(tmp) / "data", seed, categories=[size.scene], counts=size.counts)
        command = [
            sys.executable, str(REPO / "bench.py"), "--data-path", str(root), "--backbone", size.backbone,
            "--weights", "random", "--seed", str(seed), "--methods", ",".join(methods), "--bootstrap", "0",
            "--resize", str(size.resize), "--crop", str(size.crop), "--no-cache", "--quiet",
            "--output", str(Path(tmp) / "runs"),
        ]
        started = time.perf_counter()
        # Its own cache root: the extraction is timed with a trace every time, and the user's cache
        # gets no wide_resnet50_2 model.
        env = {**os.environ, "PATCHBENCH_CACHE": str(Path(tmp) / "cache")}
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"bench.py failed on the profile category ({' '.join(command)}):\n{done.stderr[-4000:]}")
        # ru_maxrss of the children is in KiB on Linux, and the largest child's: this one's when it is the
        # first child of the process (bench.profile_scale runs it first).
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        results = pd.read_csv(next(Path(tmp, "runs").rglob("results.csv")))
    return CategoryRun(results=results, wall_s=wall, peak_rss_mb=peak)


def category_markdown(run: CategoryRun, size: CategorySize) -> str:
    """The run as a Markdown table, one row per method."""
    n_test = size.test_images
    extract = run.results["extract_s"].iloc[0]
    lines = [
        f"### One category end to end: {size.counts.train} train + {n_test} test images, {size.backbone}, "
        f"{size.crop} px (synthetic '{size.scene}', random weights)",
        "",
        f"Feature extraction of {size.counts.train + n_test} images: {extract:.1f} s "
        f"({1000 * extract / (size.counts.train + n_test):.0f} ms/image). Whole process {run.wall_s:.1f} s, "
        f"peak RSS {run.peak_rss_mb:,.0f} MB.",
        "",
        "| method | fit (s) | predict (ms/image) | fit peak RSS (MB) | predict peak RSS (MB) | model (MB) "
        "| image AUROC | pixel AUROC |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in run.results.itertuples():
        lines.append(
            f"| {row.method} | {row.fit_s:.2f} | {row.predict_ms_per_image:.1f} | {row.fit_peak_mb:,.0f} "
            f"| {row.predict_peak_mb:,.0f} | {row.model_mb:,.1f} | {row.image_auroc:.3f} | {row.pixel_auroc:.3f} |"
        )
    return "\n".join(lines) + "\n"
