"""``medai segment model``: segment with a network from the registry or your own model.

``medai/cli.py`` wires it in under ``medai segment``::

    addModelParser(segmentSubcommands)

Several images are the input channels of a multi-channel model, in the order its card lists
them. Your own model is a TorchScript file, a MONAI bundle folder, an nnU-Net v2 results folder or
a checkpoint with ``--config``; a ``--card`` JSON file says its labels, spacing, channels and
intensity normalisation (a bundle's metadata and nnU-Net's ``dataset.json`` are read too).

Example:
    $ medai segment model colin27.nii.gz -o brain.seg.nrrd --model BrainExtractionT1 --fast
    $ medai segment model t1.nii.gz t2.nii.gz -o tumour.nii.gz --model-path my_net.ts --card my_net.json \\
          --probabilities tumour-probabilities.nrrd
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .segment_commands import checkOutputPath

__all__ = ["addModelParser", "modelCommand"]

_SEGMENTATION_SUFFIX = ".seg.nrrd"
_LABELMAP_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
_PROBABILITY_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")


def addModelParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``model`` subcommand (under ``medai segment``) to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "model",
        help="segment with a U-Net from the registry or your own model",
        description="Segment images with a network: a model shipped with MedAI (--model ID, see models.json) or "
        "your own (--model-path: TorchScript file, MONAI bundle folder, nnU-Net v2 results folder, or checkpoint "
        "with --config). The output lies on the grid of the first image.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="input image(s), one per model input channel")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="result: .seg.nrrd or a label map (.nii.gz, .nrrd, .mha)"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="ID", help="a model id of the registry, e.g. BrainExtractionT1")
    which.add_argument("--model-path", metavar="PATH", help="your own model file or folder")
    parser.add_argument("--card", metavar="JSON", help="model card for --model-path (labels, spacing, channels...)")
    parser.add_argument("--config", metavar="JSON", help="network config of a checkpoint (builder, networkArguments)")
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="where to run (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="coarser spacing (the card's fastSpacingMm): faster")
    parser.add_argument(
        "--probabilities", metavar="OUT", help="write class probabilities (a vector image, component c = class c)"
    )
    parser.set_defaults(run=modelCommand)
    return parser


def _progressPrinter() -> Any:
    shown = [-1]

    def progress(fraction: float, message: str) -> None:
        tenth = int(fraction * 10)
        if tenth > shown[0]:
            shown[0] = tenth
            print(f"{fraction * 100:3.0f}% {message}", file=sys.stderr, flush=True)

    return progress


def modelCommand(args: argparse.Namespace) -> int:
    """Run ``medai segment model``; returns 0, or raises MedAIInputError before writing anything."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError
    from MedAICommonLib.volumes import createVolumeFromArray, ijkToRasFromVolume
    from MedAISegmentationLib.logic import MedAISegmentationLogic
    from MedAISegmentationLib.modelinference import loadSegmentationModel

    output = checkOutputPath(args.output, (_SEGMENTATION_SUFFIX, *_LABELMAP_SUFFIXES), "output")
    probabilities = checkOutputPath(args.probabilities, _PROBABILITY_SUFFIXES, "probabilities")
    if args.card and not args.model_path:
        raise MedAIInputError("--card describes your own model; give it with --model-path.")
    for path in (args.card, args.config):
        if path and not Path(path).is_file():
            raise MedAIInputError(f"File {Path(path).absolute()} does not exist.")
    scene = sceneio.createScene()
    images = [sceneio.loadVolume(scene, path, allowNaN=False) for path in args.images]
    model = loadSegmentationModel(
        args.model if args.model else Path(args.model_path), args.device, configFile=args.config, cardFile=args.card
    )
    job = MedAISegmentationLogic().prepareModelSegmentation(
        images, model, fast=args.fast, keepProbabilities=probabilities is not None
    )
    job.compute(_progressPrinter())
    for message in job.messages:
        print(message, file=sys.stderr)
    result = job.createNodes()
    if output.name.lower().endswith(_SEGMENTATION_SUFFIX):
        sceneio.saveNode(result.segmentationNode, output)
    else:
        labels = job.labels[0][0].astype("int16")
        sceneio.saveNode(createVolumeFromArray(scene, labels, ijkToRasFromVolume(images[0]), "labels", True), output)
    if probabilities is not None:
        sceneio.saveNode(result.probabilityVolumeNode, probabilities)
    segments = result.segmentationNode.GetSegmentation().GetNumberOfSegments()
    print(
        f"{segments} segment(s) from model '{model.card.id}' in {result.seconds:.1f} s on {result.device}"
        f"{' (fast mode)' if args.fast else ''}; wrote {output}"
    )
    return 0
