"""Geometry bridge for segmentations: segmentation node <-> label map on real slicer-core nodes."""

from __future__ import annotations

import numpy as np
import pytest
from test_geometry_volumes import CASE_NAMES, addNonLinearTransform, makeGeometry, randomRotation

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.segmentations import (
    SegmentInfo,
    createSegmentationFromLabelmap,
    createSegmentationFromLabelmapVolume,
    labelmapFromSegmentation,
)
from MedAICommonLib.volumes import createVolumeFromArray, ijkToRasFromVolume

SEGMENTS = [
    SegmentInfo("liver", (0.87, 0.51, 0.29), 1),
    SegmentInfo("left kidney", (0.2, 0.6, 0.9), 2),
    SegmentInfo("tumour", (0.95, 0.1, 0.15), 7),
]


def makeLabelArray(rng, sizeIjk, values=(1, 2, 7)):
    """Random blobs of each value on background, in KJI order."""
    shapeKji = tuple(reversed(sizeIjk))
    labels = np.zeros(shapeKji, dtype=np.uint8 if max(values) <= 255 else np.int16)
    for value in values:
        centre = [rng.uniform(0, n) for n in shapeKji]
        radius = rng.uniform(0.25, 0.45) * min(shapeKji)
        grid = np.indices(shapeKji)
        inside = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3)) < radius**2
        labels[inside] = value
    labels[rng.random(shapeKji) < 0.02] = values[0]  # scattered single voxels
    return labels


def segmentState(segmentationNode):
    """Names, colours and label values of the segments, in order."""
    segmentation = segmentationNode.GetSegmentation()
    return [
        (segment.GetName(), tuple(segment.GetColor()), segment.GetLabelValue())
        for segment in (segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments()))
    ]


@pytest.mark.parametrize("caseName", CASE_NAMES)
def test_round_trip_keeps_names_colours_values_and_voxels(scene, rng, caseName):
    sizeIjk, ijkToRas = makeGeometry(caseName, rng)
    labels = makeLabelArray(rng, sizeIjk)
    labelsBefore = labels.copy()

    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS, name="organs")
    stateBefore, nodeCount = segmentState(segmentationNode), scene.GetNumberOfNodes()
    result, resultIjkToRas, segments = labelmapFromSegmentation(segmentationNode)

    np.testing.assert_array_equal(labels, labelsBefore)
    assert segments == SEGMENTS
    assert segmentState(segmentationNode) == stateBefore == [(s.name, s.color, s.labelValue) for s in SEGMENTS]
    assert scene.GetNumberOfNodes() == nodeCount
    assert result.shape == labels.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result, labels)
    np.testing.assert_allclose(resultIjkToRas, ijkToRas, rtol=0, atol=1e-12)


@pytest.mark.parametrize("caseName", ["oblique", "flipped-axes", "oblique-flipped-anisotropic"])
def test_export_on_a_reference_volume_grid(scene, rng, caseName):
    sizeIjk, ijkToRas = makeGeometry(caseName, rng)
    labels = makeLabelArray(rng, sizeIjk)
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS)
    # A reference grid shifted by whole voxels and smaller: the label map must be an exact crop.
    offsetIjk = np.array([2, 3, 1])
    referenceIjkToRas = ijkToRas.copy()
    referenceIjkToRas[:3, 3] = (ijkToRas @ [*offsetIjk, 1])[:3]
    referenceShapeKji = tuple(np.array(labels.shape) - offsetIjk[::-1] - 1)
    referenceNode = createVolumeFromArray(scene, np.zeros(referenceShapeKji, np.int16), referenceIjkToRas, "ref")

    result, resultIjkToRas, segments = labelmapFromSegmentation(segmentationNode, referenceNode)

    k, j, i = offsetIjk[::-1]
    np.testing.assert_array_equal(
        result, labels[k : k + referenceShapeKji[0], j : j + referenceShapeKji[1], i : i + referenceShapeKji[2]]
    )
    np.testing.assert_allclose(resultIjkToRas, referenceIjkToRas, rtol=0, atol=1e-12)
    assert segments == SEGMENTS


def test_reference_volume_under_a_linear_transform_is_honoured(scene, rng):
    import vtk

    sizeIjk, ijkToRas = makeGeometry("oblique", rng)
    labels = makeLabelArray(rng, sizeIjk)
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS)
    parentToWorld = np.eye(4)
    parentToWorld[:3, :3] = randomRotation(rng)
    parentToWorld[:3, 3] = [5.0, -7.0, 11.0]
    # The reference lies, once transformed, exactly on the segmentation's grid.
    referenceNode = createVolumeFromArray(scene, np.zeros_like(labels), np.linalg.inv(parentToWorld) @ ijkToRas, "ref")
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy(parentToWorld.ravel())
    transformNode.SetMatrixTransformToParent(matrix)
    referenceNode.SetAndObserveTransformNodeID(transformNode.GetID())

    result, resultIjkToRas, _ = labelmapFromSegmentation(segmentationNode, referenceNode)

    np.testing.assert_allclose(resultIjkToRas, ijkToRas, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result, labels)
    # Under the same transform, the segmentation's own label map moves with it.
    segmentationNode.SetAndObserveTransformNodeID(transformNode.GetID())
    _, movedIjkToRas, _ = labelmapFromSegmentation(segmentationNode)
    np.testing.assert_allclose(movedIjkToRas, parentToWorld @ ijkToRas, rtol=0, atol=1e-12)


def test_labelmap_volume_to_segmentation_keeps_grid_colours_and_transform(scene, rng):
    import slicer

    sizeIjk, ijkToRas = makeGeometry("oblique-flipped-anisotropic", rng)
    labels = makeLabelArray(rng, sizeIjk)
    labelmapNode = createVolumeFromArray(scene, labels, ijkToRas, "atlas", labelmap=True)
    colorNode = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "atlasColours")
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(8)
    for value, name, rgb in [(1, "caudate", (1, 0, 0)), (2, "putamen", (0, 1, 0)), (7, "thalamus", (0, 0, 1))]:
        colorNode.SetColor(value, name, *rgb, 1.0)
    labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    labelmapNode.SetAndObserveTransformNodeID(transformNode.GetID())

    segmentationNode = createSegmentationFromLabelmapVolume(labelmapNode)

    assert segmentationNode.GetName() == "atlas_Segmentation"
    assert segmentationNode.GetTransformNodeID() == transformNode.GetID()
    assert segmentState(segmentationNode) == [
        ("caudate", (1, 0, 0), 1),
        ("putamen", (0, 1, 0), 2),
        ("thalamus", (0, 0, 1), 7),
    ]
    result, resultIjkToRas, _ = labelmapFromSegmentation(segmentationNode, labelmapNode)
    np.testing.assert_array_equal(result, labels)
    np.testing.assert_allclose(resultIjkToRas, ijkToRasFromVolume(labelmapNode), rtol=0, atol=1e-12)
    assert isinstance(segmentationNode, slicer.vtkMRMLSegmentationNode)


def test_default_segments_name_every_value_present(scene, rng):
    sizeIjk, ijkToRas = makeGeometry("odd-size-37x53x11", rng)
    labels = makeLabelArray(rng, sizeIjk, values=(3, 300))

    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas)
    result, _, segments = labelmapFromSegmentation(segmentationNode)

    assert [(s.name, s.labelValue) for s in segments] == [("Label_3", 3), ("Label_300", 300)]
    assert segments[0].color != segments[1].color
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, labels)


def test_segment_absent_from_the_array_stays_as_an_empty_segment(scene, rng):
    sizeIjk, ijkToRas = makeGeometry("flipped-axes", rng)
    labels = makeLabelArray(rng, sizeIjk, values=(1, 2))
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS)

    result, _, segments = labelmapFromSegmentation(segmentationNode)

    assert segments == SEGMENTS
    np.testing.assert_array_equal(result, labels)


def test_overlapping_segments_later_one_wins_and_repeated_value_moves_up(scene, rng):
    sizeIjk, ijkToRas = makeGeometry("oblique", rng)
    labels = makeLabelArray(rng, sizeIjk)
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS)
    # A second segmentation's segment (label value 1 in its own layer) overlaps all three.
    overlap = np.zeros_like(labels)
    overlap[:, 4:12, 5:15] = 1
    otherNode = createSegmentationFromLabelmap(scene, overlap, ijkToRas, [SegmentInfo("lesion", (1, 1, 0), 1)])
    otherId = otherNode.GetSegmentation().GetNthSegmentID(0)
    segmentationNode.GetSegmentation().CopySegmentFromSegmentation(otherNode.GetSegmentation(), otherId)

    result, _, segments = labelmapFromSegmentation(segmentationNode)

    assert segments == [*SEGMENTS, SegmentInfo("lesion", (1.0, 1.0, 0.0), 8)]
    expected = labels.copy()
    expected[overlap == 1] = 8
    np.testing.assert_array_equal(result, expected)


def test_without_reference_geometry_the_union_of_segments_is_used(scene, rng):
    import slicer

    sizeIjk, ijkToRas = makeGeometry("oblique", rng)
    labels = np.zeros(tuple(reversed(sizeIjk)), np.uint8)
    labels[3:7, 4:9, 5:11] = 2
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, SEGMENTS[1:2])
    segmentationNode.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), ""
    )

    result, resultIjkToRas, _ = labelmapFromSegmentation(segmentationNode)

    assert result.shape == (4, 5, 6) and np.all(result == 2)
    np.testing.assert_allclose(resultIjkToRas @ [0, 0, 0, 1], ijkToRas @ [5, 4, 3, 1], rtol=0, atol=1e-9)


def test_non_linear_transform_on_segmentation_is_refused(scene, rng):
    sizeIjk, ijkToRas = makeGeometry("oblique", rng)
    segmentationNode = createSegmentationFromLabelmap(scene, makeLabelArray(rng, sizeIjk), ijkToRas, SEGMENTS)
    segmentationNode.SetAndObserveTransformNodeID(addNonLinearTransform(scene, "skullWarp").GetID())

    with pytest.raises(MedAIInputError, match="non-linear transform 'skullWarp'"):
        labelmapFromSegmentation(segmentationNode)


@pytest.mark.parametrize(
    ("labels", "segments", "message"),
    [
        (np.full((3, 4, 5), 5, np.uint8), SEGMENTS, r"value\(s\) \[5\] that no segment describes"),
        (np.ones((3, 4, 5), np.uint8), [SEGMENTS[0], SegmentInfo("again", (0, 0, 0), 1)], "share the label value"),
        (np.ones((3, 4, 5), np.float32), None, "integer voxels"),
        (np.full((3, 4, 5), 40000, np.int32), None, "must lie in 0-32767"),
        (np.ones((4, 5), np.uint8), None, "3D label array"),
    ],
)
def test_bad_label_maps_are_refused_before_the_scene_changes(scene, labels, segments, message):
    with pytest.raises(MedAIInputError, match=message):
        createSegmentationFromLabelmap(scene, labels, np.eye(4), segments)
    assert scene.GetNumberOfNodes() == 0


def test_segment_info_checks_colour_and_value():
    with pytest.raises(MedAIInputError, match="colour"):
        SegmentInfo("red", (255, 0, 0), 1)
    with pytest.raises(MedAIInputError, match="label value"):
        SegmentInfo("zero", (1, 0, 0), 0)
    assert SegmentInfo("list colour", [1, 0.5, 0], 3).color == (1.0, 0.5, 0.0)
