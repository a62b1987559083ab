"""Classification metrics as the field reports them, and the ROC curve shared with the uncertainty checks.

Pure numpy. ``scores`` are higher for the positive class; ``labels`` are 0/1 (or booleans).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rocCurve", "rocAuc", "binaryMetrics"]


def rocCurve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, one point per distinct score (ties handled as one step).

    Returns:
        ``(falsePositiveRate, truePositiveRate, thresholds)``, starting at (0, 0) with threshold +inf.

    Raises:
        ValueError: ``labels`` hold only one class (the curve is undefined).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("The ROC curve needs both positive and negative cases.")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores: ties move the curve diagonally, as the AUC's 1/2 rule wants.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    truePositives = np.cumsum(labels)[last]
    falsePositives = (last + 1) - truePositives
    tpRate = np.r_[0.0, truePositives / positives]
    fpRate = np.r_[0.0, falsePositives / negatives]
    return fpRate, tpRate, np.r_[np.inf, scores[last]]


def rocAuc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; equals the Mann-Whitney probability with ties counted 1/2)."""
    fpRate, tpRate, _thresholds = rocCurve(scores, labels)
    return float(np.sum(np.diff(fpRate) * (tpRate[1:] + tpRate[:-1]) / 2.0))


def binaryMetrics(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float | list]:
    """Confusion matrix and the usual rates at ``threshold`` (a case is positive when score >= threshold).

    Returns:
        ``confusionMatrix`` ([[TN, FP], [FN, TP]], rows = truth), ``accuracy``, ``sensitivity`` (recall),
        ``specificity``, ``precision`` (PPV), ``npv``, ``auc`` and ``cases``; a rate with an empty
        denominator is NaN.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(labels).ravel().astype(bool)
    predicted = scores >= threshold
    tp, tn = int(np.sum(predicted & truth)), int(np.sum(~predicted & ~truth))
    fp, fn = int(np.sum(predicted & ~truth)), int(np.sum(~predicted & truth))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "confusionMatrix": [[tn, fp], [fn, tp]],
        "accuracy": ratio(tp + tn, truth.size),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "auc": rocAuc(scores, truth),
        "cases": int(truth.size),
    }
