"""``medai train``: train a segmentation, registration or classification model.

``medai train segmentation CONFIG [--output DIR] [--register]`` runs
``MedAISegmentationLib.training.trainSegmentation`` (weights, model card and log in the output
folder; ``--register`` also puts the card into ``Resources/Models/models.json`` and copies the
weights beside it). ``medai train classification CONFIG`` runs the uncertainty issue's
``MedAIUncertaintyLib.classifiertraining.trainClassifierFromConfig`` when it is installed;
``registration`` is not yet available. ``medai/cli.py`` calls ``addTrainParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from typing import Any

__all__ = ["addTrainParser"]


def addTrainParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "train", help="train a segmentation or classification model from a JSON configuration"
    )
    parser.add_argument("kind", choices=["segmentation", "registration", "classification"], help="what to train")
    parser.add_argument("config", help="training configuration (JSON); see Resources/Models/configs/")
    parser.add_argument("--output", "-o", default=None, help="output folder (default: the configuration's 'output')")
    parser.add_argument(
        "--register",
        action="store_true",
        help="segmentation: add the card to Resources/Models/models.json and copy the weights beside it",
    )
    parser.set_defaults(run=_runTrain)
    return parser


def _progress(fraction: float, message: str) -> None:
    print(f"[{100.0 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)


def _runTrain(arguments: argparse.Namespace) -> int:
    from MedAICommonLib.errors import MedAICancelledError, MedAIInputError

    try:
        if arguments.kind == "segmentation":
            return _trainSegmentation(arguments)
        if arguments.kind == "classification":
            return _trainClassifier(arguments)
    except MedAIInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (MedAICancelledError, KeyboardInterrupt):
        print("error: training cancelled.", file=sys.stderr)
        return 130
    print("error: 'medai train registration' is not yet available in this version.", file=sys.stderr)
    return 2


def _trainSegmentation(arguments: argparse.Namespace) -> int:
    from MedAISegmentationLib.training import trainSegmentation
    from MedAISegmentationLib.trainingcard import addCardToRegistry

    result = trainSegmentation(arguments.config, arguments.output, progress=_progress)
    if arguments.register:
        registry = addCardToRegistry(result.card)
        shutil.copyfile(result.weightsPath, registry.parent / result.card["weights"]["location"])
    summary = {
        "weights": str(result.weightsPath),
        "card": str(result.cardPath),
        "seconds": round(result.seconds, 1),
        "measuredAccuracy": result.card.get("measuredAccuracy", []),
        "baselines": result.card.get("baselines", []),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _trainClassifier(arguments: argparse.Namespace) -> int:
    try:
        module = importlib.import_module("MedAIUncertaintyLib.classifiertraining")
        train = module.trainClassifierFromConfig
    except (ImportError, AttributeError):
        print("error: 'medai train classification' is not yet available in this version.", file=sys.stderr)
        return 2
    result = train(arguments.config, arguments.output, _progress)
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
