"""A prediction's accuracy columns: every test image, each subset a dataset scores apart, and sPRO where it has one.

``metrics.evaluate`` gives the numbers over every test image of a category.
A dataset may name subsets of its defect types to be scored apart
(``Dataset.subsets``: MVTec LOCO's logical and structural anomalies); each is
scored as its publisher does, on its defective images and every good image,
into columns ``<metric>.<subset>`` (``reports.tables.SUBSET``), and with two
or more subsets their plain mean into ``<metric>.mean_of_subsets``, the number
MVTec LOCO's paper reports as "mean". A dataset that
gives its defect regions with saturation areas (``Dataset.regions``) gets
AU-sPRO (``metrics.au_spro``) beside AU-PRO, over everything and per subset.

A dataset without masks (a plain folder of good and bad images) gives none
for its defective images: the pixel metrics are then undefined and NaN, said
once per category in the log rather than as a warning about an empty test set.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

import metrics
from datasets.base import Region, Sample
from datasets.errors import DatasetError
from methods.base import Prediction
from reports.tables import MEAN_OF_SUBSETS, SUBSET

SUBSET_METRICS = ("image_auroc", "pro")


def subset_images(subsets: Mapping[str, Sequence[str]], samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """``{subset: indices [M] into samples}``: every good image and the defective ones of the subset's types."""
    return {name: np.flatnonzero([s.label == 0 or s.defect in defects for s in samples])
            for name, defects in subsets.items()}


def masks_given(samples: Sequence[Sample]) -> bool:
    """Whether the defective test images have masks: all of them (True) or none (False); some is an error,
    as their defects would count as good pixels."""
    missing = [s.image_path for s in samples if s.label and s.mask_path is None]
    defective = sum(1 for s in samples if s.label)
    if missing and len(missing) < defective:
        raise DatasetError(f"{len(missing)} of {defective} defective test images have no mask (the first: "
                           f"{missing[0]}); give every defective image a mask, or none for image metrics only")
    return not missing


def score(labels: np.ndarray, masks: np.ndarray, prediction: Prediction, *, fpr_limit: float, method: str,
          subsets: Mapping[str, np.ndarray] | None = None,
          regions: Sequence[Sequence[Region]] | None = None,
          masked: bool = True) -> tuple[metrics.Evaluation, dict[str, float]]:
    """The evaluation of every test image, and the row's accuracy columns.

    ``labels [N]``, ``masks [N, H, W]``, ``prediction`` scores ``[N]`` and maps ``[N, H, W]``;
    ``subsets``: indices of each subset's images (``subset_images``); ``regions``: per image its
    defect regions for sPRO, or None for none; ``masked``: whether the defective images have masks
    (``masks_given``); without them the pixel metrics are NaN, without a warning.
    """
    scores, maps = np.asarray(prediction.scores), np.asarray(prediction.maps)
    with warnings.catch_warnings():
        if not masked:  # the log says it once per category; the image-level warnings still show
            warnings.filterwarnings("ignore", message=".*the test set has no defect pixels",
                                    category=metrics.MetricWarning)
        evaluation = metrics.evaluate(labels, scores, masks, maps, fpr_limit=fpr_limit, method=method)
        columns = evaluation.columns()
        if regions is not None:
            columns["spro"] = metrics.au_spro(maps, regions, fpr_limit, method=method)
        for name, index in (subsets or {}).items():
            part = metrics.evaluate(labels[index], scores[index], masks[index], maps[index], fpr_limit=fpr_limit,
                                    method=method)
            columns.update({f"{key}{SUBSET}{name}": getattr(part, key) for key in SUBSET_METRICS})
            if regions is not None:
                columns[f"spro{SUBSET}{name}"] = metrics.au_spro(maps[index], [regions[i] for i in index], fpr_limit,
                                                          method=method)
    if len(subsets or {}) > 1:
        for key in (*SUBSET_METRICS, *(["spro"] if regions is not None else [])):
            columns[f"{key}{SUBSET}{MEAN_OF_SUBSETS}"] = float(np.mean([columns[f"{key}{SUBSET}{name}"]
                                                                        for name in subsets]))
    return evaluation, columns
