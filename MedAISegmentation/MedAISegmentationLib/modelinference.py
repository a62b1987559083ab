"""Segmentation network inference on MONAI tensors: preprocessing, sliding window, and the exact way back.

The steps, each usable alone (the uncertainty module passes its own ``predictor``):

1. :func:`loadSegmentationModel` (from :mod:`.modelloading`): network, card, device.
2. :func:`prepareInput`: each input volume (a ``MetaTensor`` ``(1, I, J, K)`` whose affine is
   IJK-to-RAS, as :func:`MedAICommonLib.volumes.metaTensorFromVolume` gives it; one per input
   channel, in the card's order) is normalised as the card says (on its own voxels), then resampled
   onto the model grid (:mod:`.modelgrid`: the card's orientation and spacing, or ``fastSpacingMm``
   in fast mode), giving ``.tensor`` ``(1, C, *model grid)``.
3. :func:`slidingWindowProbabilities`: ``monai.inferers.sliding_window_inference`` with the card's
   window and overlap and Gaussian blending of the logits, then softmax (sigmoid for one output
   channel), checking the cancel token and reporting progress between window batches. On GPU
   out-of-memory it retries with one window per batch and a smaller window, then on the CPU.
4. ``PreparedInput.toInputGrid``: the probabilities back onto the input grid (trilinear, or an exact
   voxel copy when the grids share voxel centres), renormalised so that they sum to one:
   an array ``(L, K, J, I)``, the **KJI** order of :func:`MedAICommonLib.volumes.arrayFromVolume`,
   where ``L`` counts the classes including background (class 0).

Example::

    model = loadSegmentationModel("BrainExtractionT1")
    probabilities = predictProbabilities(model, metaTensorFromVolume(volumeNode), fast=True)
    labels = probabilities.argmax(0)  # KJI, on the volume's grid
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback, subProgress

from .modelinput import PreparedInput, asMetaTensors, checkInputTensors, prepareInput
from .modelloading import LoadedModel, loadSegmentationModel

__all__ = [
    "LoadedModel",
    "PreparedInput",
    "loadSegmentationModel",
    "prepareInput",
    "slidingWindowProbabilities",
    "predictProbabilities",
    "predictLabels",
    "windowCount",
]


def windowCount(shape: Sequence[int], roiSizePx: Sequence[int], overlap: float) -> int:
    """How many windows ``sliding_window_inference`` visits on an image of ``shape`` (same rule as MONAI)."""
    count = 1
    for size, roi in zip(shape, roiSizePx):
        if roi >= size:
            continue
        interval = max(int(roi * (1 - overlap)), 1)
        count *= math.ceil((size - roi) / interval) + 1
    return count


def _windowDivisor(card: Any) -> int:
    arguments = card.networkArguments
    if str(card.builder).endswith("networks:buildNetwork") and "architecture" in arguments:
        from .networks import sizeMultiple

        return sizeMultiple(arguments["architecture"], arguments.get("channels", (16, 32, 64, 128)))
    channels = arguments.get("channels")
    return 2 ** (len(channels) - 1) if isinstance(channels, (list, tuple)) else 16


def _windowSize(card: Any, shape: Sequence[int], shrink: float = 1.0) -> tuple[int, ...]:
    """The card's window (or the whole image), no larger than the image, a multiple of the network's stride."""
    if card.networkArguments.get("imgSize"):  # UNETR only takes windows of the size it was built for
        return tuple(int(n) for n in card.networkArguments["imgSize"])
    divisor = _windowDivisor(card)
    wanted = card.roiSizePx or tuple(shape)
    sizes = []
    for size, roi in zip(shape, wanted):
        roi = min(int(roi * shrink), math.ceil(size / divisor) * divisor)
        sizes.append(max(divisor, roi // divisor * divisor))
    return tuple(sizes)


def _slidingWindow(loadedModel, tensor, predictor, device, roi, batch, progress, cancelToken, outputDevice) -> Any:
    import torch
    from monai.inferers import sliding_window_inference

    batches = math.ceil(windowCount(tensor.shape[2:], roi, loadedModel.card.overlap) / batch)
    done = [0]

    def guardedPredictor(windows: Any) -> Any:
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        logits = predictor(windows)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        done[0] += 1
        if progress is not None:
            progress(done[0] / batches, f"Window batch {done[0]} of {batches}")
        return logits

    with torch.no_grad():
        logits = sliding_window_inference(
            tensor.to(outputDevice),
            roi,
            batch,
            guardedPredictor,
            overlap=loadedModel.card.overlap,
            mode="gaussian",
            sw_device=device,
            device=outputDevice,
        )
        if logits.shape[1] == 1:
            foreground = torch.sigmoid(logits)
            return torch.cat([1 - foreground, foreground], 1)
        return torch.softmax(logits, 1)


def slidingWindowProbabilities(
    loadedModel: LoadedModel,
    tensor: Any,
    predictor: Callable[[Any], Any] | None = None,
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Class probabilities of a prepared tensor by sliding-window inference with Gaussian blending.

    Args:
        loadedModel: from :func:`loadSegmentationModel`.
        tensor: ``PreparedInput.tensor``, ``(1, C, *model grid)``.
        predictor: callable windows ``(B, C, *window)`` -> logits ``(B, L, *window)`` on the device
            of the windows it gets; default ``loadedModel.network``.
        progress: ``progress(fraction, message)`` after each batch of windows.
        cancelToken: checked before each batch of windows.
        log: receives one sentence when a GPU runs out of memory and a fallback is taken.

    Returns:
        ``(1, L, *model grid)`` float32 probabilities summing to one over ``L`` (on the device used).

    Raises:
        MedAICancelledError: the token was cancelled.
        MedAIInputError: the network rejects the input (e.g. another channel count than it was built for).
    """
    from MedAICommonLib.devices import isOutOfMemoryError

    device = loadedModel.device
    shape = tuple(tensor.shape[2:])
    # The second try also blends the windows in CPU memory, which a large image may need.
    attempts = [(device, _windowSize(loadedModel.card, shape), 1 if device.type == "cpu" else 4, device)]
    attempts.append((device, _windowSize(loadedModel.card, shape, 0.75), 1, "cpu"))
    if device.type != "cpu":
        attempts.append(("cpu", attempts[0][1], 1, "cpu"))
    for number, (where, roi, batch, outputDevice) in enumerate(attempts):
        import torch

        where = torch.device(where)
        if where != loadedModel.device:
            for member in loadedModel.members:
                member.to(where)
            loadedModel.device = where
        try:
            run = predictor or loadedModel.network
            return _slidingWindow(loadedModel, tensor, run, where, roi, batch, progress, cancelToken, outputDevice)
        except RuntimeError as error:
            if not isOutOfMemoryError(error) or number == len(attempts) - 1:
                if "channels" in str(error) and "expected" in str(error):
                    raise MedAIInputError(
                        f"Model '{loadedModel.card.id}' cannot take this input: {str(error).splitlines()[0]}"
                    ) from None
                raise
        if where.type == "cuda":
            torch.cuda.empty_cache()
        if log is not None:
            log(
                f"{where.type.upper()} ran out of memory with window {roi} x {batch}; trying {attempts[number + 1][:2]}."
            )
    raise AssertionError("unreachable")


def _onModelGrid(loadedModel, volumes, fast, progress, cancelToken, log) -> tuple[PreparedInput, Any]:
    prepared = prepareInput(loadedModel, volumes, fast)
    if progress is not None:
        progress(0.1, "Input resampled onto the model grid")
    probabilities = slidingWindowProbabilities(
        loadedModel, prepared.tensor, None, subProgress(progress, 0.1, 0.9), cancelToken, log
    )
    if cancelToken is not None:
        cancelToken.raiseIfCancelled()
    return prepared, probabilities


def _nnUNetProbabilities(loadedModel: LoadedModel, volumes: Any, fast: bool) -> np.ndarray:
    from .modelbundle import nnUNetProbabilities

    items = asMetaTensors(volumes)
    checkInputTensors(loadedModel, items)
    arrays = [item.as_tensor().numpy()[0].transpose(2, 1, 0) for item in items]
    spacing = np.linalg.norm(np.asarray(items[0].affine, dtype=float)[:3, :3], axis=0)[::-1]
    return nnUNetProbabilities(loadedModel.runner, arrays, tuple(spacing), fast)


def predictProbabilities(
    loadedModel: LoadedModel,
    volumes: Any,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """:func:`prepareInput`, :func:`slidingWindowProbabilities` and ``toInputGrid`` in one call.

    Returns:
        float32 ``(L, K, J, I)`` class probabilities on the grid of the first input volume, summing to one.
    """
    if loadedModel.runner is not None:
        return _nnUNetProbabilities(loadedModel, volumes, fast)
    prepared, probabilities = _onModelGrid(loadedModel, volumes, fast, progress, cancelToken, log)
    onInput = prepared.toInputGrid(probabilities)
    if progress is not None:
        progress(1.0, "Probabilities on the input grid")
    return onInput


def predictLabels(
    loadedModel: LoadedModel,
    volumes: Any,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The most probable class per voxel (uint8, KJI) on the grid of the first input, without keeping probabilities.

    The same labels as ``predictProbabilities(...).argmax(0)``, with less work (see ``PreparedInput.labelsOnInputGrid``).
    """
    if loadedModel.runner is not None:
        return _nnUNetProbabilities(loadedModel, volumes, fast).argmax(0).astype(np.uint8)
    prepared, probabilities = _onModelGrid(loadedModel, volumes, fast, progress, cancelToken, log)
    labels = prepared.labelsOnInputGrid(probabilities)
    if progress is not None:
        progress(1.0, "Labels on the input grid")
    return labels
