"""The watershed's preview: the foreground and the seeds that a run would flood, before any flooding.

:meth:`WatershedPreviewLogic.prepareWatershedPreview` reads and checks the same inputs as
``prepareWatershed`` and returns a :class:`WatershedPreviewJob` with the same three steps
(constructor on the main thread, :meth:`~WatershedPreviewJob.compute` on numpy arrays in any
thread, :meth:`~WatershedPreviewJob.createNodes` on the main thread). Its compute runs
:func:`.watershed.watershed_seeds`, the first half of the very code a run executes, in the same
canonical axis order, so the preview shows exactly what Apply would split. The preview is a
segmentation on the input's grid, under the input's parent transform: a semi-transparent
"Foreground" segment, an opaque "Seeds" segment (overlapping it, in a separate layer) and, when
a background seed is given, a "Background seeds" segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import ProgressCallback
from MedAICommonLib.sceneio import removeNodes
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap

from . import watershed
from .canonicalgrid import localIjkToRas
from .watershedlogic import INPUT_ARGUMENTS, WatershedJob, watershedSettings

__all__ = ["WatershedPreview", "WatershedPreviewJob", "WatershedPreviewLogic", "PREVIEW_SEGMENTS"]

# Segment name, colour (RGB 0-1) and 2D fill opacity of each part of the preview.
PREVIEW_SEGMENTS = {
    "foreground": ("Foreground", (0.95, 0.8, 0.2), 0.35),
    "seeds": ("Seeds", (0.9, 0.1, 0.1), 1.0),
    "background": ("Background seeds", (0.2, 0.4, 1.0), 1.0),
}


@dataclass
class WatershedPreview:
    """What :meth:`WatershedPreviewLogic.runWatershedPreview` made.

    Attributes:
        previewNode: the ``vtkMRMLSegmentationNode`` holding the preview segments.
        seedCount: number of object seeds; a run with the same settings finds this many objects.
        objectRadiusMm: the estimated radius of a typical object, mm.
        minSeedDistanceMm: the seed distance used (None with manual seeds or h-maxima), mm.
        threshold: the intensity threshold used (the background floor for ``"adaptive"``); None with a mask.
        segmentIds: segment ID of each part ("foreground", "seeds", and "background" with a background seed).
    """

    previewNode: Any
    seedCount: int
    objectRadiusMm: float
    minSeedDistanceMm: float | None
    threshold: float | None
    segmentIds: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "seedCount": self.seedCount,
            "objectRadiusMm": self.objectRadiusMm,
            "minSeedDistanceMm": self.minSeedDistanceMm,
            "threshold": self.threshold,
        }


class WatershedPreviewJob(WatershedJob):
    """One preview in the three steps of :class:`~.watershedlogic.WatershedJob` (same inputs, same checks)."""

    def __init__(
        self, inputVolumeNode: Any, settings: watershed.WatershedSettings, previewNode: Any = None,
        previewName: str | None = None, **inputs: Any,
    ) -> None:  # fmt: skip
        if previewNode is not None and not previewNode.IsA("vtkMRMLSegmentationNode"):
            raise MedAIInputError(f"The preview must be a segmentation node, got {previewNode.GetClassName()}.")
        super().__init__(inputVolumeNode, settings, **inputs)
        self.previewNode = previewNode
        self.previewName = previewName or f"{inputVolumeNode.GetName()} watershed preview"

    def compute(self, progress: ProgressCallback | None = None, cancelToken: Any = None) -> watershed.WatershedSeeds:
        """Find the foreground and the seeds (numpy only; safe in a worker thread)."""
        result, back = self._computeCanonical(watershed.watershed_seeds, progress, cancelToken)
        result.foreground, result.seeds = back(result.foreground), back(result.seeds)
        result._smoothed = result._distance = None  # canonical-order arrays nobody floods from here
        self.result = result
        return result

    def createNodes(self, cancelToken: Any = None) -> WatershedPreview:
        """Write the preview into the given node, or a new one, in the input's scene (after :meth:`compute`)."""
        if self.result is None:
            raise RuntimeError("WatershedPreviewJob.createNodes() needs compute() first.")
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        seeds, background = self.result.seeds, self.result.background_label
        masks = {"foreground": self.result.foreground, "seeds": (seeds > 0) & (seeds != (background or 0))}
        if background is not None:
            masks["background"] = seeds == background
        scene, created = self.inputVolumeNode.GetScene(), []
        try:
            node = self.previewNode
            if node is None:
                node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(self.previewName))
                created.append(node)
            segmentIds = self._fill(node, masks)
        except Exception:
            removeNodes(scene, created)
            raise
        return WatershedPreview(
            previewNode=node,
            seedCount=self.result.seed_count,
            objectRadiusMm=self.result.object_radius_mm,
            minSeedDistanceMm=self.result.min_seed_distance_mm,
            threshold=self.result.threshold,
            segmentIds=segmentIds,
        )

    def _fill(self, node: Any, masks: dict[str, np.ndarray]) -> dict[str, str]:
        """Replace the node's segments by one segment per mask, each in its own layer (they overlap)."""
        import slicer

        # Built in a private scene, then copied: the user's scene never sees a temporary node.
        scratch, ijkToRas, made = slicer.vtkMRMLScene(), localIjkToRas(self.inputVolumeNode), None
        try:
            for part, mask in masks.items():
                name, color, _ = PREVIEW_SEGMENTS[part]
                segment = [SegmentInfo(name, color, 1)]
                layer = createSegmentationFromLabelmap(scratch, mask.astype(np.uint8), ijkToRas, segment, name)
                if made is None:
                    made = layer
                else:
                    source = layer.GetSegmentation()
                    made.GetSegmentation().CopySegmentFromSegmentation(source, source.GetNthSegmentID(0))
            node.GetSegmentation().DeepCopy(made.GetSegmentation())
        finally:
            scratch.Clear(1)
        node.SetAndObserveTransformNodeID(self.inputVolumeNode.GetTransformNodeID())
        node.CreateDefaultDisplayNodes()
        segmentation, display = node.GetSegmentation(), node.GetDisplayNode()
        display.SetVisibility(True)  # a reused preview may have been hidden
        segmentIds = {part: segmentation.GetNthSegmentID(n) for n, part in enumerate(masks)}
        for part, segmentId in segmentIds.items():
            display.SetSegmentOpacity2DFill(segmentId, PREVIEW_SEGMENTS[part][2])
        return segmentIds


class WatershedPreviewLogic:
    """The preview entry points of ``MedAISegmentationLogic`` (a mixin without state)."""

    def prepareWatershedPreview(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        previewNode: Any = None,
        previewName: str | None = None,
        **inputs: Any,
    ) -> WatershedPreviewJob:
        """Check the inputs and read the voxels: the first step of :meth:`runWatershedPreview`, same arguments."""
        unknown = sorted(set(inputs) - set(INPUT_ARGUMENTS))
        if unknown:
            raise TypeError(f"prepareWatershedPreview() got unexpected keyword arguments {unknown}")
        settings = watershedSettings(threshold, smoothingMm, minSeedDistanceMm, seedDepthMm, landscape, darkObjects)
        return WatershedPreviewJob(inputVolumeNode, settings, previewNode, previewName, **inputs)

    def runWatershedPreview(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        previewNode: Any = None,
        previewName: str | None = None,
        progress: ProgressCallback | None = None,
        cancelToken: Any = None,
        **inputs: Any,
    ) -> WatershedPreview:
        """Show what ``runWatershed`` with these settings would flood: its foreground and its seeds.

        Args:
            inputVolumeNode, threshold, smoothingMm, minSeedDistanceMm, seedDepthMm, landscape,
                darkObjects: as in ``runWatershed`` (mm, image units).
            previewNode: a segmentation node to overwrite (its segments are replaced); None: a new one.
            previewName: name of the new node; None: ``"<input> watershed preview"``.
            progress: ``progress(fraction, message)``.
            cancelToken: ``MedAICommonLib.jobs.CancelToken``.
            **inputs: the foreground and seed sources of ``runWatershed`` (``foregroundSegmentationNode``,
                ``foregroundSegmentId``, ``seedSegmentationNode``, ``seedMarkupsNode`` (RAS),
                ``backgroundSegmentId``, ``backgroundMarkupsNode``).

        Returns:
            :class:`WatershedPreview`; its segmentation lies on the input's grid, under its parent transform.

        Raises:
            MedAIInputError: a bad input, as for ``runWatershed``; nothing is added or changed then.
            MedAICancelledError: when cancelled; nothing is added or changed then.
        """
        parameters = dict(locals())
        for name in ("self", "progress", "cancelToken", "inputs"):
            parameters.pop(name)
        job = self.prepareWatershedPreview(**parameters, **inputs)
        job.compute(progress, cancelToken)
        return job.createNodes(cancelToken)
