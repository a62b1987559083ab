"""Writing a prompted result into a segment, on the input volume's voxel grid.

A new segmentation node lies under the input volume's parent transform; an existing one keeps its
own, and the result is mapped into its coordinates. In an existing segment only the slab of
prompted slices is replaced, so segmenting slice after slice builds up one object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import linearTransformToWorld
from MedAICommonLib.segmentations import SegmentInfo, _ensureConverterRules, createSegmentationFromLabelmap
from MedAICommonLib.volumes import ijkToRasFromVolume, setVolumeIjkToRas, updateVolumeFromArray

from .logic import localIjkToRas

__all__ = ["PROMPTED_SEGMENT", "writeMaskToSegment"]

PROMPTED_SEGMENT = SegmentInfo("Prompted object", (0.95, 0.55, 0.1), 1)
"""Name and colour (RGB 0-1) of a segment created for a prompted result."""


def _storedSlab(volume: Any, axis: int, slab: tuple[int, int]) -> tuple[int, int, int]:
    """The stored array axis and index range (inclusive) of a canonical slice range."""
    storedAxis = volume.order[axis]
    count = volume.voxels.shape[axis]
    low, high = slab
    if axis in volume.flipped:
        low, high = count - 1 - high, count - 1 - low
    return storedAxis, low, high


def _orientedImage(mask: np.ndarray, ijkToRas: np.ndarray) -> Any:
    import slicer

    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()  # never enters the scene
    setVolumeIjkToRas(labelmapNode, ijkToRas)
    updateVolumeFromArray(labelmapNode, np.ascontiguousarray(mask, dtype=np.uint8))
    return slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmapNode)


def _newSegmentation(volumeNode: Any, storedMask: np.ndarray) -> tuple[Any, str]:
    scene = volumeNode.GetScene()
    name = f"{volumeNode.GetName()} prompted"
    segmentationNode = createSegmentationFromLabelmap(
        scene, storedMask, localIjkToRas(volumeNode), [PROMPTED_SEGMENT], name=name
    )
    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    return segmentationNode, segmentationNode.GetSegmentation().GetNthSegmentID(0)


def writeMaskToSegment(
    volumeNode: Any,
    volume: Any,
    canonicalMask: np.ndarray,
    axis: int,
    slab: tuple[int, int],
    segmentationNode: Any = None,
    segmentId: str | None = None,
) -> tuple[Any, str, bool]:
    """Write a mask (canonical order) into a segment.

    Args:
        volumeNode: the input volume, whose grid the mask lies on.
        volume: its ``promptslices.CanonicalVolume``.
        canonicalMask: uint8 0/1 in canonical (S, A, R) order.
        axis: canonical slice axis; slab: inclusive canonical slice range to replace.
        segmentationNode: an existing segmentation, or None for a new one.
        segmentId: an existing segment to replace within the slab, or None for a new segment.

    Returns:
        ``(segmentationNode, segmentId, createdNode)``.

    Raises:
        MedAIInputError: the segmentation is under a non-linear transform (checked first).
    """
    import slicer

    storedMask = volume.stored(canonicalMask)
    if segmentationNode is None:
        node, newId = _newSegmentation(volumeNode, storedMask)
        return node, newId, True
    segmentationToWorld = linearTransformToWorld(segmentationNode, "Segmentation")
    storedAxis, low, high = _storedSlab(volume, axis, slab)
    crop = np.take(storedMask, np.arange(low, high + 1), axis=storedAxis)
    ijkToRas = np.linalg.inv(segmentationToWorld) @ ijkToRasFromVolume(volumeNode)
    offset = np.zeros(4)
    offset[2 - storedAxis] = low  # KJI axis 0 is IJK column 2
    ijkToRas[:3, 3] = (ijkToRas @ np.r_[offset[:3], 1.0])[:3]
    segmentation = segmentationNode.GetSegmentation()
    converter = slicer.vtkSegmentationConverter
    if not segmentation.GetConversionParameter(converter.GetReferenceImageGeometryParameterName()):
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    created = segmentId is None
    if created:
        _ensureConverterRules()  # plain Python registers them only with the first import of a labelmap
        segmentId = segmentation.AddEmptySegment("", PROMPTED_SEGMENT.name, list(PROMPTED_SEGMENT.color))
    image = _orientedImage(crop, ijkToRas)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(image, segmentationNode, segmentId, logic.MODE_REPLACE, image.GetExtent()):
        if created:
            segmentation.RemoveSegment(segmentId)
        raise MedAIInputError(f"The result could not be written into segment '{segmentId}'.")
    return segmentationNode, segmentId, False
