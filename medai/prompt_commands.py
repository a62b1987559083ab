"""``medai segment prompt``: segment what a box or points point at (LiteMedSAM by default).

``medai/cli.py`` wires it in under ``medai segment``::

    addPromptParser(segmentSubcommands)

Boxes and points are RAS millimetres. A point ending in ``,-`` is negative (outside the object).

Example:
    $ medai segment prompt colin27.nii.gz -o brain.seg.nrrd --box=-70,-100,10,70,70,10 --view axial
    $ medai segment prompt colin27.nii.gz -o brain.nii.gz --box=-70,-100,-60,70,70,80 --view axial --propagate
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["addPromptParser", "promptCommand"]

_SEGMENTATION_SUFFIX = ".seg.nrrd"
_LABELMAP_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be {count} numbers separated by commas, got {text!r}") from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{what} must be {count} numbers separated by commas, got {text!r}")
    return values


def _boxArgument(text: str) -> list[float]:
    return _numbers(text, 6, "--box")


def _pointArgument(text: str) -> tuple[list[float], bool]:
    parts = text.split(",")
    positive = True
    if parts and parts[-1].strip() in ("+", "-"):
        positive = parts.pop().strip() == "+"
    return _numbers(",".join(parts), 3, "--point"), positive


def _windowArgument(text: str) -> tuple[float, float]:
    low, high = _numbers(text, 2, "--window")
    return low, high


def addPromptParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``prompt`` subcommand (under ``medai segment``) to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "prompt",
        help="segment what a box or clicks point at, Segment-Anything style",
        description="Segment the object inside a box and/or at points (RAS mm) on one slice, or propagate it "
        "through the box's extent. The model (LiteMedSAM by default) sees the slice in Slicer's view orientation.",
    )
    parser.add_argument("image", metavar="IMAGE", help="input image or 2D picture (NRRD, NIfTI, MHA, TIFF, PNG...)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="result: .seg.nrrd or a label map (.nii.gz, .nrrd, .mha)"
    )
    parser.add_argument(
        "--box",
        type=_boxArgument,
        metavar="R,A,S,R,A,S",
        help="two opposite corners of the box, RAS mm (write --box=-70,... when it starts with a minus)",
    )
    parser.add_argument(
        "--point", type=_pointArgument, action="append", default=[], metavar="R,A,S[,+|-]",
        help="a point inside (+, default) or outside (-) the object, RAS mm; repeatable",
    )  # fmt: skip
    parser.add_argument("--model", default="LiteMedSAM", metavar="ID|PATH", help="model id or checkpoint")
    parser.add_argument(
        "--view", choices=("auto", "axial", "coronal", "sagittal"), default="auto",
        help="slice orientation (default: the box's thinnest axis)",
    )  # fmt: skip
    parser.add_argument("--propagate", action="store_true", help="segment slice after slice through the box")
    parser.add_argument(
        "--average-orientations", action="store_true",
        help="average the prompted slice over its 8 flips and rotations (about 8 times slower, steadier)",
    )  # fmt: skip
    parser.add_argument("--window", type=_windowArgument, metavar="LOW,HIGH", help="intensity window (CT: HU)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default: %(default)s)")
    parser.set_defaults(run=promptCommand)
    return parser


def _promptNodes(scene: Any, box: list[float] | None, points: list[tuple[list[float], bool]]) -> tuple[Any, Any]:
    import numpy as np

    roiNode = pointsNode = None
    if box is not None:
        corners = np.array(box, dtype=float).reshape(2, 3)
        roiNode = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Box")
        roiNode.SetCenterWorld(*corners.mean(axis=0))
        roiNode.SetSizeWorld(*np.abs(corners[1] - corners[0]))
    if points:
        pointsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Points")
        for number, (position, positive) in enumerate(points, start=1):
            index = pointsNode.AddControlPointWorld(*position)
            pointsNode.SetNthControlPointLabel(index, f"{'' if positive else '-'}P{number}")
    return roiNode, pointsNode


def promptCommand(args: argparse.Namespace) -> int:
    """Run ``medai segment prompt``; returns 0, or raises MedAIInputError before writing anything."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError
    from MedAICommonLib.volumes import createVolumeFromArray, ijkToRasFromVolume
    from MedAISegmentationLib.promptlogic import segmentFromPrompts

    from .segment_commands import checkOutputPath

    output = checkOutputPath(args.output, (_SEGMENTATION_SUFFIX, *_LABELMAP_SUFFIXES), "output")
    if args.box is None and not args.point:
        raise MedAIInputError("Give a prompt: --box R,A,S,R,A,S and/or --point R,A,S[,+|-].")
    scene = sceneio.createScene()
    imageNode = sceneio.loadVolume(scene, args.image)
    roiNode, pointsNode = _promptNodes(scene, args.box, args.point)
    result = segmentFromPrompts(
        imageNode,
        roiNode=roiNode,
        pointsNode=pointsNode,
        propagate=args.propagate,
        augment=args.average_orientations,
        sliceView=args.view,
        model=args.model,
        device=args.device,
        window=args.window,
    )
    if output.name.lower().endswith(_SEGMENTATION_SUFFIX):
        sceneio.saveNode(result.segmentationNode, output)
    else:
        labelNode = createVolumeFromArray(scene, result.mask, ijkToRasFromVolume(imageNode), "prompted", labelmap=True)
        sceneio.saveNode(labelNode, output)
    voxels = int(result.mask.sum())
    slices = result.sliceIndices
    print(f"{voxels} voxels on {len(slices)} {result.sliceView} slice(s) {slices[0]}-{slices[-1]}; wrote {output}")
    return 0
