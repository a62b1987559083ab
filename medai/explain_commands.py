"""``medai explain``: a heatmap of what a model looked at, printed with its sanity checks.

``medai/cli.py`` calls ``addExplainParser(subparsers)``. Bad input (a label the model lacks, a patch
outside the image) raises ``MedAIInputError`` before anything is written.

Example:
    $ medai explain nuclei.nrrd --model NucleusPatchClassifier2D --method gradcam --target 1 \\
          --center -250,-300,0 -o heatmap.nrrd --reference nuclei-mask.nrrd --report explain.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .segment_commands import checkOutputPath
from .uncertainty_commands import _VOLUME_SUFFIXES, loadSegmentationFile, writeJson

__all__ = ["addExplainParser", "explainCommand"]


def _point(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected R,A,S in millimetres, got {text!r}")
    return values


def addExplainParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``explain`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "explain",
        help="heat map explaining a model's output, with sanity checks",
        description="Grad-CAM, Grad-CAM++, occlusion sensitivity or SmoothGrad on the input's grid, with the "
        "model-randomisation check (and the pointing game when --reference is given). A heatmap shows where a "
        "network looks, not why.",
    )
    parser.add_argument("image", metavar="IMAGE", help="input image (NRRD, NIfTI, MHA, TIFF...)")
    parser.add_argument(
        "--model", required=True, metavar="ID|PATH", help="model id from the registry, or a model file/folder"
    )
    parser.add_argument("--method", choices=("gradcam", "gradcampp", "occlusion", "smoothgrad"), default="gradcam")
    parser.add_argument(
        "--target", type=int, default=1, metavar="LABEL", help="output label value explained (0 = background)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="HEATMAP", help="heatmap volume (.nrrd, .nii.gz, .mha), 0-1"
    )
    parser.add_argument("--center", type=_point, metavar="R,A,S", help="patch centre in mm for a patch classifier")
    parser.add_argument("--region", metavar="SEG", help="segmentation models: the voxels whose label is explained")
    parser.add_argument("--reference", metavar="SEG", help="the true object, for the pointing game")
    parser.add_argument(
        "--layer", metavar="NAME", help="Grad-CAM layer (module name); default the coarsest rectified layer"
    )
    parser.add_argument(
        "--no-sanity-checks",
        action="store_true",
        help="skip the randomisation test (it computes the heatmap again for 5 re-initialised networks)",
    )
    parser.add_argument("--report", metavar="JSON", help="write the checks as JSON")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.set_defaults(run=explainCommand)
    return parser


def explainCommand(args: argparse.Namespace) -> int:
    """Run ``medai explain``; returns 0, or raises MedAIInputError before writing anything."""
    from MedAICommonLib import sceneio
    from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic

    output = checkOutputPath(args.output, _VOLUME_SUFFIXES, "heatmap")
    report = checkOutputPath(args.report, (".json",), "report")
    scene = sceneio.createScene()
    imageNode = sceneio.loadVolume(scene, args.image, allowNaN=False)
    region = loadSegmentationFile(scene, args.region) if args.region else None
    reference = loadSegmentationFile(scene, args.reference) if args.reference else None
    result = MedAIUncertaintyLogic().explain(
        imageNode, args.model, args.method, args.target, centerRas=args.center, regionSegmentationNode=region,
        referenceSegmentationNode=reference, targetLayer=args.layer, sanityChecks=not args.no_sanity_checks,
        device=args.device,
    )  # fmt: skip
    sceneio.saveNode(result.heatmapVolumeNode, output)
    if report is not None:
        writeJson(report, {
            "image": str(Path(args.image).absolute()), "model": args.model, "method": args.method, "target": args.target,
            "layer": result.targetLayer, "randomisationCorrelation": result.randomisationCorrelation,
            "pointingGameHit": result.pointingGameHit, "seconds": result.seconds, "checks": result.checks,
        })  # fmt: skip
    print(f"{args.method} heatmap written to {output}")
    print(result.checks)
    return 0
