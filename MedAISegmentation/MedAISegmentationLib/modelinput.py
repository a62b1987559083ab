"""Model input: the checks of the input volumes, and their preprocessing onto the model grid and back.

:func:`prepareInput` normalises each input volume (a ``MetaTensor`` ``(1, I, J, K)`` with affine
IJK-to-RAS, one per input channel in the card's order) as the card says, on its own voxels, then
resamples it onto the model grid (:mod:`.modelgrid`). :class:`PreparedInput` holds the network's
input and goes back: ``toInputGrid`` (class probabilities ``(L, K, J, I)`` summing to one) and
``labelsOnInputGrid`` (the most probable class, KJI). See :mod:`.modelinference` for the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

from .modelgrid import modelGrid, normalizeIntensity, resampleTensor
from .modelloading import LoadedModel

__all__ = ["PreparedInput", "prepareInput", "asMetaTensors", "checkInputTensors"]


@dataclass
class PreparedInput:
    """The network's input and what is needed to go back to the input grid.

    Attributes:
        tensor: float32 ``(1, C, *model grid)`` in the model's orientation, spacing and intensity (CPU).
        inputShapeIjk: shape of the (first) input volume, IJK.
        inputIjkToRas: its IJK-to-RAS matrix (3x3 in the plane of a single-slice image for a 2D model).
        modelIjkToRas: IJK-to-RAS matrix of the model grid.
        sliceAxis: for a 2D model, the IJK axis of the input of length 1 that was dropped; else None.
    """

    tensor: Any
    inputShapeIjk: tuple[int, ...]
    inputIjkToRas: np.ndarray
    modelIjkToRas: np.ndarray
    sliceAxis: int | None = None

    def toInputGrid(self, probabilities: Any) -> np.ndarray:
        """Probabilities ``(1, L, *model grid)`` (any device) as a float32 array ``(L, K, J, I)`` on the input grid.

        Interpolation pads with the border values, and each voxel is renormalised, so the classes
        sum to one everywhere.
        """
        import torch

        planeShape = tuple(n for axis, n in enumerate(self.inputShapeIjk) if axis != self.sliceAxis)
        onInput = resampleTensor(probabilities[0], self.modelIjkToRas, self.inputIjkToRas, planeShape, "border")
        onInput = onInput / onInput.sum(0, keepdim=True).clamp_min(1e-12)
        if self.sliceAxis is not None:
            onInput = onInput.unsqueeze(1 + self.sliceAxis)
        return onInput.permute(0, 3, 2, 1).to("cpu", torch.float32).numpy().copy()

    def labelsOnInputGrid(self, probabilities: Any) -> np.ndarray:
        """The most probable class (uint8, KJI) on the input grid, as ``toInputGrid(p).argmax(0)`` gives it.

        Faster: only the input voxels near the model's foreground are interpolated (elsewhere every
        class but background is below 1/2 at all surrounding model voxels, so background wins), and
        with two classes only the foreground probability is.
        """
        import torch
        import torch.nn.functional as functional

        values = probabilities[0]
        foreground = values.argmax(0) > 0
        dims = foreground.ndim
        planeShape = tuple(n for axis, n in enumerate(self.inputShapeIjk) if axis != self.sliceAxis)
        labels = np.zeros(planeShape, dtype=np.uint8)
        if bool(foreground.any()):
            pool = functional.max_pool3d if dims == 3 else functional.max_pool2d
            grown = pool(foreground[None, None].float(), 3, 1, 1)[0, 0] > 0
            where = grown.nonzero()
            low, high = where.min(0).values.cpu().numpy(), where.max(0).values.cpu().numpy()
            # One model voxel more each way: input voxels up to one model voxel beyond the model grid take its border.
            corners = np.array(np.meshgrid(*[[a - 1, b + 1] for a, b in zip(low, high)], indexing="ij"))
            corners = corners.reshape(dims, -1)
            modelToInput = np.linalg.solve(self.inputIjkToRas, self.modelIjkToRas)
            inInput = modelToInput[:dims, :dims] @ corners + modelToInput[:dims, dims:]
            start = np.clip(np.floor(inInput.min(1)).astype(int), 0, np.array(planeShape) - 1)
            stop = np.clip(np.ceil(inInput.max(1)).astype(int), 0, np.array(planeShape) - 1)
            blockAffine = self.inputIjkToRas.copy()
            blockAffine[:dims, dims] = self.inputIjkToRas[:dims, :dims] @ start + self.inputIjkToRas[:dims, dims]
            blockShape = tuple(int(n) for n in stop - start + 1)
            if values.shape[0] == 2:
                block = resampleTensor(values[1:], self.modelIjkToRas, blockAffine, blockShape, "border")[0] > 0.5
            else:
                block = resampleTensor(values, self.modelIjkToRas, blockAffine, blockShape, "border").argmax(0)
            region = tuple(slice(a, b + 1) for a, b in zip(start, stop))
            labels[region] = block.to("cpu", torch.uint8).numpy()
        if self.sliceAxis is not None:
            labels = np.expand_dims(labels, self.sliceAxis)
        return np.ascontiguousarray(labels.transpose(2, 1, 0))


def asMetaTensors(volumes: Any) -> list[Any]:
    from monai.data import MetaTensor

    items = list(volumes) if isinstance(volumes, (list, tuple)) else [volumes]
    for index, item in enumerate(items):
        if not isinstance(item, MetaTensor) or item.ndim != 4 or item.shape[0] != 1:
            raise MedAIInputError(
                f"Input {index + 1} must be a MetaTensor of shape (1, I, J, K) with an IJK-to-RAS affine "
                f"(metaTensorFromVolume), got {type(item).__name__} {tuple(getattr(item, 'shape', ()))}."
            )
    return items


def checkInputTensors(model: LoadedModel, items: list[Any]) -> int | None:
    """Refuse inputs the model cannot segment; returns the dropped axis of a single-slice image for a 2D model."""
    card, expected = model.card, model.channelCount
    if expected is not None and len(items) != expected:
        names = ", ".join(c["name"] for c in card.inputChannels) or f"{expected} volumes"
        raise MedAIInputError(f"Model '{card.id}' takes {expected} input volume(s) ({names}), got {len(items)}.")
    shape = tuple(items[0].shape[1:])
    singleAxes = [axis for axis, n in enumerate(shape) if n == 1]
    if card.spatialDims == 3 and singleAxes:
        raise MedAIInputError(f"The image is 2D (size {'x'.join(map(str, shape))}) but model '{card.id}' is 3D.")
    if card.spatialDims == 2 and not singleAxes:
        raise MedAIInputError(
            f"The image is 3D (size {'x'.join(map(str, shape))}) but model '{card.id}' is 2D; give one slice."
        )
    for index, item in enumerate(items):
        if card.spatialDims == 2 and tuple(item.shape[1:]) != shape:
            raise MedAIInputError(f"Input {index + 1} of the 2D model '{card.id}' has another size than input 1.")
        values = item.as_tensor()
        if not bool(values.isfinite().all()) if values.is_floating_point() else False:
            raise MedAIInputError(f"Input {index + 1} has NaN or infinite voxels.")
        if float(values.max()) == float(values.min()):
            raise MedAIInputError(f"Input {index + 1} is empty: all its voxels are {float(values.min()):g}.")
    return singleAxes[0] if card.spatialDims == 2 else None


def _planeAffine(affine: np.ndarray, sliceAxis: int) -> np.ndarray:
    """A 3x3 in-plane IJK-to-plane matrix for a single-slice image (its spacing, no rotation)."""
    keep = [axis for axis in range(3) if axis != sliceAxis]
    spacing = np.linalg.norm(affine[:3, keep], axis=0)
    return np.diag([*spacing, 1.0])


def prepareInput(loadedModel: LoadedModel, volumes: Any, fast: bool = False) -> PreparedInput:
    """Normalise and resample input volumes onto the model grid (see the module docstring).

    Args:
        loadedModel: from :func:`loadSegmentationModel`.
        volumes: a ``MetaTensor`` ``(1, I, J, K)`` with affine IJK-to-RAS, or a list of them, one per
            input channel in the card's order; channels may lie on different grids (each is
            resampled onto the model grid of the first).
        fast: use the card's coarser ``fastSpacingMm`` (when it has one).

    Returns:
        The :class:`PreparedInput`.

    Raises:
        MedAIInputError: wrong number of volumes, a 2D image for a 3D model (or the reverse), NaN
            voxels, or an empty/constant image.
    """
    import torch

    card = loadedModel.card
    if loadedModel.runner is not None:
        raise MedAIInputError(f"Model '{card.id}' runs through nnU-Net's own pipeline; use predictProbabilities.")
    items = asMetaTensors(volumes)
    sliceAxis = checkInputTensors(loadedModel, items)
    spacing = card.fastSpacingMm if fast and card.fastSpacingMm else card.inputSpacingMm
    firstAffine = np.asarray(items[0].affine, dtype=np.float64)
    shapeIjk = tuple(int(n) for n in items[0].shape[1:])
    if sliceAxis is None:
        inputAffine = firstAffine
        modelAffine, modelShape = modelGrid(inputAffine, shapeIjk, card.orientation, spacing)
    else:
        inputAffine = _planeAffine(firstAffine, sliceAxis)
        planeShape = tuple(n for axis, n in enumerate(shapeIjk) if axis != sliceAxis)
        modelAffine, modelShape = modelGrid(inputAffine, planeShape, None, spacing)
    channels = []
    for item in items:
        values = torch.from_numpy(normalizeIntensity(item.as_tensor().numpy()[0], card.intensity))[None]
        if sliceAxis is None:
            affine = np.asarray(item.affine, dtype=np.float64)
        else:
            values, affine = values.squeeze(1 + sliceAxis), inputAffine
        channels.append(resampleTensor(values, affine, modelAffine, modelShape, "zeros")[0])
    tensor = torch.stack(channels)[None].contiguous()
    return PreparedInput(tensor, shapeIjk, inputAffine, modelAffine, sliceAxis)
