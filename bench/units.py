"""One unit of a run: a (category, backbone), whose features are extracted once for every method and seed.

``run_unit`` is what a Dask worker runs, and what the in-process loop runs: it
reads the category, gets its features from the cache (or extracts them), then
fits, predicts and scores each (method, seed) it is given, and hands each
finished row to ``emit(row, files)``. It writes nothing into the run folder:
``files`` maps paths relative to the run folder to their bytes (the saved
predictions, and models with ``--save-models``), and the driver, the one writer
of the run folder, writes them. Failures become rows with an ``error`` as in a
serial run: bad data fails every row of the unit, a failing method its own.

A process keeps one ``Backbone`` per (name, weights, seed, device) for all the
units it runs (``backbone_for``), so a worker does not rebuild it per unit.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import metrics
from bench.errors import USER_ERRORS, PatchbenchError
from bench.features import FeatureCache, default_cache_dir
from bench.log import logger
from bench.models import save_model
from bench.probes import measure
from bench.dataset_choice import open_dataset
from bench.scoring import masks_given, score, subset_images
from datasets import read_masks
from datasets.base import Dataset
from methods.base import AnomalyMethod, FeatureSet, Prediction
from reports.predictions import prediction_bytes, prediction_path

MB = 2**20
Emit = Callable[[dict, dict[str, bytes]], None]


@dataclass(frozen=True)
class Unit:
    """A category on one backbone, and the (method, seed) rows still to do there."""

    category: str
    backbone: str
    todo: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Naming:
    """Which axes a run has several values of: those go into file names (``<method>.<backbone>.seed<S>``)."""

    several_backbones: bool
    several_seeds: bool

    def prediction(self, category: str, method: str, backbone: str, seed: int) -> str:
        path = prediction_path(Path(""), category, method, seed if self.several_seeds else None,
                               backbone if self.several_backbones else None)
        return path.as_posix()

    def model(self, category: str, method: str, backbone: str, seed: int) -> str:
        stem = Path(self.prediction(category, method, backbone, seed)).name.removesuffix(".npz")
        return f"models/{category}/{stem}"


_BACKBONES: dict[tuple, object] = {}


def backbone_for(options, name: str):
    """This process's ``Backbone`` ``name`` with the run's weights, seed and device, built once."""
    key = (name, str(options.weights), options.seed, options.device)
    if key not in _BACKBONES:
        from bench.backbone import Backbone  # Paddle only where features are made

        _BACKBONES[key] = Backbone(name, weights=options.weights, seed=options.seed, device=options.device)
    return _BACKBONES[key]


def seeded(options, seed: int) -> argparse.Namespace:
    """``options`` with the methods' ``seed`` set: what ``from_config`` reads."""
    return argparse.Namespace(**{**vars(options), "seed": seed})


def method_seeds(options) -> list[int]:
    """The seeds each (category, backbone, method) runs with: ``--seeds``, else ``--seed`` alone."""
    return list(options.seeds) if getattr(options, "seeds", None) else [options.seed]


def check_prediction(method: str, prediction: Prediction, n: int, image_size: tuple[int, int]) -> None:
    """A method's output must be ``[N]`` scores and ``[N, H, W]`` maps."""
    scores, maps = np.asarray(prediction.scores), np.asarray(prediction.maps)
    if scores.shape != (n,) or maps.shape != (n, *image_size):
        raise PatchbenchError(
            f"method {method!r} returned scores of shape {scores.shape} and maps of shape "
            f"{maps.shape}; expected ({n},) and ({n}, {image_size[0]}, {image_size[1]})"
        )


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


def intervals(labels: np.ndarray, masks: np.ndarray, prediction: Prediction, n_resamples: int, seed: int,
              fpr_limit: float, pixels: bool = True) -> dict[str, float]:
    """95 % bootstrap intervals over the test images, as ``<key>_low``/``<key>_high`` row columns.

    Every method and method seed of a run resamples with the run's ``seed``, so
    they are judged on the same resamples of the same images. ``pixels``: whether the test set has
    masks, without which the pixel metrics have no interval.
    """
    metric_arrays = {"image_auroc": (metrics.image_auroc, labels, prediction.scores),
                     "pixel_auroc": (metrics.pixel_auroc, masks, prediction.maps),
                     "pro": (functools.partial(metrics.au_pro, fpr_limit=fpr_limit), masks, prediction.maps)}
    columns = {}
    for key, (metric, *arrays) in metric_arrays.items():
        if not pixels and key != "image_auroc":
            continue
        columns[f"{key}_low"], columns[f"{key}_high"] = metrics.bootstrap_ci(
            metric, *arrays, n_resamples=n_resamples, seed=seed)
    return columns


def failure_reason(exc: Exception, what: str) -> str:
    """The message of a failure; a user's mistake needs its message, a bug its traceback (in the log)."""
    reason = str(exc) if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {exc}"
    logger.error("error: %s failed: %s", what, reason, exc_info=not isinstance(exc, USER_ERRORS))
    return reason


def model_files(method, folder: str, backbone, options, layers, category: str) -> dict[str, bytes]:
    """The files ``bench.models.save_model`` writes for one fitted method, keyed ``<folder>/<name>``."""
    with tempfile.TemporaryDirectory(prefix="patchbench-model-") as tmp:
        save_model(method, Path(tmp) / "m", backbone=backbone.name, weights_id=backbone.weights_id,
                   weights_used=backbone.weights_used, resize=options.resize, crop=options.crop, layers=layers,
                   category=category)
        return {f"{folder}/{p.name}": p.read_bytes() for p in sorted((Path(tmp) / "m").iterdir())}


def warn_empty_masks(category: str, samples: list, masks: np.ndarray) -> None:
    """One warning when defective images have a mask without a defect pixel at the evaluated size: the
    file is empty, encoded as this reader does not expect (a palette whose defect colours are black), or
    the crop cut the defect away. Their defects then count as good pixels; the numbers stand, said."""
    empty = [s.mask_path for s, mask in zip(samples, masks) if s.label and s.mask_path is not None and not mask.any()]
    if empty:
        logger.warning("warning: [%s] %d defective test images have no defect pixel in their mask at the "
                       "evaluated size (the first: %s); check the masks, or a larger --crop", category,
                       len(empty), empty[0])


def run_unit(unit: Unit, methods: dict[str, type[AnomalyMethod]], options, data_root: Path, naming: Naming,
             emit: Emit, backbones: Callable | None = None, dataset: Dataset | None = None) -> None:
    """Do ``unit``'s rows, calling ``emit(row, files)`` as each finishes (see the module docstring).

    ``backbones(name) -> Backbone``: where the backbone comes from (default ``backbone_for``);
    ``dataset``: the run's dataset (default: ``options.dataset`` on ``data_root``, opened once per process).
    """
    weights: dict[str, str] = {}  # the weights the unit's backbone has, once it has one

    def row_of(name: str, seed: int) -> dict:
        return {"category": unit.category, "backbone": unit.backbone, "method": name, "seed": seed, **weights}

    try:
        backbone = (backbones or functools.partial(backbone_for, options))(unit.backbone)
        weights["weights"] = backbone.weights_used
        layers = tuple(sorted({layer for name, _ in unit.todo for layer in methods[name].layers}))
        cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
        cache = FeatureCache(backbone, layers, options.resize, options.crop, options.batch_size, cache_dir)
        dataset = dataset or open_dataset(options, data_root)
        train_samples = dataset.train(unit.category)
        test_samples = dataset.test(unit.category)
        masks = read_masks(test_samples, resize=options.resize, crop=options.crop)
        labels = np.array([s.label for s in test_samples])
        regions = dataset.regions(unit.category, test_samples, options.resize, options.crop)
        subsets = subset_images(dataset.subsets, test_samples)
        masked = masks_given(test_samples)
        warn_empty_masks(unit.category, test_samples, masks)
        if not masked:
            logger.info("[%s] the dataset gives no masks for the defective images: pixel metrics are not computed",
                        unit.category)
        train = cache.get(unit.category, "train", train_samples)
        test = cache.get(unit.category, "test", test_samples)
    except Exception as exc:  # noqa: BLE001 - one unit must not sink the run
        reason = failure_reason(exc, f"category {unit.category!r} on {unit.backbone}")
        for name, seed in unit.todo:
            emit({**row_of(name, seed), "error": reason}, {})
        return

    try:
        for name, seed in unit.todo:
            logger.info("[%s] %s%s%s: fit on %d images, predict %d", unit.category, name,
                        f" on {unit.backbone}" if naming.several_backbones else "",
                        f" (seed {seed})" if naming.several_seeds else "", len(train_samples), len(test_samples))
            row = row_of(name, seed)
            try:
                cls = methods[name]
                method, prediction, fit_probe, predict_probe = run_method(
                    cls, seeded(options, seed), train.features, test.features)
                evaluation, accuracy = score(labels, masks, prediction, fpr_limit=options.pro_fpr_limit, method=name,
                                             subsets=subsets, regions=regions, masked=masked)
                started = time.perf_counter()
                bounds = (intervals(labels, masks, prediction, options.bootstrap, options.seed, options.pro_fpr_limit,
                                    pixels=masked) if options.bootstrap else {})
                statistics_s = time.perf_counter() - started
                files = {naming.prediction(unit.category, name, unit.backbone, seed):
                         prediction_bytes(test_samples, labels, masks, prediction.scores, prediction.maps, evaluation)}
                if options.save_models:
                    files.update(model_files(method, naming.model(unit.category, name, unit.backbone, seed), backbone,
                                             options, cls.layers, unit.category))
            except Exception as exc:  # noqa: BLE001 - one method must not sink the others
                emit({**row, "error": failure_reason(exc, f"{name} on {unit.category!r}")}, {})
                continue
            seconds_per_image = predict_probe.seconds / len(test_samples)
            emit({
                **row,
                **accuracy,
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
            }, files)
    finally:
        # Every method and seed of the unit has used the device copies; the next unit is another category.
        cache.drop(unit.category)
