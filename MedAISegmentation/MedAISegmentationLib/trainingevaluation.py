"""Measure a trained network on data it never saw, and the classical baseline on the same data.

Predictions use MONAI's ``sliding_window_inference`` (Gaussian blending) on the model's grid, the
same windows as the model card's ``roiSizePx``. Scores are computed on the held-out item's own grid:
probabilities are interpolated back (linear), as the inference maps them back onto the input grid.
"""

from __future__ import annotations

import numpy as np

__all__ = ["predictClasses", "predictProbabilities", "validationScore", "diceScore", "evaluateHeldOut"]

_CACHE: dict = {}


def diceScore(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap of two binary arrays (1.0 when both are empty)."""
    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    total = prediction.sum() + reference.sum()
    return 1.0 if total == 0 else float(2.0 * (prediction & reference).sum() / total)


def predictProbabilities(config: dict, network, image: np.ndarray, overlap: float = 0.25) -> np.ndarray:
    """Softmax probabilities (classes, *spatial) of ``image`` on the model grid (already scaled)."""
    import torch
    from monai.inferers import sliding_window_inference

    network.eval()
    tensor = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None, None]
    with torch.no_grad():
        logits = sliding_window_inference(
            tensor, list(config["patchSizePx"]), 1, network, overlap=overlap, mode="gaussian"
        )
    return torch.softmax(logits, dim=1)[0].numpy()


def predictClasses(config: dict, network, image: np.ndarray) -> np.ndarray:
    """Most probable class per voxel of an unscaled image on the model grid."""
    from .trainingaugment import scaleIntensity

    return np.argmax(predictProbabilities(config, network, scaleIntensity(image, config["intensity"])), axis=0)


def _heldOutOnGrid(config: dict, entry: dict):
    from .trainingdata import loadSampleOnGrid

    key = (entry["image"], entry["labels"], tuple(config.get("spacingMm") or ()))
    if key not in _CACHE:
        _CACHE[key] = loadSampleOnGrid(entry["image"], entry["labels"], config.get("spacingMm"), config["spatialDims"])
    return _CACHE[key]


def validationScore(config: dict, network) -> float:
    """Dice of the foreground on the configuration's ``data.validation`` item (model grid)."""
    arrays = _heldOutOnGrid(config, config["data"]["validation"])
    classes = predictClasses(config, network, arrays.image)
    network.train()
    return diceScore(classes > 0, arrays.labels > 0)


def evaluateHeldOut(config: dict, network) -> tuple:
    """Score the network and the classical baseline on the held-out data of the configuration.

    Args:
        config: the training configuration; ``data.evaluation`` names the method (``"dice"``,
            ``"dice-per-label"`` or ``"instances"``) and ``data.heldOut`` the data.
        network: the trained network.

    Returns:
        ``(measuredAccuracy, baselines)``: lists of ``{metric, value, data, source}``.
    """
    from .trainingheldout import evaluateHeldOutData

    return evaluateHeldOutData(config, network)
