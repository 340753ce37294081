"""Every metric and curve of one (category, method) prediction from one sort per level.

The single-metric functions (``image_auroc``, ``au_pro``, ...) each validate
their inputs and sort the scores; a benchmark row needs seven numbers and the
report two curves, which used to mean sorting the 7.5M pixels of an MVTec
category four times and labelling its defect regions twice. ``evaluate``
validates once, sorts the image scores once and the pixel scores once (with
the PRO weights, so one cumulative sum gives ROC, precision-recall, F1 and
PRO), labels the regions once, and hands the counts to the same ``*_of``
functions the single-metric functions use: the numbers are the same.

AU-PRO here is integrated on the full curve, which holds every point the
single ``au_pro`` keeps from its partial sort, so it is the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics import _checks, _ranking
from metrics.classification import auroc_of, average_precision_of, f1_max_of, roc_of
from metrics.pro import au_pro_of, check_fpr_limit, pro_of, region_weights

NAN = float("nan")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The accuracy of one prediction: numbers for the tables, curves for the report.

    Numbers are floats, NaN where the test set makes them undefined (with a
    ``MetricWarning`` from ``evaluate``). Thresholds are the F1-max ones
    (``score >= threshold`` is anomalous). Curves are exact and read-only, one
    point per distinct score, highest first, after a leading (0, 0):
    ``roc_fpr``/``roc_tpr`` ``[G_image + 1]`` the image ROC curve,
    ``pro_fpr``/``pro_overlap`` ``[G_pixel + 1]`` the PRO curve over the whole
    FPR range (``pro_fpr`` is also the pixel ROC curve's FPR).
    """

    image_auroc: float
    pixel_auroc: float
    pro: float
    image_f1_max: float
    pixel_f1_max: float
    image_ap: float
    pixel_ap: float
    image_threshold: float
    pixel_threshold: float
    fpr_limit: float
    roc_fpr: np.ndarray
    roc_tpr: np.ndarray
    pro_fpr: np.ndarray
    pro_overlap: np.ndarray

    def columns(self) -> dict[str, float]:
        """The seven accuracy numbers under the names of the results table's columns."""
        return {
            "image_auroc": self.image_auroc,
            "pixel_auroc": self.pixel_auroc,
            "pro": self.pro,
            "image_f1_max": self.image_f1_max,
            "pixel_f1_max": self.pixel_f1_max,
            "image_ap": self.image_ap,
            "pixel_ap": self.pixel_ap,
        }

    @property
    def thresholds(self) -> tuple[float, float]:
        """``(image_threshold, pixel_threshold)``: the F1-max thresholds."""
        return self.image_threshold, self.pixel_threshold


def evaluate(labels, scores, masks, maps, *, fpr_limit: float = 0.3,
             method: str | None = None) -> Evaluation:
    """Every number and curve of one prediction, from one sort of the image scores and one of the pixels.

    ``labels [N]`` (1 = defective), ``scores [N]``, ``masks [N, H, W]`` (1 =
    defect pixel), ``maps [N, H, W]``; ``fpr_limit`` in (0, 1] for AU-PRO.
    Equal to the single-metric functions. Bad input (NaN/inf scores, shapes
    that do not match, masks or labels not 0/1, a bad ``fpr_limit``) raises
    ``MetricError`` naming ``method``; metrics the test set leaves undefined are
    NaN, with one ``MetricWarning`` per level listing them.
    """
    check_fpr_limit(fpr_limit)
    labels, scores = _checks.image_inputs(labels, scores, method)
    masks, maps = _checks.pixel_inputs(masks, maps, method)
    _checks.same_images(labels, masks, method)

    n_pos = int(np.count_nonzero(labels))
    both, positives = _defined(n_pos, labels.size - n_pos, ["image AUROC", "the image ROC curve"],
                               ["image AP", "image F1-max"], pixels=False)
    counts = _ranking.cumulative_counts(scores, labels)
    roc_fpr, roc_tpr = roc_of(counts, n_pos, labels.size - n_pos)
    image_auroc = auroc_of(counts) if both else NAN
    image_ap = average_precision_of(counts) if positives else NAN
    image_f1, image_threshold = f1_max_of(counts) if positives else (NAN, NAN)

    weights, n_regions = region_weights(masks)
    n_neg = masks.size - weights.size
    both, positives = _defined(weights.size, n_neg, ["pixel AUROC", "AU-PRO", "the PRO curve"],
                               ["pixel AP", "pixel F1-max"], pixels=True)
    counts = _ranking.cumulative_counts(maps, masks, weights)
    del weights
    # one number at a time, the curve last: each leaves only its result behind
    pixel_auroc = auroc_of(counts) if both else NAN
    pixel_ap = average_precision_of(counts) if positives else NAN
    pixel_f1, pixel_threshold = f1_max_of(counts) if positives else (NAN, NAN)
    pro_fpr, pro_overlap = pro_of(counts, n_neg, n_regions)
    del counts
    pro = au_pro_of(pro_fpr, pro_overlap, fpr_limit) if both else NAN

    for curve in (roc_fpr, roc_tpr, pro_fpr, pro_overlap):
        curve.setflags(write=False)
    return Evaluation(
        image_auroc=image_auroc, pixel_auroc=pixel_auroc, pro=pro,
        image_f1_max=image_f1, pixel_f1_max=pixel_f1, image_ap=image_ap, pixel_ap=pixel_ap,
        image_threshold=image_threshold, pixel_threshold=pixel_threshold, fpr_limit=float(fpr_limit),
        roc_fpr=roc_fpr, roc_tpr=roc_tpr, pro_fpr=pro_fpr, pro_overlap=pro_overlap,
    )


def _defined(n_pos: int, n_neg: int, need_both: list[str], need_positives: list[str],
             pixels: bool) -> tuple[bool, bool]:
    """Whether the metrics needing both classes / only positives are defined.

    One ``MetricWarning`` (pointing at the caller of ``evaluate``) names all that are not.
    """
    undefined = need_both + need_positives if n_pos == 0 else need_both if n_neg == 0 else []
    if undefined:
        names = ", ".join(undefined[:-1]) + " and " + undefined[-1]
        _checks.defined(n_pos, n_neg, names, pixels=pixels, plural=True, stacklevel=4)
    return n_pos > 0 and n_neg > 0, n_pos > 0
