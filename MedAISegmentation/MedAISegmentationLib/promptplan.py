"""Placing prompts on one slice: a box (ROI markup) and/or points, in world RAS, to display pixels.

Prompts are markups in world RAS mm (parent transforms applied): a ``vtkMRMLMarkupsROINode`` for the
box and a ``vtkMRMLMarkupsFiducialNode`` for points; a control point whose label starts with ``-``
is a negative point (outside the object), every other one is positive. The prompt lands on the
voxel and slice it was placed on, whatever the storage order (oblique, flipped, permuted,
anisotropic), because the slice is taken in the canonical display orientation of
:mod:`promptslices`. Nothing here changes the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from .promptslices import SLICE_AXES, CanonicalVolume, canonical_volume, display_coordinates

__all__ = ["PromptPlan", "planPrompts", "planPromptsOnVolume", "SLICE_VIEWS", "AXIS_NAMES"]

SLICE_VIEWS = ("auto", *SLICE_AXES)
AXIS_NAMES = {value: key for key, value in SLICE_AXES.items()}
"""View name of each canonical slice axis."""


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
                raise MedAIInputError(f"Point '{name}' is not on the prompted {AXIS_NAMES[axis]} slice.")
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
    volume = canonical_volume(arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode))
    return planPromptsOnVolume(volume, roiNode, pointsNode, sliceView)


def planPromptsOnVolume(
    volume: CanonicalVolume, roiNode: Any = None, pointsNode: Any = None, sliceView: str = "auto"
) -> PromptPlan:
    """:func:`planPrompts` on a volume already read (``promptslices.CanonicalVolume``), touching nothing."""
    hasPoints = pointsNode is not None and pointsNode.GetNumberOfControlPoints() > 0
    if roiNode is None and not hasPoints:
        raise MedAIInputError("Give a box (ROI) or at least one point as a prompt.")
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
