"""``medai uncertainty``: segmentation with voxel-wise uncertainty maps, and calibration against a reference.

``medai/cli.py`` calls ``addUncertaintyParser(subparsers)``. Bad input raises ``MedAIInputError``
before anything is written.

Example:
    $ medai uncertainty colin27.nii.gz --model BrainExtractionT1 --method mc-dropout --samples 10 \\
          -o brain.seg.nrrd --uncertainty entropy.nrrd --reference brainmask.seg.nrrd --report unc.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .segment_commands import checkOutputPath

__all__ = ["addUncertaintyParser", "uncertaintyCommand"]

_SEGMENTATION_SUFFIX = ".seg.nrrd"
_VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def addUncertaintyParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``uncertainty`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "uncertainty",
        help="segmentation with voxel-wise uncertainty maps (MC dropout, test-time augmentation, ensembles)",
        description="Run a model several times (dropout on, augmented inputs, or ensemble members) and write the mean "
        "segmentation and a map of where the samples disagree, on the input's grid.",
    )
    parser.add_argument("image", metavar="IMAGE", help="input image (NRRD, NIfTI, MHA, DICOM folder...)")
    parser.add_argument(
        "--model", required=True, metavar="ID|PATH", help="model id from the registry, or a model file/folder"
    )
    parser.add_argument("--method", choices=("mc-dropout", "tta", "ensemble"), default="mc-dropout")
    parser.add_argument("--samples", type=int, default=10, help="predictions combined (ensemble: one per member)")
    parser.add_argument("--measure", choices=("entropy", "variance", "mutual-information"), default="entropy")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="mean segmentation: .seg.nrrd (with the Review segment) or a label map",
    )
    parser.add_argument("--uncertainty", required=True, metavar="U", help="the --measure map (.nrrd, .nii.gz, .mha)")
    parser.add_argument(
        "--reference", metavar="SEG", help="true segmentation (.seg.nrrd or label map): calibration and error detection"
    )
    parser.add_argument(
        "--reliability-png",
        metavar="PNG",
        help="write the reliability diagram and risk-coverage curve (needs --reference)",
    )
    parser.add_argument("--report", metavar="JSON", help="write the per-segment summary and metrics as JSON")
    parser.add_argument(
        "--review-threshold", type=float, help="level of --measure from which voxels are marked for review"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.set_defaults(run=uncertaintyCommand)
    return parser


def loadSegmentationFile(scene: Any, path: str) -> Any:
    """A ``.seg.nrrd`` as a segmentation; any other image as a label map turned into a segmentation."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.segmentations import createSegmentationFromLabelmapVolume

    if str(path).lower().endswith(_SEGMENTATION_SUFFIX):
        return sceneio.loadSegmentation(scene, path)
    return createSegmentationFromLabelmapVolume(sceneio.loadVolume(scene, path, labelmap=True))


def writeJson(path: Path, content: dict[str, Any]) -> None:
    """Write JSON atomically; NaN becomes null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    temporary = path.with_name(path.name + ".part")
    temporary.write_text(json.dumps(clean(content), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    temporary.replace(path)


def _saveSegmentation(segmentationNode: Any, inputNode: Any, path: Path) -> None:
    from MedAICommonLib import sceneio
    from MedAICommonLib.segmentations import labelmapFromSegmentation
    from MedAICommonLib.volumes import createVolumeFromArray

    if path.name.lower().endswith(_SEGMENTATION_SUFFIX):
        sceneio.saveNode(segmentationNode, path)
        return
    segmentation = segmentationNode.GetSegmentation()
    review = segmentation.GetSegmentIdBySegmentName("Review")
    if review:
        segmentation.RemoveSegment(review)  # a label map cannot hold the overlapping review outline
    labels, ijkToRas, _segments = labelmapFromSegmentation(segmentationNode, inputNode)
    sceneio.saveNode(
        createVolumeFromArray(segmentationNode.GetScene(), labels, ijkToRas, "labels", labelmap=True), path
    )


def uncertaintyCommand(args: argparse.Namespace) -> int:
    """Run ``medai uncertainty``; returns 0, or raises MedAIInputError before writing anything."""
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError
    from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic

    output = checkOutputPath(args.output, (_SEGMENTATION_SUFFIX, *_VOLUME_SUFFIXES), "output")
    uncertainty = checkOutputPath(args.uncertainty, _VOLUME_SUFFIXES, "uncertainty")
    report = checkOutputPath(args.report, (".json",), "report")
    png = checkOutputPath(args.reliability_png, (".png",), "reliability diagram")
    if png is not None and args.reference is None:
        raise MedAIInputError("--reliability-png needs --reference (the truth to calibrate against).")
    scene = sceneio.createScene()
    imageNode = sceneio.loadVolume(scene, args.image, allowNaN=False)
    reference = loadSegmentationFile(scene, args.reference) if args.reference else None
    result = MedAIUncertaintyLogic().estimateUncertainty(
        imageNode, args.model, args.method, args.samples, args.measure, args.device,
        referenceSegmentationNode=reference, reviewThreshold=args.review_threshold, chartPngPath=png,
    )  # fmt: skip
    sceneio.saveNode(result.uncertaintyVolumeNode, uncertainty)
    _saveSegmentation(result.segmentationNode, imageNode, output)
    if report is not None:
        content = {"image": str(Path(args.image).absolute()), "model": args.model, "method": args.method,
                   "samples": args.samples, "measure": args.measure, "seconds": result.seconds,
                   "segments": result.summary, "metrics": result.metrics}  # fmt: skip
        writeJson(report, content)
    text = f"{args.method}: {args.measure} map written to {uncertainty}, mean segmentation to {output}"
    if result.metrics:
        metrics = result.metrics
        text += f"; ECE {metrics['ece']:.4f}, Brier {metrics['brier']:.4f}, AUC of {args.measure} against errors {metrics['errorAuc'][args.measure]:.3f}"
    print(text)
    return 0
