"""One benchmark run: for each category, extract features once, then fit, predict and score each method
once per seed.

A run lives in its own folder. ``results.csv`` and ``results.md`` are rewritten
(atomically) after every (category, method, seed) row, so an interrupted run
keeps what it finished and ``--resume`` carries on from there. A category that
fails is recorded with its reason and the run goes on with the next.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

import metrics
from bench.errors import USER_ERRORS, PatchbenchError
from bench.features import FeatureCache, default_cache_dir
from bench.log import attach_run_log, detach_run_log, logger, progress
from bench.models import save_model
from bench.probes import measure
from bench.versions import versions
from datasets import load_split, read_masks, resolve_categories
from methods.base import AnomalyMethod, FeatureSet, Prediction
from reports.html import write_report
from reports.predictions import prediction_path, save_predictions
from reports.runfolder import RunFolder, RunSettings

MB = 2**20


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame

    @property
    def failed(self) -> bool:
        return "error" in self.results and self.results["error"].notna().any()


def check_prediction(method: str, prediction: Prediction, n: int, image_size: tuple[int, int]) -> None:
    """A method's output must be ``[N]`` scores and ``[N, H, W]`` maps."""
    scores, maps = np.asarray(prediction.scores), np.asarray(prediction.maps)
    if scores.shape != (n,) or maps.shape != (n, *image_size):
        raise PatchbenchError(
            f"method {method!r} returned scores of shape {scores.shape} and maps of shape "
            f"{maps.shape}; expected ({n},) and ({n}, {image_size[0]}, {image_size[1]})"
        )


def accuracy(method: str, labels: np.ndarray, masks: np.ndarray, prediction: Prediction,
             fpr_limit: float) -> metrics.Evaluation:
    """Every accuracy number and curve of one (category, method), from one ``metrics.evaluate`` that
    sorts the image scores once and the pixels once: ``.columns()`` are the row's accuracy columns,
    and ``save_predictions`` takes the thresholds and curves from it."""
    return metrics.evaluate(labels, prediction.scores, masks, prediction.maps, fpr_limit=fpr_limit,
                            method=method)


def intervals(labels: np.ndarray, masks: np.ndarray, prediction: Prediction, n_resamples: int, seed: int,
              fpr_limit: float) -> dict[str, float]:
    """95 % bootstrap intervals over the test images, as ``<key>_low``/``<key>_high`` row columns.

    Every method and method seed of a run resamples with the run's ``seed``, so
    they are judged on the same resamples of the same images.
    """
    metric_arrays = {"image_auroc": (metrics.image_auroc, labels, prediction.scores),
                     "pixel_auroc": (metrics.pixel_auroc, masks, prediction.maps),
                     "pro": (functools.partial(metrics.au_pro, fpr_limit=fpr_limit), masks, prediction.maps)}
    columns = {}
    for key, (metric, *arrays) in metric_arrays.items():
        columns[f"{key}_low"], columns[f"{key}_high"] = metrics.bootstrap_ci(
            metric, *arrays, n_resamples=n_resamples, seed=seed)
    return columns


def method_seeds(options) -> list[int]:
    """The seeds each (category, method) runs with: ``--seeds``, else ``--seed`` alone."""
    return list(options.seeds) if getattr(options, "seeds", None) else [options.seed]


def seeded(options, seed: int) -> argparse.Namespace:
    """``options`` with the methods' ``seed`` set: what ``from_config`` reads."""
    return argparse.Namespace(**{**vars(options), "seed": seed})


def run_method(cls: type[AnomalyMethod], options, train: FeatureSet, test: FeatureSet):
    """Fit and predict one method under the harness's probes."""
    method = cls.from_config(options)
    with shared_features_guard(cls):
        _, fit_probe = measure(lambda: method.fit(train))
        prediction, predict_probe = measure(lambda: method.predict(test))
    check_prediction(cls.name, prediction, len(test), test.image_size)
    return method, prediction, fit_probe, predict_probe


@contextlib.contextmanager
def shared_features_guard(cls: type[AnomalyMethod]):
    """Turn NumPy's bare "read-only" error into what the plugin author must change."""
    try:
        yield
    except ValueError as exc:
        if "read-only" not in str(exc):
            raise
        raise PatchbenchError(
            f"method {cls.name!r} ({cls.__module__}) wrote into its input features, which every method of "
            f"the run shares and which are read-only ({exc}); copy an array before changing it, "
            "e.g. features['layer2'] - mean or features['layer2'].copy()"
        ) from exc


def method_settings(methods: dict[str, type[AnomalyMethod]], options) -> dict[str, dict]:
    """Each method's hyper-parameters as the run sets them, ``{name: {param: value}}``, for run.json
    (so results.md and ``compare`` show them); values JSON cannot hold are written as text. With
    several seeds a ``seed`` parameter reads "per row", the rows' ``seed`` column says which."""
    seeds = method_seeds(options)
    settings = {}
    for name, cls in methods.items():
        try:
            params = cls.from_config(seeded(options, seeds[0])).get_params()
            if len(seeds) > 1 and "seed" in params:
                params["seed"] = "per row (method seeds)"
        except Exception as exc:  # noqa: BLE001 - a plugin's bad constructor fails its rows, not the run
            params = {"not recorded": f"{type(exc).__name__}: {exc}"}
        settings[name] = {key: value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
                          for key, value in params.items()}
    return settings


def run(options, methods: dict[str, type[AnomalyMethod]], backbone, data_root: Path,
        folder: RunFolder | None = None, out: TextIO | None = None) -> RunResult:
    """Benchmark ``methods`` on every category ``options.category`` names under ``data_root``.

    ``folder``: an existing run to resume; its finished rows are kept.
    """
    out = out or sys.stdout
    categories = resolve_categories(data_root, options.category)
    if folder is None:
        settings = RunSettings(
            argv=list(options.argv), data=str(data_root), categories=categories, backbone=options.backbone,
            weights=backbone.weights_used, resize=options.resize, crop=options.crop, seed=options.seed,
            pro_fpr_limit=options.pro_fpr_limit, seeds=method_seeds(options), bootstrap=options.bootstrap,
            device=backbone.device, methods=method_settings(methods, options), versions=versions())
        folder = RunFolder.create(Path(options.output), settings)
    log_handler = attach_run_log(folder.path)
    logger.info("run folder: %s", folder.path)
    try:
        return _run(options, methods, backbone, data_root, categories, folder, out)
    finally:
        detach_run_log(log_handler)


def _run(options, methods, backbone, data_root, categories, folder, out) -> RunResult:
    seeds = method_seeds(options)
    done = {(row["category"], row["method"], row.get("seed", options.seed)): row for row in folder.finished_rows()}
    if done:
        logger.info("resuming: %d finished rows kept", len(done))
    rows: list[dict] = list(done.values())
    layers = tuple(sorted({layer for cls in methods.values() for layer in cls.layers}))
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    cache = FeatureCache(backbone, layers, options.resize, options.crop, options.batch_size, cache_dir)
    steps = progress(total=len(categories) * len(methods) * len(seeds), initial=len(done), desc="benchmark",
                     unit="fit")
    try:
        for category in categories:
            todo = [(name, seed) for name in methods for seed in seeds if (category, name, seed) not in done]
            if todo:
                run_category(category, todo, methods, options, backbone, cache, data_root, folder, rows)
                cache.drop(category)
                steps.update(len(todo))
    except KeyboardInterrupt:
        folder.write(ordered(rows, categories, methods, seeds))
        logger.warning("interrupted; the finished rows are in %s (continue with --resume %s)",
                       folder.path, folder.path)
        raise
    steps.close()
    statistics_s = sum(row.get("statistics_s", 0.0) or 0.0 for row in rows)
    if statistics_s:
        logger.info("bootstrap intervals took %.1f s in all (%d resamples per interval)", statistics_s,
                    options.bootstrap)
    rows = ordered(rows, categories, methods, seeds)
    print(folder.write(rows), file=out)
    write_report(folder.path)
    logger.info("results written to %s", folder.path)
    return RunResult(folder.path, pd.DataFrame(rows))


def ordered(rows: list[dict], categories: list[str], methods: dict, seeds: list[int]) -> list[dict]:
    """Rows in category order, then method order, then seed order, whatever order they finished in."""
    orders = [{value: i for i, value in enumerate(values)} for values in (categories, methods, seeds)]

    def key(row):
        return tuple(order.get(row.get(field), len(order))
                     for order, field in zip(orders, ("category", "method", "seed")))

    return sorted(rows, key=key)


def failure_reason(exc: Exception, what: str) -> str:
    """The message of a failure; a user's mistake needs its message, a bug its traceback (in the log)."""
    reason = str(exc) if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {exc}"
    logger.error("error: %s failed: %s", what, reason, exc_info=not isinstance(exc, USER_ERRORS))
    return reason


def run_category(category, todo: list[tuple[str, int]], methods, options, backbone, cache, data_root, folder,
                 rows: list[dict]) -> None:
    """Append one category's rows to ``rows`` as each (method, seed) of ``todo`` finishes.

    The features are extracted (or read from the cache) once, for every method
    and seed. Bad data fails every row of the category; a failing method only
    its own row. Either way the failure becomes an ``error`` row and the run
    goes on.
    """
    several_seeds = len(method_seeds(options)) > 1

    def base(name: str, seed: int) -> dict:
        return {"category": category, "method": name, "seed": seed, "backbone": options.backbone,
                "weights": backbone.weights_used}

    try:
        train_samples = load_split(data_root, category, "train")
        test_samples = load_split(data_root, category, "test")
        masks = read_masks(test_samples, resize=options.resize, crop=options.crop)
        labels = np.array([s.label for s in test_samples])
        train = cache.get(category, "train", train_samples)
        test = cache.get(category, "test", test_samples)
    except Exception as exc:  # noqa: BLE001 - one category must not sink the run
        reason = failure_reason(exc, f"category {category!r}")
        rows.extend({**base(name, seed), "error": reason} for name, seed in todo)
        folder.write(rows)
        return

    for name, seed in todo:
        cls = methods[name]
        logger.info("[%s] %s%s: fit on %d images, predict %d", category, name,
                    f" (seed {seed})" if several_seeds else "", len(train_samples), len(test_samples))
        file_seed = seed if several_seeds else None
        try:
            method, prediction, fit_probe, predict_probe = run_method(
                cls, seeded(options, seed), train.features, test.features)
            evaluation = accuracy(name, labels, masks, prediction, options.pro_fpr_limit)
            started = time.perf_counter()
            bounds = (intervals(labels, masks, prediction, options.bootstrap, options.seed, options.pro_fpr_limit)
                      if options.bootstrap else {})
            statistics_s = time.perf_counter() - started
            save_predictions(prediction_path(folder.path, category, name, file_seed), test_samples, labels,
                             masks, prediction.scores, prediction.maps, evaluation)
            if options.save_models:
                model_name = name if file_seed is None else f"{name}.seed{seed}"
                save_model(method, folder.path / "models" / category / model_name, backbone=backbone.name,
                           weights_id=backbone.weights_id, weights_used=backbone.weights_used,
                           resize=options.resize, crop=options.crop, layers=cls.layers, category=category)
        except Exception as exc:  # noqa: BLE001 - one method must not sink the others
            rows.append({**base(name, seed), "error": failure_reason(exc, f"{name} on {category!r}")})
            folder.write(rows)
            continue
        seconds_per_image = predict_probe.seconds / len(test_samples)
        rows.append({
            **base(name, seed),
            **evaluation.columns(),
            **bounds,
            "extract_s": train.seconds + test.seconds,
            "features_from_cache": train.from_cache and test.from_cache,
            "fit_s": fit_probe.seconds,
            "predict_ms_per_image": 1000.0 * seconds_per_image,
            "images_per_s": 1.0 / seconds_per_image if seconds_per_image > 0 else float("inf"),
            "fit_peak_mb": fit_probe.peak_rss_bytes / MB,
            "predict_peak_mb": predict_probe.peak_rss_bytes / MB,
            "fit_gpu_peak_mb": fit_probe.peak_gpu_bytes / MB,
            "predict_gpu_peak_mb": predict_probe.peak_gpu_bytes / MB,
            "model_mb": method.model_size_bytes() / MB,
            "statistics_s": statistics_s,
            "n_train": len(train_samples),
            "n_test": len(test_samples),
        })
        folder.write(rows)
