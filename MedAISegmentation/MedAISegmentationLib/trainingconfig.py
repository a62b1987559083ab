"""Training configuration: read a JSON file and check it completely before anything runs.

Keys (see ``Resources/Models/configs/*.json``):

- ``id``, ``title``, ``task``, ``modality``, ``description``, ``licence``: copied to the model card.
- ``data``: ``{"source": "synthetic-brain", "windowPx": [X, Y, Z]}`` (heads synthesised around MNI152)
  or ``{"source": "sample", "image": NAME, "labels": NAME, "target": "labels" | "foreground" |
  "foreground-boundary", "trainRegion": {...}}``; ``heldOut`` (a region of the same item, or
  ``{"image": NAME, "labels": NAME}``), ``validation`` likewise (optional), ``evaluation`` (how the
  held-out data is scored, see ``trainingevaluation``).
- ``spatialDims`` (2 or 3), ``spacingMm`` (per axis, RAS order), ``fastSpacingMm``, ``patchSizePx``,
  ``inputChannels`` (``[{"name": ...}]``), ``outChannels`` (classes with background), ``labels``
  (foreground classes ``{name, value, color}``), ``intensity`` (as the model card's).
- ``network``: ``architecture`` (``unet``, ``segresnet``, ``swinunetr``, ``unetr``), ``channels``,
  ``dropout`` and further ``buildNetwork`` options.
- ``augmentation``: ``affine`` (``rotateDeg``, ``scale``, ``translatePx``), ``flipAxes``,
  ``biasField``, ``blurPx``, ``thickSlices``, ``gamma``, ``noise``.
- ``training``: ``iterations``, ``batchSize``, ``learningRate``, ``validationEvery``, ``seed``, ``threads``.
- ``output``: the default output folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from MedAICommonLib.errors import MedAIInputError

__all__ = ["loadTrainingConfig", "checkTrainingConfig"]

_REQUIRED = (
    "id",
    "data",
    "spatialDims",
    "patchSizePx",
    "inputChannels",
    "outChannels",
    "labels",
    "intensity",
    "network",
    "training",
)
_SOURCES = ("synthetic-brain", "sample")
_TARGETS = ("labels", "foreground", "foreground-boundary")


def loadTrainingConfig(path: str | os.PathLike) -> dict:
    """Read and check a training configuration file.

    Args:
        path: JSON file.

    Returns:
        The configuration dictionary, with ``configPath`` added.

    Raises:
        MedAIInputError: missing or unreadable file, invalid JSON, or a bad entry (one sentence naming it).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MedAIInputError(f"Training configuration {path} does not exist.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MedAIInputError(f"Training configuration {path} is not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise MedAIInputError(f"Training configuration {path} must hold a JSON object.")
    checkTrainingConfig(config)
    config["configPath"] = str(path)
    return config


def checkTrainingConfig(config: dict) -> None:
    """Raise MedAIInputError naming the first problem of a configuration dictionary."""
    from .networks import ARCHITECTURES, sizeMultiple

    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise MedAIInputError(f"The training configuration lacks {', '.join(missing)}.")
    dims = config["spatialDims"]
    if dims not in (2, 3):
        raise MedAIInputError(f"spatialDims must be 2 or 3, not {dims!r}.")
    data = config["data"]
    if not isinstance(data, dict) or data.get("source") not in _SOURCES:
        raise MedAIInputError(f"data.source must be one of {', '.join(_SOURCES)}.")
    if data["source"] == "sample" and not (data.get("image") and data.get("labels") and data.get("trainRegion")):
        raise MedAIInputError("data needs image, labels and trainRegion for a 'sample' source.")
    if data.get("target", "labels") not in _TARGETS:
        raise MedAIInputError(f"data.target must be one of {', '.join(_TARGETS)}.")
    network = config["network"]
    architecture = network.get("architecture") if isinstance(network, dict) else None
    if architecture not in ARCHITECTURES:
        raise MedAIInputError(f"network.architecture must be one of {', '.join(ARCHITECTURES)}, not {architecture!r}.")
    patch = config["patchSizePx"]
    multiple = sizeMultiple(architecture, network.get("channels", (16, 32, 64, 128)))
    if not isinstance(patch, list) or len(patch) != dims or any(not isinstance(s, int) or s % multiple for s in patch):
        raise MedAIInputError(
            f"patchSizePx must be {dims} whole numbers, each a multiple of {multiple}, not {patch!r}."
        )
    spacing = config.get("spacingMm")
    if spacing is not None and (len(spacing) != dims or any(float(s) <= 0 for s in spacing)):
        raise MedAIInputError(f"spacingMm must be {dims} positive numbers in mm, not {spacing!r}.")
    if not isinstance(config["outChannels"], int) or config["outChannels"] < 2:
        raise MedAIInputError("outChannels must be the number of classes including background (at least 2).")
    if not config["inputChannels"]:
        raise MedAIInputError("inputChannels must name at least one input image.")
    if config["intensity"].get("method") not in ("percentile", "window", "zscore"):
        raise MedAIInputError("intensity.method must be percentile, window or zscore.")
    training = config["training"]
    for key in ("iterations", "seed"):
        if not isinstance(training.get(key), int) or training[key] < (1 if key == "iterations" else 0):
            raise MedAIInputError(f"training.{key} must be a whole number (iterations at least 1).")
    if not float(training.get("learningRate", 0)) > 0:
        raise MedAIInputError("training.learningRate must be a positive number.")
