"""Atlas-based segmentation with MedAI Registration: Colin27 (misaligned) onto MNI152, the protocol of issue 6.

Protocol:

- moving: ``Colin27`` (T1 with its skull) under a known rigid misalignment (10 degrees about two axes,
  10 mm), set as a parent transform (no interpolation of the input);
- its tissue classes: three-class Otsu of Colin27 inside its brain (``Colin27Brain`` > 0), labels
  1 (CSF), 2 (grey matter), 3 (white matter), under the same misalignment;
- fixed: ``MNI152T1`` (skull removed), fixed mask = MNI152T1 > 0; its reference tissue: grey
  matter where ``MNI152GreyMatter`` > 0.5, white matter where ``MNI152WhiteMatter`` > 0.5;
- ``MedAIRegistrationLogic().registerVolumes(..., transformType="deformable")``, end to end (the
  preset's rigid and affine stages first, then diffeomorphic demons), timed wall-clock;
- grey- and white-matter Dice of the propagated Colin27 classes against MNI152's.

Both images are put on a grid of ``--spacing`` mm (1 mm by default, their own resolution; 2 mm for the
issue's coarser reference numbers); resampling is not timed. Targets of issue 6: GM Dice >= 0.80,
WM >= 0.84, <= 60 s on 2 cores.

Usage::

    python benchmarks/bench_registration.py [--spacing 1] [--transform deformable] [--metric mi]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import SimpleITK as sitk

from MedAICommonLib import sceneio
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.transforms import createTransformNodeFromSitkTransform
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume
from MedAIRegistrationLib.logic import MedAIRegistrationLogic


def resampledTo(image: sitk.Image, spacingMm: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """The image on a grid of ``spacingMm`` covering the same box (Gaussian anti-aliasing for intensities)."""
    size = [max(1, round(n * s / spacingMm)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    if interpolator != sitk.sitkNearestNeighbor and spacingMm > min(image.GetSpacing()):
        image = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), spacingMm / 2.0)
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interpolator,
        image.GetOrigin(),
        [spacingMm] * 3,
        image.GetDirection(),
        0,
        image.GetPixelID(),
    )


def otsuTissue(image: sitk.Image, brain: sitk.Image) -> sitk.Image:
    """Three-class Otsu over the brain voxels only: 1 CSF, 2 grey matter, 3 white matter, 0 outside."""
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(brain) > 0].astype(np.float32)
    otsu = sitk.OtsuMultipleThresholdsImageFilter()
    otsu.SetNumberOfThresholds(2)
    otsu.SetNumberOfHistogramBins(128)
    otsu.Execute(sitk.GetImageFromArray(values.reshape(1, 1, -1)))
    low, high = otsu.GetThresholds()
    classes = 1 + sitk.Cast(image > low, sitk.sitkUInt8) + sitk.Cast(image > high, sitk.sitkUInt8)
    return sitk.Mask(classes, brain)


def misalignment() -> sitk.Transform:
    """The known rigid motion (resampling convention, LPS): 10 degrees about x and y, 10 mm."""
    motion = sitk.Euler3DTransform()
    motion.SetRotation(np.radians(10.0), np.radians(10.0), 0.0)
    motion.SetTranslation((10.0, 0.0, 0.0))
    return motion


def buildCase(scene, spacingMm: float) -> dict:
    """Load and prepare the fixed and moving volumes, masks and tissue labels as nodes."""
    fixedImage = resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152T1")), spacingMm)
    grey = resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152GreyMatter")), spacingMm)
    white = resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152WhiteMatter")), spacingMm)
    fixedTissue = sitk.Cast(grey > 127.5, sitk.sitkUInt8) * 2
    fixedTissue = sitk.Mask(fixedTissue, white <= 127.5, outsideValue=3)
    colin = sitkImageFromVolume(loadSampleData(scene, "Colin27"))
    colinBrain = sitkImageFromVolume(loadSampleData(scene, "Colin27Brain")) > 0
    tissue = otsuTissue(colin, colinBrain)
    movingImage = resampledTo(colin, spacingMm)
    movingTissue = resampledTo(tissue, spacingMm, sitk.sitkNearestNeighbor)
    nodes = {
        "fixed": createVolumeFromSitkImage(scene, fixedImage, "MNI152T1"),
        "fixedMask": createVolumeFromSitkImage(scene, sitk.Cast(fixedImage > 0, sitk.sitkUInt8), "MNI mask", True),
        "fixedTissue": createVolumeFromSitkImage(scene, fixedTissue, "MNI tissue", True),
        "moving": createVolumeFromSitkImage(scene, movingImage, "Colin27"),
        "movingTissue": createVolumeFromSitkImage(scene, movingTissue, "Colin27 tissue", True),
    }
    # The misalignment moves Colin27 in world space; its labels move with it.
    motionNode = createTransformNodeFromSitkTransform(scene, misalignment(), "misalignment")
    for key in ("moving", "movingTissue"):
        nodes[key].SetAndObserveTransformNodeID(motionNode.GetID())
    return nodes


def setThreads(threads: int | None) -> None:
    """Use ``threads`` threads in SimpleITK, ITK and torch (one thread each keeps a shared machine fair)."""
    if not threads:
        return
    import os

    import torch

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=1.0, help="grid spacing of both images, mm")
    parser.add_argument("--transform", default="deformable", help="transform type (a preset name)")
    parser.add_argument("--metric", default=None, help="metric of the linear stages (default: the preset's)")
    parser.add_argument("--preset", default=None, help="a preset file to use instead of the shipped one")
    parser.add_argument("--threads", type=int, default=None, help="threads of SimpleITK and torch (default: all)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    setThreads(args.threads)
    scene = sceneio.createScene()
    nodes = buildCase(scene, args.spacing)
    logic = MedAIRegistrationLogic()
    started = time.perf_counter()
    result = logic.registerVolumes(
        fixedVolumeNode=nodes["fixed"],
        movingVolumeNode=nodes["moving"],
        transformType=args.transform,
        metric=args.metric,
        presetFile=args.preset,
        fixedMaskNode=nodes["fixedMask"],
        fixedLabelsNode=nodes["fixedTissue"],
        movingLabelsNode=nodes["movingTissue"],
    )
    seconds = time.perf_counter() - started
    dice = result.quality["diceByLabel"]
    report = {
        "spacingMm": args.spacing,
        "transform": args.transform,
        "seconds": round(seconds, 1),
        "greyMatterDice": round(dice["2"], 3),
        "whiteMatterDice": round(dice["3"], 3),
        "foldingFraction": result.quality["foldingFraction"],
        "jacobianMin": round(result.quality["jacobianMin"], 3),
    }
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
