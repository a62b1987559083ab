"""What the values of a label map mean: :class:`SegmentInfo` (name, colour, label value) and its checks.

A label map is an integer numpy array in **KJI** order in which 0 is background and every other
value is one segment. These helpers check such arrays and segment lists before anything is
created, choose names and colours for values that nobody described, and choose the values that
segments get when a segmentation is merged into one label map. They are shared by the
segmentation bridge (:mod:`MedAICommonLib.segmentations`) and its callers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MedAIInputError

__all__ = ["SegmentInfo"]

# Slicer merges segments into a signed short image, so larger label values cannot come back.
_MAX_LABEL_VALUE = 32767


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a label map.

    Attributes:
        name: segment name shown in Slicer.
        color: RGB colour, each component in 0-1.
        labelValue: the segment's voxel value in the label map, 1 to 32767.
    """

    name: str
    color: tuple[float, float, float]
    labelValue: int

    def __post_init__(self) -> None:
        color = tuple(float(c) for c in self.color)
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise MedAIInputError(
                f"Segment '{self.name}' needs an RGB colour with components in 0-1, got {self.color}."
            )
        if not 1 <= int(self.labelValue) <= _MAX_LABEL_VALUE or int(self.labelValue) != self.labelValue:
            raise MedAIInputError(
                f"Segment '{self.name}' needs a label value in 1-{_MAX_LABEL_VALUE}, got {self.labelValue}."
            )
        object.__setattr__(self, "color", color)
        object.__setattr__(self, "labelValue", int(self.labelValue))


def _defaultSegmentInfo(labelValue: int, colorNode: Any = None) -> SegmentInfo:
    """Name and colour from the label map's colour table when it has them, else Slicer's 'Labels' table."""
    import slicer

    if colorNode is not None and 0 <= labelValue < colorNode.GetNumberOfColors():
        name = colorNode.GetColorName(labelValue)
        rgba = [0.0, 0.0, 0.0, 0.0]
        if name and name != "(none)" and colorNode.GetColor(labelValue, rgba):
            return SegmentInfo(name, tuple(rgba[:3]), labelValue)
    labels = slicer.vtkMRMLColorTableNode()
    labels.SetTypeToLabels()
    rgba = labels.GetLookupTable().GetTableValue(1 + (labelValue - 1) % (labels.GetNumberOfColors() - 1))
    return SegmentInfo(f"Label_{labelValue}", tuple(rgba[:3]), labelValue)


def _checkLabelArray(labelArray: Any) -> np.ndarray:
    """The label voxels to import (uint8, or int16 above 255) after checking them."""
    if not isinstance(labelArray, np.ndarray):
        raise MedAIInputError(f"Expected a numpy label array, got {type(labelArray).__name__}.")
    if labelArray.ndim != 3 or 0 in labelArray.shape:
        raise MedAIInputError(f"Expected a non-empty 3D label array in KJI order, got shape {labelArray.shape}.")
    if labelArray.dtype.kind not in "iub":
        raise MedAIInputError(f"A label map needs integer voxels, got {labelArray.dtype}.")
    if labelArray.min() < 0 or labelArray.max() > _MAX_LABEL_VALUE:
        raise MedAIInputError(
            f"Label values must lie in 0-{_MAX_LABEL_VALUE}, got {labelArray.min()}-{labelArray.max()}."
        )
    return labelArray.astype(np.uint8 if labelArray.max() <= 255 else np.int16)


def _checkSegments(labelArray: np.ndarray, segments: Any, colorNode: Any = None) -> list[SegmentInfo]:
    """The segments to create: those given (checked against the array), or one per value present."""
    present = [int(v) for v in np.unique(labelArray) if v != 0]
    if segments is None:
        return [_defaultSegmentInfo(value, colorNode) for value in present]
    segments = list(segments)
    if not all(isinstance(segment, SegmentInfo) for segment in segments):
        raise MedAIInputError("Segments must be given as a list of SegmentInfo.")
    values = [segment.labelValue for segment in segments]
    duplicated = sorted(v for v, n in Counter(values).items() if n > 1)
    if duplicated:
        raise MedAIInputError(f"Several segments share the label value(s) {duplicated}.")
    missing = sorted(set(present) - set(values))
    if missing:
        raise MedAIInputError(f"The label map has value(s) {missing} that no segment describes.")
    return segments


def _exportLabelValues(segmentation: Any, segmentIds: list[str]) -> list[int]:
    """Each segment keeps its own label value; a repeated one (separate layers) gets the next free value."""
    requested = [segmentation.GetSegment(segmentId).GetLabelValue() for segmentId in segmentIds]
    nextFree = max(requested, default=0) + 1
    values: list[int] = []
    for value in requested:
        if value < 1 or value in values:
            value, nextFree = nextFree, nextFree + 1
        values.append(value)
    return values
