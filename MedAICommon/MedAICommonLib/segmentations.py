"""The audited geometry bridge for segmentations: segmentation node <-> label map.

A label map here is an integer numpy array in **KJI** order plus its 4x4 **IJK-to-RAS** matrix
(see :mod:`MedAICommonLib.volumes`), and a list of :class:`SegmentInfo` that says which label
value is which segment (name and colour). Names, colours and label values survive a round
trip exactly, including values with gaps (for example 1, 2, 7).

The work is done by Slicer's own ``vtkSlicerSegmentationsModuleLogic`` and the binary-labelmap
representation: one shared labelmap layer is imported with each segment's label value equal
to its value in the label map, and export merges the segments on the requested grid.

Overlapping segments: a label map holds one value per voxel, so segments that overlap (they
then sit in different labelmap layers) cannot all be kept; where they overlap, the segment
that comes later in the segmentation's order wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MedAIInputError
from .geometry import linearTransformToWorld, volumeGeometry
from .segmentlabels import SegmentInfo, _checkLabelArray, _checkSegments, _exportLabelValues
from .volumes import arrayFromVolume, ijkToRasFromVolume, setVolumeIjkToRas, updateVolumeFromArray

__all__ = [
    "labelmapFromSegmentation",
    "createSegmentationFromLabelmap",
    "createSegmentationFromLabelmapVolume",
    # Defined in segmentlabels; importable from here too.
    "SegmentInfo",
]


def _ensureConverterRules() -> None:
    """Register Slicer's segmentation conversion rules, as its Segmentations module does on start-up.

    Without the desktop app nobody registers them, and then no segment can even hold an empty
    binary labelmap. Registering is process-wide and done once.
    """
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetName() for rule in factory.GetConverterRules()}
    for ruleClass in (
        slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
        slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
        slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
        slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule,
    ):
        rule = ruleClass()
        if rule.GetName() not in registered:
            factory.RegisterConverterRule(rule)


def createSegmentationFromLabelmap(
    scene: Any,
    labelArray: np.ndarray,
    ijkToRas: Any,
    segments: list[SegmentInfo] | None = None,
    name: str = "Segmentation",
) -> Any:
    """Add a segmentation node made from a label map, one segment per label value.

    All segments share one binary-labelmap layer on the label map's grid, which also becomes
    the segmentation's reference geometry; each segment's ``vtkSegment`` label value equals its
    value in ``labelArray``.

    Args:
        scene: the ``vtkMRMLScene`` to add the node to.
        labelArray: integer (or bool) voxels in KJI order, values 0 (background) to 32767.
        ijkToRas: 4x4 IJK-to-RAS matrix of the label map, millimetres.
        segments: names, colours and values of the segments, in the order they get in the
            segmentation; every non-zero value of ``labelArray`` must be described, values
            absent from it give empty segments. None: one segment per value present, named
            ``Label_<value>`` with the colours of Slicer's "Labels" table.
        name: node name (made unique in the scene).

    Returns:
        The new ``vtkMRMLSegmentationNode``.

    Raises:
        MedAIInputError: bad array, matrix or segment list; nothing is added to the scene then.
    """
    import slicer

    voxels = _checkLabelArray(labelArray)
    segments = _checkSegments(voxels, segments)
    volumeGeometry(ijkToRas)  # checked before the scene is touched
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()  # never enters the scene
    setVolumeIjkToRas(labelmapNode, ijkToRas)
    updateVolumeFromArray(labelmapNode, voxels)
    return _importSegments(scene, labelmapNode, segments, name)


def _importSegments(scene: Any, labelmapNode: Any, segments: list[SegmentInfo], name: str) -> Any:
    import slicer
    import vtk

    _ensureConverterRules()
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(labelmapNode)
    segmentation = segmentationNode.GetSegmentation()
    # The logic gives label value n to the n-th ID of this list; empty IDs are the gaps.
    segmentIdsByValue = vtk.vtkStringArray()
    segmentIdsByValue.SetNumberOfValues(max((segment.labelValue for segment in segments), default=0))
    for segment in segments:
        segmentId = segmentation.AddEmptySegment("", segment.name, list(segment.color))
        segmentIdsByValue.SetValue(segment.labelValue - 1, segmentId)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if segments and not logic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode, segmentIdsByValue):
        from .sceneio import removeNodes  # lazily, like slicer: this module imports without slicer-core

        removeNodes(scene, [segmentationNode])
        raise RuntimeError(f"Slicer could not import the label map into segmentation '{name}'.")
    return segmentationNode


def createSegmentationFromLabelmapVolume(
    labelmapVolumeNode: Any, segments: list[SegmentInfo] | None = None, name: str | None = None
) -> Any:
    """Add a segmentation node made from a label map volume node, in that node's scene.

    The segmentation is put under the volume's parent transform (if any), so it lies exactly
    on the volume's grid wherever the transform moves it.

    Args:
        labelmapVolumeNode: ``vtkMRMLLabelMapVolumeNode`` (or scalar volume with integer voxels).
        segments: as in :func:`createSegmentationFromLabelmap`. None: names and colours from the
            volume's colour table when it names the value, else ``Label_<value>``.
        name: node name; None gives ``<volume name>_Segmentation``.

    Returns:
        The new ``vtkMRMLSegmentationNode``.

    Raises:
        MedAIInputError: not an integer label map volume in a scene, or a bad segment list.
    """
    import slicer
    import vtk

    if not isinstance(labelmapVolumeNode, slicer.vtkMRMLScalarVolumeNode) or labelmapVolumeNode.GetScene() is None:
        raise MedAIInputError("Expected a label map volume node that belongs to a scene.")
    voxels = _checkLabelArray(arrayFromVolume(labelmapVolumeNode))
    displayNode = labelmapVolumeNode.GetDisplayNode()
    colorNode = displayNode.GetColorNode() if displayNode is not None else None
    segments = _checkSegments(voxels, segments, colorNode)
    matrix = vtk.vtkMatrix4x4()
    labelmapVolumeNode.GetIJKToRASMatrix(matrix)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()
    setVolumeIjkToRas(labelmapNode, slicer.util.arrayFromVTKMatrix(matrix))
    updateVolumeFromArray(labelmapNode, voxels)
    scene = labelmapVolumeNode.GetScene()
    segmentationNode = _importSegments(
        scene, labelmapNode, segments, name or f"{labelmapVolumeNode.GetName()}_Segmentation"
    )
    segmentationNode.SetAndObserveTransformNodeID(labelmapVolumeNode.GetTransformNodeID())
    return segmentationNode


def _checkSegmentationNode(segmentationNode: Any) -> None:
    import slicer

    if not isinstance(segmentationNode, slicer.vtkMRMLSegmentationNode):
        raise MedAIInputError(f"Expected a segmentation node, got {type(segmentationNode).__name__}.")
    name = segmentationNode.GetName()
    binaryLabelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if not segmentationNode.GetSegmentation().ContainsRepresentation(binaryLabelmap):
        raise MedAIInputError(f"Segmentation '{name}' has no binary labelmap representation; create it first.")
    linearTransformToWorld(segmentationNode, "Segmentation")  # refuses a non-linear transform before any work


def _segmentationGeometry(segmentationNode: Any) -> Any:
    """The segmentation's own grid: its reference image geometry, else the union of its segments."""
    import slicer

    segmentation = segmentationNode.GetSegmentation()
    converter = slicer.vtkSegmentationConverter
    geometryString = segmentation.GetConversionParameter(converter.GetReferenceImageGeometryParameterName())
    if not geometryString:
        geometryString = segmentation.DetermineCommonLabelmapGeometry(
            slicer.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS, None
        )
    if not geometryString:
        raise MedAIInputError(
            f"Segmentation '{segmentationNode.GetName()}' has no reference geometry and no voxels; give a reference volume."
        )
    geometryImage = slicer.vtkOrientedImageData()
    converter.DeserializeImageGeometry(geometryString, geometryImage, False)
    return geometryImage


def labelmapFromSegmentation(
    segmentationNode: Any, referenceVolumeNode: Any = None
) -> tuple[np.ndarray, np.ndarray, list[SegmentInfo]]:
    """Merge the segments of a segmentation node into one label map.

    Args:
        segmentationNode: ``vtkMRMLSegmentationNode`` with a binary labelmap representation;
            a linear parent transform is honoured, a non-linear one refused.
        referenceVolumeNode: the label map is made on this volume's voxel grid (parent
            transforms of both nodes honoured, nearest-neighbour resampling when the grids
            differ). None: on the segmentation's reference image geometry (the grid it was
            made on), or the union of its segments' extents when it has none.

    Returns:
        ``(labelArray, ijkToRas, segments)``: a new uint8 array (int16 when a label value
        exceeds 255) in KJI order; its 4x4 world IJK-to-RAS matrix in millimetres; one
        :class:`SegmentInfo` per segment in segmentation order. Each segment keeps its
        ``vtkSegment`` label value; a value already taken by an earlier segment (a separate
        layer) is replaced by the next value above the largest. Where segments overlap, the
        later one wins. Segment voxels outside the grid are cropped.

    Raises:
        MedAIInputError: not a segmentation with a binary labelmap, or a non-linear transform.
    """
    import slicer
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    _ensureConverterRules()
    _checkSegmentationNode(segmentationNode)
    segmentation = segmentationNode.GetSegmentation()
    segmentIds = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    labelValues = _exportLabelValues(segmentation, segmentIds)
    segmentIdArray, labelValueArray = vtk.vtkStringArray(), vtk.vtkIntArray()
    for segmentId, value in zip(segmentIds, labelValues):
        segmentIdArray.InsertNextValue(segmentId)
        labelValueArray.InsertNextValue(value)
    merged = slicer.vtkOrientedImageData()
    referenceMode = slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    if referenceVolumeNode is not None:
        ijkToRas = ijkToRasFromVolume(referenceVolumeNode)
        if referenceVolumeNode.GetImageData() is None:
            raise MedAIInputError(f"Reference volume '{referenceVolumeNode.GetName()}' has no voxels.")
        slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
            segmentationNode, referenceVolumeNode, segmentIdArray, referenceMode, merged, labelValueArray
        )
    else:
        geometryImage = _segmentationGeometry(segmentationNode)
        segmentationNode.GenerateMergedLabelmapForAllSegments(
            merged, referenceMode, geometryImage, segmentIdArray, labelValueArray
        )
        ijkToRas = _worldImageToRas(segmentationNode, merged)
    shapeKji = tuple(reversed(merged.GetDimensions()))
    labelArray = vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(shapeKji)
    labelArray = labelArray.astype(np.uint8 if max(labelValues, default=0) <= 255 else np.int16)
    segments = [
        SegmentInfo(segmentation.GetSegment(i).GetName(), tuple(segmentation.GetSegment(i).GetColor()), value)
        for i, value in zip(segmentIds, labelValues)
    ]
    return labelArray, ijkToRas, segments


def _worldImageToRas(segmentationNode: Any, image: Any) -> np.ndarray:
    """IJK-to-world-RAS of a merged image whose extent may not start at voxel 0."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    shift = np.eye(4)
    shift[:3, 3] = image.GetExtent()[0::2]
    imageToRas = slicer.util.arrayFromVTKMatrix(matrix) @ shift
    return linearTransformToWorld(segmentationNode, "Segmentation") @ imageToRas
