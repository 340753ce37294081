"""Input validation shared by every metric, and the warning for undefined metrics.

Two kinds of bad input are treated differently on purpose:

* Inputs a metric cannot be computed from (NaN/inf scores, shape mismatch,
  labels that are not 0/1) raise ``MetricError``: a number computed from
  them would be wrong, and the message says which method produced them.
* A test set that lacks a class (no good images, no defective images, no
  defect pixels) is legitimate data for which some metrics are undefined; those
  metrics return NaN and emit ``MetricWarning`` so one category cannot crash a
  whole benchmark run, and no made-up number lands in the results table.
"""

from __future__ import annotations

import warnings

import numpy as np


class MetricError(ValueError):
    """Scores or masks no metric can be computed from; the message names the method that gave them."""


class MetricWarning(UserWarning):
    """A metric is undefined for the given test set and was returned as NaN."""


def _source(method: str | None) -> str:
    return f"method {method!r} returned" if method else "got"


def as_scores(scores, what: str, method: str | None) -> np.ndarray:
    """Scores as a float array of the same shape, finite or a ``MetricError``.

    float32 is kept as is (anomaly maps are float32, and sorting float32 is
    about twice as fast as float64); every other real dtype becomes float64,
    which holds them exactly enough for ranking.
    """
    scores = np.asarray(scores)
    if scores.dtype.kind not in "biuf":
        raise MetricError(
            f"{_source(method)} {what} of dtype {scores.dtype}; scores must be real numbers"
        )
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        bad = int(scores.size - np.count_nonzero(finite))
        raise MetricError(
            f"{_source(method)} {bad} NaN/inf {what} (of {scores.size}); every score must be "
            f"finite, check the method for a division by zero, an overflow or an empty "
            f"memory bank"
        )
    return scores


def as_binary(values, what: str) -> np.ndarray:
    """Labels or masks as a bool array of the same shape; values must be 0/1 or bool.

    Anything else (0/255 masks, soft masks after a bilinear resize) is refused
    rather than thresholded here, because the right threshold is the data
    loader's decision, not the metric's.
    """
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return values
    if values.dtype.kind not in "biuf":
        raise MetricError(f"{what} of dtype {values.dtype}; expected bool or 0/1")
    if values.dtype.kind == "u":
        # unsigned: max <= 1 is enough and much cheaper than an elementwise test
        binary = values.size == 0 or values.max() <= 1
    else:
        binary = bool(np.all((values == 0) | (values == 1)))
    if not binary:
        odd = np.unique(values[(values != 0) & (values != 1)])[:5]
        raise MetricError(
            f"{what} must be 0 or 1 (or bool); found values such as {odd.tolist()}; "
            f"binarise them first, e.g. `mask > 0` for MVTec's 0/255 PNG masks"
        )
    return values != 0


def image_inputs(labels, scores, method: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``labels [N]`` (1 = defective) and ``scores [N]``.

    Returns ``(labels [N] bool, scores [N] float)``.
    """
    labels = as_binary(labels, "image labels")
    scores = np.asarray(scores)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise MetricError(
            f"{_source(method)} image scores of shape {scores.shape} for labels of shape "
            f"{labels.shape}; expected one score per test image, both of shape [N]"
        )
    return labels, as_scores(scores, "image scores", method)


def pixel_inputs(masks, maps, method: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``masks [N, H, W]`` (1 = defect pixel) and ``maps [N, H, W]``.

    Returns ``(masks [N, H, W] bool, maps [N, H, W] float)``.
    """
    masks = as_binary(masks, "ground-truth masks")
    maps = np.asarray(maps)
    if masks.ndim != 3 or maps.shape != masks.shape:
        raise MetricError(
            f"{_source(method)} anomaly maps of shape {maps.shape} for ground-truth masks "
            f"of shape {masks.shape}; expected one map per test image at the masks' "
            f"resolution, both of shape [N, H, W]"
        )
    return masks, as_scores(maps, "pixel scores", method)


def same_images(labels: np.ndarray, masks: np.ndarray, method: str | None) -> None:
    """Image and pixel inputs of one evaluation must describe the same ``N`` test images."""
    if masks.shape[0] != labels.size:
        raise MetricError(
            f"{_source(method)} {masks.shape[0]} anomaly maps for {labels.size} image labels; "
            f"expected one label, one score and one map per test image"
        )


def defined(
    n_positive: int,
    n_negative: int,
    metric: str,
    pixels: bool = False,
    need_negatives: bool = True,
    *,
    plural: bool = False,
    stacklevel: int = 3,
) -> bool:
    """True if the classes ``metric`` needs are present; otherwise warn that it is NaN.

    ``need_negatives=False`` is for metrics defined without negatives (average
    precision, F1-max), which only need at least one positive. ``plural``: the
    name lists several metrics ("are undefined"). ``stacklevel``: the default 3
    points the warning at the caller of a public function that calls this directly.
    """
    positive, negative = ("defect pixels", "defect-free pixels") if pixels else (
        "defective images",
        "good images",
    )
    missing = []
    if n_positive == 0:
        missing.append(f"no {positive}")
    if need_negatives and n_negative == 0:
        missing.append(f"no {negative}")
    if missing:
        warnings.warn(
            f"{metric} {'are' if plural else 'is'} undefined: the test set has "
            f"{' and '.join(missing)} ({n_positive} {positive}, {n_negative} {negative}); "
            f"returning NaN",
            MetricWarning,
            stacklevel=stacklevel,
        )
        return False
    return True
