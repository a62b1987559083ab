"""Linear registration on real MRML nodes: known answers on the ITK 2D pairs, identity, direction, bad input, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.sceneio import saveNode
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray
from MedAIRegistrationLib.logic import MedAIRegistrationLogic

FIXED_2D = "BrainProtonDensitySliceBorder20"
# Points spread over the brain of the 2D pairs (LPS mm; the images have origin 0 and 1 mm pixels).
POINTS_2D = [(60.0, 60.0), (110.5, 128.5), (180.0, 200.0), (40.0, 210.0), (170.0, 50.0)]


def _nodeCount(scene) -> int:
    return scene.GetNumberOfNodes()


def _pointErrorsMm(fileTransform, nodeTransformNode, known) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the written ITK file and of the MRML node against the known resampling transform."""
    fileErrors, nodeErrors = [], []
    toParent = nodeTransformNode.GetTransformToParent()
    for x, y in POINTS_2D:
        expected = np.array(known.TransformPoint((x, y)))
        fileErrors.append(np.linalg.norm(np.array(fileTransform.TransformPoint((x, y, 0.0)))[:2] - expected))
        # The node moves the moving image onto the fixed one: the matching moving point goes back to (x, y).
        movingRas = (-expected[0], -expected[1], 0.0)
        fixedRas = np.array(toParent.TransformPoint(movingRas))
        nodeErrors.append(np.linalg.norm(np.array([-fixedRas[0], -fixedRas[1]]) - (x, y)))
    return np.array(fileErrors), np.array(nodeErrors)


@pytest.mark.parametrize(
    ("movingName", "transformType", "metric", "toleranceMm"),
    [
        ("BrainProtonDensitySliceShifted13x17y", "translation", "mse", 0.05),
        ("BrainProtonDensitySliceShifted13x17y", "translation", "ncc", 0.05),
        ("BrainProtonDensitySliceR10X13Y17", "rigid", "mse", 0.2),
        ("BrainProtonDensitySliceR10X13Y17S12", "similarity", "mse", 0.2),
    ],
)
def test_known_answers_through_file_and_node(scene, tmp_path, movingName, transformType, metric, toleranceMm):
    fixed = sampledata.loadSampleData(scene, FIXED_2D)
    moving = sampledata.loadSampleData(scene, movingName)
    known = sampledata.knownTransform(movingName).transform
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType=transformType, metric=metric
    )
    assert result.transformNode.IsA("vtkMRMLLinearTransformNode")
    path = saveNode(result.transformNode, tmp_path / "result.tfm")
    fileErrors, nodeErrors = _pointErrorsMm(sitk.ReadTransform(str(path)), result.transformNode, known)
    assert fileErrors.max() < toleranceMm, fileErrors
    assert nodeErrors.max() < toleranceMm, nodeErrors
    found = result.transform.Downcast()
    if transformType in ("rigid", "similarity"):
        knownMatrix = np.array(known.GetMatrix()).reshape(2, 2)
        foundMatrix = np.array(found.GetMatrix()).reshape(2, 2)
        angleError = np.degrees(abs(np.arctan2(foundMatrix[1, 0], foundMatrix[0, 0]) - known.GetAngle()))
        assert angleError < 0.1
        scaleError = abs(np.sqrt(abs(np.linalg.det(foundMatrix))) / np.sqrt(np.linalg.det(knownMatrix)) - 1)
        assert scaleError < 0.005
    # The metric history is in a table with a chart, and the quality numbers are there.
    assert result.tableNode.GetNumberOfRows() == result.quality["iterations"] > 0
    assert result.chartNode.GetNumberOfPlotSeriesNodes() == 1
    assert result.quality["foldingFraction"] == 0.0


def test_mutual_information_aligns_t1_with_proton_density(scene):
    """Multi-modal: the T1 slice against the shifted proton-density slice (same subject)."""
    fixed = sampledata.loadSampleData(scene, "BrainT1SliceBorder20")
    moving = sampledata.loadSampleData(scene, "BrainProtonDensitySliceShifted13x17y")
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="translation", metric="mi", samplingPercentage=1.0
    )
    shift = np.array(result.transform.TransformPoint((100.0, 100.0))) - (100.0, 100.0)
    assert np.linalg.norm(shift - (13.0, 17.0)) < 0.2, shift


def _blobVolume(scene, name, ijkToRas, shape, centresRas, toFixedRas=None, label=False):
    """Gaussian blobs (or their label map) evaluated at the voxel centres, in world RAS."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ijk = np.stack([i, j, k, np.ones_like(i)], axis=-1).reshape(-1, 4).astype(float)
    ras = (ijk @ ijkToRas.T)[:, :3]
    if toFixedRas is not None:
        ras = ras @ toFixedRas[:3, :3].T + toFixedRas[:3, 3]
    values = np.zeros(len(ras))
    for index, centre in enumerate(centresRas):
        distance2 = np.sum((ras - centre) ** 2, axis=1) / [36.0, 64.0, 100.0][index]
        if label:
            values[distance2 < 1.0] = index + 1
        else:
            values += (60.0 + 40.0 * index) * np.exp(-distance2)
    array = values.reshape(shape).astype(np.uint8 if label else np.float32)
    return createVolumeFromArray(scene, array, ijkToRas, name, labelmap=label)


def _randomRotation(rng, lowDeg=5.0, highDeg=30.0) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(lowDeg, highDeg))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _grid(rotation, spacing, sizeIjk) -> np.ndarray:
    """An IJK-to-RAS matrix whose grid is centred on the RAS origin."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * spacing
    matrix[:3, 3] = -matrix[:3, :3] @ ((np.array(sizeIjk) - 1) / 2.0)
    return matrix


def _centroidsRas(labelNode) -> np.ndarray:
    from MedAICommonLib.volumes import ijkToRasFromVolume

    labels = arrayFromVolume(labelNode)
    ijkToRas = ijkToRasFromVolume(labelNode)
    centroids = []
    for value in (1, 2, 3):
        k, j, i = np.nonzero(labels == value)
        centroids.append((ijkToRas @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3])
    return np.array(centroids)


def test_transform_direction_on_oblique_anisotropic_volumes(scene, rng):
    """A known rigid motion is undone: the node maps moving label centroids onto the fixed ones within 1 mm."""
    centresRas = np.array([[-8.0, 4.0, 2.0], [9.0, -6.0, -5.0], [2.0, 10.0, 9.0]])
    fixedGrid = _grid(_randomRotation(rng), [0.7, 0.7, 3.0], [57, 63, 15])
    movingGrid = _grid(_randomRotation(rng), [3.0, 0.7, 0.7], [15, 63, 57])
    motion = np.eye(4)  # moves the moving image onto the fixed one (modeling, RAS)
    motion[:3, :3] = _randomRotation(rng, 5.0, 15.0)
    motion[:3, 3] = [4.0, -3.0, 5.0]
    fixed = _blobVolume(scene, "fixed", fixedGrid, (15, 63, 57), centresRas)
    moving = _blobVolume(scene, "moving", movingGrid, (57, 63, 15), centresRas, motion)
    fixedLabels = _blobVolume(scene, "fixedLabels", fixedGrid, (15, 63, 57), centresRas, label=True)
    movingLabels = _blobVolume(scene, "movingLabels", movingGrid, (57, 63, 15), centresRas, motion, label=True)
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="rigid", metric="mse", samplingPercentage=0.5
    )
    toParent = result.transformNode.GetTransformToParent()
    mapped = np.array([toParent.TransformPoint(tuple(p)) for p in _centroidsRas(movingLabels)])
    errors = np.linalg.norm(mapped - _centroidsRas(fixedLabels), axis=1)
    assert errors.max() < 1.0, errors


@pytest.mark.parametrize("transformType", ["translation", "rigid", "similarity", "affine"])
def test_self_registration_gives_identity(scene, transformType):
    volume = sampledata.loadSampleData(scene, "KmeansT1")
    copy = createVolumeFromArray(scene, arrayFromVolume(volume), _ijkToRas(volume), "copy")
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=volume, movingVolumeNode=copy, transformType=transformType, metric="mse"
    )
    size = np.array(volume.GetImageData().GetDimensions()) * volume.GetSpacing()
    corners = [np.array(volume.GetOrigin()) + np.array(c) * size * [-1, -1, 1] for c in np.ndindex(2, 2, 2)]
    toParent = result.transformNode.GetTransformToParent()
    worst = max(np.linalg.norm(np.array(toParent.TransformPoint(tuple(p))) - p) for p in corners)
    assert worst < 1e-3


def _ijkToRas(volume):
    from MedAICommonLib.volumes import ijkToRasFromVolume

    return ijkToRasFromVolume(volume)


def _twoSlices(scene):
    return sampledata.loadSampleData(scene, FIXED_2D), sampledata.loadSampleData(
        scene, "BrainProtonDensitySliceShifted13x17y"
    )


def test_bad_inputs_say_what_is_wrong_and_leave_nothing(scene):
    fixed, moving = _twoSlices(scene)
    volume3D = sampledata.loadSampleData(scene, "KmeansT1")
    logic = MedAIRegistrationLogic()
    before = _nodeCount(scene)
    with pytest.raises(MedAIInputError, match="2D image"):
        logic.registerVolumes(fixedVolumeNode=fixed, movingVolumeNode=volume3D)
    with pytest.raises(MedAIInputError, match="projective"):
        logic.registerVolumes(fixedVolumeNode=volume3D, movingVolumeNode=volume3D, transformType="projective")
    nan = arrayFromVolume(moving).astype(np.float32)
    nan[0, 50, 50] = np.nan
    nanNode = createVolumeFromArray(scene, nan, _ijkToRas(moving), "nan")
    emptyMask = createVolumeFromArray(scene, np.zeros_like(nan, dtype=np.uint8), _ijkToRas(fixed), "mask", True)
    farArray = arrayFromVolume(moving)
    farGrid = _ijkToRas(moving)
    farGrid[:3, 3] += [5000.0, 0.0, 0.0]
    far = createVolumeFromArray(scene, farArray, farGrid, "far")
    before = _nodeCount(scene)
    with pytest.raises(MedAIInputError, match="NaN"):
        logic.registerVolumes(fixedVolumeNode=fixed, movingVolumeNode=nanNode)
    with pytest.raises(MedAIInputError, match="empty"):
        logic.registerVolumes(fixedVolumeNode=fixed, movingVolumeNode=moving, fixedMaskNode=emptyMask)
    with pytest.raises(MedAIInputError, match="overlap"):
        logic.registerVolumes(fixedVolumeNode=fixed, movingVolumeNode=far, initialization="none")
    with pytest.raises(MedAIInputError, match="Unknown metric"):
        logic.registerVolumes(fixedVolumeNode=fixed, movingVolumeNode=moving, metric="cc")
    assert _nodeCount(scene) == before


def test_cancel_stops_and_leaves_the_scene_unchanged(scene):
    fixed, moving = _twoSlices(scene)
    token = CancelToken()
    messages = []

    def progress(fraction, message):
        messages.append(fraction)
        if len(messages) == 5:
            token.cancel()

    before = _nodeCount(scene)
    with pytest.raises(MedAICancelledError):
        MedAIRegistrationLogic().registerVolumes(
            fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="affine", progress=progress, cancelToken=token
        )
    assert _nodeCount(scene) == before
    assert 5 <= len(messages) < 20  # it stopped within an iteration or two of the request


def test_outputs_resampled_volume_and_masks(scene):
    fixed, moving = _twoSlices(scene)
    mask = createVolumeFromArray(
        scene, (arrayFromVolume(fixed) > 30).astype(np.uint8), _ijkToRas(fixed), "brain", labelmap=True
    )
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed,
        movingVolumeNode=moving,
        transformType="translation",
        metric="mse",
        fixedMaskNode=mask,
        createResampledVolume=True,
        createJacobianVolume=True,
    )
    resampled = arrayFromVolume(result.resampledVolumeNode).astype(float)
    original = arrayFromVolume(fixed).astype(float)
    inside = arrayFromVolume(mask) > 0
    before = np.abs(arrayFromVolume(moving).astype(float) - original)[inside].mean()
    after = np.abs(resampled - original)[inside].mean()
    assert after < 0.2 * before
    assert np.allclose(arrayFromVolume(result.jacobianVolumeNode), 1.0)
    assert np.allclose(_ijkToRas(result.resampledVolumeNode), _ijkToRas(fixed))


def test_presets_are_data_and_user_presets_are_checked(tmp_path):
    from MedAIRegistrationLib.presets import load_preset, preset_names

    assert {"translation", "rigid", "similarity", "affine", "bspline", "deformable"} <= set(preset_names())
    deformable = load_preset("deformable", metric="ncc")
    assert [s.transform for s in deformable] == ["rigid", "affine", "deformable"]
    assert [s.metric for s in deformable[:2]] == ["ncc", "ncc"]
    assert [s.transform for s in load_preset("bspline", linear_stages=False)] == ["bspline"]
    custom = tmp_path / "mine.json"
    custom.write_text('{"stages": [{"transform": "rigid", "shrink_factors": [2], "smoothing_mm": [1.0], "speed": 3}]}')
    with pytest.raises(MedAIInputError, match="speed"):
        load_preset("mine", preset_file=custom)
    with pytest.raises(MedAIInputError, match="No registration preset"):
        load_preset("warp-drive")


def test_inverse_consistency_of_both_directions(scene):
    fixed, moving = _twoSlices(scene)
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="rigid", metric="mse", inverseConsistency=True
    )
    assert 0.0 <= result.quality["inverseConsistencyMm"] < 0.1


def test_multimodal_rigid_on_a_small_slice_with_default_sampling(scene):
    """T1 slice fixed, rotated and shifted proton-density slice moving, mutual information, defaults only."""
    fixed = sampledata.loadSampleData(scene, "BrainT1SliceBorder20")
    moving = sampledata.loadSampleData(scene, "BrainProtonDensitySliceR10X13Y17")
    known = sampledata.knownTransform("BrainProtonDensitySliceR10X13Y17").transform
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="rigid", metric="mi"
    )
    errors = [
        np.linalg.norm(np.subtract(result.transform.TransformPoint(p), known.TransformPoint(p))) for p in POINTS_2D
    ]
    assert max(errors) < 0.2, errors
