"""The watershed on MRML nodes: checking and reading the inputs, computing, then adding the outputs.

:meth:`WatershedLogic.runWatershed` does it all in one call; :meth:`WatershedLogic.prepareWatershed`
returns a :class:`WatershedJob` whose three steps the desktop spreads over the main thread and a
worker thread. Geometry: seed points are world RAS mm (parent transforms applied); before computing,
the voxels are put in the canonical axis order of :mod:`.canonicalgrid`, so a volume stored with
permuted, flipped or oblique axes gives the same objects in physical space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import volumeGeometry
from MedAICommonLib.jobs import ProgressCallback
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from . import watershed
from .canonicalgrid import canonicalAxes, fromCanonical, toCanonical
from .watershedoutput import WatershedNodes, WatershedOutput

__all__ = [
    "WatershedLogic",
    "WatershedJob",
    "OUTPUT_TYPES",
    "INPUT_ARGUMENTS",
    "watershedSettings",
    "watershedArgumentsFromPanel",
]

OUTPUT_TYPES = ("segmentation", "labelmap")
# Keyword arguments of prepareWatershed that say where the foreground and the seeds come from.
INPUT_ARGUMENTS = (
    "foregroundSegmentationNode", "foregroundSegmentId", "seedSegmentationNode", "seedMarkupsNode",
    "backgroundSegmentId", "backgroundMarkupsNode",
)  # fmt: skip
OUTPUT_ARGUMENTS = ("outputType", "outputNode", "outputName", "createTable", "tableNode")


def watershedSettings(
    threshold: str | float = "adaptive",
    smoothingMm: float | None = None,
    minSeedDistanceMm: float | None = None,
    seedDepthMm: float | None = None,
    landscape: str = "distance",
    darkObjects: bool = False,
) -> watershed.WatershedSettings:
    """The pipeline's settings from the keyword arguments of :meth:`WatershedLogic.runWatershed` (same meaning)."""
    return watershed.WatershedSettings(
        threshold=threshold,
        smoothing_mm=smoothingMm,
        min_seed_distance_mm=minSeedDistanceMm,
        seed_depth_mm=seedDepthMm,
        landscape=landscape,
        dark_objects=darkObjects,
    )


def _segmentIdIn(segmentationNode: Any, segmentId: str | None) -> str | None:
    """``segmentId`` if ``segmentationNode`` has it; None (all segments, or no background) otherwise."""
    if segmentationNode is None or not segmentId or not segmentationNode.GetSegmentation().GetSegment(segmentId):
        return None
    return segmentId


def watershedArgumentsFromPanel(
    panel: Any, foregroundSegmentId: str | None = None, backgroundSegmentId: str | None = None, preview: bool = False
) -> dict[str, Any]:
    """The keyword arguments of ``prepareWatershed`` (or ``prepareWatershedPreview``) that the desktop panel gives.

    Args:
        panel: the MedAISegmentation parameter node, or any object with its fields (``inputVolume``,
            ``thresholdMethod``, ``threshold``, ``autoSmoothing``, ``smoothingMm``, ...); 0 mm means automatic/off.
        foregroundSegmentId, backgroundSegmentId: the segments picked in the panel; ignored when
            the chosen segmentation has no such segment.
        preview: leave out the output arguments (a preview writes only its preview node).
    """
    p = panel
    arguments = {
        "inputVolumeNode": p.inputVolume,
        "threshold": p.threshold if p.thresholdMethod == "value" else p.thresholdMethod,
        "smoothingMm": None if p.autoSmoothing else p.smoothingMm,
        "minSeedDistanceMm": p.minSeedDistanceMm or None,
        "seedDepthMm": p.seedDepthMm or None,
        "landscape": p.landscape,
        "darkObjects": p.darkObjects,
        "foregroundSegmentationNode": p.foregroundSegmentation,
        "foregroundSegmentId": _segmentIdIn(p.foregroundSegmentation, foregroundSegmentId),
        "seedSegmentationNode": p.seedsSegmentation,
        "seedMarkupsNode": p.seedsMarkups,
        "backgroundSegmentId": _segmentIdIn(p.seedsSegmentation, backgroundSegmentId),
        "backgroundMarkupsNode": p.backgroundMarkups,
    }
    if not preview:
        outputNode = p.outputSegmentation if p.outputType == "segmentation" else p.outputLabelMap
        arguments.update(outputType=p.outputType, outputNode=outputNode, tableNode=p.objectTable)
    return arguments


def _outputTypeOf(outputNode: Any) -> str | None:
    """The output type an existing output node asks for; None when no node is given."""
    if outputNode is None:
        return None
    if outputNode.IsA("vtkMRMLSegmentationNode"):
        return "segmentation"
    if outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
        return "labelmap"
    raise MedAIInputError(f"The output must be a segmentation or a label map node, got {outputNode.GetClassName()}.")


class WatershedJob(WatershedNodes):
    """One watershed run in three steps, so that the desktop can compute off the main thread.

    The constructor (main thread) reads and checks the nodes; :meth:`compute` works on numpy
    arrays only (any thread, touches no MRML); :meth:`createNodes` (main thread; from
    :class:`~.watershedoutput.WatershedNodes`) adds the outputs.
    """

    def __init__(self, inputVolumeNode: Any, settings: watershed.WatershedSettings, **inputs: Any) -> None:
        checkVolumeNode(inputVolumeNode, allowConstant=False)
        self.inputVolumeNode = inputVolumeNode
        self.settings = settings
        self.worldIjkToRas = ijkToRasFromVolume(inputVolumeNode)
        self.image = arrayFromVolume(inputVolumeNode)
        # KJI order; rounded to a nanometre so that a grid composed with a parent transform gives the same numbers.
        self.spacingMm = np.round(volumeGeometry(self.worldIjkToRas)[0][::-1], 6)
        self.outputNode = inputs.get("outputNode")
        self.outputType = _outputTypeOf(self.outputNode) or inputs.get("outputType", "segmentation")
        if self.outputType not in OUTPUT_TYPES:
            raise MedAIInputError(f"outputType must be one of {OUTPUT_TYPES}, got {self.outputType!r}.")
        self.outputName = inputs.get("outputName") or f"{inputVolumeNode.GetName()} objects"
        self.createTable = inputs.get("createTable", True)
        self.tableNode = inputs.get("tableNode")
        self.mask = self._foregroundMask(inputs.get("foregroundSegmentationNode"), inputs.get("foregroundSegmentId"))
        self.seeds, self.seedNames, self.backgroundLabel = self._manualSeeds(inputs)
        self.result: watershed.WatershedResult | None = None

    def _foregroundMask(self, segmentationNode: Any, segmentId: str | None) -> np.ndarray | None:
        if segmentationNode is None:
            return None
        labels, _, segments = labelmapFromSegmentation(segmentationNode, self.inputVolumeNode)
        if segmentId is None:
            return labels > 0
        index = segmentationNode.GetSegmentation().GetSegmentIndex(segmentId)
        if index < 0:
            raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{segmentId}'.")
        return labels == segments[index].labelValue

    def _manualSeeds(self, inputs: dict[str, Any]) -> tuple[np.ndarray | None, dict[int, str], int | None]:
        segmentationNode, markupsNode = inputs.get("seedSegmentationNode"), inputs.get("seedMarkupsNode")
        backgroundId, backgroundMarkups = inputs.get("backgroundSegmentId"), inputs.get("backgroundMarkupsNode")
        if segmentationNode is None and markupsNode is None:
            if backgroundId is not None or backgroundMarkups is not None:
                raise MedAIInputError("A background seed needs object seeds (a seed segmentation or seed points).")
            return None, {}, None
        seeds = np.zeros(self.image.shape, dtype=np.int32)
        names: dict[int, str] = {}
        background = None
        if segmentationNode is not None:
            labels, _, segments = labelmapFromSegmentation(segmentationNode, self.inputVolumeNode)
            for index, segment in enumerate(segments):
                if not np.any(labels == segment.labelValue):
                    raise MedAIInputError(f"Seed segment '{segment.name}' has no voxel inside the input volume.")
                seeds[labels == segment.labelValue] = segment.labelValue
                if segmentationNode.GetSegmentation().GetNthSegmentID(index) == backgroundId:
                    background = segment.labelValue
                else:
                    names[segment.labelValue] = segment.name
            if backgroundId is not None and background is None:
                raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{backgroundId}'.")
        for node, isBackground in ((markupsNode, False), (backgroundMarkups, True)):
            if node is None:
                continue
            if isBackground and background is None:
                background = int(seeds.max()) + 1
            for index in range(node.GetNumberOfControlPoints()):
                value = background if isBackground else int(seeds.max()) + 1
                seeds[self._voxelOfPoint(node, index)] = value
                if not isBackground:
                    names[value] = node.GetNthControlPointLabel(index) or f"Object {value}"
        return seeds, names, background

    def _voxelOfPoint(self, markupsNode: Any, index: int) -> tuple[int, int, int]:
        ras = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, ras)
        ijk = np.linalg.solve(self.worldIjkToRas, [*ras, 1.0])[:3]
        voxel = np.round(ijk).astype(int)[::-1]
        if np.any(voxel < 0) or np.any(voxel >= self.image.shape):
            label = markupsNode.GetNthControlPointLabel(index)
            position = ", ".join(f"{c:.1f}" for c in ras)
            raise MedAIInputError(f"Seed point '{label}' at RAS ({position}) mm lies outside the input volume.")
        return tuple(voxel.tolist())

    def compute(self, progress: ProgressCallback | None = None, cancelToken: Any = None) -> watershed.WatershedResult:
        """Run the watershed on the voxels (numpy only; safe in a worker thread)."""
        result, back = self._computeCanonical(watershed.watershed_objects, progress, cancelToken)
        result.labels = back(result.labels)
        self.result = result
        return result

    def _computeCanonical(self, pipeline: Callable, progress: ProgressCallback | None, cancelToken: Any):
        """Run a :mod:`.watershed` pipeline function on the voxels in canonical axis order.

        Returns:
            (its result, a function that puts a canonical array back in the volume's KJI order).
        """
        order, flipped = canonicalAxes(self.worldIjkToRas)
        result = pipeline(
            toCanonical(self.image, order, flipped),
            self.spacingMm[list(order)],
            self.settings,
            mask=toCanonical(self.mask, order, flipped),
            markers=toCanonical(self.seeds, order, flipped),
            background_label=self.backgroundLabel,
            progress=progress,
            cancel_token=cancelToken,
        )
        return result, lambda array: fromCanonical(array, order, flipped)


class WatershedLogic:
    """The watershed entry points of ``MedAISegmentationLogic`` (a mixin without state)."""

    def prepareWatershed(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        **inputs: Any,
    ) -> WatershedJob:
        """Check the inputs and read the voxels: the first step of :meth:`runWatershed`, same arguments."""
        unknown = sorted(set(inputs) - set(INPUT_ARGUMENTS) - set(OUTPUT_ARGUMENTS))
        if unknown:
            raise TypeError(f"prepareWatershed() got unexpected keyword arguments {unknown}")
        settings = watershedSettings(threshold, smoothingMm, minSeedDistanceMm, seedDepthMm, landscape, darkObjects)
        return WatershedJob(inputVolumeNode, settings, **inputs)

    def runWatershed(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        foregroundSegmentationNode: Any = None,
        foregroundSegmentId: str | None = None,
        seedSegmentationNode: Any = None,
        seedMarkupsNode: Any = None,
        backgroundSegmentId: str | None = None,
        backgroundMarkupsNode: Any = None,
        outputType: str = "segmentation",
        outputNode: Any = None,
        outputName: str | None = None,
        createTable: bool = True,
        tableNode: Any = None,
        progress: ProgressCallback | None = None,
        cancelToken: Any = None,
    ) -> WatershedOutput:
        """Split touching objects of a 2D (one-slice) or 3D volume by a seeded watershed.

        Args:
            inputVolumeNode: scalar volume; a linear parent transform is honoured, a non-linear one refused.
            threshold: ``"adaptive"`` (default: brighter than the neighbourhood and than the
                background noise), ``"otsu"`` (global Otsu) or an intensity in image units.
            smoothingMm: Gaussian standard deviation in mm; None: one voxel; 0: none.
            minSeedDistanceMm: seeds closer than this are one object; None: the estimated object radius.
            seedDepthMm: use distance maxima at least this deep (h-maxima) as seeds instead.
            landscape: ``"distance"`` (inverted distance to the background) or ``"gradient"``.
            darkObjects: objects are darker than the background.
            foregroundSegmentationNode: a segmentation whose segment (``foregroundSegmentId``,
                None: all segments) is the foreground instead of a threshold.
            seedSegmentationNode: manual seeds, one object per segment (named after it);
                ``backgroundSegmentId`` marks the segment that seeds the background.
            seedMarkupsNode: manual seeds, one object per control point (RAS, world);
                ``backgroundMarkupsNode`` holds points that seed the background.
            outputType: ``"segmentation"`` ("Object 1", ... in distinct colours) or ``"labelmap"``.
            outputNode: an existing segmentation or label map node to overwrite (its class then
                sets the output type); None: a new node.
            outputName: name of the new node; None: ``"<input> objects"``.
            createTable: add a table of object volumes (mm3, mm2 for 2D) and centroids (RAS mm).
            tableNode: an existing ``vtkMRMLTableNode`` to overwrite with that table; None: a new one.
            progress: ``progress(fraction, message)``.
            cancelToken: ``MedAICommonLib.jobs.CancelToken``.

        Returns:
            :class:`WatershedOutput`; the output lies on the input's grid, under its parent transform.

        Raises:
            MedAIInputError: a bad input (empty, constant or NaN image, a threshold leaving
                nothing, seeds outside the image...); nothing is added to the scene then.
            MedAICancelledError: when cancelled; nothing is added to the scene then.
        """
        parameters = dict(locals())
        for name in ("self", "progress", "cancelToken"):
            parameters.pop(name)
        job = self.prepareWatershed(**parameters)
        job.compute(progress, cancelToken)
        return job.createNodes(cancelToken)
