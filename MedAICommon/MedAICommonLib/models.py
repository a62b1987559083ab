"""The model registry: model cards read from ``Resources/Models/models.json``, and users' own models.

The cards themselves and the schema of their JSON entries are in :mod:`MedAICommonLib.modelcards`.
Weights are checked against the card's size and sha256 BEFORE anything loads them
(:func:`checkedWeightsPath`).

Weights locations (``weights.location`` in the JSON):

- a path relative to the folder of ``models.json`` (weights trained by this project), or absolute;
- ``package:<package>/<path inside it>`` for weights shipped inside a pip package, found with
  ``importlib.util.find_spec`` without importing the package.

Users' own models: a TorchScript file, a MONAI bundle folder, an nnU-Net v2 results folder, or a
checkpoint with a config file (:func:`resolveModel`).

Example::

    card = resolveModel("LiteMedSAM")
    weights = checkedWeightsPath(card)  # raises MedAIInputError if missing or corrupt
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

from .checksums import fileSha256
from .errors import MedAIInputError
from .modelcards import FORMATS, ModelCard, ModelLabel, ModelWeights, cardAsDict, cardFromEntry
from .resources import resourcesDir

__all__ = [
    "ModelRegistry",
    "resolveModel",
    "weightsPath",
    "configPath",
    "verifyWeights",
    "checkedWeightsPath",
    # Defined in checksums and modelcards; importable from here too.
    "fileSha256",
    "FORMATS",
    "ModelLabel",
    "ModelWeights",
    "ModelCard",
    "cardAsDict",
]

PACKAGE_PREFIX = "package:"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


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
            cards.append(cardFromEntry(entry, f"{path.name}, model {index + 1} ({name or 'no id'})", path.parent))
        ids = [card.id for card in cards]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise MedAIInputError(f"Model registry {path} lists these ids more than once: {', '.join(repeated)}.")
        return cls(cards, path)

    def models(self, task: str | None = None) -> list[ModelCard]:
        """All cards, or those whose ``task`` equals ``task``."""
        return [card for card in self._cards.values() if task is None or card.task == task]

    def segmentationNetworks(self) -> list[ModelCard]:
        """The cards of networks that label every voxel (what the model sections and uncertainty run).

        Told by the weights' format, not by ``task``, which is free text ("brain extraction",
        "bone segmentation", ...): promptable models (they need a prompt) and classifiers are left out.
        """
        dense = ("state_dict", "torchscript", "monai-bundle", "nnunetv2", "checkpoint+config")
        return [
            card
            for card in self._cards.values()
            if card.format in dense and not card.prompts and card.task != "classification"
        ]

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


def _nnUNetModel(path: Path) -> ModelCard:
    """An nnU-Net v2 results folder (``plans.json``, ``dataset.json``, ``fold_N/checkpoint_*.pth``)."""
    checkpoints = sorted(path.glob("fold_*/checkpoint_final.pth")) or sorted(path.glob("fold_*/checkpoint_*.pth"))
    if not checkpoints:
        raise MedAIInputError(f"nnU-Net results folder {path} has no fold_N/checkpoint_final.pth.")
    return _userCard(path, "nnunetv2", checkpoints[0], path)


def _userModel(path: Path, configFile: str | Path | None) -> ModelCard:
    path = path.resolve()
    if path.is_dir() and (path / "plans.json").is_file() and (path / "dataset.json").is_file():
        return _nnUNetModel(path)
    trainerFolders = (
        [p for p in path.glob("*/plans.json") if (p.parent / "dataset.json").is_file()] if path.is_dir() else []
    )
    if len(trainerFolders) == 1:  # the dataset folder holding a single trainer/plans/configuration folder
        return _nnUNetModel(trainerFolders[0].parent)
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
    """The card for a registry id, or for a user's own TorchScript file, MONAI bundle folder, nnU-Net v2
    results folder (``plans.json`` and ``dataset.json`` beside ``fold_N/``) or checkpoint.

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
