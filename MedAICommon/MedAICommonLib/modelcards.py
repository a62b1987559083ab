"""Model cards: what one model is and does, and the schema checks of its entry in ``models.json``.

A card says what a model does (task, modality, input spacing, labels with names, colours and
values), what it is (architecture, format), where its weights lie and their sha256, its licence,
training data and measured accuracy. :func:`cardFromEntry` checks one JSON entry against the
schema and names the file, the model and the key in its message when something is wrong.
:mod:`MedAICommonLib.models` reads the registry file and finds and checks the weights.

Formats: ``state_dict`` (a state dict for the network that ``builder``, ``"module:function"``,
builds from ``networkArguments``), ``torchscript`` (a ``torch.jit`` archive), ``monai-bundle``
(``config`` names the bundle folder, weights are its ``models/model.pt`` or ``.ts``), ``nnunetv2``
(an nnU-Net v2 results folder, run by the ``nnunetv2`` package), ``checkpoint+config`` (a state
dict plus a ``config`` file describing the network) and ``package`` (a state dict for the network
that the ``builder`` of a pip package builds).

Segmentation fields (all optional, see :class:`ModelCard`): ``spatialDims``, ``inputChannels``,
``inputSpacingMm``, ``fastSpacingMm``, ``roiSizePx``, ``orientation``, ``intensity``,
``networkArguments``, ``dropout``, ``ensemble``, ``postprocessing``, ``baselines``, ``training``.
Spacings and window sizes have one number per spatial axis, in the order of ``orientation``
(``"RAS"``: R, A, S). Labels may carry ``terminology``, a Slicer terminology entry string.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MedAIInputError

__all__ = [
    "FORMATS",
    "INTENSITY_METHODS",
    "ModelLabel",
    "ModelWeights",
    "ModelCard",
    "cardFromEntry",
    "cardWithUserEntry",
    "cardAsDict",
]

FORMATS = ("state_dict", "torchscript", "monai-bundle", "nnunetv2", "checkpoint+config", "package")
INTENSITY_METHODS = ("percentile", "window", "zscore", "none")
_REQUIRED = (
    "id",
    "title",
    "task",
    "modality",
    "architecture",
    "format",
    "weights",
    "licence",
    "trainingData",
    "labels",
)
_OPTIONAL = (
    "description",
    "inputSpacingMm",
    "inputSizePx",
    "prompts",
    "measuredAccuracy",
    "builder",
    "config",
    "reference",
    "networkArguments",
    "spatialDims",
    "inputChannels",
    "fastSpacingMm",
    "roiSizePx",
    "orientation",
    "intensity",
    "dropout",
    "ensemble",
    "postprocessing",
    "baselines",
    "training",
    "augmentation",
    "overlap",
)
_sha256Pattern = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelLabel:
    """One output label: ``value`` in the label map, ``color`` RGB in 0-1."""

    name: str
    value: int
    color: tuple[float, float, float]
    terminology: str | None = None
    """A Slicer terminology entry (``"category~type~..."`` with ``SCT^code^meaning`` parts), if known."""


@dataclass(frozen=True)
class ModelWeights:
    """Where the weights lie; ``sha256``/``sizeBytes`` are None only for a user's own file."""

    location: str
    sha256: str | None = None
    sizeBytes: int | None = None


@dataclass
class ModelCard:
    """Everything known about one model; see the module docstring for the formats."""

    id: str
    title: str
    task: str
    modality: str
    architecture: str
    format: str
    weights: ModelWeights
    licence: str
    trainingData: str
    labels: list[ModelLabel] = field(default_factory=list)
    description: str = ""
    inputSpacingMm: tuple[float, float, float] | None = None
    inputSizePx: tuple[int, ...] | None = None
    prompts: list[str] = field(default_factory=list)
    measuredAccuracy: list[dict[str, Any]] = field(default_factory=list)
    builder: str | None = None
    config: str | None = None
    reference: str = ""
    spatialDims: int = 3
    inputChannels: list[dict[str, Any]] = field(default_factory=list)
    """One ``{"name": ...}`` per input volume, in the order the network takes them; empty: unknown."""
    fastSpacingMm: tuple[float, ...] | None = None
    roiSizePx: tuple[int, ...] | None = None
    orientation: str | None = None
    """Axis codes of the model grid (``"RAS"``: i to the right, j anterior, k superior); None: input's own grid."""
    intensity: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    networkArguments: dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.0
    overlap: float = 0.5
    ensemble: list[dict[str, Any]] = field(default_factory=list)
    postprocessing: dict[str, Any] | None = None
    """``{"function": "module:function", "arguments": {...}}`` applied to the probabilities (instance splitting)."""
    baselines: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    augmentation: Any = None
    baseDir: Path | None = field(default=None, repr=False, compare=False)
    """Folder that relative locations refer to (the registry's folder); None means absolute paths."""


def _fail(where: str, problem: str) -> MedAIInputError:
    return MedAIInputError(f"{where}: {problem}")


def _text(entry: dict, key: str, where: str, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"'{key}' must be a non-empty string, got {value!r}.")
    return value


def _numbers(entry: dict, key: str, where: str, kind: type, count: int | None) -> tuple | None:
    value = entry.get(key)
    if value is None:
        return None
    kinds = (int, float) if kind is float else (int,)
    good = isinstance(value, list) and all(isinstance(v, kinds) and not isinstance(v, bool) and v > 0 for v in value)
    if not good or (count is not None and len(value) != count) or not value:
        size = f"{count} " if count else ""
        raise _fail(where, f"'{key}' must be a list of {size}positive {kind.__name__} numbers or null, got {value!r}.")
    return tuple(float(v) if kind is float else v for v in value)


def _isFraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _labels(entry: dict, where: str) -> list[ModelLabel]:
    raw = entry["labels"]
    if not isinstance(raw, list):
        raise _fail(where, "'labels' must be a list of {name, value, color}.")
    labels = []
    for label in raw:
        ok = isinstance(label, dict) and {"name", "value", "color"} <= set(label) <= {
            "name",
            "value",
            "color",
            "terminology",
        }
        ok = ok and isinstance(label["name"], str) and isinstance(label["value"], int) and label["value"] > 0
        color = label.get("color") if isinstance(label, dict) else None
        ok = ok and isinstance(color, list) and len(color) == 3 and all(_isFraction(c) for c in color)
        ok = ok and isinstance(label.get("terminology", ""), str)
        if not ok:
            raise _fail(where, f"label {label!r} must be {{name, value > 0, color [r, g, b] in 0-1}}.")
        terminology = label.get("terminology") or None
        labels.append(ModelLabel(label["name"], label["value"], tuple(float(c) for c in color), terminology))
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        raise _fail(where, f"label values repeat: {values}.")
    return labels


def _intensity(entry: dict, where: str) -> dict[str, Any]:
    raw = entry.get("intensity") or {"method": "none"}
    method = raw.get("method") if isinstance(raw, dict) else None
    if method not in INTENSITY_METHODS:
        raise _fail(where, f"'intensity' must be an object whose 'method' is one of {', '.join(INTENSITY_METHODS)}.")
    needed = {"percentile": ("lower", "upper"), "window": ("minimum", "maximum")}.get(method, ())
    numbers = [raw.get(key) for key in needed]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers) or (
        numbers and numbers[0] >= numbers[1]
    ):
        raise _fail(where, f"intensity method '{method}' needs numbers {' < '.join(needed)}, got {raw!r}.")
    return dict(raw)


def _segmentationFields(entry: dict, where: str) -> dict[str, Any]:
    """The optional fields that say how to run a segmentation network (see the module docstring)."""
    dims = entry.get("spatialDims", 3)
    if dims not in (2, 3) or isinstance(dims, bool):
        raise _fail(where, f"'spatialDims' must be 2 or 3, got {dims!r}.")
    channels = entry.get("inputChannels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in channels
    ):
        raise _fail(where, "'inputChannels' must be a list of objects with a 'name'.")
    orientation = entry.get("orientation")
    axes = [{"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(code) for code in str(orientation or "")]
    if orientation is not None and (len(axes) != 3 or None in axes or sorted(axes) != [0, 1, 2]):
        raise _fail(where, f"'orientation' must be three axis codes such as 'RAS' or 'LPS', got {orientation!r}.")
    fields: dict[str, Any] = {"spatialDims": dims, "inputChannels": list(channels), "orientation": orientation}
    for key, kind in (("fastSpacingMm", float), ("roiSizePx", int)):
        fields[key] = _numbers(entry, key, where, kind, dims)
    for key in ("dropout", "overlap"):
        if key in entry and not (_isFraction(entry[key]) and entry[key] < 1):
            raise _fail(where, f"'{key}' must be a number in [0, 1), got {entry[key]!r}.")
        if key in entry:
            fields[key] = float(entry[key])
    for key, kind in (("networkArguments", dict), ("training", dict), ("ensemble", list), ("baselines", list)):
        if key in entry and not isinstance(entry[key], kind):
            raise _fail(where, f"'{key}' must be a JSON {'object' if kind is dict else 'list'}.")
        if key in entry:
            fields[key] = entry[key]
    post = entry.get("postprocessing")
    if post is not None and not (isinstance(post, dict) and re.match(r"^[\w.]+:\w+$", str(post.get("function")))):
        raise _fail(where, '\'postprocessing\' must be {"function": "module:function", "arguments": {...}}.')
    fields.update(postprocessing=post, intensity=_intensity(entry, where), augmentation=entry.get("augmentation"))
    return fields


def _weights(entry: dict, where: str) -> ModelWeights:
    raw = entry["weights"]
    if not isinstance(raw, dict) or set(raw) != {"location", "sha256", "sizeBytes"}:
        raise _fail(where, "'weights' must be {location, sha256, sizeBytes}.")
    location = _text(raw, "location", where)
    if not isinstance(raw["sha256"], str) or not _sha256Pattern.match(raw["sha256"]):
        raise _fail(where, f"weights sha256 must be 64 lower-case hex digits, got {raw['sha256']!r}.")
    if not isinstance(raw["sizeBytes"], int) or isinstance(raw["sizeBytes"], bool) or raw["sizeBytes"] <= 0:
        raise _fail(where, f"weights sizeBytes must be a positive integer, got {raw['sizeBytes']!r}.")
    return ModelWeights(location, raw["sha256"], raw["sizeBytes"])


def cardFromEntry(entry: Any, where: str, baseDir: Path | None) -> ModelCard:
    """Check one model entry of ``models.json`` against the schema and make its card.

    Args:
        entry: the entry as ``json.loads`` gives it.
        where: the file and model, for the message (``"models.json, model 2 (LiteMedSAM)"``).
        baseDir: the folder that relative weights and config locations refer to.

    Returns:
        The :class:`ModelCard`.

    Raises:
        MedAIInputError: a missing, unknown or malformed key; the message starts with ``where``.
    """
    if not isinstance(entry, dict):
        raise _fail(where, "each model must be a JSON object.")
    missing = [key for key in _REQUIRED if key not in entry]
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if missing:
        raise _fail(where, f"missing required keys: {', '.join(missing)}.")
    if unknown:
        raise _fail(where, f"unknown keys: {', '.join(unknown)} (allowed: {', '.join(_REQUIRED + _OPTIONAL)}).")
    texts = {key: _text(entry, key, where) for key in _REQUIRED if key not in ("weights", "labels")}
    if texts["format"] not in FORMATS:
        raise _fail(where, f"format {texts['format']!r} is not one of {', '.join(FORMATS)}.")
    builder, config = _text(entry, "builder", where, False), _text(entry, "config", where, False)
    if texts["format"] in ("package", "state_dict") and not (builder and re.match(r"^[\w.]+:\w+$", builder)):
        raise _fail(where, f"format '{texts['format']}' needs 'builder' written as 'module:function'.")
    if texts["format"] == "checkpoint+config" and not config:
        raise _fail(where, "format 'checkpoint+config' needs 'config', the file that describes the network.")
    prompts, accuracy = entry.get("prompts", []), entry.get("measuredAccuracy", [])
    if not isinstance(prompts, list) or not all(p in ("box", "point", "mask") for p in prompts):
        raise _fail(where, f"'prompts' must be a list of 'box', 'point', 'mask', got {prompts!r}.")
    if not isinstance(accuracy, list) or not all(
        isinstance(a, dict) and {"metric", "value"} <= set(a) for a in accuracy
    ):
        raise _fail(where, "'measuredAccuracy' must be a list of objects with at least 'metric' and 'value'.")
    fields = _segmentationFields(entry, where)
    return ModelCard(
        **texts,
        **fields,
        weights=_weights(entry, where),
        labels=_labels(entry, where),
        description=_text(entry, "description", where, False) or "",
        inputSpacingMm=_numbers(entry, "inputSpacingMm", where, float, fields["spatialDims"]),
        inputSizePx=_numbers(entry, "inputSizePx", where, int, None),
        prompts=list(prompts),
        measuredAccuracy=list(accuracy),
        builder=builder,
        config=config,
        reference=_text(entry, "reference", where, False) or "",
        baseDir=baseDir,
    )


def cardWithUserEntry(card: ModelCard, entry: Any, where: str) -> ModelCard:
    """A user's model card with the fields of their own card file (``--card``) laid over it.

    Every key of :func:`cardFromEntry` may appear; none is required. Weights stay those of
    ``card`` unless the entry has a ``weights`` object (a recorded sha256 is then verified).

    Args:
        card: the card :func:`MedAICommonLib.models.resolveModel` made for the file or folder.
        entry: the card file's JSON object.
        where: the file, for the message.

    Raises:
        MedAIInputError: a malformed or unknown key; the message starts with ``where``.
    """
    if not isinstance(entry, dict):
        raise _fail(where, "a model card must be a JSON object.")
    base = json.loads(json.dumps(cardAsDict(card)))  # tuples become the lists of a JSON file
    base["weights"] = {"location": card.weights.location, "sha256": "0" * 64, "sizeBytes": 1}
    base["labels"] = [
        {"name": label.name, "value": label.value, "color": list(label.color)}
        | ({"terminology": label.terminology} if label.terminology else {})
        for label in card.labels
    ]
    merged = {key: value for key, value in base.items() if key in _REQUIRED + _OPTIONAL and value not in (None, "")}
    merged.update(entry)
    userWeights = "weights" in entry
    result = cardFromEntry(merged, where, card.baseDir)
    if not userWeights:
        result.weights = card.weights
    if "format" not in entry:
        result.format = card.format
    return result


def cardAsDict(card: ModelCard) -> dict[str, Any]:
    """The card as plain JSON-ready data (for command-line reports and the GUI's model description)."""
    data = dataclasses.asdict(card)
    data.pop("baseDir")
    return data
