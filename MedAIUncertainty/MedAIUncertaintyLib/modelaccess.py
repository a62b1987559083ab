"""How the uncertainty and saliency code reaches a model: load it, prepare an image for it, run it, map back.

Registry models and users' model files go through ``MedAISegmentationLib.modelinference`` (the
inference of issue #4: ``loadSegmentationModel``, ``prepareInput``, ``slidingWindowProbabilities`` with a
``predictor``), so that uncertainty reuses its orientation, spacing, intensity and sliding window,
and its exact inverse back to the input grid. A :class:`NetworkModel` wraps a network built in code
(a script, a test, or a classifier of this module): it runs on the input's own grid (IJK order,
intensities z-scored, or scaled to 0-1 by percentiles for the patch classifier), with a sliding
window when ``roiSizePx`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "NetworkModel",
    "PreparedImage",
    "loadModel",
    "modelLabels",
    "prepareImage",
    "runProbabilities",
    "scalarToInputGrid",
]


@dataclass
class NetworkModel:
    """A network with what MedAI needs to run it on an image.

    ``labels``: foreground classes as ``(name, value, colour RGB 0-1)``, output channel = value (0 is
    background). ``members``: more networks of the same labels for an ensemble. ``intensity``: ``"zscore"``
    or ``"percentile"`` (1st-99.5th percentile to 0-1). ``task``: ``"segmentation"`` or ``"classification"``.
    """

    network: Any
    labels: list[tuple[str, int, tuple[float, float, float]]]
    spatialDims: int = 3
    roiSizePx: tuple[int, ...] | None = None
    intensity: str = "zscore"
    task: str = "segmentation"
    members: list[Any] = field(default_factory=list)
    targetLayer: str | None = None
    id: str = "network"


@dataclass
class PreparedImage:
    """The model-space input (1, C, *spatial) and the map back to (L, K, J, I) on the input grid."""

    tensor: Any
    toInputGrid: Callable[[Any], np.ndarray]


def _inference():
    try:
        from MedAISegmentationLib import modelinference
    except ImportError:
        return None
    return modelinference


def _loadClassifier(card, device: str) -> NetworkModel:
    import importlib

    import torch

    from MedAICommonLib.models import checkedWeightsPath

    moduleName, _, functionName = card.builder.partition(":")
    network = getattr(importlib.import_module(moduleName), functionName)()
    network.load_state_dict(torch.load(checkedWeightsPath(card), map_location="cpu", weights_only=True))
    labels = [(label.name, label.value, label.color) for label in card.labels]
    return NetworkModel(
        network.eval(),
        labels,
        spatialDims=2,
        intensity="percentile",
        task="classification",
        id=card.id,
        targetLayer="features",
    )


def loadModel(model: Any, device: str = "auto") -> Any:
    """A :class:`NetworkModel` as it is, or the model behind a registry id or a path.

    Raises:
        MedAIInputError: unknown id, missing or corrupt weights, or the segmentation inference is missing.
    """
    if isinstance(model, NetworkModel) or hasattr(model, "network"):
        return model
    from MedAICommonLib.models import resolveModel

    card = resolveModel(Path(model) if isinstance(model, Path) else str(model))
    if card.task == "classification":
        return _loadClassifier(card, device)
    inference = _inference()
    if inference is None or not hasattr(inference, "loadSegmentationModel"):
        raise MedAIInputError(f"Model '{model}' needs MedAI's segmentation inference, which is not installed.")
    return inference.loadSegmentationModel(model, device=device)


def modelLabels(model: Any) -> list[tuple[str, int, tuple[float, float, float]]]:
    """Foreground labels ``(name, value, colour)`` of a loaded model."""
    if isinstance(model, NetworkModel):
        return list(model.labels)
    return [(label.name, int(label.value), tuple(label.color)) for label in model.card.labels]


def _normalise(array: np.ndarray, method: str) -> np.ndarray:
    array = array.astype(np.float32)
    if method == "percentile":
        lower, upper = np.percentile(array, [1.0, 99.5])
        return np.clip((array - lower) / max(float(upper - lower), 1e-6), 0.0, 1.0).astype(np.float32)
    return ((array - array.mean()) / max(float(array.std()), 1e-6)).astype(np.float32)


def prepareImage(model: Any, volumeNode: Any) -> PreparedImage:
    """The model-space tensor of a volume and the map of (1, L, *model spatial) back to (L, K, J, I).

    Raises:
        MedAIInputError: a 3D volume for a 2D model (more than one slice), or an empty image.
    """
    import torch

    from MedAICommonLib.volumes import arrayFromVolume

    if not isinstance(model, NetworkModel):
        from MedAICommonLib.volumes import metaTensorFromVolume

        prepared = _inference().prepareInput(model, metaTensorFromVolume(volumeNode))
        return PreparedImage(prepared.tensor, lambda probabilities: np.asarray(prepared.toInputGrid(probabilities)))
    array = arrayFromVolume(volumeNode)  # (K, J, I)
    if model.spatialDims == 2 and array.shape[0] != 1:
        raise MedAIInputError(f"Model '{model.id}' is 2D but the image has {array.shape[0]} slices; give one slice.")
    if float(array.max()) == float(array.min()):
        raise MedAIInputError(f"Image '{volumeNode.GetName()}' is empty (all voxels {float(array.min())}).")
    ijk = _normalise(array, model.intensity).transpose()  # (I, J, K)
    if model.spatialDims == 2:
        ijk = ijk[..., 0]
    tensor = torch.from_numpy(np.ascontiguousarray(ijk))[None, None]

    return PreparedImage(tensor, lambda p: _ijkToKji(p, model.spatialDims))


def _ijkToKji(probabilities: Any, spatialDims: int) -> np.ndarray:
    """(1, L, I, J[, K]) -> (L, K, J, I)."""
    values = (
        probabilities[0].detach().cpu().numpy() if hasattr(probabilities, "detach") else np.asarray(probabilities)[0]
    )
    if spatialDims == 2:
        values = values[..., None]
    return np.ascontiguousarray(np.transpose(values, (0, 3, 2, 1)))


def runProbabilities(model: Any, tensor: Any, predictor: Any = None, progress=None, cancelToken=None) -> Any:
    """Softmax over the channels of ``predictor`` (default: the network), by sliding window where the model has one.

    Returns:
        A torch tensor (1, channels, *spatial) on the model's grid.
    """
    import torch

    if not isinstance(model, NetworkModel):
        return _inference().slidingWindowProbabilities(
            model, tensor, predictor=predictor, progress=progress, cancelToken=cancelToken
        )
    predictor = predictor or model.network
    with torch.no_grad():
        if model.roiSizePx:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(tensor, model.roiSizePx, 1, predictor, overlap=0.25, mode="gaussian")
        else:
            logits = predictor(tensor)
    if cancelToken is not None:
        cancelToken.raiseIfCancelled()
    return torch.softmax(torch.as_tensor(logits), dim=1)


def scalarToInputGrid(prepared: PreparedImage, values: Any) -> np.ndarray:
    """A non-negative scalar map (*model spatial) on the input grid (K, J, I).

    The map, scaled to 0-1, travels as the two-class "probabilities" (m, 1 - m) through the same inverse
    as the predictions, so that it lands exactly where they do.
    """
    import torch

    values = torch.as_tensor(values, dtype=torch.float32)
    scale = float(values.max()) if values.numel() else 0.0
    if scale <= 0:
        shape = prepared.toInputGrid(torch.stack([values, 1 - values])[None]).shape[1:]
        return np.zeros(shape, dtype=np.float32)
    scaled = values / scale
    back = prepared.toInputGrid(torch.stack([scaled, 1 - scaled])[None])
    return (np.clip(back[0], 0, 1) * scale).astype(np.float32)
