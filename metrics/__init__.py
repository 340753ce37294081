"""Anomaly detection metrics over NumPy arrays: AUROC, AP, F1-max, PRO / AU-PRO, sPRO / AU-sPRO.

``evaluate(labels, scores, masks, maps)`` gives all of them and the curves of
the report at once, sorting each level once (a benchmark row wants this); the
single-metric functions give one number each, the same one.

Image level: ``labels [N]`` (1 = defective, 0 = good) and ``scores [N]``.
Pixel level: ``masks [N, H, W]`` (1 = defect pixel) and ``maps [N, H, W]``,
pooled over all test images of a category. Higher scores mean more anomalous.
``spro_curve`` / ``au_spro`` (MVTec LOCO AD) take ``maps [N, H, W]`` and, per
image, its ground-truth regions as ``(mask [H, W], saturation area in pixels)``.

Undefined metrics (a test set without good or without defective samples) are
NaN with a ``MetricWarning``; NaN/inf scores and mismatched shapes raise
``metrics.MetricError``, naming the method if ``method=`` is given.

Statistics: ``bootstrap_ci(metric, *arrays)`` and ``paired_bootstrap_ci`` give
percentile bootstrap intervals over resampled test images (``metrics.bootstrap``);
``bootstrap_values`` gives the metric on each resample and ``percentile_interval``
the interval of such values, for callers that combine resamples first;
``wilcoxon``, ``friedman``, ``average_ranks`` and ``nemenyi_critical_difference``
compare methods across categories (``metrics.ranktests``).
"""

from metrics._checks import MetricError, MetricWarning
from metrics.bootstrap import (
    bootstrap_ci,
    bootstrap_values,
    expanded_level,
    paired_bootstrap_ci,
    percentile_interval,
)
from metrics.classification import (
    average_precision,
    f1_max,
    image_auroc,
    pixel_auroc,
    pixel_average_precision,
    pixel_f1_max,
    roc_curve,
)
from metrics.evaluate import Evaluation, evaluate
from metrics.pro import au_pro, pro_curve
from metrics.ranktests import average_ranks, friedman, nemenyi_critical_difference, wilcoxon
from metrics.spro import au_spro, spro_curve

__all__ = [
    "Evaluation",
    "MetricError",
    "MetricWarning",
    "au_pro",
    "au_spro",
    "average_precision",
    "average_ranks",
    "bootstrap_ci",
    "bootstrap_values",
    "expanded_level",
    "evaluate",
    "f1_max",
    "friedman",
    "image_auroc",
    "nemenyi_critical_difference",
    "paired_bootstrap_ci",
    "percentile_interval",
    "pixel_auroc",
    "pixel_average_precision",
    "pixel_f1_max",
    "pro_curve",
    "roc_curve",
    "spro_curve",
    "wilcoxon",
]
