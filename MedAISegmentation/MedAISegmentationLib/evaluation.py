"""Segmentation evaluation on numpy label maps that share one voxel grid, with distances in mm.

Arrays are in storage order (KJI for MRML volumes); ``spacing_mm`` is the voxel size along each
array axis. Axes of size 1 are ignored, so a one-slice volume is scored as a 2D image (areas in
mm2, contour distances). The MRML-facing wrapper (resampling onto the reference grid, tables) is
``logic.MedAISegmentationLogic.evaluateSegmentation``.

Voxel level, per segment (MONAI's ``DiceMetric``, ``MeanIoU``, confusion-matrix metrics,
``HausdorffDistanceMetric`` and ``SurfaceDistanceMetric`` with the voxel spacing): Dice, IoU
(Jaccard), sensitivity (recall), specificity, precision, both volumes and their difference,
Hausdorff distance, its 95th percentile, and the average symmetric surface distance.

Instance level, for label maps where each value is one object: object counts, optimal one-to-one
matching by IoU (``scipy.optimize.linear_sum_assignment``), precision, recall and F1 at an IoU
threshold (0.5 by default), F1 averaged over thresholds 0.5, 0.55, ..., 0.95, and the mean IoU
of the matched pairs.

Empty masks (documented convention, never a division by zero):

- Dice, IoU and F1 are 1.0 when reference and prediction are both empty, 0.0 when only one is.
- Distances are 0.0 when both are empty and NaN (undefined; ``null`` in JSON) when only one is.
- Sensitivity, specificity, precision and recall are NaN when their denominator is zero (no
  reference voxels, no background voxels, no predicted voxels, no reference objects).
- The mean matched IoU is NaN when nothing is matched.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "SEGMENT_METRIC_NAMES",
    "INSTANCE_IOU_THRESHOLDS",
    "segment_metrics",
    "label_metrics",
    "iou_matrix",
    "match_instances",
    "instance_metrics",
]

SEGMENT_METRIC_NAMES = (
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "precision",
    "reference_volume",
    "prediction_volume",
    "volume_difference",
    "hausdorff_mm",
    "hausdorff95_mm",
    "average_surface_distance_mm",
)
INSTANCE_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def _squeezed(array: np.ndarray, spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    spacing = np.asarray(spacing_mm, dtype=float)
    if spacing.shape != (array.ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise MedAIInputError(f"spacing_mm must hold {array.ndim} positive numbers, got {list(spacing_mm)}.")
    keep = [axis for axis in range(array.ndim) if array.shape[axis] > 1] or [0]
    return array.reshape([array.shape[axis] for axis in keep]), spacing[keep]


def _check_pair(reference: Any, prediction: Any) -> tuple[np.ndarray, np.ndarray]:
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise MedAIInputError(
            f"Reference and prediction must lie on one grid; shapes {reference.shape} and {prediction.shape} differ."
        )
    if reference.size == 0:
        raise MedAIInputError("The reference has no voxels.")
    for name, array in (("reference", reference), ("prediction", prediction)):
        if array.dtype.kind not in "biu":
            raise MedAIInputError(f"The {name} must be a label map of integers, got {array.dtype}.")
    return reference, prediction


def _crop(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the box around either, one voxel wider: distances and overlaps do not change."""
    box = np.argwhere(reference | prediction)
    low = np.maximum(box.min(axis=0) - 1, 0)
    high = box.max(axis=0) + 2
    region = tuple(slice(a, b) for a, b in zip(low, high))
    return reference[region], prediction[region]


def _overlap_and_distances(reference: np.ndarray, prediction: np.ndarray, spacing: np.ndarray) -> dict[str, float]:
    import torch
    from monai.metrics import (
        DiceMetric,
        HausdorffDistanceMetric,
        MeanIoU,
        SurfaceDistanceMetric,
        compute_confusion_matrix_metric,
        get_confusion_matrix,
    )

    outside = reference.size
    reference, prediction = _crop(reference, prediction)
    outside -= reference.size
    y = torch.from_numpy(reference[None, None].astype(np.float32))
    y_pred = torch.from_numpy(prediction[None, None].astype(np.float32))
    confusion = get_confusion_matrix(y_pred, y, include_background=True).double()
    confusion[..., 2] += outside  # voxels outside the box are true negatives
    scores = {
        "dice": DiceMetric(include_background=True, reduction="none", ignore_empty=False)(y_pred, y),
        "iou": MeanIoU(include_background=True, reduction="none", ignore_empty=False)(y_pred, y),
        "sensitivity": compute_confusion_matrix_metric("sensitivity", confusion),
        "specificity": compute_confusion_matrix_metric("specificity", confusion),
        "precision": compute_confusion_matrix_metric("precision", confusion),
    }
    if reference.any() and prediction.any():
        spacing_list = spacing.tolist()
        with warnings.catch_warnings():
            # MONAI 1.6 passes a deprecated argument to itself inside the distance metrics.
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
            for name, metric in (
                ("hausdorff_mm", HausdorffDistanceMetric(include_background=True, reduction="none")),
                ("hausdorff95_mm", HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")),
                (
                    "average_surface_distance_mm",
                    SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none"),
                ),
            ):
                scores[name] = metric(y_pred, y, spacing=spacing_list)
    return {name: float(torch.as_tensor(value).reshape(-1)[0]) for name, value in scores.items()}


def segment_metrics(reference: Any, prediction: Any, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Voxel-level agreement of one segment: overlap, volumes and surface distances.

    Args:
        reference: boolean (or 0/1) mask, storage order.
        prediction: boolean mask on the same grid.
        spacing_mm: voxel size along each array axis, mm.

    Returns:
        One value per name in :data:`SEGMENT_METRIC_NAMES`: ratios in 0-1; volumes in mm3 (mm2
        for a 2D image), the difference being prediction minus reference; distances in mm.
        Empty masks follow the module's convention (NaN for undefined values).

    Raises:
        MedAIInputError: different shapes, or a bad spacing.
    """
    reference, prediction = _check_pair(reference, prediction)
    reference, spacing = _squeezed(reference.astype(bool), spacing_mm)
    prediction = prediction.astype(bool).reshape(reference.shape)
    voxel_volume = float(np.prod(spacing))
    result = dict.fromkeys(SEGMENT_METRIC_NAMES, float("nan"))
    result["reference_volume"] = float(np.count_nonzero(reference)) * voxel_volume
    result["prediction_volume"] = float(np.count_nonzero(prediction)) * voxel_volume
    result["volume_difference"] = result["prediction_volume"] - result["reference_volume"]
    if not reference.any() and not prediction.any():
        result.update(dice=1.0, iou=1.0, specificity=1.0, hausdorff_mm=0.0, hausdorff95_mm=0.0)
        result["average_surface_distance_mm"] = 0.0
        return result
    result.update(_overlap_and_distances(reference, prediction, spacing))
    return result


def label_metrics(
    reference_labels: Any,
    prediction_labels: Any,
    spacing_mm: Sequence[float],
    pairs: Sequence[tuple[int, int]] | None = None,
) -> list[dict[str, float]]:
    """:func:`segment_metrics` for each pair of label values.

    Args:
        reference_labels: integer label map, storage order.
        prediction_labels: integer label map on the same grid.
        spacing_mm: voxel size along each array axis, mm.
        pairs: ``(reference value, prediction value)`` to compare; None: every value present in
            either map (except 0) compared with the same value.

    Returns:
        One dict per pair with ``reference_label``, ``prediction_label`` and the metrics.
    """
    reference, prediction = _check_pair(reference_labels, prediction_labels)
    if pairs is None:
        values = sorted(set(np.unique(reference).tolist()) | set(np.unique(prediction).tolist()) - {0})
        pairs = [(value, value) for value in values]
    rows = []
    for reference_value, prediction_value in pairs:
        row: dict[str, float] = {"reference_label": int(reference_value), "prediction_label": int(prediction_value)}
        row.update(segment_metrics(reference == reference_value, prediction == prediction_value, spacing_mm))
        rows.append(row)
    return rows


def iou_matrix(reference_labels: Any, prediction_labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every reference object with every predicted object (each non-zero value is an object).

    Returns:
        ``(iou, reference_ids, prediction_ids)``: ``iou[r, p]`` for the objects ``reference_ids[r]``
        and ``prediction_ids[p]`` (sorted label values).
    """
    reference, prediction = _check_pair(reference_labels, prediction_labels)
    reference, prediction = reference.ravel().astype(np.int64), prediction.ravel().astype(np.int64)
    reference_ids, reference_sizes = np.unique(reference, return_counts=True)
    prediction_ids, prediction_sizes = np.unique(prediction, return_counts=True)
    both = (reference > 0) & (prediction > 0)
    row = np.searchsorted(reference_ids, reference[both])
    column = np.searchsorted(prediction_ids, prediction[both])
    intersection = np.zeros((reference_ids.size, prediction_ids.size))
    np.add.at(intersection, (row, column), 1.0)
    union = reference_sizes[:, None] + prediction_sizes[None, :] - intersection
    iou = intersection / np.maximum(union, 1.0)
    keep_r, keep_p = reference_ids > 0, prediction_ids > 0
    return iou[np.ix_(keep_r, keep_p)], reference_ids[keep_r], prediction_ids[keep_p]


def match_instances(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching: as many pairs with IoU >= ``threshold`` as possible, then the largest total IoU.

    Returns:
        ``(reference_indices, prediction_indices)`` of the matched pairs (rows and columns of ``iou``).
    """
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    eligible = iou >= threshold
    # Each match outweighs any sum of IoUs, so the count comes first, then the overlap.
    weight = np.where(eligible, iou + min(iou.shape) + 1.0, 0.0)
    rows, columns = linear_sum_assignment(weight, maximize=True)
    matched = eligible[rows, columns]
    return rows[matched], columns[matched]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def instance_metrics(
    reference_labels: Any,
    prediction_labels: Any,
    iou_threshold: float = 0.5,
    thresholds: Sequence[float] = INSTANCE_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Object-level agreement of two label maps whose non-zero values are objects.

    Args:
        reference_labels: integer label map, storage order; each value is one reference object.
        prediction_labels: integer label map on the same grid.
        iou_threshold: a matched pair counts when its IoU is at least this.
        thresholds: IoU thresholds over which F1 is averaged (``f1_mean``).

    Returns:
        ``reference_count``, ``prediction_count``, ``matched``, ``false_positives``,
        ``false_negatives``, ``precision``, ``recall``, ``f1`` (at ``iou_threshold``),
        ``f1_mean``, ``f1_by_threshold`` ({threshold: F1}), ``mean_matched_iou`` and
        ``iou_threshold``.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise MedAIInputError(f"iou_threshold must lie in (0, 1], got {iou_threshold}.")
    iou, reference_ids, prediction_ids = iou_matrix(reference_labels, prediction_labels)
    reference_count, prediction_count = len(reference_ids), len(prediction_ids)

    def f1_at(threshold: float) -> tuple[float, np.ndarray, np.ndarray]:
        rows, columns = match_instances(iou, threshold)
        if reference_count + prediction_count == 0:
            return 1.0, rows, columns
        return 2.0 * len(rows) / (reference_count + prediction_count), rows, columns

    f1, rows, columns = f1_at(iou_threshold)
    by_threshold = {float(t): f1_at(float(t))[0] for t in thresholds}
    matched = len(rows)
    return {
        "reference_count": reference_count,
        "prediction_count": prediction_count,
        "matched": matched,
        "false_positives": prediction_count - matched,
        "false_negatives": reference_count - matched,
        "precision": _ratio(matched, prediction_count),
        "recall": _ratio(matched, reference_count),
        "f1": f1,
        "f1_mean": float(np.mean(list(by_threshold.values()))) if by_threshold else float("nan"),
        "f1_by_threshold": by_threshold,
        "mean_matched_iou": float(iou[rows, columns].mean()) if matched else float("nan"),
        "iou_threshold": float(iou_threshold),
    }
