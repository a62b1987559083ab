"""Sanity checks that come with every heatmap, because saliency shows where a network looks, not why.

- Model randomisation (Adebayo et al., NeurIPS 2018): the heatmap of the trained network against the
  heatmap of the same architecture with re-initialised weights, as a Spearman rank correlation over
  voxels. Near 1: the heatmap mostly reflects the image or the architecture, not what was learned
  (it would look the same for a network that learned nothing). Low is good. One re-initialisation is
  a single random draw, and the correlation swings with it (for the shipped classifier's Grad-CAM,
  from -0.2 to 0.5 between draws), so the check reports the mean over several draws and their range.
- Pointing game (Zhang et al., ECCV 2016): a hit when the heatmap maximum falls inside the reference
  object; the hit rate over cases.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = [
    "RANDOMISATION_DRAWS",
    "randomisedCopy",
    "rankCorrelation",
    "randomisationCorrelations",
    "pointingGame",
    "classifierSaliencyChecks",
    "describeChecks",
]

RANDOMISATION_DRAWS = 5
"""Re-initialisations averaged by the randomisation check of one heatmap (each costs one more heatmap)."""


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


def randomisationCorrelations(
    network: Any,
    heatmap: np.ndarray,
    heatmapOf: Any,
    draws: int = RANDOMISATION_DRAWS,
    seed: int = 0,
    cancelToken: Any = None,
) -> np.ndarray:
    """Rank correlation of ``heatmap`` with the heatmap of each of ``draws`` re-initialised copies of ``network``.

    Args:
        network: the trained network (unchanged).
        heatmap: its heatmap.
        heatmapOf: ``heatmapOf(randomisedNetwork) -> np.ndarray``, the same heatmap for another network.
        draws: re-initialisations (seeds ``seed`` to ``seed + draws - 1``).
        seed: first seed.
        cancelToken: a :class:`MedAICommonLib.jobs.CancelToken`, checked before each draw.

    Returns:
        One Spearman correlation per draw.

    Raises:
        MedAICancelledError: cancelled.
    """
    correlations = []
    for draw in range(draws):
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        correlations.append(rankCorrelation(heatmap, heatmapOf(randomisedCopy(network, seed + draw))))
    return np.array(correlations)


def pointingGame(heatmap: np.ndarray, objectMask: np.ndarray) -> bool:
    """True when the heatmap's maximum (the first one, in array order) lies inside ``objectMask``."""
    heatmap = np.asarray(heatmap)
    return bool(np.asarray(objectMask).ravel()[int(np.argmax(heatmap.ravel()))])


def classifierSaliencyChecks(
    network: Any, patchSet: Any, count: int, method: str = "gradcam", seed: int = 0, draws: int = 10
) -> dict[str, Any]:
    """Pointing game and randomisation correlation of a patch classifier on ``count`` nucleus patches.

    Args:
        network: the trained classifier (unchanged).
        patchSet: a :class:`~MedAIUncertaintyLib.classifierdata.PatchSet` (held-back patches).
        count: nucleus-centred patches checked (the first ones of the set).
        method: the saliency method.
        seed: seed of the first randomised network.
        draws: re-initialisations of the network; each one's correlation is averaged over the patches.

    Returns:
        ``pointingGame`` (hit rate; the object is every nucleus pixel of the patch), ``randomisationCorrelation``
        (Spearman, mean over patches and draws), ``randomisationRange`` (lowest and highest mean of one
        draw), ``draws``, ``cases`` and ``method``.
    """
    import torch

    from .saliency import computeHeatmap

    trained = copy.deepcopy(network).eval()
    indices = np.flatnonzero(patchSet.labels == 1)[:count]
    inputs = [torch.from_numpy(patchSet.patches[index : index + 1]) for index in indices]
    heatmaps = [computeHeatmap(trained, x, 1, method).numpy() for x in inputs]
    hits = [pointingGame(heatmap, patchSet.masks[index]) for heatmap, index in zip(heatmaps, indices)]
    perDraw = []
    for draw in range(draws):
        randomised = randomisedCopy(network, seed + draw)
        perDraw.append(
            np.mean(
                [rankCorrelation(h, computeHeatmap(randomised, x, 1, method).numpy()) for h, x in zip(heatmaps, inputs)]
            )
        )
    return {
        "method": method,
        "cases": int(indices.size),
        "draws": int(draws),
        "pointingGame": float(np.mean(hits)) if hits else float("nan"),
        "randomisationCorrelation": float(np.mean(perDraw)) if hits else float("nan"),
        "randomisationRange": [float(np.min(perDraw)), float(np.max(perDraw))] if hits else [],
    }


def describeChecks(
    randomisationCorrelation: float, pointingHit: bool | None, correlationRange: tuple[float, float] | None = None
) -> str:
    """The one-paragraph sanity-check text printed with every heatmap (``correlationRange``: over the draws)."""
    verdict = (
        "low: the heatmap depends on what the network learned"
        if abs(randomisationCorrelation) < 0.3
        else ("HIGH: much of this heatmap would appear for an untrained network too; read it with care")
    )
    spread = f", {correlationRange[0]:.2f} to {correlationRange[1]:.2f} between draws" if correlationRange else ""
    text = (
        f"Model randomisation: rank correlation with re-initialised networks {randomisationCorrelation:.2f} "
        f"(mean{spread}; {verdict})."
    )
    if pointingHit is not None:
        text += f" Pointing game: the maximum falls {'inside' if pointingHit else 'OUTSIDE'} the reference object."
    return text + " A heatmap shows where the network looks, not why, and not whether it is right."
