"""The model registry: model cards read from ``Resources/Models/models.json``, and users' own models.

A card says what a model does (task, modality, input spacing, labels with names, colours and
values), what it is (architecture, format), where its weights lie and their sha256, its licence,
training data and measured accuracy. Weights are checked against the card's size and sha256
BEFORE anything loads them (:func:`checkedWeightsPath`).

Weights locations (``weights.location`` in the JSON):

- a path relative to the folder of ``models.json`` (weights trained by this project), or absolute;
- ``package:<package>/<path inside it>`` for weights shipped inside a pip package, found with
  ``importlib.util.find_spec`` without importing the package.

Formats: ``torchscript`` (a ``torch.jit`` archive), ``monai-bundle`` (``config`` names the bundle
folder, weights are its ``models/model.pt`` or ``.ts``), ``checkpoint+config`` (a state dict plus a
``config`` file describing the network) and ``package`` (a state dict for the network that the
``builder``, ``"module:function"``, of a pip package builds).

Example::

    card = resolveModel("LiteMedSAM")
    weights = checkedWeightsPath(card)  # raises MedAIInputError if missing or corrupt
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.resources import resourcesDir

__all__ = [
    "FORMATS",
    "ModelLabel",
    "ModelWeights",
    "ModelCard",
    "ModelRegistry",
    "resolveModel",
    "weightsPath",
    "configPath",
    "verifyWeights",
    "checkedWeightsPath",
    "fileSha256",
    "cardAsDict",
]

FORMATS = ("torchscript", "monai-bundle", "checkpoint+config", "package")
PACKAGE_PREFIX = "package:"
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
)
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_sha256Pattern = re.compile(r"^[0-9a-f]{64}$")
# sha256 of files already verified, keyed by (path, size, mtime): hashing 40 MB on every run is wasteful.
_hashCache: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class ModelLabel:
    """One output label: ``value`` in the label map, ``color`` RGB in 0-1."""

    name: str
    value: int
    color: tuple[float, float, float]


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
        ok = isinstance(label, dict) and set(label) == {"name", "value", "color"}
        ok = ok and isinstance(label["name"], str) and isinstance(label["value"], int) and label["value"] > 0
        color = label.get("color") if isinstance(label, dict) else None
        ok = ok and isinstance(color, list) and len(color) == 3 and all(_isFraction(c) for c in color)
        if not ok:
            raise _fail(where, f"label {label!r} must be {{name, value > 0, color [r, g, b] in 0-1}}.")
        labels.append(ModelLabel(label["name"], label["value"], tuple(float(c) for c in color)))
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        raise _fail(where, f"label values repeat: {values}.")
    return labels


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


def _cardFromEntry(entry: Any, where: str, baseDir: Path) -> ModelCard:
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
    if texts["format"] == "package" and not (builder and re.match(r"^[\w.]+:\w+$", builder)):
        raise _fail(where, "format 'package' needs 'builder' written as 'module:function'.")
    if texts["format"] == "checkpoint+config" and not config:
        raise _fail(where, "format 'checkpoint+config' needs 'config', the file that describes the network.")
    prompts, accuracy = entry.get("prompts", []), entry.get("measuredAccuracy", [])
    if not isinstance(prompts, list) or not all(p in ("box", "point", "mask") for p in prompts):
        raise _fail(where, f"'prompts' must be a list of 'box', 'point', 'mask', got {prompts!r}.")
    if not isinstance(accuracy, list) or not all(
        isinstance(a, dict) and {"metric", "value"} <= set(a) for a in accuracy
    ):
        raise _fail(where, "'measuredAccuracy' must be a list of objects with at least 'metric' and 'value'.")
    return ModelCard(
        **texts,
        weights=_weights(entry, where),
        labels=_labels(entry, where),
        description=_text(entry, "description", where, False) or "",
        inputSpacingMm=_numbers(entry, "inputSpacingMm", where, float, 3),
        inputSizePx=_numbers(entry, "inputSizePx", where, int, None),
        prompts=list(prompts),
        measuredAccuracy=list(accuracy),
        builder=builder,
        config=config,
        reference=_text(entry, "reference", where, False) or "",
        baseDir=baseDir,
    )


class ModelRegistry:
    """The model cards of one ``models.json``, in file order."""

    def __init__(self, cards: list[ModelCard], path: Path | None = None) -> None:
        self.path = path
        self._cards = {card.id: card for card in cards}

    @classmethod
    def load(cls, path: str | Path | None = None) -> ModelRegistry:
        """Read and validate a registry file (default: ``Resources/Models/models.json``).

        Raises:
            MedAIInputError: the file is missing, is not JSON, or breaks the schema (the message names
                the file, the model and the key).
        """
        path = Path(path) if path is not None else resourcesDir() / "Models" / "models.json"
        if not path.is_file():
            raise MedAIInputError(f"Model registry {path} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise MedAIInputError(
                f"Model registry {path} is not valid JSON: {error.msg} at line {error.lineno}."
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise MedAIInputError(f"Model registry {path} must be a JSON object with a 'models' list.")
        cards = []
        for index, entry in enumerate(data["models"]):
            name = entry.get("id") if isinstance(entry, dict) else None
            cards.append(_cardFromEntry(entry, f"{path.name}, model {index + 1} ({name or 'no id'})", path.parent))
        ids = [card.id for card in cards]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise MedAIInputError(f"Model registry {path} lists these ids more than once: {', '.join(repeated)}.")
        return cls(cards, path)

    def models(self, task: str | None = None) -> list[ModelCard]:
        """All cards, or those whose ``task`` equals ``task``."""
        return [card for card in self._cards.values() if task is None or card.task == task]

    def ids(self) -> list[str]:
        return list(self._cards)

    def get(self, modelId: str) -> ModelCard:
        """The card with this id.

        Raises:
            MedAIInputError: no model has this id (the message lists the known ids).
        """
        if modelId not in self._cards:
            raise MedAIInputError(f"No model with id '{modelId}'; known models: {', '.join(self._cards) or 'none'}.")
        return self._cards[modelId]

    def __contains__(self, modelId: object) -> bool:
        return modelId in self._cards

    def __len__(self) -> int:
        return len(self._cards)


def _isTorchScript(path: Path) -> bool:
    """A TorchScript archive holds compiled code (``code/``, ``constants.pkl``); a torch.save zip does not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _userCard(path: Path, modelFormat: str, weights: Path, config: Path | None) -> ModelCard:
    return ModelCard(
        id=path.name,
        title=f"User model {path.name}",
        task="unknown",
        modality="unknown",
        architecture="unknown",
        format=modelFormat,
        weights=ModelWeights(str(weights), None, weights.stat().st_size),
        licence="unknown",
        trainingData="unknown",
        config=str(config) if config else None,
    )


def _userModel(path: Path, configFile: str | Path | None) -> ModelCard:
    path = path.resolve()
    if path.is_dir():
        if not (path / "configs").is_dir():
            raise MedAIInputError(f"Folder {path} is not a MONAI bundle: it has no configs/ folder.")
        for name in ("models/model.ts", "models/model.pt"):
            if (path / name).is_file():
                return _userCard(path, "monai-bundle", path / name, path)
        raise MedAIInputError(f"MONAI bundle {path} has neither models/model.ts nor models/model.pt.")
    if _isTorchScript(path):
        return _userCard(path, "torchscript", path, None)
    if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
        raise MedAIInputError(
            f"Model file {path} is neither a TorchScript file nor a checkpoint ({', '.join(_CHECKPOINT_SUFFIXES)})."
        )
    candidates = [Path(configFile)] if configFile else [path.with_suffix(s) for s in (".json", ".yaml", ".yml")]
    candidates += [] if configFile else [path.parent / "config.json", path.parent / "config.yaml"]
    found = next((c.resolve() for c in candidates if c.is_file()), None)
    if found is None:
        raise MedAIInputError(
            f"Checkpoint {path} needs a config file describing the network; none found at "
            f"{', '.join(str(c) for c in candidates)}."
        )
    return _userCard(path, "checkpoint+config", path, found)


def resolveModel(
    idOrPath: str | Path, registry: ModelRegistry | None = None, configFile: str | Path | None = None
) -> ModelCard:
    """The card for a registry id, or for a user's own TorchScript file, MONAI bundle folder or checkpoint.

    Args:
        idOrPath: a model id from the registry, or a path (a ``Path`` is never taken as an id).
        registry: where ids are looked up; default :meth:`ModelRegistry.load`.
        configFile: for a checkpoint, its config; default ``<checkpoint>.json``/``.yaml`` or
            ``config.json``/``config.yaml`` beside it.

    Raises:
        MedAIInputError: neither a known id nor a usable model file or folder.
    """
    if not isinstance(idOrPath, Path):
        registry = registry if registry is not None else ModelRegistry.load()
        if idOrPath in registry:
            return registry.get(idOrPath)
    path = Path(idOrPath).expanduser()
    if not path.exists():
        known = ", ".join(registry.ids()) if registry is not None else ""
        raise MedAIInputError(
            f"Model '{idOrPath}' is neither a registered model id ({known}) nor an existing file or folder."
        )
    return _userModel(path, configFile)


def _locate(location: str, card: ModelCard, what: str) -> Path:
    if location.startswith(PACKAGE_PREFIX):
        packageName, _, inside = location[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(packageName) if packageName.isidentifier() else None
        folders = list(spec.submodule_search_locations or []) if spec else []
        if not folders:
            raise MedAIInputError(
                f"Model '{card.id}' needs the Python package '{packageName}' for its {what}, but it is not installed."
            )
        return next((Path(f) / inside for f in folders if (Path(f) / inside).exists()), Path(folders[0]) / inside)
    path = Path(location).expanduser()
    return path if path.is_absolute() or card.baseDir is None else card.baseDir / path


def weightsPath(card: ModelCard) -> Path:
    """The weights file of a card (not checked; see :func:`checkedWeightsPath`).

    Raises:
        MedAIInputError: the package holding the weights is not installed.
    """
    return _locate(card.weights.location, card, "weights")


def configPath(card: ModelCard) -> Path | None:
    """The config file (``checkpoint+config``) or bundle folder (``monai-bundle``) of a card, if any."""
    return _locate(card.config, card, "config") if card.config else None


def fileSha256(path: str | Path) -> str:
    """The sha256 of a file as 64 lower-case hex digits (cached while size and mtime stay the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashCache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hashCache[key] = digest.hexdigest()
    return _hashCache[key]


def verifyWeights(path: str | Path, sha256: str, sizeBytes: int | None = None) -> Path:
    """Check a weights file before anything loads it.

    Returns:
        The path, when the file exists and matches.

    Raises:
        MedAIInputError: the file is missing, or its size or sha256 differs (corrupt, truncated, or
            another file); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MedAIInputError(f"Weights file {path} does not exist; reinstall the package or model that provides it.")
    actualSize = path.stat().st_size
    if sizeBytes is not None and actualSize != sizeBytes:
        raise MedAIInputError(
            f"Weights file {path} is corrupt or incomplete: {actualSize} bytes instead of {sizeBytes}; reinstall it."
        )
    actual = fileSha256(path)
    if actual != sha256.lower():
        raise MedAIInputError(
            f"Weights file {path} is corrupt or not the expected file: sha256 {actual} instead of {sha256}; reinstall it."
        )
    return path


def checkedWeightsPath(card: ModelCard) -> Path:
    """:func:`weightsPath` after :func:`verifyWeights` (a user's own file, with no recorded sha256, must exist).

    Raises:
        MedAIInputError: missing or corrupt weights, or their package is not installed.
    """
    path = weightsPath(card)
    if card.weights.sha256 is None:
        if not path.exists():
            raise MedAIInputError(f"Weights file {path} of model '{card.id}' does not exist.")
        return path
    return verifyWeights(path, card.weights.sha256, card.weights.sizeBytes)


def cardAsDict(card: ModelCard) -> dict[str, Any]:
    """The card as plain JSON-ready data (for command-line reports and the GUI's model description)."""
    data = dataclasses.asdict(card)
    data.pop("baseDir")
    return data
