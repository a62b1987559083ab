"""``medai register``: files in, MedAIRegistrationLogic, files out.

``medai/cli.py`` wires it in::

    addRegisterParser(commands)   # top level

The written transform is an ITK transform file in the *resampling* convention (LPS): it maps a
point of the fixed image to the matching point of the moving image, so SimpleITK, ANTs and Slicer
read it correctly (``SimpleITK.Resample(moving, fixed, transform)`` aligns the moving image). A 2D
pair (PNG, or one-slice volumes) gives a 2D transform. Bad input raises ``MedAIInputError`` before
any file is written; if writing fails half way, the files already written are removed.

Example:
    $ medai register mni.nii.gz colin.nii.gz --transform deformable --output-transform colin-to-mni.h5 \\
        --resampled colin-on-mni.nii.gz --fixed-labels mni-tissue.nii.gz --moving-labels colin-tissue.nii.gz \\
        --report quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["addRegisterParser", "registerCommand"]

_TRANSFORM_TYPES = ("translation", "rigid", "similarity", "affine", "projective", "bspline", "deformable")
_LINEAR_SUFFIXES = (".tfm", ".txt", ".mat", ".h5")
_FIELD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
_IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def addRegisterParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``register`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "register",
        help="register a moving image to a fixed image (translation to deformable)",
        description="Align MOVING with FIXED. Writes the ITK transform (resampling convention, LPS) and, if asked, "
        "the moving image resampled on the fixed grid and a JSON quality report (Dice, landmark error in mm, "
        "Jacobian, folding). bspline and deformable run rigid and affine stages first.",
    )
    parser.add_argument("fixed", metavar="FIXED", help="the image that stays (NRRD, NIfTI, MHA, PNG, DICOM folder...)")
    parser.add_argument("moving", metavar="MOVING", help="the image to align onto FIXED")
    parser.add_argument("--transform", required=True, choices=_TRANSFORM_TYPES, help="transform type")
    parser.add_argument("--metric", choices=("mse", "ncc", "mi"), help="similarity metric (default: the preset's)")
    parser.add_argument(
        "--optimizer",
        choices=("gradient-descent", "line-search", "regular-step", "lbfgsb", "powell", "amoeba", "one-plus-one"),
        help="optimiser of the linear stages (default: the preset's)",
    )
    parser.add_argument("--initialization", choices=("geometry", "moments", "none"), default="geometry")
    parser.add_argument("--no-linear-stages", action="store_true", help="bspline/deformable: skip rigid and affine")
    parser.add_argument(
        "--preset", metavar="JSON|NAME",
        help="your own chain of stages (see Resources/Presets), or a shipped preset such as deformable-lncc",
    )  # fmt: skip
    parser.add_argument("--sampling", type=float, metavar="P", help="share (0-1] of fixed voxels the metric samples")
    parser.add_argument("--fixed-mask", metavar="MASK", help="label map on the fixed grid; only non-zero voxels count")
    parser.add_argument("--moving-mask", metavar="MASK", help="label map on the moving grid")
    parser.add_argument("--initial-transform", metavar="T", help="linear ITK transform file to start from")
    parser.add_argument(
        "--output-transform", required=True, metavar="T",
        help="ITK transform file: .tfm/.txt/.mat/.h5 for linear results, .h5 or a displacement field image "
        "(.nii.gz, .nrrd, .mha) for bspline and deformable",
    )  # fmt: skip
    parser.add_argument("--resampled", metavar="OUT", help="write the moving image resampled on the fixed grid")
    parser.add_argument("--fixed-labels", metavar="L", help="segmentation (.seg.nrrd) or label map of FIXED")
    parser.add_argument("--moving-labels", metavar="L", help="segmentation or label map of MOVING, propagated")
    parser.add_argument("--fixed-landmarks", metavar="P", help="points on FIXED (.mrk.json, .fcsv, .csv), RAS mm")
    parser.add_argument("--moving-landmarks", metavar="P", help="the same points on MOVING, in the same order")
    parser.add_argument(
        "--inverse-consistency", action="store_true",
        help="also register FIXED onto MOVING and report the mean round-trip error in mm (twice the time)",
    )  # fmt: skip
    parser.add_argument("--jacobian", metavar="OUT", help="write the Jacobian determinant map on the fixed grid")
    parser.add_argument("--report", metavar="R.json", help="write the quality numbers as JSON")
    parser.set_defaults(run=registerCommand)
    return parser


def _suffix(path: str) -> str:
    name = path.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _checkArguments(args: argparse.Namespace) -> None:
    from MedAICommonLib.errors import MedAIInputError
    from MedAICommonLib.validation import checkInputFile

    checkInputFile(args.fixed, "fixed image", allowDirectory=True)
    checkInputFile(args.moving, "moving image", allowDirectory=True)
    for first, second, what in (
        (args.fixed_labels, args.moving_labels, "labels"),
        (args.fixed_landmarks, args.moving_landmarks, "landmarks"),
    ):
        if bool(first) != bool(second):
            raise MedAIInputError(f"Give both --fixed-{what} and --moving-{what}, or neither.")
    for path, what in (
        (args.fixed_mask, "fixed mask"), (args.moving_mask, "moving mask"), (args.initial_transform, "transform"),
        (args.fixed_labels, "fixed labels"), (args.moving_labels, "moving labels"), (_presetPath(args.preset), "preset"),
        (args.fixed_landmarks, "fixed landmarks"), (args.moving_landmarks, "moving landmarks"),
    ):  # fmt: skip
        if path:
            checkInputFile(path, what)
    suffix = _suffix(args.output_transform)
    nonLinear = args.transform in ("projective", "bspline", "deformable")
    allowed = (".h5", *_FIELD_SUFFIXES) if nonLinear else _LINEAR_SUFFIXES
    if suffix not in allowed:
        raise MedAIInputError(
            f"--output-transform {args.output_transform}: a {args.transform} result is written as {', '.join(allowed)}."
        )
    for path, option in ((args.resampled, "--resampled"), (args.jacobian, "--jacobian")):
        if path and _suffix(path) not in _IMAGE_SUFFIXES:
            raise MedAIInputError(f"{option} {path}: write an image ({', '.join(_IMAGE_SUFFIXES)}).")
    if args.report and _suffix(args.report) != ".json":
        raise MedAIInputError(f"--report {args.report}: the report is a .json file.")


def _presetPath(preset: str | None) -> str | None:
    """The preset as a file to check, or None when it is absent or names a shipped preset."""
    from MedAIRegistrationLib.presets import preset_names

    return None if not preset or (preset in preset_names() and not Path(preset).exists()) else preset


def _loadLabels(scene: Any, path: str | None) -> Any:
    if not path:
        return None
    from MedAICommonLib import sceneio

    if path.lower().endswith(".seg.nrrd"):
        return sceneio.loadSegmentation(scene, path)
    return sceneio.loadVolume(scene, path, labelmap=True)


def _writeTransform(transform: Any, fixedVolumeNode: Any, path: Path) -> None:
    """Write the resampling transform; a displacement field image for the field suffixes."""
    import SimpleITK as sitk

    from MedAICommonLib.volumes import sitkImageFromVolume
    from MedAIRegistrationLib.quality import displacement_field_image

    if _suffix(str(path)) in _FIELD_SUFFIXES:
        reference = sitkImageFromVolume(fixedVolumeNode)
        if transform.GetDimension() == 2:
            reference = reference[:, :, 0]
        sitk.WriteImage(displacement_field_image(transform, reference), str(path))
    else:
        sitk.WriteTransform(transform, str(path))


def registerCommand(args: argparse.Namespace) -> int:
    """Run ``medai register`` with parsed arguments; returns the exit status (0 on success).

    Raises:
        MedAIInputError: bad input; nothing is written.
        MedAICancelledError: interrupted; nothing is written.
    """
    from MedAICommonLib import sceneio
    from MedAICommonLib.sceneio import saveNode
    from MedAIRegistrationLib.logic import MedAIRegistrationLogic

    _checkArguments(args)
    scene = sceneio.createScene()
    fixed = sceneio.loadVolume(scene, args.fixed, name="fixed")
    moving = sceneio.loadVolume(scene, args.moving, name="moving")
    masks = [sceneio.loadVolume(scene, p, labelmap=True) if p else None for p in (args.fixed_mask, args.moving_mask)]
    landmarks = [sceneio.loadMarkups(scene, p) if p else None for p in (args.fixed_landmarks, args.moving_landmarks)]
    initial = sceneio.loadTransform(scene, args.initial_transform) if args.initial_transform else None
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed,
        movingVolumeNode=moving,
        transformType=args.transform,
        metric=args.metric,
        optimizer=args.optimizer,
        initialization=args.initialization,
        linearStages=not args.no_linear_stages,
        presetFile=args.preset,
        samplingPercentage=args.sampling,
        fixedMaskNode=masks[0],
        movingMaskNode=masks[1],
        initialTransformNode=initial,
        createResampledVolume=bool(args.resampled),
        createJacobianVolume=bool(args.jacobian),
        fixedLabelsNode=_loadLabels(scene, args.fixed_labels),
        movingLabelsNode=_loadLabels(scene, args.moving_labels),
        fixedLandmarksNode=landmarks[0],
        movingLandmarksNode=landmarks[1],
        inverseConsistency=args.inverse_consistency,
        progress=None,
    )
    written: list[Path] = []
    try:
        target = Path(args.output_transform)
        # Write next to the target, then rename: the file appears only when it is complete.
        handle, temporary = tempfile.mkstemp(suffix=_suffix(str(target)), dir=target.parent or ".")
        os.close(handle)
        try:
            _writeTransform(result.transform, fixed, Path(temporary))
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        written.append(target)
        if args.resampled:
            written.append(saveNode(result.resampledVolumeNode, args.resampled))
        if args.jacobian:
            written.append(saveNode(result.jacobianVolumeNode, args.jacobian))
        if args.report:
            report = {"transform": args.transform, "metric": args.metric, **result.quality}
            Path(args.report).write_text(json.dumps(report, indent=2))
            written.append(Path(args.report))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    quality = result.quality
    summary = f"registered in {quality['elapsedS']:.1f} s; folding {100 * quality['foldingFraction']:.3f} %"
    if "meanDice" in quality:
        summary += f"; mean Dice {quality['meanDice']:.3f}"
    if "meanTreMm" in quality:
        summary += f"; mean landmark error {quality['meanTreMm']:.2f} mm"
    print(summary, file=sys.stderr)
    return 0
