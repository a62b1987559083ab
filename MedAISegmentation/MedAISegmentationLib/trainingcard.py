"""The ``models.json`` entry (model card) of a trained network, and adding it to the registry.

The card follows ``MedAICommonLib.modelcards``: ``format: "state_dict"``, ``builder``
``"MedAISegmentationLib.networks:buildNetwork"`` with ``networkArguments``, the grid and intensity
the network was trained with, labels, dropout, measured accuracy and baseline on held-out data, and
``training`` (configuration file, seed, seconds, machine and its load).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from MedAICommonLib.resources import repositoryRoot, resourcesDir

__all__ = ["buildModelCard", "fileSha256", "addCardToRegistry"]

_TRAINING_DATA = {
    "synthetic-brain": (
        "Synthetic heads only: random noisy shells (CSF, inner and outer table, diploe, fat and muscle, skin) and "
        "random ellipsoids grown around the MNI152 ICBM 2009a brain (nilearn), random intensities per layer and, "
        "half of the time, per tissue from its grey/white-matter maps; bias field, blur, thick slices, gamma, "
        "noise and random affine changes (MedAISegmentationLib.brainsynthesis). Colin27 was never used in training."
    ),
}


def fileSha256(path: str | os.PathLike) -> str:
    """Lower-case hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(repositoryRoot()).as_posix()
    except ValueError:
        return str(path)


def _trainingData(config: dict) -> str:
    data = config["data"]
    if data["source"] in _TRAINING_DATA:
        return _TRAINING_DATA[data["source"]]
    return (
        f"{data['image']} with {data['labels']} (MedAI sample data), training region {data['trainRegion']} "
        f"as '{data.get('target', 'labels')}' classes; held out: {data['heldOut']}."
    )


def buildModelCard(config, weightsPath, measured, baselines, seconds, machine, configPath) -> dict:
    """Return the ``models.json`` entry of trained weights.

    Args:
        config: the training configuration.
        weightsPath: the saved ``state_dict`` (its sha256 and size go into the card; the
            location is ``<id>.pt``, next to ``models.json`` once shipped).
        measured, baselines: lists of ``{metric, value, data, source}``.
        seconds: training wall-clock seconds.
        machine: processor, cores, threads and load averages.
        configPath: the configuration file (recorded relative to the repository when inside it).

    Returns:
        The entry as a dictionary.
    """
    from .training import networkArguments

    arguments = networkArguments(config)
    card = {
        "id": config["id"],
        "title": config.get("title", config["id"]),
        "task": config.get("task", "segmentation"),
        "modality": config.get("modality") or "unspecified",
        "description": config.get("description") or config.get("title") or config["id"],
        "architecture": (
            f"{arguments['architecture']} ({arguments['spatialDims']}D, channels {arguments['channels']}, "
            f"dropout {arguments['dropout']} in the decoder), built by MedAISegmentationLib.networks"
        ),
        "format": "state_dict",
        "builder": "MedAISegmentationLib.networks:buildNetwork",
        "networkArguments": arguments,
        "spatialDims": config["spatialDims"],
        "inputChannels": config["inputChannels"],
        "inputSpacingMm": config.get("spacingMm"),
        "fastSpacingMm": config.get("fastSpacingMm") or config.get("spacingMm"),
        "roiSizePx": config["patchSizePx"],
        "orientation": "RAS",
        "intensity": config["intensity"],
        "labels": config["labels"],
        "dropout": arguments["dropout"],
        "weights": {
            "location": f"{config['id']}.pt",
            "sha256": fileSha256(weightsPath),
            "sizeBytes": Path(weightsPath).stat().st_size,
        },
        "licence": config.get("licence", "Apache-2.0"),
        "trainingData": _trainingData(config),
        "augmentation": config.get("augmentation", {}),
        "measuredAccuracy": measured,
        "baselines": baselines,
        "training": {
            "config": _relative(configPath),
            "command": f"medai train segmentation {_relative(configPath)}",
            "seed": config["training"]["seed"],
            "iterations": config["training"]["iterations"],
            "seconds": round(float(seconds), 1),
            "machine": machine,
        },
    }
    if config.get("fastSpacingMm") is None:
        card.pop("fastSpacingMm")
    if config.get("postprocessing"):
        card["postprocessing"] = config["postprocessing"]
    if config.get("spacingMm") is None:
        card["inputSpacingMm"] = None
    return card


def addCardToRegistry(card: dict, registryPath: str | os.PathLike | None = None) -> Path:
    """Insert or replace the entry with ``card['id']`` in ``models.json``; other entries keep their text.

    Args:
        card: a model card from :func:`buildModelCard`.
        registryPath: the registry; None: ``Resources/Models/models.json``.

    Returns:
        The registry path.
    """
    path = Path(registryPath) if registryPath else resourcesDir() / "Models" / "models.json"
    text = path.read_text(encoding="utf-8")
    spans = _entrySpans(text)
    entryText = _entryText(card)
    for start, end, entry in spans:
        if entry.get("id") == card["id"]:
            text = text[:start] + entryText + text[end:]
            break
    else:
        end = spans[-1][1] if spans else text.index("[", text.index('"models"')) + 1
        text = text[:end] + ("," if spans else "") + "\n    " + entryText + text[end:]
    json.loads(text)
    path.write_text(text, encoding="utf-8")
    return path


def _entrySpans(text: str) -> list:
    """(start, end, entry) of every entry of the ``models`` list, as character offsets."""
    decoder = json.JSONDecoder()
    position = text.index("[", text.index('"models"')) + 1
    spans = []
    while True:
        while text[position] in " \t\r\n,":
            position += 1
        if text[position] == "]":
            return spans
        entry, end = decoder.raw_decode(text, position)
        spans.append((position, end, entry))
        position = end


def _entryText(card: dict) -> str:
    """The card as JSON indented for the models list, with short lists and label objects on one line."""
    text = json.dumps(card, indent=2, ensure_ascii=False)
    scalar = r'(?:-?[\d.eE+-]+|"[^"\n]{0,60}"|true|false|null)'
    text = re.sub(
        r"\[\s*(" + scalar + r"(?:,\s*" + scalar + r")*)\s*\]",
        lambda m: "[" + ", ".join(i.strip() for i in m.group(1).split(",")) + "]",
        text,
    )
    text = re.sub(r"\{\s*(\"name\": [^{}]*?)\s*\}", lambda m: "{" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "}", text)
    return text.replace("\n", "\n    ")
