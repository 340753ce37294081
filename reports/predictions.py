"""What a run keeps of each (category, [backbone,] method[, seed]) prediction, for figures and comparisons.

``<run>/predictions/<category>/<method>[.<backbone>][.seed<S>].npz`` (plain
NumPy arrays, no pickle): the backbone only in a run of several backbones, the
seed only in a run of several seeds, so a run of one of each keeps the names of
before those were axes:

- ``image_paths``, ``mask_paths``: ``[N]`` str (mask path ``""`` for good images)
- ``labels``: ``[N]`` int8; ``scores``: ``[N]`` float64 image scores
- ``maps``: ``[N, S, S]`` float16 anomaly maps resized (bilinear) to ``S = MAP_SIZE``
- ``image_threshold``, ``pixel_threshold``: scalars, the F1-max thresholds
- ``roc_fpr``, ``roc_tpr``: the image-level ROC curve
- ``pro_fpr``, ``pro_overlap``: the exact PRO curve at full resolution, thinned to
  at most ``CURVE_POINTS`` points

The thresholds and curves come from the ``metrics.Evaluation`` the tables' numbers
came from, so the figures and the tables cannot disagree.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

import metrics
from methods.maps import resize_bilinear
from reports.atomic import write_atomic

MAP_SIZE = 64
CURVE_POINTS = 1000


def thin(x: np.ndarray, y: np.ndarray, points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points of a curve, first and last kept."""
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(np.int64))
    return x[keep], y[keep]


def save_predictions(path: Path, samples, labels: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                     maps: np.ndarray, evaluation: metrics.Evaluation) -> Path:
    """Write one (category, method) prediction (``prediction_bytes``) to ``path``, atomically."""
    data = prediction_bytes(samples, labels, masks, scores, maps, evaluation)
    return write_atomic(Path(path), lambda tmp: tmp.write_bytes(data))


def prediction_bytes(samples, labels: np.ndarray, masks: np.ndarray, scores: np.ndarray, maps: np.ndarray,
                     evaluation: metrics.Evaluation) -> bytes:
    """One (category, method) prediction as the bytes of its ``.npz``. ``labels``, ``scores``: ``[N]``;
    ``masks``, ``maps``: ``[N, H, W]``; ``evaluation``: ``metrics.evaluate`` of these arrays, already
    computed for the tables, whose thresholds and curves are saved as they are (nothing is sorted again).
    A Dask worker sends these bytes to the driver, which writes them.
    """
    thresholds = evaluation.thresholds
    pro_fpr, pro_overlap = thin(evaluation.pro_fpr, evaluation.pro_overlap)
    arrays = {
        "image_paths": np.array([str(s.image_path) for s in samples]),
        "mask_paths": np.array([str(s.mask_path) if s.mask_path else "" for s in samples]),
        "labels": np.asarray(labels, dtype=np.int8),
        "scores": np.asarray(scores, dtype=np.float64),
        "maps": resize_bilinear(np.asarray(maps, dtype=np.float32), (MAP_SIZE, MAP_SIZE)).astype(np.float16),
        "image_threshold": np.float64(thresholds[0]),
        "pixel_threshold": np.float64(thresholds[1]),
        "roc_fpr": evaluation.roc_fpr,
        "roc_tpr": evaluation.roc_tpr,
        "pro_fpr": pro_fpr,
        "pro_overlap": pro_overlap,
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def prediction_path(run_dir: Path, category: str, method: str, seed: int | None = None,
                    backbone: str | None = None) -> Path:
    """``predictions/<category>/<method>[.<backbone>][.seed<seed>].npz``: pass ``backbone`` in a run of
    several backbones only, ``seed`` in a run of several seeds only (``None`` leaves the part out)."""
    name = method + ("" if backbone is None else f".{backbone}") + ("" if seed is None else f".seed{seed}")
    return Path(run_dir) / "predictions" / category / f"{name}.npz"
