"""Loading a segmentation network: shipped models and users' own (TorchScript, MONAI bundle, nnU-Net v2).

Everything is checked before a network is built: the weights' size and sha256 (shipped models),
that the file is what its format says, and that the network takes as many channels as the card
lists. Problems raise :class:`~MedAICommonLib.errors.MedAIInputError` with one sentence naming them.

Formats (``card.format``):

- ``state_dict``: ``builder`` (``"module:function"``, e.g. ``MedAISegmentationLib.networks:buildNetwork``)
  called with ``networkArguments``, then the weights' state dict loaded into it;
- ``torchscript``: ``torch.jit.load``;
- ``monai-bundle``: a bundle folder, see :mod:`.modelbundle`;
- ``nnunetv2``: an nnU-Net v2 results folder, run by the ``nnunetv2`` package, see :mod:`.modelbundle`;
- ``checkpoint+config``: a state dict plus a JSON config ``{"builder": ..., "networkArguments": {...}}``.

Example::

    model = loadSegmentationModel("BrainExtractionT1", device="auto")
    model = loadSegmentationModel("/data/my_net.ts", cardFile="/data/my_net.card.json")
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.modelcards import ModelCard, cardWithUserEntry
from MedAICommonLib.models import ModelRegistry, checkedWeightsPath, configPath, resolveModel, verifyWeights

__all__ = ["LoadedModel", "loadSegmentationModel", "importBuilder", "loadStateDict", "resolveModelCard"]


@dataclass
class LoadedModel:
    """A network ready to run, with its card.

    Attributes:
        card: the model card (labels, spacing, channels, intensity, window size).
        network: the ``torch.nn.Module`` in eval mode on :attr:`device` (the nnU-Net network for ``nnunetv2``).
        device: the ``torch.device`` it runs on.
        members: the networks of an ensemble (their logits are averaged); ``[network]`` otherwise.
        runner: for ``nnunetv2``, the nnU-Net predictor that does its own pre- and post-processing.
    """

    card: ModelCard
    network: Any
    device: Any
    members: list[Any] = field(default_factory=list)
    runner: Any = None

    @property
    def channelCount(self) -> int | None:
        """How many input volumes the network takes; None when neither card nor network says."""
        if self.card.inputChannels:
            return len(self.card.inputChannels)
        arguments = self.card.networkArguments
        return arguments.get("inChannels", arguments.get("in_channels"))


class _EnsembleMean:
    """Averages the logits of several networks (same inputs and outputs)."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members

    def __call__(self, tensor: Any) -> Any:
        total = None
        for member in self.members:
            logits = member(tensor)
            logits = logits[0] if isinstance(logits, (list, tuple)) else logits
            total = logits if total is None else total + logits
        return total / len(self.members)

    def eval(self) -> _EnsembleMean:
        return self


def importBuilder(builder: str, what: str) -> Any:
    """The function named by ``"module:function"``.

    Raises:
        MedAIInputError: the module or function does not exist.
    """
    moduleName, _, functionName = builder.partition(":")
    try:
        function = getattr(importlib.import_module(moduleName), functionName)
    except (ImportError, AttributeError) as error:
        raise MedAIInputError(f"The {what} '{builder}' cannot be found ({error}).") from None
    return function


def loadStateDict(path: Path) -> dict[str, Any]:
    """The tensors of a state-dict file (``{"state_dict": ...}`` or ``{"model": ...}`` wrappers unwrapped).

    Raises:
        MedAIInputError: the file is not a torch state dict (corrupt, truncated or another kind of file).
    """
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise MedAIInputError(
            f"Weights file {path} cannot be read as PyTorch weights: {error}".split("\n")[0]
        ) from None
    for key in ("state_dict", "model", "network_weights", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise MedAIInputError(f"Weights file {path} does not hold a state dict of named tensors.")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _buildAndLoad(builder: str, arguments: dict[str, Any], weights: Path, card: ModelCard) -> Any:
    network = importBuilder(builder, f"network builder of model '{card.id}'")(**arguments)
    try:
        network.load_state_dict(loadStateDict(weights), strict=True)
    except RuntimeError as error:
        summary = str(error).split("\n\t")[0].strip()
        raise MedAIInputError(f"Weights {weights} do not fit the network of model '{card.id}': {summary}") from None
    return network


def _loadTorchScript(path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise MedAIInputError(
            f"Model file {path} cannot be read as TorchScript: {str(error).splitlines()[0]}"
        ) from None


def _checkpointNetwork(card: ModelCard, weights: Path) -> Any:
    config = configPath(card)
    try:
        described = json.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MedAIInputError(f"Config {config} of checkpoint {weights} is not readable JSON ({error}).") from None
    if not isinstance(described, dict) or not isinstance(described.get("builder"), str):
        raise MedAIInputError(f"Config {config} must be a JSON object with 'builder' and 'networkArguments'.")
    arguments = described.get("networkArguments", {})
    card.networkArguments = card.networkArguments or arguments
    return _buildAndLoad(described["builder"], arguments, weights, card)


def _networks(card: ModelCard, weights: Path) -> list[Any]:
    """The network (or ensemble members) of a card, on the CPU."""
    from .modelbundle import loadBundleNetwork

    if card.format in ("state_dict", "package"):
        paths = [weights] + [_ensembleWeights(card, entry) for entry in card.ensemble]
        return [_buildAndLoad(card.builder, card.networkArguments, path, card) for path in paths]
    if card.format == "torchscript":
        return [_loadTorchScript(weights)]
    if card.format == "monai-bundle":
        return [loadBundleNetwork(card, weights)]
    if card.format == "checkpoint+config":
        return [_checkpointNetwork(card, weights)]
    raise MedAIInputError(f"Model '{card.id}' has format '{card.format}', which cannot segment volumes.")


def _ensembleWeights(card: ModelCard, entry: dict[str, Any]) -> Path:
    location = Path(entry.get("location", ""))
    path = location if location.is_absolute() or card.baseDir is None else card.baseDir / location
    if entry.get("sha256"):
        return verifyWeights(path, entry["sha256"], entry.get("sizeBytes"))
    if not path.is_file():
        raise MedAIInputError(f"Ensemble weights {path} of model '{card.id}' do not exist.")
    return path


def _checkChannels(card: ModelCard) -> None:
    arguments = card.networkArguments
    declared = arguments.get("inChannels", arguments.get("in_channels"))
    if card.inputChannels and declared is not None and declared != len(card.inputChannels):
        raise MedAIInputError(
            f"Model '{card.id}' lists {len(card.inputChannels)} input channels but its network takes {declared}."
        )


def resolveModelCard(
    idOrPath: Any, configFile: Any = None, cardFile: Any = None, registry: ModelRegistry | None = None
) -> ModelCard:
    """The card of a registry id, a card, or a user's model file or folder, with a user's card file laid over it.

    Raises:
        MedAIInputError: unknown id, missing file or folder, or an unreadable or malformed card file.
    """
    card = idOrPath if isinstance(idOrPath, ModelCard) else resolveModel(idOrPath, registry, configFile)
    if cardFile is not None:
        cardPath = Path(cardFile)
        try:
            entry = json.loads(cardPath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise MedAIInputError(f"Model card {cardPath} is not readable JSON ({error}).") from None
        card = cardWithUserEntry(card, entry, str(cardPath))
    if card.format == "monai-bundle" and cardFile is None:
        from .modelbundle import bundleCard

        card = bundleCard(card)
    if card.format == "nnunetv2":
        from .modelbundle import nnUNetCard

        card = nnUNetCard(card)
    return card


def loadSegmentationModel(
    idOrPath: str | Path | ModelCard,
    device: str = "auto",
    configFile: str | Path | None = None,
    cardFile: str | Path | None = None,
    registry: ModelRegistry | None = None,
) -> LoadedModel:
    """Load a segmentation network in eval mode, weights verified.

    Args:
        idOrPath: a model id of the registry, a path (TorchScript file, MONAI bundle folder, nnU-Net v2
            results folder, checkpoint) or a :class:`ModelCard`.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
        configFile: for a checkpoint, its JSON config (``builder``, ``networkArguments``).
        cardFile: a JSON model card for a user's model (labels, spacing, channels, intensity...),
            laid over what the file itself tells.
        registry: where ids are looked up (default: the shipped ``models.json``).

    Returns:
        The :class:`LoadedModel`.

    Raises:
        MedAIInputError: unknown id, missing or corrupt weights, weights that do not fit the network,
            a channel count that disagrees with the card, or ``nnunetv2`` not installed.
    """
    from MedAICommonLib.devices import resolveDevice

    card = resolveModelCard(idOrPath, configFile, cardFile, registry)
    _checkChannels(card)
    torchDevice = resolveDevice(device)
    weights = checkedWeightsPath(card)
    if card.format == "nnunetv2":
        from .modelbundle import nnUNetRunner

        runner = nnUNetRunner(card, torchDevice)
        return LoadedModel(card, getattr(runner, "network", None), torchDevice, [], runner)
    members = [network.to(torchDevice).eval() for network in _networks(card, weights)]
    for member in members:
        for parameter in member.parameters():
            parameter.requires_grad_(False)
    network = members[0] if len(members) == 1 else _EnsembleMean(members)
    return LoadedModel(card, network, torchDevice, members)
