"""Users' model folders: MONAI bundles and nnU-Net v2 results.

MONAI bundle (``configs/inference.json`` or ``.yaml``, ``configs/metadata.json``, ``models/model.pt``
or ``model.ts``): the network is ``network_def`` of the inference config, built by
``monai.bundle.ConfigParser``; the card is filled from the bundle: labels from the metadata's
``network_data_format.outputs.pred.channel_def``, channel count and names from ``inputs.image``,
spacing from a ``Spacing(d)`` transform's ``pixdim``, orientation from ``Orientation(d)``'s
``axcodes``, intensity from ``ScaleIntensityRange(d)`` (window) or ``NormalizeIntensity(d)``
(z-score), window size and overlap from the ``inferer``. A card file given by the user wins.

nnU-Net v2 results folder (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_final.pth``): run
by the ``nnunetv2`` package (installed only when such a model is used), which does its own
resampling, normalisation, sliding window and mirroring on the voxel arrays; labels and channels
come from ``dataset.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.modelcards import ModelCard, ModelLabel

__all__ = ["bundleCard", "loadBundleNetwork", "nnUNetCard", "nnUNetRunner", "nnUNetProbabilities", "defaultColor"]

_PALETTE = [(0.9, 0.7, 0.5), (0.5, 0.7, 0.9), (0.6, 0.85, 0.45), (0.95, 0.45, 0.45), (0.8, 0.6, 0.9)]


def defaultColor(value: int) -> tuple[float, float, float]:
    """A distinct RGB colour (0-1) for label ``value`` when the model does not give one."""
    return _PALETTE[(value - 1) % len(_PALETTE)]


def _labelsFromNames(names: dict[int, str]) -> list[ModelLabel]:
    return [ModelLabel(str(name), value, defaultColor(value)) for value, name in sorted(names.items()) if value > 0]


def _parser(folder: Path) -> Any:
    from monai.bundle import ConfigParser

    configs = folder / "configs"
    config = next(
        (configs / n for n in ("inference.json", "inference.yaml", "inference.yml") if (configs / n).is_file()), None
    )
    if config is None:
        raise MedAIInputError(f"MONAI bundle {folder} has no configs/inference.json (or .yaml).")
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
        if (configs / "metadata.json").is_file():
            parser.read_meta(str(configs / "metadata.json"))
    except Exception as error:
        raise MedAIInputError(f"MONAI bundle config {config} cannot be read: {error}") from None
    parser["bundle_root"] = str(folder)
    return parser


def _targets(parser: Any, node: Any, path: str) -> list[tuple[str, dict]]:
    """(id, raw dict) of every ``_target_`` object in the raw config."""
    from monai.bundle.utils import ID_SEP_KEY

    found = []
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            found.append((path, node))
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, value in items:
        found += _targets(parser, value, f"{path}{ID_SEP_KEY}{key}" if path else str(key))
    return found


def _value(parser: Any, path: str, raw: dict, key: str) -> Any:
    from monai.bundle.utils import ID_SEP_KEY

    value = raw.get(key)
    if isinstance(value, str) and value[:1] in "@$%":
        return parser.get_parsed_content(f"{path}{ID_SEP_KEY}{key}")
    return value


def _cardFieldsFromConfig(parser: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for path, raw in _targets(parser, parser.get(), ""):
        name = raw["_target_"].rsplit(".", 1)[-1]
        if name in ("Spacingd", "Spacing") and "pixdim" in raw:
            fields["inputSpacingMm"] = tuple(float(v) for v in np.ravel(_value(parser, path, raw, "pixdim")))
        elif name in ("Orientationd", "Orientation") and "axcodes" in raw:
            fields["orientation"] = str(_value(parser, path, raw, "axcodes"))
        elif name in ("ScaleIntensityRanged", "ScaleIntensityRange") and "a_min" in raw:
            low, high = float(_value(parser, path, raw, "a_min")), float(_value(parser, path, raw, "a_max"))
            fields["intensity"] = {
                "method": "window",
                "minimum": low,
                "maximum": high,
                "clip": bool(raw.get("clip", True)),
            }
        elif name in ("NormalizeIntensityd", "NormalizeIntensity"):
            fields["intensity"] = {"method": "zscore"}
        elif name.endswith("SlidingWindowInferer") and "roi_size" in raw:
            fields["roiSizePx"] = tuple(int(v) for v in np.ravel(_value(parser, path, raw, "roi_size")))
            fields["overlap"] = float(_value(parser, path, raw, "overlap") or 0.25)
    return fields


def bundleCard(card: ModelCard) -> ModelCard:
    """The card of a MONAI bundle, filled from its metadata and inference config (see the module docstring)."""
    parser = _parser(Path(card.config))
    fields = _cardFieldsFromConfig(parser)
    metadata = parser.get("_meta_", {}) or {}
    formats = metadata.get("network_data_format", {}) if isinstance(metadata, dict) else {}
    image = formats.get("inputs", {}).get("image", {})
    channelDef = formats.get("outputs", {}).get("pred", {}).get("channel_def", {})
    if channelDef:
        card.labels = _labelsFromNames({int(k): v for k, v in channelDef.items()})
    if image.get("num_channels"):
        names = image.get("channel_def", {})
        card.inputChannels = [
            {"name": str(names.get(str(c), f"channel {c}"))} for c in range(int(image["num_channels"]))
        ]
    card.spatialDims = len(image.get("spatial_shape", [])) or len(fields.get("inputSpacingMm", ())) or 3
    for key, value in fields.items():
        setattr(card, key, value)
    card.task = "segmentation"
    return card


def loadBundleNetwork(card: ModelCard, weights: Path) -> Any:
    """The network of a MONAI bundle on the CPU: ``models/model.ts``, or ``network_def`` with ``models/model.pt``.

    Raises:
        MedAIInputError: the config has no ``network_def``, or the weights do not fit it.
    """
    from .modelloading import _loadTorchScript, loadStateDict

    if weights.suffix == ".ts":
        return _loadTorchScript(weights)
    parser = _parser(Path(card.config))
    if "network_def" not in parser:
        raise MedAIInputError(f"MONAI bundle {card.config} has no 'network_def' in its inference config.")
    try:
        network = parser.get_parsed_content("network_def", instantiate=True)
    except Exception as error:
        raise MedAIInputError(f"MONAI bundle {card.config}: 'network_def' cannot be built ({error}).") from None
    try:
        network.load_state_dict(loadStateDict(weights), strict=True)
    except RuntimeError as error:
        summary = str(error).split("\n\t")[0].strip()
        raise MedAIInputError(f"Weights {weights} do not fit the network of bundle {card.config}: {summary}") from None
    return network


def nnUNetCard(card: ModelCard) -> ModelCard:
    """The card of an nnU-Net v2 results folder: labels and channels from its ``dataset.json``.

    Raises:
        MedAIInputError: ``dataset.json`` is unreadable or uses region-based labels (lists of values).
    """
    folder = Path(card.config)
    try:
        dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MedAIInputError(
            f"nnU-Net results folder {folder} has an unreadable dataset.json/plans.json ({error})."
        ) from None
    labels = dataset.get("labels", {})
    if not all(isinstance(v, int) for v in labels.values()):
        raise MedAIInputError(f"nnU-Net model {folder} uses region-based labels, which MedAI does not support.")
    card.labels = _labelsFromNames({value: name for name, value in labels.items()})
    channels = dataset.get("channel_names", dataset.get("modality", {}))
    card.inputChannels = [{"name": str(channels[k])} for k in sorted(channels, key=int)]
    configuration = folder.name.split("__")[-1]
    patch = plans.get("configurations", {}).get(configuration, {}).get("patch_size", [0, 0, 0])
    card.spatialDims = len(patch)
    card.task = "segmentation"
    return card


def nnUNetRunner(card: ModelCard, device: Any) -> Any:
    """An ``nnUNetPredictor`` initialised from the folder (every fold found), on ``device``.

    Raises:
        MedAIInputError: the ``nnunetv2`` package is not installed.
    """
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError:
        raise MedAIInputError(
            f"Model '{card.id}' is an nnU-Net v2 results folder; install the 'nnunetv2' package "
            "(pip install nnunetv2) to run it."
        ) from None
    folder = Path(card.config)
    folds = tuple(sorted(p.name.removeprefix("fold_") for p in folder.glob("fold_*") if p.is_dir()))
    options = {"tile_step_size": 0.5, "use_gaussian": True, "use_mirroring": True, "device": device}
    options |= {"verbose": False, "allow_tqdm": False}
    try:
        predictor = nnUNetPredictor(**options, perform_everything_on_device=device.type == "cuda")
    except TypeError:  # nnunetv2 before 2.2 named it perform_everything_on_gpu
        predictor = nnUNetPredictor(**options, perform_everything_on_gpu=device.type == "cuda")
    folds = tuple(int(f) if f.isdigit() else f for f in folds)
    predictor.initialize_from_trained_model_folder(
        str(folder), use_folds=folds, checkpoint_name=Path(card.weights.location).name
    )
    return predictor


def nnUNetProbabilities(
    runner: Any, arraysKji: list[np.ndarray], spacingKji: tuple[float, ...], fast: bool
) -> np.ndarray:
    """Class probabilities ``(L, K, J, I)`` from nnU-Net on voxel arrays of one grid (channels in card order).

    nnU-Net resamples and normalises by its plans itself, on the arrays as stored; ``fast`` turns
    off its test-time mirroring.
    """
    runner.use_mirroring = not fast
    data = np.stack([np.asarray(a, dtype=np.float32) for a in arraysKji])
    _, probabilities = runner.predict_single_npy_array(data, {"spacing": list(spacingKji)}, None, None, True)
    return np.asarray(probabilities, dtype=np.float32)
