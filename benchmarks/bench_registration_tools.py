"""MedAI Registration's deformable preset against ANTs SyN and elastix on one pair with a known answer.

The pair: ``MNI152T1`` at 2 mm (fixed) and the same image warped by a known smooth random
displacement field plus a small affine (moving). Each tool registers moving onto fixed, in one run;
for each one this prints the wall time, the mean and 95th percentile distance (mm) between its
fixed-to-moving mapping and the known one over brain voxels, the grey/white-matter Dice of MNI152's
tissue carried back from the moving image, and the share of folded brain voxels (Jacobian <= 0).

ANTs and elastix are NOT dependencies of MedAI; install them pinned into a separate folder and
put it on ``PYTHONPATH`` for this script only::

    pip install --target /tmp/benchdeps --no-deps antspyx==0.6.3 statsmodels==0.15.0 patsy==1.0.3 \\
        itk-elastix==0.25.4 itk==5.4.7 itk-core==5.4.7 itk-filtering==5.4.7 itk-io==5.4.7 \\
        itk-numerics==5.4.7 itk-registration==5.4.7 itk-segmentation==5.4.7
    PYTHONPATH=/tmp/benchdeps python benchmarks/bench_registration_tools.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_registration import resampledTo, setThreads  # noqa: E402

from MedAICommonLib import sceneio  # noqa: E402
from MedAICommonLib.sampledata import loadSampleData  # noqa: E402
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume  # noqa: E402
from MedAIRegistrationLib.logic import MedAIRegistrationLogic  # noqa: E402
from MedAIRegistrationLib.quality import (  # noqa: E402
    dice_per_label,
    displacement_field_image,
    folding_fraction,
    jacobian_determinant_image,
)


def knownCase(spacingMm: float, seed: int) -> dict:
    """Fixed MNI152 at ``spacingMm``, the known resampling transform, the moving image and tissue labels."""
    scene = sceneio.createScene()
    fixed = sitk.Cast(resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152T1")), spacingMm), sitk.sitkFloat32)
    grey = resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152GreyMatter")), spacingMm)
    white = resampledTo(sitkImageFromVolume(loadSampleData(scene, "MNI152WhiteMatter")), spacingMm)
    tissue = sitk.Mask(sitk.Cast(grey > 127.5, sitk.sitkUInt8) * 2, white <= 127.5, outsideValue=3)
    rng = np.random.default_rng(seed)
    warp = sitk.BSplineTransformInitializer(fixed, [4, 4, 4], order=3)
    warp.SetParameters(rng.normal(0.0, 2.5, warp.GetNumberOfParameters()).tolist())
    field = displacement_field_image(warp, fixed)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    affine.SetMatrix((np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))).ravel().tolist())
    affine.SetTranslation(rng.uniform(-4.0, 4.0, 3).tolist())
    truth = sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(sitk.Image(field))])
    inverseField = sitk.InvertDisplacementField(field, maximumNumberOfIterations=50)
    inverse = sitk.CompositeTransform([sitk.DisplacementFieldTransform(inverseField), affine.GetInverse()])
    moving = sitk.Resample(fixed, fixed, inverse, sitk.sitkLinear, 0.0)
    movingTissue = sitk.Resample(tissue, fixed, inverse, sitk.sitkNearestNeighbor, 0)
    return {"fixed": fixed, "moving": moving, "truth": truth, "tissue": tissue, "movingTissue": movingTissue}


def score(case: dict, transform: sitk.Transform, seconds: float, cpuSeconds: float | None = None) -> dict:
    """Point error against the known mapping, tissue Dice and folding, over the brain (fixed > 0)."""
    fixed, brain = case["fixed"], case["fixed"] > 0
    found = sitk.GetArrayFromImage(displacement_field_image(transform, fixed))
    known = sitk.GetArrayFromImage(displacement_field_image(case["truth"], fixed))
    inside = sitk.GetArrayViewFromImage(brain) > 0
    errors = np.linalg.norm(found - known, axis=-1)[inside]
    carried = sitk.Resample(case["movingTissue"], fixed, transform, sitk.sitkNearestNeighbor, 0)
    dice = dice_per_label(sitk.GetArrayFromImage(case["tissue"]), sitk.GetArrayFromImage(carried), [2, 3])
    return {
        "seconds": round(seconds, 1),
        "cpuSeconds": None if cpuSeconds is None else round(cpuSeconds, 1),
        "meanErrorMm": round(float(errors.mean()), 3),
        "p95ErrorMm": round(float(np.percentile(errors, 95)), 3),
        "greyMatterDice": round(dice[2], 3),
        "whiteMatterDice": round(dice[3], 3),
        "foldingFraction": folding_fraction(jacobian_determinant_image(transform, fixed), brain),
    }


def runMedAI(case: dict, preset: str | None = None) -> tuple[sitk.Transform, float]:
    import torch  # noqa: F401  (imported before the clock starts, as ANTs and elastix are: 2-3 s once per process)

    scene = sceneio.createScene()
    fixedNode = createVolumeFromSitkImage(scene, case["fixed"], "fixed")
    movingNode = createVolumeFromSitkImage(scene, case["moving"], "moving")
    started = time.perf_counter()
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="deformable", presetFile=preset
    )
    return result.transform, time.perf_counter() - started


def runAnts(case: dict, folder: Path) -> tuple[sitk.Transform, float, float]:
    """ANTs SyN with antspyx defaults; returns its transform, time, and its agreement with ANTs' own resampling."""
    import ants

    sitk.WriteImage(case["fixed"], str(folder / "fixed.nii.gz"))
    sitk.WriteImage(case["moving"], str(folder / "moving.nii.gz"))
    fixed, moving = ants.image_read(str(folder / "fixed.nii.gz")), ants.image_read(str(folder / "moving.nii.gz"))
    started = time.perf_counter()
    output = ants.registration(fixed, moving, type_of_transform="SyN")
    seconds = time.perf_counter() - started
    warpPath, affinePath = output["fwdtransforms"]
    warp = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(warpPath), sitk.sitkVectorFloat64))
    # ITK order: the warp (last added) acts first on a fixed point, then the affine; checked against ANTs below.
    transform = sitk.CompositeTransform([sitk.ReadTransform(affinePath), warp])
    ants.image_write(output["warpedmovout"], str(folder / "antsWarped.nii.gz"))
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "antsWarped.nii.gz")))
    ours = sitk.GetArrayFromImage(sitk.Resample(case["moving"], case["fixed"], transform, sitk.sitkLinear, 0.0))
    return transform, seconds, float(np.abs(theirs - ours).mean())


def runElastix(case: dict, folder: Path) -> tuple[sitk.Transform, float]:
    """elastix with its default rigid, affine and B-spline parameter maps."""
    import itk

    fixed = itk.imread(str(folder / "fixed.nii.gz"), itk.F)
    moving = itk.imread(str(folder / "moving.nii.gz"), itk.F)
    parameters = itk.ParameterObject.New()
    for name in ("rigid", "affine", "bspline"):
        parameters.AddParameterMap(parameters.GetDefaultParameterMap(name))
    started = time.perf_counter()
    _, result = itk.elastix_registration_method(fixed, moving, parameter_object=parameters, log_to_console=False)
    seconds = time.perf_counter() - started
    # transformix writes deformationField.nii into the working folder: keep it in the temporary one.
    here = Path.cwd()
    os.chdir(folder)
    try:
        field = itk.transformix_deformation_field(moving, result)
    finally:
        os.chdir(here)
    displacement = sitk.GetImageFromArray(np.asarray(itk.array_from_image(field), dtype=np.float64), isVector=True)
    displacement.CopyInformation(case["fixed"])
    return sitk.DisplacementFieldTransform(displacement), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=2.0, help="grid spacing of MNI152, mm")
    parser.add_argument("--seed", type=int, default=6, help="seed of the known random deformation")
    parser.add_argument("--presets", nargs="+", default=["deformable"], help="MedAI presets (names or files) to run")
    parser.add_argument("--threads", type=int, default=None, help="threads of every tool (default: all cores)")
    parser.add_argument("--skip-others", action="store_true", help="run MedAI only (no ANTs, no elastix)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    setThreads(args.threads)
    case = knownCase(args.spacing, args.seed)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    report = {"unregistered": score(case, identity, 0.0)}
    # CPU seconds of this process (every thread of SimpleITK, torch, ANTs and elastix runs in it): on a
    # shared machine they stay comparable when the wall time does not.
    for preset in args.presets:
        cpu = time.process_time()
        transform, seconds = runMedAI(case, preset)
        report[f"medai-{Path(preset).stem}"] = score(case, transform, seconds, time.process_time() - cpu)
        print(json.dumps(report), flush=True)
    if args.skip_others:
        return 0
    with tempfile.TemporaryDirectory() as folder:
        cpu = time.process_time()
        transform, seconds, mismatch = runAnts(case, Path(folder))
        cpu = time.process_time() - cpu
        report["ants-syn"] = {**score(case, transform, seconds, cpu), "resamplingMismatchWithAnts": round(mismatch, 3)}
        print(json.dumps(report), flush=True)
        cpu = time.process_time()
        transform, seconds = runElastix(case, Path(folder))
        report["elastix"] = score(case, transform, seconds, time.process_time() - cpu)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
