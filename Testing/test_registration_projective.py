"""Projective (perspective) registration of 2D images: a known homography recovered through the node and the file."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.sceneio import saveNode
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume
from MedAIRegistrationLib.logic import MedAIRegistrationLogic

# A perspective tilt of the PD slice (row-major 3x3 minus identity, last entry 1), in a frame centred on
# the image and scaled by half its extent: points move up to about 8 mm.
HOMOGRAPHY = np.array([[1.03, -0.02, 0.02], [0.01, 0.97, -0.01], [0.08, -0.06, 1.0]])
POINTS_2D = [(60.0, 60.0), (110.5, 128.5), (180.0, 200.0), (40.0, 210.0), (170.0, 50.0)]


def _frame(image):
    size = np.array(image.GetSize()[:2], dtype=float)
    return (size - 1) / 2.0, float((size - 1).max()) / 2.0


def _apply(matrix, points, centre, scale):
    normalised = (np.atleast_2d(points) - centre) / scale
    mapped = np.c_[normalised, np.ones(len(normalised))] @ matrix.T
    return mapped[:, :2] / mapped[:, 2:] * scale + centre


@pytest.fixture
def tiltedPair(scene):
    """The PD slice (1 mm pixels, origin 0) and the same slice seen through the inverse homography."""
    fixedNode = sampledata.loadSampleData(scene, "BrainProtonDensitySliceBorder20")
    fixed = sitkImageFromVolume(fixedNode)[:, :, 0]
    centre, scale = _frame(fixed)
    i, j = np.meshgrid(np.arange(fixed.GetSize()[0]), np.arange(fixed.GetSize()[1]), indexing="xy")
    pixels = np.stack([i.ravel(), j.ravel()], axis=1).astype(float)
    back = _apply(np.linalg.inv(HOMOGRAPHY), pixels, centre, scale)
    field = sitk.GetImageFromArray((back - pixels).reshape(fixed.GetSize()[1], fixed.GetSize()[0], 2), isVector=True)
    field.CopyInformation(fixed)
    inverse = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    moving = sitk.Resample(fixed, fixed, inverse, sitk.sitkLinear, 0.0)
    movingNode = createVolumeFromSitkImage(scene, sitk.JoinSeries(moving), "tilted")
    return fixedNode, movingNode, centre, scale


def test_projective_recovers_a_known_homography_through_node_and_file(scene, tmp_path, tiltedPair):
    fixedNode, movingNode, centre, scale = tiltedPair
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="projective", metric="mse",
        linearStages=False,
    )  # fmt: skip
    assert result.transformNode.IsA("vtkMRMLGridTransformNode")
    known = _apply(HOMOGRAPHY, np.array(POINTS_2D), centre, scale)
    moved = np.linalg.norm(known - np.array(POINTS_2D), axis=1)
    assert moved.max() > 5.0  # the test is not trivial
    found = np.array([result.transform.TransformPoint(p) for p in POINTS_2D])
    assert np.linalg.norm(found - known, axis=1).max() < 0.3
    # The written ITK file (resampling, LPS) and the node (modeling, RAS) agree with the known mapping.
    path = saveNode(result.transformNode, tmp_path / "projective.h5")
    fromFile = sitk.ReadTransform(str(path))
    toParent = result.transformNode.GetTransformToParent()
    for point, expected in zip(POINTS_2D, known):
        fileMapped = np.array(fromFile.TransformPoint((*point, 0.0)))[:2]
        assert np.linalg.norm(fileMapped - expected) < 0.3
        backRas = np.array(toParent.TransformPoint((-expected[0], -expected[1], 0.0)))
        assert np.linalg.norm(np.array([-backRas[0], -backRas[1]]) - point) < 0.3
    assert result.quality["foldingFraction"] == 0.0


def test_projective_refuses_3d_and_a_linear_output_node(scene, tiltedPair):
    fixedNode, movingNode, _, _ = tiltedPair
    volume = sampledata.loadSampleData(scene, "KmeansT1")
    linearNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "linear")
    before = scene.GetNumberOfNodes()
    logic = MedAIRegistrationLogic()
    with pytest.raises(MedAIInputError, match="2D images only"):
        logic.registerVolumes(fixedVolumeNode=volume, movingVolumeNode=volume, transformType="projective")
    with pytest.raises(MedAIInputError, match="cannot hold"):
        logic.registerVolumes(
            fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="projective",
            outputTransformNode=linearNode,
        )  # fmt: skip
    assert scene.GetNumberOfNodes() == before
