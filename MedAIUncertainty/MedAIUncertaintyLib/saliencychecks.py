"""Sanity checks that come with every heatmap, because saliency shows where a network looks, not why.

- Model randomisation (Adebayo et al., NeurIPS 2018): the heatmap of the trained network against the
  heatmap of the same architecture with re-initialised weights, as a Spearman rank correlation over
  voxels. Near 1: the heatmap mostly reflects the image or the architecture, not what was learned
  (it would look the same for a network that learned nothing). Low is good.
- Pointing game (Zhang et al., ECCV 2016): a hit when the heatmap maximum falls inside the reference
  object; the hit rate over cases.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["randomisedCopy", "rankCorrelation", "pointingGame", "classifierSaliencyChecks", "describeChecks"]


def randomisedCopy(network: Any, seed: int = 0) -> Any:
    """A copy of ``network`` with every parameter re-initialised (running statistics reset); the original is untouched."""
    import torch

    randomised = copy.deepcopy(network)
    torch.manual_seed(seed)
    for module in randomised.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return randomised.eval()


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values.ravel(), method="average")


def rankCorrelation(heatmapA: np.ndarray, heatmapB: np.ndarray) -> float:
    """Spearman rank correlation of two heatmaps over all voxels (0 when either is constant)."""
    a, b = _ranks(np.asarray(heatmapA, float)), _ranks(np.asarray(heatmapB, float))
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def pointingGame(heatmap: np.ndarray, objectMask: np.ndarray) -> bool:
    """True when the heatmap's maximum (the first one, in array order) lies inside ``objectMask``."""
    heatmap = np.asarray(heatmap)
    return bool(np.asarray(objectMask).ravel()[int(np.argmax(heatmap.ravel()))])


def classifierSaliencyChecks(
    network: Any, patchSet: Any, count: int, method: str = "gradcam", seed: int = 0
) -> dict[str, Any]:
    """Pointing game and randomisation correlation of a patch classifier on ``count`` nucleus patches.

    Args:
        network: the trained classifier (unchanged).
        patchSet: a :class:`~MedAIUncertaintyLib.classifierdata.PatchSet` (held-back patches).
        count: nucleus-centred patches checked (the first ones of the set).
        method: the saliency method.
        seed: seed of the randomised network.

    Returns:
        ``pointingGame`` (hit rate; the object is every nucleus pixel of the patch), ``randomisationCorrelation``
        (mean Spearman), ``cases`` and ``method``.
    """
    import torch

    from .saliency import computeHeatmap

    trained, randomised = copy.deepcopy(network).eval(), randomisedCopy(network, seed)
    indices = np.flatnonzero(patchSet.labels == 1)[:count]
    hits, correlations = [], []
    for index in indices:
        x = torch.from_numpy(patchSet.patches[index : index + 1])
        heatmap = computeHeatmap(trained, x, 1, method).numpy()
        randomHeatmap = computeHeatmap(randomised, x, 1, method).numpy()
        hits.append(pointingGame(heatmap, patchSet.masks[index]))
        correlations.append(rankCorrelation(heatmap, randomHeatmap))
    return {
        "method": method,
        "cases": int(indices.size),
        "pointingGame": float(np.mean(hits)) if hits else float("nan"),
        "randomisationCorrelation": float(np.mean(correlations)) if correlations else float("nan"),
    }


def describeChecks(randomisationCorrelation: float, pointingHit: bool | None) -> str:
    """The one-paragraph sanity-check text printed with every heatmap."""
    verdict = (
        "low: the heatmap depends on what the network learned"
        if abs(randomisationCorrelation) < 0.3
        else ("HIGH: much of this heatmap would appear for an untrained network too; read it with care")
    )
    text = f"Model randomisation: rank correlation with a re-initialised network {randomisationCorrelation:.2f} ({verdict})."
    if pointingHit is not None:
        text += f" Pointing game: the maximum falls {'inside' if pointingHit else 'OUTSIDE'} the reference object."
    return text + " A heatmap shows where the network looks, not why, and not whether it is right."
