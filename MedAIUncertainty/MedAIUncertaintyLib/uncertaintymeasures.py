"""Voxel-wise uncertainty from sampled predictions, calibration, and how well uncertainty finds errors.

Pure numpy; arrays are (sample, class, *spatial) probabilities, (class, *spatial) means, or
(*spatial) maps, all on one grid. Definitions (``L`` classes, ``N`` samples, ``p_n`` one sample's
class probabilities, ``p`` their mean):

- predictive entropy ``H(p) / log L`` (0: the mean prediction is sure; 1: all classes equally likely);
  it holds both the data's ambiguity (aleatoric) and the model's disagreement (epistemic);
- variance: the variance over samples of each class probability, averaged over classes (0 to 0.25);
- mutual information ``(H(p) - mean_n H(p_n)) / log L``, the epistemic part: how much the samples
  disagree. With one sample, or samples that agree, variance and mutual information are exactly 0
  (voxels where all samples are equal take the first sample as their mean, bit for bit); the entropy
  is then that of the single prediction.
"""

from __future__ import annotations

import numpy as np

from .classifiermetrics import rocAuc

__all__ = [
    "MEASURES",
    "sampleStatistics",
    "normalisedEntropy",
    "reliabilityBins",
    "expectedCalibrationError",
    "brierScore",
    "errorDetectionAuc",
    "riskCoverage",
]

MEASURES = ("entropy", "variance", "mutual-information")


def normalisedEntropy(probabilities: np.ndarray, axis: int = 0) -> np.ndarray:
    """Shannon entropy along ``axis`` divided by log(number of classes): 0-1, 0 where one class has all."""
    classes = probabilities.shape[axis]
    safe = np.clip(probabilities, 1e-12, 1.0)
    entropy = -np.sum(np.where(probabilities > 0, probabilities * np.log(safe), 0.0), axis=axis)
    return (entropy / np.log(max(classes, 2))).astype(np.float32)


def sampleStatistics(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Mean prediction and the three uncertainty maps of ``N`` sampled predictions.

    Args:
        samples: (N, L, *spatial) class probabilities, each sample summing to one over L.

    Returns:
        ``mean`` (L, *spatial) float32 and ``entropy``, ``variance``, ``mutual-information`` (*spatial)
        float32 maps as defined in the module docstring.

    Raises:
        ValueError: no samples, or fewer than two classes.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim < 3 or samples.shape[0] < 1 or samples.shape[1] < 2:
        raise ValueError(f"Samples must be (N >= 1, L >= 2, ...) probabilities, got shape {samples.shape}.")
    mean = samples.mean(axis=0)
    agree = np.all(samples.max(axis=0) == samples.min(axis=0), axis=0)
    mean = np.where(agree[None], samples[0], mean)
    entropy = normalisedEntropy(mean)
    sampleEntropy = np.mean([normalisedEntropy(sample) for sample in samples], axis=0)
    mutualInformation = np.where(agree, 0.0, np.maximum(entropy - sampleEntropy, 0.0)).astype(np.float32)
    variance = np.where(agree, 0.0, samples.var(axis=0).mean(axis=0)).astype(np.float32)
    return {
        "mean": mean.astype(np.float32),
        "entropy": entropy,
        "variance": variance,
        "mutual-information": mutualInformation,
    }


def _confidenceAndCorrect(meanProbabilities: np.ndarray, reference: np.ndarray, mask: np.ndarray | None):
    predicted = np.argmax(meanProbabilities, axis=0)
    confidence = np.max(meanProbabilities, axis=0)
    correct = predicted == reference
    if mask is not None:
        return confidence[mask], correct[mask]
    return confidence.ravel(), correct.ravel()


def reliabilityBins(
    meanProbabilities: np.ndarray, reference: np.ndarray, bins: int = 10, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Reliability diagram data: per equal-width confidence bin, mean confidence, accuracy and voxel count.

    Args:
        meanProbabilities: (L, *spatial) mean prediction.
        reference: (*spatial) true class index 0..L-1 per voxel.
        bins: number of bins over the confidence range [1/L, 1].
        mask: optional (*spatial) bool; only these voxels count.

    Returns:
        ``lower``, ``upper`` (bin edges), ``confidence``, ``accuracy`` (NaN in empty bins), ``count``.
    """
    confidence, correct = _confidenceAndCorrect(meanProbabilities, reference, mask)
    edges = np.linspace(1.0 / meanProbabilities.shape[0], 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        meanConfidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=bins) / count
    return {"lower": edges[:-1], "upper": edges[1:], "confidence": meanConfidence, "accuracy": accuracy, "count": count}


def expectedCalibrationError(
    meanProbabilities: np.ndarray, reference: np.ndarray, bins: int = 10, mask: np.ndarray | None = None
) -> float:
    """Expected calibration error: the voxel-weighted mean |accuracy - confidence| over the reliability bins."""
    table = reliabilityBins(meanProbabilities, reference, bins, mask)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(gaps * table["count"][filled]) / max(int(table["count"].sum()), 1))


def brierScore(meanProbabilities: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Multi-class Brier score: mean over voxels of sum over classes of (p - one-hot)^2 (0 best, 2 worst)."""
    classes = meanProbabilities.shape[0]
    oneHot = reference[None] == np.arange(classes).reshape((classes,) + (1,) * reference.ndim)
    squared = np.sum((meanProbabilities - oneHot) ** 2, axis=0)
    return float(np.mean(squared[mask] if mask is not None else squared))


def errorDetectionAuc(
    uncertainty: np.ndarray, meanProbabilities: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Area under the ROC of uncertainty as a detector of misclassified voxels (0.5: no better than chance).

    Returns:
        The AUC, or NaN when every voxel is right (or every voxel is wrong).
    """
    errors = np.argmax(meanProbabilities, axis=0) != reference
    values, errors = (uncertainty[mask], errors[mask]) if mask is not None else (uncertainty.ravel(), errors.ravel())
    if errors.all() or not errors.any():
        return float("nan")
    return rocAuc(values, errors)


def riskCoverage(
    uncertainty: np.ndarray,
    meanProbabilities: np.ndarray,
    reference: np.ndarray,
    points: int = 50,
    mask: np.ndarray | None = None,
) -> dict[str, np.ndarray | float]:
    """Risk-coverage curve: keep the most certain voxels first; error rate among those kept.

    Returns:
        ``coverage`` (fraction kept, ``points`` values up to 1), ``risk`` (error rate among kept voxels),
        and ``area`` (area under the curve; lower is better; equals the error rate when uncertainty is useless).
    """
    errors = np.argmax(meanProbabilities, axis=0) != reference
    values, errors = (uncertainty[mask], errors[mask]) if mask is not None else (uncertainty.ravel(), errors.ravel())
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(errors[order])
    kept = np.arange(1, values.size + 1)
    risk = cumulative / kept
    picks = np.unique(np.linspace(0, values.size - 1, points).round().astype(int))
    return {"coverage": kept[picks] / values.size, "risk": risk[picks], "area": float(np.mean(risk))}
