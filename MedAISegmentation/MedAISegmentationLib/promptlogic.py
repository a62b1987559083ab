"""Segmentation from prompts on MRML nodes: a box (ROI markup) and/or points on a slice of a volume.

Prompts are markups in world RAS mm (parent transforms applied): a ``vtkMRMLMarkupsROINode`` for the
box and a ``vtkMRMLMarkupsFiducialNode`` for points; a control point whose label starts with ``-``
is a negative point (outside the object), every other one is positive. The prompt lands on the
voxel and slice it was placed on, whatever the storage order (oblique, flipped, permuted,
anisotropic), because the slice is taken in the canonical display orientation of
:mod:`promptslices`.

The result is written on the input volume's voxel grid into a segment: a new segmentation node,
a new segment of an existing one, or an existing segment (replaced on the prompted slices only).

Example::

    result = segmentFromPrompts(volumeNode, roiNode=roi, sliceView="axial")
    print(result.segmentationNode.GetName(), result.sliceIndices)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from .promptmodels import DEFAULT_PROMPT_MODEL, load_prompt_model
from .promptoutput import writeMaskToSegment
from .promptsegment import EmbeddingCache, propagate_through_slices, segment_display_image, warm_cache
from .promptslices import (
    SLICE_AXES,
    apply_window,
    canonical_volume,
    display_coordinates,
    display_slice,
    intensity_window,
)

__all__ = ["PromptResult", "PromptPlan", "planPrompts", "segmentFromPrompts", "prepareSliceEmbeddings", "SLICE_VIEWS"]

SLICE_VIEWS = ("auto", *SLICE_AXES)
_AXIS_NAMES = {value: key for key, value in SLICE_AXES.items()}


@dataclass
class PromptResult:
    """What :func:`segmentFromPrompts` did.

    Attributes:
        segmentationNode: the segmentation that received the result (created or given).
        segmentId: the segment written.
        sliceView: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        sliceIndices: canonical indices of the slices written (S from inferior, A from posterior or
            R from left, in voxels).
        mask: the object on the input grid (stored KJI order, uint8 0/1).
        createdNode: True when the segmentation node was created by this call.
    """

    segmentationNode: Any
    segmentId: str
    sliceView: str
    sliceIndices: list[int]
    mask: np.ndarray
    createdNode: bool = False


@dataclass
class PromptPlan:
    """Prompts placed on one slice, in display pixels (see :mod:`promptslices`)."""

    volume: Any
    axis: int
    sliceIndex: int
    boxRc: np.ndarray | None
    pointsRc: np.ndarray | None
    pointLabels: np.ndarray | None
    sliceRange: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)


def _roiCornersRas(roiNode: Any) -> np.ndarray:
    center, size = np.zeros(3), np.zeros(3)
    roiNode.GetCenterWorld(center)
    roiNode.GetSizeWorld(size)
    axes = []
    for getter in (roiNode.GetXAxisWorld, roiNode.GetYAxisWorld, roiNode.GetZAxisWorld):
        axis = np.zeros(3)
        getter(axis)
        axes.append(axis)
    signs = np.array(np.meshgrid([-0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5], indexing="ij")).reshape(3, -1).T
    return center + (signs * size) @ np.array(axes)


def _pointsRas(pointsNode: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    positions, labels, names = [], [], []
    for index in range(pointsNode.GetNumberOfControlPoints()):
        position = np.zeros(3)
        pointsNode.GetNthControlPointPositionWorld(index, position)
        name = pointsNode.GetNthControlPointLabel(index) or f"point {index + 1}"
        positions.append(position)
        labels.append(0 if name.startswith("-") else 1)
        names.append(name)
    return np.array(positions).reshape(-1, 3), np.array(labels), names


def _chooseAxis(volume: Any, sliceView: str, cornerIndex: np.ndarray | None, pointIndex: np.ndarray | None) -> int:
    if sliceView not in SLICE_VIEWS:
        raise MedAIInputError(f"Slice view '{sliceView}' is not one of {', '.join(SLICE_VIEWS)}.")
    if sliceView != "auto":
        return SLICE_AXES[sliceView]
    single = [axis for axis, size in enumerate(volume.voxels.shape) if size == 1]
    if single:  # a 2D image has one slice to be on
        return single[0]
    if cornerIndex is not None:
        return int(np.argmin(np.ptp(cornerIndex, axis=0)))
    flat = [axis for axis in range(3) if np.ptp(np.round(pointIndex[:, axis])) == 0]
    return flat[0] if flat else SLICE_AXES["axial"]


def _sliceOf(volume: Any, axis: int, cornerIndex, pointIndex, pointNames) -> tuple[int, tuple[int, int]]:
    count = volume.voxels.shape[axis]
    if cornerIndex is not None:
        low, high = cornerIndex[:, axis].min(), cornerIndex[:, axis].max()
        if high < -0.5 or low > count - 0.5:
            raise MedAIInputError("The box (ROI) lies on no slice of the image.")
        index = int(np.clip(np.round((low + high) / 2), 0, count - 1))
        # Slices whose centre lies inside the ROI (the prompted slice always counts).
        first, last = int(np.clip(np.ceil(low), 0, count - 1)), int(np.clip(np.floor(high), 0, count - 1))
        sliceRange = (min(first, index), max(last, index))
    else:
        index = int(np.round(pointIndex[0, axis]))
        sliceRange = (index, index)
    if pointIndex is not None:
        for position, name in zip(pointIndex[:, axis], pointNames):
            if not -0.5 <= position <= count - 0.5:
                raise MedAIInputError(f"Point '{name}' lies on no slice of the image.")
            if int(np.round(position)) != index:
                raise MedAIInputError(f"Point '{name}' is not on the prompted {_AXIS_NAMES[axis]} slice.")
    return index, sliceRange


def _boxOnSlice(volume: Any, axis: int, cornerIndex: np.ndarray) -> np.ndarray:
    corners = display_coordinates(volume, axis, cornerIndex)
    low, high = corners.min(axis=0), corners.max(axis=0)
    sizeMm = (high - low) * np.delete(volume.spacing_mm, axis)
    if np.any(sizeMm <= 1e-6):
        raise MedAIInputError("The box (ROI) has zero size in the slice plane.")
    shape = np.array(np.delete(volume.voxels.shape, axis))
    if np.any(high < -0.5) or np.any(low > shape - 0.5):
        raise MedAIInputError("The box (ROI) lies outside the image.")
    first, last = np.ceil(low), np.floor(high)
    thin = last < first  # thinner than a pixel: the pixel under its centre
    first[thin] = last[thin] = np.round((low[thin] + high[thin]) / 2)
    return np.clip(np.array([first, last]), 0, shape - 1)


def planPrompts(volumeNode: Any, roiNode: Any = None, pointsNode: Any = None, sliceView: str = "auto") -> PromptPlan:
    """Check the prompts and place them on one slice of the volume, touching nothing.

    Args:
        volumeNode: scalar volume (a 2D image is a volume with one slice); a linear parent transform
            is honoured.
        roiNode: ``vtkMRMLMarkupsROINode`` box in world RAS mm, or None.
        pointsNode: ``vtkMRMLMarkupsFiducialNode``; labels starting with ``-`` are negative points.
        sliceView: ``"axial"``, ``"coronal"``, ``"sagittal"``, or ``"auto"`` (the ROI's thinnest axis in
            voxels; for a 2D image, its plane; for points alone, the plane they share, axial first).

    Raises:
        MedAIInputError: no prompt, a box outside the image or of zero size, points on no slice or on
            another slice than the box.
    """
    checkVolumeNode(volumeNode, ndims=(3,), allowConstant=False)
    hasPoints = pointsNode is not None and pointsNode.GetNumberOfControlPoints() > 0
    if roiNode is None and not hasPoints:
        raise MedAIInputError("Give a box (ROI) or at least one point as a prompt.")
    volume = canonical_volume(arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode))
    cornerIndex = volume.canonical_index(_roiCornersRas(roiNode)) if roiNode is not None else None
    pointIndex = pointLabels = names = None
    if hasPoints:
        pointsRas, pointLabels, names = _pointsRas(pointsNode)
        pointIndex = volume.canonical_index(pointsRas)
    axis = _chooseAxis(volume, sliceView, cornerIndex, pointIndex)
    index, sliceRange = _sliceOf(volume, axis, cornerIndex, pointIndex, names)
    boxRc = _boxOnSlice(volume, axis, cornerIndex) if cornerIndex is not None else None
    pointsRc = display_coordinates(volume, axis, pointIndex) if hasPoints else None
    return PromptPlan(volume, axis, index, boxRc, pointsRc, pointLabels, sliceRange)


def segmentFromPrompts(
    volumeNode: Any,
    roiNode: Any = None,
    pointsNode: Any = None,
    segmentationNode: Any = None,
    segmentId: str | None = None,
    propagate: bool = False,
    sliceView: str = "auto",
    model: str = DEFAULT_PROMPT_MODEL,
    device: str = "cpu",
    window: tuple[float, float] | None = None,
    cache: EmbeddingCache | None = None,
    augment: bool = True,
    augmentPropagation: bool = False,
    progress: Callable[[float, str], None] | None = None,
    cancelToken: Any = None,
) -> PromptResult:
    """Segment the object a box and/or points point at, on one slice or propagated through the ROI.

    Args:
        volumeNode, roiNode, pointsNode, sliceView: see :func:`planPrompts`.
        segmentationNode: where the result goes; None: a new segmentation node.
        segmentId: the segment to replace on the prompted slices; None: a new segment.
        propagate: also segment the neighbouring slices, each prompted by the box of the previous
            slice's mask, within the ROI's extent along the slice axis, until the object ends.
        model: registry id or LiteMedSAM-architecture checkpoint path.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        window: ``(low, high)`` intensities mapped to 0-1 (a CT window in HU); None: 0.5th-99.5th
            percentiles of the volume.
        cache: embedding cache (default: the process-wide one).
        augment: average over the eight flips and rotations of the prompted slice (8 embeddings,
            cached; the result no longer depends on the in-plane orientation the model prefers).
        augmentPropagation: the same on every propagated slice (8 times slower).
        progress: ``progress(fraction, message)``; cancelToken: a ``CancelToken``.

    Returns:
        A :class:`PromptResult`.

    Raises:
        MedAIInputError: bad prompts or inputs, missing or corrupt weights, unknown segment; the
            scene is left as it was.
        MedAICancelledError: cancelled (the scene is left as it was).
    """
    plan = planPrompts(volumeNode, roiNode, pointsNode, sliceView)
    if segmentationNode is not None and segmentId and segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
        raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{segmentId}'.")
    if propagate and plan.boxRc is None:
        raise MedAIInputError("Propagation through slices needs a box (ROI) prompt.")
    promptModel = load_prompt_model(model, device)
    volume = plan.volume
    windowRange = intensity_window(volume.voxels, window)

    def maskOn(index: int, boxRc, pointsRc=None, pointLabels=None, augment: bool = augment) -> np.ndarray:
        image, spacing = display_slice(volume, plan.axis, index)
        probability = segment_display_image(
            promptModel, apply_window(image, windowRange), spacing, boxRc, pointsRc, pointLabels, cache, augment
        )
        return probability > 0.5

    if progress:
        progress(0.0, "Segmenting the prompted slice")
    startMask = maskOn(plan.sliceIndex, plan.boxRc, plan.pointsRc, plan.pointLabels)
    masks = {plan.sliceIndex: startMask}
    if propagate:
        check = cancelToken.raiseIfCancelled if cancelToken is not None else None
        first, last = plan.sliceRange
        masks = propagate_through_slices(
            lambda index, box: maskOn(index, box, augment=augmentPropagation),
            plan.sliceIndex,
            startMask,
            first,
            last,
            check,
            progress,
        )
    if cancelToken is not None:
        cancelToken.raiseIfCancelled()
    canonical = np.zeros(volume.voxels.shape, dtype=np.uint8)
    for index, mask in masks.items():
        np.moveaxis(canonical, plan.axis, 0)[index] = mask[::-1, ::-1]
    written = sorted(masks) if propagate else [plan.sliceIndex]
    slab = (min(written), max(written)) if not propagate else plan.sliceRange
    segmentationNode, segmentId, created = writeMaskToSegment(
        volumeNode, volume, canonical, plan.axis, slab, segmentationNode, segmentId
    )
    if progress:
        progress(1.0, "Done")
    name = _AXIS_NAMES[plan.axis]
    return PromptResult(segmentationNode, segmentId, name, written, volume.stored(canonical), created)


def prepareSliceEmbeddings(
    volumeNode: Any,
    positionRas,
    sliceView: str = "axial",
    model: str = DEFAULT_PROMPT_MODEL,
    device: str = "cpu",
    window: tuple[float, float] | None = None,
    augment: bool = True,
    cache: EmbeddingCache | None = None,
) -> int:
    """Compute and cache the embeddings of the slice through a point, before any prompt is placed.

    The desktop module calls it from a background thread when a slice is shown; later prompts on
    that slice (boxes larger than the crop size) then only run the fast decoder. Nothing in the
    scene changes.

    Args:
        volumeNode: the volume shown; positionRas: a world RAS point (mm) on the slice, such as
            the slice view's centre; sliceView: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        model, device, window, augment, cache: as in :func:`segmentFromPrompts`.

    Returns:
        How many embeddings were computed (0 when all were cached).

    Raises:
        MedAIInputError: the point lies on no slice of the volume, or bad model or window.
    """
    import slicer

    pointNode = slicer.vtkMRMLMarkupsFiducialNode()  # never enters the scene
    pointNode.AddControlPointWorld(*[float(v) for v in positionRas])
    pointNode.SetNthControlPointLabel(0, "slice position")
    plan = planPrompts(volumeNode, pointsNode=pointNode, sliceView=sliceView)
    image, spacing = display_slice(plan.volume, plan.axis, plan.sliceIndex)
    windowRange = intensity_window(plan.volume.voxels, window)
    return warm_cache(load_prompt_model(model, device), apply_window(image, windowRange), spacing, augment, cache)
