"""B-spline and diffeomorphic demons registration on a real 3D MRI warped by a known smooth deformation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAICancelledError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume
from MedAIRegistrationLib.logic import MedAIRegistrationLogic
from MedAIRegistrationLib.presets import presets_dir
from MedAIRegistrationLib.quality import folding_fraction, inverse_consistency_error_mm, jacobian_determinant_image


def _knownWarp(image: sitk.Image, rng, amplitudeMm: float = 3.0) -> sitk.Transform:
    """A smooth random B-spline deformation (resampling convention, LPS), a few mm at most."""
    warp = sitk.BSplineTransformInitializer(image, [3, 3, 2], order=3)
    parameters = rng.uniform(-amplitudeMm, amplitudeMm, warp.GetNumberOfParameters())
    warp.SetParameters(parameters.tolist())
    return warp


@pytest.fixture
def warpedPair(scene, rng):
    """KmeansT1 at 4x4x3 mm as the fixed volume, and the same head warped by a known deformation as moving."""
    full = sitk.Cast(sitkImageFromVolume(sampledata.loadSampleData(scene, "KmeansT1")), sitk.sitkFloat32)
    # Half the in-plane resolution keeps the test fast; the anatomy stays real.
    fixed = sitk.Shrink(sitk.SmoothingRecursiveGaussian(full, 2.0), [2, 2, 1])
    fixedNode = createVolumeFromSitkImage(scene, fixed, "fixed")
    # The moving image is the fixed one seen through the inverse warp: resampling it with ``warp`` aligns it.
    warp = _knownWarp(fixed, rng)
    inverse = sitk.DisplacementFieldTransform(
        sitk.InvertDisplacementField(
            sitk.TransformToDisplacementField(warp, sitk.sitkVectorFloat64, fixed.GetSize(), fixed.GetOrigin(),
                                              fixed.GetSpacing(), fixed.GetDirection()),
            maximumNumberOfIterations=50,
        )
    )  # fmt: skip
    moving = sitk.Resample(fixed, fixed, inverse, sitk.sitkLinear, 0.0)
    movingNode = createVolumeFromSitkImage(scene, moving, "warped")
    return fixedNode, movingNode, fixed, warp


def _pointErrorsMm(transform, warp, fixed, mask) -> np.ndarray:
    """Distances between the found and the known mapping at head voxels (every 4th), mm."""
    indices = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[::4][:, ::-1]
    points = [fixed.TransformIndexToPhysicalPoint([int(i) for i in index]) for index in indices]
    return np.array([np.linalg.norm(np.subtract(transform.TransformPoint(p), warp.TransformPoint(p))) for p in points])


def _demons30(folder) -> str:
    """The shipped demons preset with 30 iterations at full resolution (a preset file path).

    The shipped preset stops after 15, enough on a 1 mm brain (the atlas benchmark) and 49 per cent of
    this test's coarse 4 mm warp; 30 show that the demons stage itself recovers more than half of it.
    """
    preset = json.loads((presets_dir() / "deformable.json").read_text())
    preset["stages"][-1]["level_iterations"] = [30, 30, 30]
    path = folder / "deformable-30.json"
    path.write_text(json.dumps(preset))
    return str(path)


@pytest.mark.parametrize(("transformType", "linearStages"), [("bspline", True), ("deformable", False)])
def test_deformable_recovers_a_known_warp_without_folding(scene, tmp_path, warpedPair, transformType, linearStages):
    fixedNode, movingNode, fixed, warp = warpedPair
    head = sitk.BinaryErode(fixed > 40, [2, 2, 1])
    identity = sitk.Transform(3, sitk.sitkIdentity)
    before = _pointErrorsMm(identity, warp, fixed, head).mean()
    presetFile = _demons30(tmp_path) if transformType == "deformable" else None
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType=transformType, metric="mse",
        linearStages=linearStages, createJacobianVolume=True, presetFile=presetFile,
    )  # fmt: skip
    after = _pointErrorsMm(result.transform, warp, fixed, head)
    assert after.mean() < 0.5 * before, (before, after.mean())
    assert result.quality["foldingFraction"] == 0.0
    assert result.quality["jacobianMin"] > 0.0
    assert result.jacobianVolumeNode is not None
    # The node (modeling, RAS) carries a moving point back onto the fixed point it came from.
    toParent = result.transformNode.GetTransformToParent()
    index = [32, 32, 31]
    fixedLps = np.array(fixed.TransformIndexToPhysicalPoint(index))
    movingLps = np.array(result.transform.TransformPoint(tuple(fixedLps)))
    backRas = np.array(toParent.TransformPoint((-movingLps[0], -movingLps[1], movingLps[2])))
    assert np.linalg.norm(backRas - (-fixedLps[0], -fixedLps[1], fixedLps[2])) < 0.1


def test_cancel_during_demons_leaves_the_scene_unchanged(scene, warpedPair):
    fixedNode, movingNode, _, _ = warpedPair
    token = CancelToken()

    def progress(fraction, message):
        if message.startswith("deformable"):
            token.cancel()

    before = scene.GetNumberOfNodes()
    with pytest.raises(MedAICancelledError):
        MedAIRegistrationLogic().registerVolumes(
            fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="deformable", metric="mse",
            progress=progress, cancelToken=token,
        )  # fmt: skip
    assert scene.GetNumberOfNodes() == before


def test_jacobian_folding_and_inverse_consistency_on_known_fields():
    reference = sitk.Image([20, 20, 10], sitk.sitkUInt8)
    reference.SetSpacing([2.0, 2.0, 3.0])
    scaling = sitk.ScaleTransform(3, [1.1, 0.9, 1.0])
    jacobian = jacobian_determinant_image(scaling, reference)
    assert np.allclose(sitk.GetArrayViewFromImage(jacobian), 0.99)
    assert folding_fraction(jacobian) == 0.0
    # A field that flips x in the middle of the grid folds there.
    field = np.zeros((10, 20, 20, 3))
    x = np.arange(20) * 2.0
    field[..., 0] = np.where((x > 10) & (x < 30), -2.0 * (x - 20.0), 0.0)[None, None, :]
    folded = sitk.GetImageFromArray(field, isVector=True)
    folded.CopyInformation(reference)
    foldedTransform = sitk.DisplacementFieldTransform(folded)
    share = folding_fraction(jacobian_determinant_image(foldedTransform, reference))
    assert 0.2 < share < 0.6
    assert inverse_consistency_error_mm(scaling, scaling.GetInverse(), reference) < 1e-9
    assert inverse_consistency_error_mm(scaling, sitk.Transform(3, sitk.sitkIdentity), reference) > 1.0


def _svfPreset(tmp_path, **changes) -> str:
    stage = {
        "transform": "deformable", "method": "svf", "level_iterations": [40, 20], "shrink_factors": [2, 1],
        "smoothing_mm": [2.0, 0.0], "learning_rate": 1.0, "regularization": 0.5, "velocity_shrink": 1.0,
        **changes,
    }  # fmt: skip
    path = tmp_path / "svf.json"
    path.write_text(json.dumps({"description": "test", "stages": [stage]}))
    return str(path)


def test_svf_recovers_a_known_warp_with_an_invertible_field(scene, tmp_path, warpedPair):
    fixedNode, movingNode, fixed, warp = warpedPair
    head = sitk.BinaryErode(fixed > 40, [2, 2, 1])
    before = _pointErrorsMm(sitk.Transform(3, sitk.sitkIdentity), warp, fixed, head).mean()
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="deformable",
        presetFile=_svfPreset(tmp_path), createJacobianVolume=True,
    )  # fmt: skip
    after = _pointErrorsMm(result.transform, warp, fixed, head)
    # Measured: 1.12 mm -> 0.58 mm (the warp is a third of a 4 mm voxel; 60+30 iterations give the same).
    assert after.mean() < 0.6 * before, (before, after.mean())
    assert result.quality["foldingFraction"] == 0.0
    assert result.transformNode.IsA("vtkMRMLGridTransformNode")
    # One row per optimiser iteration; the metric (minus the local NCC) went down on the coarse level.
    metric = [result.tableNode.GetTable().GetValueByName(row, "metric").ToDouble() for row in range(60)]
    assert result.tableNode.GetNumberOfRows() == 60 and metric[39] < metric[0]


def test_svf_and_projective_give_identity_for_a_volume_registered_to_itself(scene, tmp_path):
    volume = sampledata.loadSampleData(scene, "KmeansT1")
    copy = createVolumeFromSitkImage(scene, sitkImageFromVolume(volume), "copy")
    logic = MedAIRegistrationLogic()
    result = logic.registerVolumes(
        fixedVolumeNode=volume, movingVolumeNode=copy, transformType="deformable", linearStages=False,
        presetFile=_svfPreset(tmp_path),
    )  # fmt: skip
    field = sitk.GetArrayViewFromImage(result.transform.Downcast().GetDisplacementField())
    assert np.abs(field).max() < 1e-3
    slice2D = sampledata.loadSampleData(scene, "BrainProtonDensitySliceBorder20")
    slice2DCopy = createVolumeFromSitkImage(scene, sitkImageFromVolume(slice2D), "slice copy")
    result = logic.registerVolumes(
        fixedVolumeNode=slice2D, movingVolumeNode=slice2DCopy, transformType="projective", metric="mse",
        linearStages=False,
    )  # fmt: skip
    field = sitk.GetArrayViewFromImage(result.transform.Downcast().GetDisplacementField())
    assert np.abs(field).max() < 1e-3


def test_demons_with_a_fixed_mask_works_in_the_mask_box_and_leaves_the_rest_still(scene, tmp_path, warpedPair):
    """With a fixed mask, demons runs on the mask's bounding box (plus a margin) only: inside, most of the
    warp is recovered; beyond the box, nothing moves; the field lies on the whole fixed grid."""
    fixedNode, movingNode, fixed, warp = warpedPair
    head = sitk.BinaryErode(fixed > 40, [2, 2, 1])
    size = fixed.GetSize()
    box = sitk.Image(size, sitk.sitkUInt8)
    box.CopyInformation(fixed)
    box[size[0] // 2 :, :, :] = 1  # the left half of the image (LPS x grows to the left)
    mask = sitk.Mask(head, box)
    maskNode = createVolumeFromSitkImage(scene, mask, "left half of the head", True)
    before = _pointErrorsMm(sitk.Transform(3, sitk.sitkIdentity), warp, fixed, mask).mean()
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixedNode, movingVolumeNode=movingNode, transformType="deformable", metric="mse",
        linearStages=False, fixedMaskNode=maskNode, presetFile=_demons30(tmp_path),
    )  # fmt: skip
    # Less than the unmasked 0.5: the mask's cut through the head is an edge in both masked images, and
    # matching it holds the field back near the cut (0.56 of the error was left when this was written).
    assert _pointErrorsMm(result.transform, warp, fixed, mask).mean() < 0.6 * before
    field = sitk.DisplacementFieldTransform(result.transform).GetDisplacementField()
    assert field.GetSize() == size and np.allclose(field.GetOrigin(), fixed.GetOrigin())
    displacement = np.linalg.norm(sitk.GetArrayFromImage(field), axis=-1)  # (k, j, i)
    margin = 4 * 4  # 4 voxels of the coarsest level (shrink 4)
    beyond = displacement[:, :, : size[0] // 2 - margin]
    assert beyond.size and beyond.max() == 0.0
    assert displacement[:, :, size[0] // 2 :].max() > 1.0  # inside, the field is real
