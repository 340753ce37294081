"""One benchmark run: for each category, extract features once, then fit, predict and score each method."""

from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

import metrics
from bench.atomic import write_atomic, write_text_atomic
from bench.errors import PatchbenchError
from bench.features import FeatureCache
from bench.probes import measure
from datasets import load_split, read_masks, resolve_categories
from methods.base import AnomalyMethod, FeatureSet, Prediction
from reports.tables import markdown_tables

MB = 2**20


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame
    settings: dict = field(default_factory=dict)


def new_run_dir(parent: Path) -> Path:
    """A fresh folder under ``parent`` named after the current time."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(1, 1000)]:
        path = Path(parent) / f"{stamp}{suffix}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise PatchbenchError(f"cannot create a run folder under {parent}; clean it up")


def check_prediction(method: str, prediction: Prediction, n: int, image_size: tuple[int, int]) -> None:
    """A method's output must be ``[N]`` scores and ``[N, H, W]`` maps."""
    scores, maps = np.asarray(prediction.scores), np.asarray(prediction.maps)
    if scores.shape != (n,) or maps.shape != (n, *image_size):
        raise PatchbenchError(
            f"method {method!r} returned scores of shape {scores.shape} and maps of shape "
            f"{maps.shape}; expected ({n},) and ({n}, {image_size[0]}, {image_size[1]})"
        )


def score_row(method: str, labels: np.ndarray, masks: np.ndarray, prediction: Prediction) -> dict:
    """The accuracy columns of one (category, method) row."""
    return {
        "image_auroc": metrics.image_auroc(labels, prediction.scores, method=method),
        "pixel_auroc": metrics.pixel_auroc(masks, prediction.maps, method=method),
    }


def run_method(cls: type[AnomalyMethod], options, train: FeatureSet, test: FeatureSet):
    """Fit and predict one method under the harness's probes."""
    method = cls.from_config(options)
    _, fit_probe = measure(lambda: method.fit(train))
    prediction, predict_probe = measure(lambda: method.predict(test))
    check_prediction(cls.name, prediction, len(test), test.image_size)
    return method, prediction, fit_probe, predict_probe


def write_tables(run_dir: Path, results: pd.DataFrame, settings: dict) -> str:
    """Write ``results.csv`` and ``results.md``; return the Markdown."""
    write_atomic(run_dir / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    header = "\n".join(f"- {key}: {value}" for key, value in settings.items())
    markdown = f"# patchbench results\n\n{header}\n\n{markdown_tables(results)}"
    write_text_atomic(run_dir / "results.md", markdown)
    return markdown


def run(options, methods: dict[str, type[AnomalyMethod]], backbone, data_root: Path,
        out: TextIO | None = None) -> RunResult:
    """Benchmark ``methods`` on every category ``options.category`` names under ``data_root``."""
    out = out or sys.stdout
    categories = resolve_categories(data_root, options.category)
    run_dir = new_run_dir(Path(options.output))
    settings = {
        "data": str(data_root),
        "categories": ", ".join(categories),
        "backbone": options.backbone,
        "weights": backbone.weights_used,
        "image": f"resize {options.resize}, crop {options.crop}",
        "seed": options.seed,
    }
    layers = tuple(sorted({layer for cls in methods.values() for layer in cls.layers}))
    cache = FeatureCache(backbone, layers, options.resize, options.crop, options.batch_size)
    size = (options.crop, options.crop)
    rows: list[dict] = []
    for category in categories:
        train_samples = load_split(data_root, category, "train")
        test_samples = load_split(data_root, category, "test")
        train = cache.get(category, "train", train_samples)
        test = cache.get(category, "test", test_samples)
        labels = np.array([s.label for s in test_samples])
        masks = read_masks(test_samples, resize=options.resize, crop=options.crop)
        for name, cls in methods.items():
            print(f"[{category}] {name}: fit on {len(train_samples)}, predict {len(test_samples)}", file=out)
            method, prediction, fit_probe, predict_probe = run_method(cls, options, train.features, test.features)
            rows.append({
                "category": category,
                "method": name,
                "backbone": options.backbone,
                "weights": backbone.weights_used,
                **score_row(name, labels, masks, prediction),
                "extract_s": train.seconds + test.seconds,
                "fit_s": fit_probe.seconds,
                "predict_ms_per_image": 1000.0 * predict_probe.seconds / len(test_samples),
                "fit_peak_mb": fit_probe.peak_rss_bytes / MB,
                "predict_peak_mb": predict_probe.peak_rss_bytes / MB,
                "model_mb": method.model_size_bytes() / MB,
                "n_train": len(train_samples),
                "n_test": len(test_samples),
                "seed": options.seed,
            })
            # Written after every row, so an interrupted run keeps what it finished.
            write_tables(run_dir, pd.DataFrame(rows), settings)
        cache.drop(category)
    results = pd.DataFrame(rows)
    print(write_tables(run_dir, results, settings), file=out)
    print(f"results written to {run_dir}", file=out)
    return RunResult(run_dir, results, settings)
