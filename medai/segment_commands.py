"""``medai segment watershed`` and ``medai evaluate``: files in, MedAISegmentationLogic, files out.

``medai/cli.py`` wires them in::

    addWatershedParser(segmentSubcommands)   # under "medai segment"
    addEvaluateParser(commands)              # top level

Each parser sets ``run`` to the command function, which returns the exit status (0 on success)
and raises ``MedAIInputError`` on bad input before writing anything.

Example:
    $ medai segment watershed nuclei.tif -o nuclei-objects.seg.nrrd --table objects.csv
    $ medai evaluate reference.seg.nrrd nuclei-objects.seg.nrrd --instances --report scores.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["addWatershedParser", "addEvaluateParser", "watershedCommand", "evaluateCommand", "checkOutputPath"]

_SEGMENTATION_SUFFIX = ".seg.nrrd"
_LABELMAP_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
_TABLE_SUFFIXES = (".csv", ".tsv")


def _thresholdArgument(text: str) -> str | float:
    if text in ("adaptive", "otsu"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'adaptive', 'otsu' or a number, got {text!r}") from None


def addWatershedParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``watershed`` subcommand (under ``medai segment``) to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "watershed",
        help="split touching objects with a seeded watershed (2D or 3D)",
        description="Split the foreground of an image into objects by a seeded watershed. Defaults need no tuning: "
        "an adaptive foreground and a seed distance equal to the estimated object radius. Distances are in mm.",
    )
    parser.add_argument("image", metavar="IMAGE", help="input image (NRRD, NIfTI, MHA, TIFF, DICOM folder...)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT",
        help="objects: .seg.nrrd (segments 'Object 1', ...) or a label map (.nii.gz, .nrrd, .mha)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds",
        metavar="SEG",
        help="manual seeds: a segmentation/label map (one object per segment) or markups (.mrk.json, .fcsv)",
    )
    parser.add_argument("--background-seeds", metavar="MARKUPS", help="markups whose points seed the background")
    parser.add_argument("--background-segment", metavar="NAME", help="the segment of --seeds that seeds the background")
    parser.add_argument(
        "--mask", metavar="SEG", help="foreground segmentation or label map used instead of a threshold"
    )
    parser.add_argument(
        "--threshold", type=_thresholdArgument, default="adaptive", metavar="T",
        help="'adaptive' (default), 'otsu', or an intensity in image units",
    )  # fmt: skip
    parser.add_argument(
        "--min-distance-mm", type=float, metavar="D", help="minimum seed distance (default: estimated object radius)"
    )
    parser.add_argument(
        "--seed-depth-mm", type=float, metavar="H", help="use distance maxima at least H mm deep as seeds (h-maxima)"
    )
    parser.add_argument(
        "--smoothing-mm", type=float, metavar="S", help="Gaussian smoothing in mm (default: one voxel; 0: none)"
    )
    parser.add_argument(
        "--landscape",
        choices=("distance", "gradient"),
        default="distance",
        help="what is flooded (default: %(default)s)",
    )
    parser.add_argument("--dark-objects", action="store_true", help="objects are darker than the background")
    parser.add_argument("--table", metavar="TABLE", help="write the object volumes and centroids (.csv or .tsv)")
    parser.add_argument("--report", metavar="JSON", help="write the object count, sizes and automatic choices as JSON")
    parser.set_defaults(run=watershedCommand)
    return parser


def addEvaluateParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a prediction with a reference segmentation",
        description="Dice, IoU, sensitivity, specificity, precision, volumes, Hausdorff (and 95%) and average "
        "surface distance in mm per segment; with --instances, object matching by IoU and F1. The prediction is "
        "resampled onto the reference grid (nearest neighbour).",
    )
    parser.add_argument("reference", metavar="REFERENCE", help="reference: .seg.nrrd or a label map image")
    parser.add_argument("prediction", metavar="PREDICTION", help="prediction: .seg.nrrd or a label map image")
    parser.add_argument("--instances", action="store_true", help="each label is one object: match objects by IoU")
    parser.add_argument(
        "--iou-threshold", type=float, default=0.5, metavar="T", help="IoU for a match (default: %(default)s)"
    )
    parser.add_argument("--report", metavar="JSON", help="write all results as JSON (undefined values are null)")
    parser.add_argument("--table", metavar="TABLE", help="write the per-segment table (.csv or .tsv)")
    parser.set_defaults(run=evaluateCommand)
    return parser


def checkOutputPath(path: str | None, suffixes: tuple[str, ...], what: str) -> Path | None:
    """Refuse an output path before any work, so that a bad one never costs a run (every command uses it)."""
    from MedAICommonLib.errors import MedAIInputError

    if path is None:
        return None
    target = Path(path).expanduser().absolute()
    if not any(target.name.lower().endswith(suffix) for suffix in suffixes):
        raise MedAIInputError(f"The {what} file {target} must end with one of {', '.join(suffixes)}.")
    if not target.parent.is_dir():
        raise MedAIInputError(f"The folder of the {what} file {target} does not exist.")
    return target


def _loadSegmentationLike(scene: Any, path: str) -> Any:
    """A ``.seg.nrrd`` as a segmentation, markups as markups, any other image as a label map volume."""
    from MedAICommonLib import sceneio

    lower = str(path).lower()
    if lower.endswith(_SEGMENTATION_SUFFIX):
        return sceneio.loadSegmentation(scene, path)
    if lower.endswith((".mrk.json", ".fcsv", ".json")):
        return sceneio.loadMarkups(scene, path)
    return sceneio.loadVolume(scene, path, labelmap=True)


def _asSegmentation(node: Any) -> Any:
    from MedAICommonLib.segmentations import createSegmentationFromLabelmapVolume

    return node if node is None or node.IsA("vtkMRMLSegmentationNode") else createSegmentationFromLabelmapVolume(node)


def _segmentId(segmentationNode: Any, name: str | None) -> str | None:
    from MedAICommonLib.errors import MedAIInputError

    if name is None:
        return None
    segmentation = segmentationNode.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if segmentation.GetNthSegment(index).GetName() == name:
            return segmentation.GetNthSegmentID(index)
    raise MedAIInputError(f"The seeds have no segment named '{name}'.")


def _writeJson(path: Path, content: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(json.dumps(content, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    temporary.replace(path)


def watershedCommand(args: argparse.Namespace) -> int:
    """Run ``medai segment watershed``; returns 0, or raises MedAIInputError before writing anything."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    output = checkOutputPath(args.output, (_SEGMENTATION_SUFFIX, *_LABELMAP_SUFFIXES), "output")
    table = checkOutputPath(args.table, _TABLE_SUFFIXES, "table")
    report = checkOutputPath(args.report, (".json",), "report")
    scene = sceneio.createScene()
    imageNode = sceneio.loadVolume(scene, args.image, allowNaN=False)
    seeds = _loadSegmentationLike(scene, args.seeds) if args.seeds else None
    isMarkups = seeds is not None and seeds.IsA("vtkMRMLMarkupsNode")
    if args.background_segment is not None and (seeds is None or isMarkups):
        raise MedAIInputError("--background-segment needs --seeds given as a segmentation or label map.")
    seedSegmentation = None if isMarkups else _asSegmentation(seeds)
    maskNode = _asSegmentation(_loadSegmentationLike(scene, args.mask)) if args.mask else None
    result = MedAISegmentationLogic().runWatershed(
        imageNode,
        threshold=args.threshold,
        smoothingMm=args.smoothing_mm,
        minSeedDistanceMm=args.min_distance_mm,
        seedDepthMm=args.seed_depth_mm,
        landscape=args.landscape,
        darkObjects=args.dark_objects,
        foregroundSegmentationNode=maskNode,
        seedSegmentationNode=seedSegmentation,
        seedMarkupsNode=seeds if isMarkups else None,
        backgroundSegmentId=_segmentId(seedSegmentation, args.background_segment),
        backgroundMarkupsNode=sceneio.loadMarkups(scene, args.background_seeds) if args.background_seeds else None,
        outputType="segmentation" if output.name.lower().endswith(_SEGMENTATION_SUFFIX) else "labelmap",
        createTable=table is not None,
    )
    sceneio.saveNode(result.outputNode, output)
    if table is not None:
        sceneio.saveNode(result.tableNode, table)
    if report is not None:
        _writeJson(report, {"image": str(Path(args.image).absolute()), "output": str(output), **result.summary()})
    seedText = "manual seeds" if seeds is not None else f"seed distance {result.minSeedDistanceMm or 0:.2f} mm"
    print(f"{result.objectCount} objects (object radius {result.objectRadiusMm:.2f} mm, {seedText}); wrote {output}")
    return 0


def _format(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def evaluateCommand(args: argparse.Namespace) -> int:
    """Run ``medai evaluate``; prints one line per segment and returns 0."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    report = checkOutputPath(args.report, (".json",), "report")
    table = checkOutputPath(args.table, _TABLE_SUFFIXES, "table")
    if not 0.0 < args.iou_threshold <= 1.0:
        raise MedAIInputError(f"--iou-threshold must lie in (0, 1], got {args.iou_threshold}.")
    scene = sceneio.createScene()
    reference = _loadSegmentationLike(scene, args.reference)
    prediction = _loadSegmentationLike(scene, args.prediction)
    for node, what in ((reference, "reference"), (prediction, "prediction")):
        if node.IsA("vtkMRMLMarkupsNode"):
            raise MedAIInputError(f"The {what} is a markups file; give a segmentation or a label map.")
    result = MedAISegmentationLogic().evaluateSegmentation(
        reference,
        prediction,
        instanceLevel=args.instances,
        iouThreshold=args.iou_threshold,
        createTables=table is not None,
    )
    if table is not None:
        sceneio.saveNode(result.tableNode, table)
    if report is not None:
        content = {
            "reference": str(Path(args.reference).absolute()),
            "prediction": str(Path(args.prediction).absolute()),
        }
        _writeJson(report, {**content, **result.report()})
    unit = result.volumeUnit
    print(
        f"{'segment':24} {'Dice':>7} {'IoU':>7} {'HD95 mm':>8} {'ASSD mm':>8} {'ref ' + unit:>12} {'pred ' + unit:>12}"
    )
    for row in result.segments:
        values = [row["dice"], row["iou"], row["hausdorff95_mm"], row["average_surface_distance_mm"]]
        volumes = [row["reference_volume"], row["prediction_volume"]]
        print(f"{row['segment'][:24]:24} " + " ".join(f"{_format(v):>7}" for v in values[:2]) + " "
              + " ".join(f"{_format(v):>8}" for v in values[2:]) + " " + " ".join(f"{_format(v):>12}" for v in volumes))  # fmt: skip
    if result.instances is not None:
        scores = result.instances
        print(
            f"objects: {scores['reference_count']} reference, {scores['prediction_count']} predicted, "
            f"{scores['matched']} matched at IoU {scores['iou_threshold']:g}; precision {_format(scores['precision'])}, "
            f"recall {_format(scores['recall'])}, F1 {_format(scores['f1'])}, mean F1 0.5-0.95 {_format(scores['f1_mean'])}, "
            f"mean matched IoU {_format(scores['mean_matched_iou'])}"
        )
    sys.stdout.flush()
    return 0
