"""``medai demo``: what MedAI can do so far, on real sample data, in one MRML scene.

The demo is a list of steps (:data:`DEMO_STEPS`) run in order on one scene. Each step loads or
makes nodes, records checks with measured values, and renders pictures with real Slicer slice
views. At the end the scene is written as a ``.mrb`` bundle that Slicer opens, with the pictures
and a ``summary.json`` beside it. Module issues append their own steps with :func:`demoStep`::

    @demoStep("Segmentation: watershed of touching nuclei")
    def _watershed(context: DemoContext) -> None:
        ...

The foundation's steps show sample data in a scene and the geometry bridge (label map to
segmentation with names and colours; MRML <-> SimpleITK and MONAI round trips; a known rigid
transform written by the bridge, applied, hardened and resampled, with its landmark error). The
modules' steps live in ``demo_<module>.py`` files listed in :data:`MODULE_STEP_FILES`.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoCheck", "DemoContext", "DemoResult", "DemoStep", "DEMO_STEPS", "demoStep", "runDemo"]

SCENE_FILE_NAME = "MedAIDemo.mrb"
# Files whose @demoStep functions run after the foundation's steps, in this order.
MODULE_STEP_FILES = ("medai.demo_segmentation", "medai.demo_models", "medai.demo_registration")
SAMPLE_DATA = (
    "Colin27", "Colin27BrainMask", "Colin27AAL", "KmeansT1", "KmeansT1Labels", "NucleiImage2D", "NucleiMask2D",
    "HeadCT", "HeadCTBone",
)  # fmt: skip


@dataclass
class DemoCheck:
    """One measured check: what was checked, whether it passed, and the measured value."""

    name: str
    passed: bool
    detail: str


@dataclass
class DemoContext:
    """What steps share: the scene, named nodes, checks, written files and the log."""

    scene: Any
    outputDir: Path
    log: Callable[[str], None] = print
    nodes: dict[str, Any] = field(default_factory=dict)
    checks: list[DemoCheck] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str) -> bool:
        """Record a check and log it; returns ``passed``."""
        self.checks.append(DemoCheck(name, bool(passed), detail))
        self.log(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
        return bool(passed)

    def picture(self, fileName: str, backgroundVolumeNode: Any, caption: str, **options) -> Path:
        """Render slice views (see ``rendering.renderSliceViews``) into the output folder."""
        from MedAICommonLib.rendering import renderSliceViews

        path = renderSliceViews(self.scene, backgroundVolumeNode, self._newFile(fileName), caption=caption, **options)
        self.log(f"  picture {path}")
        return path

    def picture3D(self, fileName: str, segmentationNode: Any, caption: str, **options) -> Path:
        """Render a segmentation's surfaces (see ``rendering.render3DView``) into the output folder."""
        from MedAICommonLib.rendering import render3DView

        path = render3DView(self.scene, segmentationNode, self._newFile(fileName), caption=caption, **options)
        self.log(f"  picture {path}")
        return path

    def _newFile(self, fileName: str) -> Path:
        # The folder is made by whoever writes the file, once it has something to write.
        path = self.outputDir / fileName
        self.files.append(path)
        return path


@dataclass
class DemoStep:
    """A titled step of the demo; ``run`` works on the shared :class:`DemoContext`."""

    title: str
    run: Callable[[DemoContext], None]


DEMO_STEPS: list[DemoStep] = []


def demoStep(title: str) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    """Decorator that appends a function to :data:`DEMO_STEPS` under ``title``."""

    def register(function: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        DEMO_STEPS.append(DemoStep(title, function))
        return function

    return register


@dataclass
class DemoResult:
    """What a demo run produced: files, checks and seconds per step."""

    outputDir: Path
    scenePath: Path
    files: list[Path]
    checks: list[DemoCheck]
    stepSeconds: list[tuple[str, float]]
    totalSeconds: float
    loaded: list[dict[str, Any]]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def runDemo(outputDir="medai-output/demo", steps: list[DemoStep] | None = None, log=print) -> DemoResult:
    """Run the demo steps on a new scene and write the scene bundle, pictures and summary.

    Args:
        outputDir: folder for ``MedAIDemo.mrb``, the pictures and ``summary.json`` (created).
        steps: the steps to run; None: :data:`DEMO_STEPS`.
        log: where progress and the summary go, one line per call.

    Returns:
        The :class:`DemoResult`; ``passed`` is False when a check failed.

    Raises:
        MedAIInputError: the output folder is a file, or sample data is missing (before any
            file is written).
    """
    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError

    outputDir = Path(outputDir).absolute()
    if outputDir.exists() and not outputDir.is_dir():
        raise MedAIInputError(f"The demo output '{outputDir}' is a file, not a folder.")
    for moduleName in MODULE_STEP_FILES:
        importlib.import_module(moduleName)  # registers its steps once
    started = time.perf_counter()
    context = DemoContext(sceneio.createScene(), outputDir, log)
    stepSeconds = []
    for step in DEMO_STEPS if steps is None else steps:
        log(f"{step.title}")
        stepStarted = time.perf_counter()
        step.run(context)
        stepSeconds.append((step.title, time.perf_counter() - stepStarted))
    stepStarted = time.perf_counter()
    outputDir.mkdir(parents=True, exist_ok=True)
    scenePath = sceneio.saveScene(context.scene, context._newFile(SCENE_FILE_NAME))
    stepSeconds.append(("Write the scene bundle", time.perf_counter() - stepStarted))
    result = DemoResult(
        outputDir, Path(scenePath), context.files, context.checks, stepSeconds, time.perf_counter() - started,
        [_describeVolume(node) for node in context.nodes.values() if node.IsA("vtkMRMLVolumeNode")],
    )  # fmt: skip
    _writeSummary(result, context._newFile("summary.json"))
    _logSummary(result, log)
    return result


# ---------------------------------------------------------------------------------------------
# The foundation's steps


@demoStep("Load real sample data")
def _loadSampleData(context: DemoContext) -> None:
    from MedAICommonLib.sampledata import loadSampleData

    for name in SAMPLE_DATA:
        node = loadSampleData(context.scene, name)
        context.nodes[name] = node
        description = _describeVolume(node) if node.IsA("vtkMRMLVolumeNode") else None
        if description:
            context.log(f"  {name}: {description['size']} voxels at {description['spacingMm']} mm")
        else:
            count = node.GetSegmentation().GetNumberOfSegments() if node.IsA("vtkMRMLSegmentationNode") else 0
            context.log(f"  {name}: {node.GetClassName()} with {count} segment(s)")


@demoStep("Geometry bridge: label maps to segmentations with names, colours and values")
def _labelmapsToSegmentations(context: DemoContext) -> None:
    from MedAICommonLib.sampledata import sampleDataInfo
    from MedAICommonLib.segmentations import createSegmentationFromLabelmapVolume, labelmapFromSegmentation
    from MedAICommonLib.volumes import arrayFromVolume

    for labelName, imageName in (("KmeansT1Labels", "KmeansT1"), ("NucleiMask2D", "NucleiImage2D")):
        labelmapNode = context.nodes[labelName]
        segmentationNode = createSegmentationFromLabelmapVolume(labelmapNode, name=f"{labelName} segments")
        context.nodes[segmentationNode.GetName()] = segmentationNode
        labels, _, segments = labelmapFromSegmentation(segmentationNode, referenceVolumeNode=labelmapNode)
        original = arrayFromVolume(labelmapNode)
        context.check(
            f"{labelName}: label map -> segmentation -> label map is exact",
            np.array_equal(labels, original),
            f"{len(segments)} segments, {int(np.count_nonzero(labels != original))} voxels differ",
        )
        documented = {label["value"]: label for label in sampleDataInfo(labelName).get("labels", [])}
        _hideTransparentSegments(segmentationNode, documented)
        if documented:
            # Colour tables hold 8-bit colours, so a documented colour comes back within 1/255.
            kept = sum(
                segment.labelValue in documented
                and segment.name == documented[segment.labelValue]["name"]
                and np.allclose(segment.color, documented[segment.labelValue]["color"], atol=1 / 255)
                for segment in segments
            )
            context.check(
                f"{labelName}: documented names and colours kept", kept == len(segments), f"{kept}/{len(segments)}"
            )
        is2D = labelmapNode.GetImageData().GetDimensions()[2] == 1
        context.picture(
            f"{labelName.lower()}.png", context.nodes[imageName], f"{imageName} with {labelName} as a segmentation",
            segmentationNode=segmentationNode, orientations=("Axial",) if is2D else ("Axial", "Coronal", "Sagittal"),
        )  # fmt: skip


@demoStep("Geometry bridge: the AAL atlas segmentation through a label map and back")
def _atlasRoundTrip(context: DemoContext) -> None:
    from MedAICommonLib.segmentations import createSegmentationFromLabelmap, labelmapFromSegmentation

    atlas = context.nodes["Colin27AAL"]
    labels, ijkToRas, segments = labelmapFromSegmentation(atlas)
    copy = createSegmentationFromLabelmap(context.scene, labels, ijkToRas, segments, name="round trip")
    try:
        same = _segmentTable(copy) == _segmentTable(atlas)
        again, _, _ = labelmapFromSegmentation(copy)
    finally:
        context.scene.RemoveNode(copy)
    context.check(
        "Colin27AAL: segmentation -> label map -> segmentation keeps names, colours, values and voxels",
        same and np.array_equal(again, labels),
        f"{len(segments)} segments, {int(np.count_nonzero(again != labels))} voxels differ",
    )
    context.picture(
        "colin27_aal.png", context.nodes["Colin27"], "Colin27 T1 with the AAL atlas (116 regions) as a segmentation",
        segmentationNode=atlas, sliceOffsetsRas=(10.0, -15.0, -30.0),
    )  # fmt: skip
    context.picture(
        "colin27_brain.png", context.nodes["Colin27"], "Colin27 T1 with its brain mask",
        segmentationNode=context.nodes["Colin27BrainMask"],
    )  # fmt: skip


@demoStep("Geometry bridge: MRML <-> SimpleITK and MONAI round trips of Colin27")
def _roundTrips(context: DemoContext) -> None:
    from MedAICommonLib.volumes import (
        arrayFromVolume,
        createVolumeFromMetaTensor,
        createVolumeFromSitkImage,
        ijkToRasFromVolume,
        metaTensorFromVolume,
        sitkImageFromVolume,
    )

    colin = context.nodes["Colin27"]
    for bridge, toOther, back in (
        ("SimpleITK (LPS)", sitkImageFromVolume, createVolumeFromSitkImage),
        ("MONAI MetaTensor (RAS affine)", metaTensorFromVolume, createVolumeFromMetaTensor),
    ):
        copy = back(context.scene, toOther(colin), "Colin27 round trip")
        try:
            voxelsDiffer = int(np.count_nonzero(arrayFromVolume(copy) != arrayFromVolume(colin)))
            geometryMm = float(np.abs(ijkToRasFromVolume(copy) - ijkToRasFromVolume(colin)).max())
        finally:
            context.scene.RemoveNode(copy)  # the bundle keeps one Colin27
        context.check(
            f"MRML -> {bridge} -> MRML is exact",
            voxelsDiffer == 0 and geometryMm <= 1e-9,
            f"{voxelsDiffer} voxels differ, IJK-to-RAS differs by {geometryMm:.1e} mm",
        )


@demoStep("Geometry bridge: a known rigid transform from SimpleITK, applied, hardened and resampled")
def _knownRigidTransform(context: DemoContext) -> None:
    import SimpleITK as sitk
    import slicer

    from MedAICommonLib.transforms import createTransformNodeFromSitkTransform, sitkTransformFromTransformNode
    from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume

    colin = context.nodes["Colin27"]
    fixedImage = sitkImageFromVolume(colin)
    # Resampling convention (LPS): maps a fixed point to where the same anatomy lies in the moving image.
    known = sitk.Euler3DTransform()
    known.SetCenter(fixedImage.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixedImage.GetSize()]))
    known.SetRotation(*np.deg2rad([8.0, -5.0, 12.0]))
    known.SetTranslation([6.0, -4.0, 9.0])
    movingImage = sitk.Resample(fixedImage, fixedImage, known.GetInverse(), sitk.sitkLinear, 0.0)
    moving = createVolumeFromSitkImage(context.scene, movingImage, "Colin27 moved")
    context.picture(
        "rigid_before.png", colin, "Before: Colin27 (grey) and a copy moved by a known rigid transform (50% overlay)",
        foregroundVolumeNode=moving,
    )  # fmt: skip

    transformNode = createTransformNodeFromSitkTransform(context.scene, known, "Known rigid (modeling, RAS)")
    moving.SetAndObserveTransformNodeID(transformNode.GetID())
    landmarksRas = np.array([[0, 0, 0], [40, 0, 10], [-40, 10, 10], [0, 50, -10], [0, -70, 20], [20, -20, 50]], float)
    movingLandmarks = _addLandmarks(context.scene, "Moving landmarks", [_movedRas(known, p) for p in landmarksRas])
    _addLandmarks(context.scene, "Fixed landmarks", landmarksRas)
    movingLandmarks.SetAndObserveTransformNodeID(transformNode.GetID())
    slicer.vtkSlicerTransformLogic.hardenTransform(movingLandmarks)
    hardened = np.array([movingLandmarks.GetNthControlPointPosition(i) for i in range(len(landmarksRas))])
    errorMm = float(np.linalg.norm(hardened - landmarksRas, axis=1).max())
    context.check("hardened moving landmarks land on the fixed ones", errorMm < 1e-6, f"max error {errorMm:.1e} mm")

    fromNode = sitk.Resample(movingImage, fixedImage, sitkTransformFromTransformNode(transformNode), sitk.sitkLinear)
    fromKnown = sitk.Resample(movingImage, fixedImage, known, sitk.sitkLinear)
    differs = float(np.abs(sitk.GetArrayViewFromImage(fromNode) - sitk.GetArrayViewFromImage(fromKnown)).max())
    context.check(
        "resampling by the node's transform equals resampling by the known one",
        differs <= 1e-3,
        f"max difference {differs:g}",
    )
    before, after = _correlation(fixedImage, movingImage), _correlation(fixedImage, fromNode)
    context.check(
        "the moved copy, resampled back, matches Colin27", after > 0.95 and after > before,
        f"correlation {before:.3f} before, {after:.3f} after (two linear interpolations)",
    )  # fmt: skip
    context.nodes["Colin27 resampled back"] = createVolumeFromSitkImage(
        context.scene, fromNode, "Colin27 resampled back"
    )
    context.picture(
        "rigid_after.png", colin, "After: the moved copy under the transform node from SimpleITK (50% overlay)",
        foregroundVolumeNode=moving,
    )  # fmt: skip


@demoStep("Head CT with its bone mask, in slices and in 3D")
def _headCt(context: DemoContext) -> None:
    bone = context.nodes["HeadCTBone"]
    options = {"segmentationNode": bone} if bone.IsA("vtkMRMLSegmentationNode") else {"foregroundVolumeNode": bone}
    context.picture("head_ct_bone.png", context.nodes["HeadCT"], "Head CT (InVesalius) with its bone mask", **options)
    if bone.IsA("vtkMRMLSegmentationNode"):
        context.picture3D("head_ct_bone_3d.png", bone, "Bone surface of the head CT (the head rest is bone-dense too)")


# ---------------------------------------------------------------------------------------------
# Helpers


def _movedRas(transform, pointRas) -> np.ndarray:
    """Where a fixed RAS point lies in the moving image, by a resampling transform in LPS."""
    from MedAICommonLib.geometry import lpsToRas, rasToLps

    return lpsToRas(transform.TransformPoint(rasToLps(pointRas).tolist()))


def _addLandmarks(scene, name: str, pointsRas) -> Any:
    markupsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for index, point in enumerate(pointsRas):
        markupsNode.AddControlPoint(*map(float, point), f"{name.split()[0][0]}{index + 1}")
    return markupsNode


def _hideTransparentSegments(segmentationNode, labels: dict[int, dict]) -> None:
    """Hide segments whose documented colour is fully transparent (such as the air around a head)."""
    segmentation = segmentationNode.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        if labels.get(segment.GetLabelValue(), {}).get("opacity", 1.0) == 0.0:
            segmentationNode.GetDisplayNode().SetSegmentVisibility(segmentation.GetNthSegmentID(index), False)


def _segmentTable(segmentationNode) -> list[tuple[str, tuple[float, ...], int]]:
    segmentation = segmentationNode.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    return [(s.GetName(), tuple(round(c, 6) for c in s.GetColor()), s.GetLabelValue()) for s in segments]


def _correlation(imageA, imageB) -> float:
    """Pearson correlation of the voxels of two images on the same grid."""
    import SimpleITK as sitk

    return float(
        np.corrcoef(sitk.GetArrayViewFromImage(imageA).ravel(), sitk.GetArrayViewFromImage(imageB).ravel())[0, 1]
    )


def _describeVolume(node) -> dict[str, Any]:
    image = node.GetImageData()
    return {
        "name": node.GetName(),
        "class": node.GetClassName(),
        "size": "x".join(str(n) for n in image.GetDimensions()) if image is not None else "-",
        "spacingMm": "x".join(f"{value:g}" for value in node.GetSpacing()),
    }


def _writeSummary(result: DemoResult, path: Path) -> None:
    summary = {
        "passed": result.passed,
        "scene": str(result.scenePath),
        "files": [str(file) for file in result.files],
        "loaded": result.loaded,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.checks],
        "seconds": {title: round(seconds, 2) for title, seconds in result.stepSeconds},
        "totalSeconds": round(result.totalSeconds, 2),
    }
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _logSummary(result: DemoResult, log) -> None:
    passedCount = sum(check.passed for check in result.checks)
    log("")
    log(f"MedAI demo: {passedCount}/{len(result.checks)} checks passed in {result.totalSeconds:.1f} s")
    for item in result.loaded:
        log(f"  loaded  {item['name']:<32} {item['size']:>13} voxels  {item['spacingMm']} mm")
    for check in result.checks:
        log(f"  {'PASS' if check.passed else 'FAIL'}    {check.name}: {check.detail}")
    for title, seconds in result.stepSeconds:
        log(f"  {seconds:6.1f} s  {title}")
    for path in result.files:
        log(f"  wrote   {path}")
