"""Geometry bridge for volumes: MRML <-> numpy, SimpleITK and MONAI on real slicer-core nodes.

Every case is checked for index-to-physical agreement (1e-6 mm) between MRML, SimpleITK and
MONAI, for exact array and geometry round trips, and against MONAI's own LoadImage reading a
file that SimpleITK wrote.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.volumes import (
    LPS_TO_RAS,
    arrayFromVolume,
    createVolumeFromArray,
    createVolumeFromMetaTensor,
    createVolumeFromSitkImage,
    ijkToRasFromSitkImage,
    ijkToRasFromVolume,
    metaTensorFromVolume,
    sameGeometry,
    sitkImageFromVolume,
    updateVolumeFromArray,
)

TOLERANCE_MM = 1e-6
# Size in IJK order, spacing in mm, random rotation, axis order and flips of the direction matrix.
GEOMETRY_CASES = {
    "oblique": dict(sizeIjk=(23, 19, 17), spacingMm=(1.1, 0.9, 1.3), rotate=True, axes=(0, 1, 2), flips=()),
    "anisotropic-0.7x0.7x3.0": dict(
        sizeIjk=(24, 20, 9), spacingMm=(0.7, 0.7, 3.0), rotate=False, axes=(0, 1, 2), flips=()
    ),
    "anisotropic-3.0x0.7x0.7": dict(
        sizeIjk=(9, 24, 20), spacingMm=(3.0, 0.7, 0.7), rotate=False, axes=(0, 1, 2), flips=()
    ),
    "odd-size-37x53x11": dict(sizeIjk=(37, 53, 11), spacingMm=(0.9, 1.2, 2.5), rotate=False, axes=(0, 1, 2), flips=()),
    "flipped-axes": dict(sizeIjk=(15, 22, 13), spacingMm=(0.8, 1.0, 1.5), rotate=False, axes=(1, 2, 0), flips=(0, 2)),
    "oblique-flipped-anisotropic": dict(
        sizeIjk=(37, 53, 11), spacingMm=(0.7, 0.7, 3.0), rotate=True, axes=(0, 2, 1), flips=(1,)
    ),
}
CASE_NAMES = list(GEOMETRY_CASES)


def randomRotation(rng: np.random.Generator, minDegrees: float = 5.0, maxDegrees: float = 30.0) -> np.ndarray:
    """A rotation by 5-30 degrees about a random axis (Rodrigues' formula)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(minDegrees, maxDegrees))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def makeGeometry(caseName: str, rng: np.random.Generator) -> tuple[tuple[int, int, int], np.ndarray]:
    """Return (size in IJK order, IJK-to-RAS matrix) for one of GEOMETRY_CASES."""
    case = GEOMETRY_CASES[caseName]
    directions = np.eye(3)[:, list(case["axes"])]
    for axis in case["flips"]:
        directions[:, axis] *= -1
    if case["rotate"]:
        directions = randomRotation(rng) @ directions
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = directions * np.array(case["spacingMm"])
    ijkToRas[:3, 3] = rng.uniform(-100.0, 100.0, size=3)
    return case["sizeIjk"], ijkToRas


def makeVolume(scene, caseName, rng, dtype=np.int16, labelmap=False):
    """A volume node of the given case filled with random voxels; returns (node, array, ijkToRas)."""
    sizeIjk, ijkToRas = makeGeometry(caseName, rng)
    array = rng.integers(0, 120, size=tuple(reversed(sizeIjk))).astype(dtype)
    return createVolumeFromArray(scene, array, ijkToRas, caseName, labelmap=labelmap), array, ijkToRas


def snapshot(volumeNode):
    """What must not change when a node is only read."""
    return arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode), volumeNode.GetScene().GetNumberOfNodes()


def assertUnchanged(volumeNode, before):
    after = snapshot(volumeNode)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]


def sampleIndices(rng, sizeIjk, count=20):
    """Grid corners plus random voxel indices, as an (N, 3) IJK array."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in sizeIjk], indexing="ij")).reshape(3, -1).T
    return np.vstack([corners, np.column_stack([rng.integers(0, n, count) for n in sizeIjk])])


@pytest.mark.parametrize("caseName", CASE_NAMES)
def test_array_round_trip_is_exact_and_copies(scene, rng, caseName):
    volumeNode, array, ijkToRas = makeVolume(scene, caseName, rng)
    arrayBefore = array.copy()

    result = arrayFromVolume(volumeNode)

    assert result.dtype == np.int16 and result.shape == array.shape
    np.testing.assert_array_equal(result, array)
    np.testing.assert_allclose(ijkToRasFromVolume(volumeNode), ijkToRas, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(array, arrayBefore)
    result[0, 0, 0] += 1  # a copy: the node must not see this
    assert arrayFromVolume(volumeNode)[0, 0, 0] == array[0, 0, 0]
    array[0, 0, 1] += 1  # and the node does not share the caller's memory either
    assert arrayFromVolume(volumeNode)[0, 0, 1] == arrayBefore[0, 0, 1]


@pytest.mark.parametrize("caseName", CASE_NAMES)
def test_index_to_physical_agrees_between_mrml_simpleitk_and_monai(scene, rng, caseName):
    import vtk

    volumeNode, array, _ = makeVolume(scene, caseName, rng)
    before = snapshot(volumeNode)
    image = sitkImageFromVolume(volumeNode)
    tensor = metaTensorFromVolume(volumeNode)
    assertUnchanged(volumeNode, before)
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)  # MRML's own matrix, not the bridge's reading of it
    affine = tensor.affine.numpy()

    for i, j, k in sampleIndices(rng, image.GetSize()):
        mrmlRas = np.array(matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3])
        sitkRas = LPS_TO_RAS[:3, :3] @ np.array(image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
        monaiRas = (affine @ [i, j, k, 1.0])[:3]
        np.testing.assert_allclose(sitkRas, mrmlRas, rtol=0, atol=TOLERANCE_MM)
        np.testing.assert_allclose(monaiRas, mrmlRas, rtol=0, atol=TOLERANCE_MM)
        assert image.GetPixel(int(i), int(j), int(k)) == array[k, j, i] == tensor[0, i, j, k].item()


@pytest.mark.parametrize("caseName", CASE_NAMES)
def test_simpleitk_round_trip_keeps_voxels_and_direction(scene, rng, caseName):
    volumeNode, array, ijkToRas = makeVolume(scene, caseName, rng)
    image = sitkImageFromVolume(volumeNode)

    direction = np.array(image.GetDirection()).reshape(3, 3)
    expectedDirection = LPS_TO_RAS[:3, :3] @ ijkToRas[:3, :3] / np.array(GEOMETRY_CASES[caseName]["spacingMm"])
    np.testing.assert_allclose(direction, expectedDirection, rtol=0, atol=1e-12)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), rtol=0, atol=1e-12)
    assert np.sign(np.linalg.det(direction)) == np.sign(np.linalg.det(ijkToRas[:3, :3]))
    np.testing.assert_allclose(image.GetSpacing(), GEOMETRY_CASES[caseName]["spacingMm"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ijkToRasFromSitkImage(image), ijkToRas, rtol=0, atol=1e-12)

    imageBefore = sitk.GetArrayFromImage(image)
    copyNode = createVolumeFromSitkImage(scene, image, "fromSitk")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), imageBefore)
    np.testing.assert_array_equal(arrayFromVolume(copyNode), array)
    assert arrayFromVolume(copyNode).dtype == array.dtype
    np.testing.assert_allclose(ijkToRasFromVolume(copyNode), ijkToRas, rtol=0, atol=1e-12)
    assert sameGeometry(volumeNode, copyNode, toleranceMm=1e-9)


@pytest.mark.parametrize("caseName", CASE_NAMES)
def test_metatensor_round_trip_keeps_voxels_and_affine(scene, rng, caseName):
    volumeNode, array, ijkToRas = makeVolume(scene, caseName, rng)
    tensor = metaTensorFromVolume(volumeNode)

    assert tuple(tensor.shape) == (1, *GEOMETRY_CASES[caseName]["sizeIjk"])
    np.testing.assert_array_equal(tensor[0].numpy(), array.transpose(2, 1, 0))
    np.testing.assert_allclose(tensor.affine.numpy(), ijkToRas, rtol=0, atol=1e-12)
    assert str(tensor.meta["space"]) == "RAS"

    tensorBefore = tensor.clone()
    copyNode = createVolumeFromMetaTensor(scene, tensor, "fromMonai")
    assert bool((tensor == tensorBefore).all())
    np.testing.assert_array_equal(arrayFromVolume(copyNode), array)
    np.testing.assert_allclose(ijkToRasFromVolume(copyNode), ijkToRas, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")  # MONAI's DICOM plugin, unused here
@pytest.mark.parametrize("caseName", CASE_NAMES)
@pytest.mark.parametrize(
    ("extension", "reader", "toleranceMm"),
    # NIfTI stores its affine in float32, so positions 100 mm away are exact to about 1e-5 mm only.
    [(".nrrd", "NrrdReader", TOLERANCE_MM), (".nii.gz", "NibabelReader", 1e-4)],
)
def test_monai_loadimage_reads_what_the_bridge_gives(scene, rng, tmp_path, caseName, extension, reader, toleranceMm):
    from monai.transforms import LoadImage

    volumeNode, _, _ = makeVolume(scene, caseName, rng)
    path = tmp_path / f"volume{extension}"
    sitk.WriteImage(sitkImageFromVolume(volumeNode), str(path))

    loaded = LoadImage(image_only=True, reader=reader, dtype=None)(str(path))
    tensor = metaTensorFromVolume(volumeNode)

    assert tuple(loaded.shape) == tuple(tensor.shape[1:])
    np.testing.assert_array_equal(loaded.numpy(), tensor[0].numpy())
    np.testing.assert_allclose(loaded.affine.numpy(), tensor.affine.numpy(), rtol=0, atol=toleranceMm)
    assert str(loaded.meta["space"]) == str(tensor.meta["space"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_voxel_type_is_kept_through_every_bridge(scene, rng, dtype):
    volumeNode, array, _ = makeVolume(scene, "oblique", rng, dtype=dtype)

    assert arrayFromVolume(volumeNode).dtype == dtype
    fromSitk = createVolumeFromSitkImage(scene, sitkImageFromVolume(volumeNode), "sitk")
    tensor = metaTensorFromVolume(volumeNode)
    assert float(tensor.max()) == float(array.max())  # torch has no max for uint16: the bridge widens it
    fromMonai = createVolumeFromMetaTensor(scene, tensor, "monai")
    for node, expected in ((fromSitk, dtype), (fromMonai, np.int32 if dtype == np.uint16 else dtype)):
        assert arrayFromVolume(node).dtype == expected
        np.testing.assert_array_equal(arrayFromVolume(node), array)


def test_linear_parent_transform_is_honoured(scene, rng):
    volumeNode, array, ijkToRas = makeVolume(scene, "oblique", rng)
    parentToWorld = np.eye(4)
    parentToWorld[:3, :3] = randomRotation(rng)
    parentToWorld[:3, 3] = [12.5, -3.0, 40.0]
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rigid")
    transformNode.SetMatrixTransformToParent(_vtkMatrix(parentToWorld))
    volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())
    worldIjkToRas = parentToWorld @ ijkToRas

    np.testing.assert_allclose(ijkToRasFromVolume(volumeNode), worldIjkToRas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ijkToRasFromSitkImage(sitkImageFromVolume(volumeNode)), worldIjkToRas, atol=1e-12)
    np.testing.assert_allclose(metaTensorFromVolume(volumeNode).affine.numpy(), worldIjkToRas, atol=1e-12)
    hardened = createVolumeFromArray(scene, array, worldIjkToRas, "hardened")
    assert sameGeometry(volumeNode, hardened, toleranceMm=1e-9)
    assert not sameGeometry(volumeNode, createVolumeFromArray(scene, array, ijkToRas, "local"))


def _vtkMatrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, array[row, column])
    return matrix


def addNonLinearTransform(scene, name="warp"):
    """A thin-plate-spline transform node: a real non-linear parent transform."""
    import vtk

    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for point in [(0, 0, 0), (50, 0, 0), (0, 50, 0), (0, 0, 50), (30, 30, 30)]:
        source.InsertNextPoint(point)
        target.InsertNextPoint(point[0] + (4.0 if point == (30, 30, 30) else 0.0), point[1], point[2])
    thinPlate = vtk.vtkThinPlateSplineTransform()
    thinPlate.SetSourceLandmarks(source)
    thinPlate.SetTargetLandmarks(target)
    thinPlate.SetBasisToR()
    transformNode = scene.AddNewNodeByClass("vtkMRMLTransformNode", name)
    transformNode.SetAndObserveTransformToParent(thinPlate)
    assert not transformNode.IsTransformToWorldLinear()
    return transformNode


@pytest.mark.parametrize("reader", [ijkToRasFromVolume, sitkImageFromVolume, metaTensorFromVolume])
def test_non_linear_parent_transform_is_refused_with_its_name(scene, rng, reader):
    volumeNode, _, _ = makeVolume(scene, "oblique", rng)
    volumeNode.SetAndObserveTransformNodeID(addNonLinearTransform(scene, "brainWarp").GetID())
    nodeCount = scene.GetNumberOfNodes()

    with pytest.raises(MedAIInputError, match="non-linear transform 'brainWarp'"):
        reader(volumeNode)
    assert scene.GetNumberOfNodes() == nodeCount


def test_same_geometry_uses_the_tolerance_in_mm(scene, rng):
    volumeNode, array, ijkToRas = makeVolume(scene, "oblique", rng)
    shifted = ijkToRas.copy()
    shifted[:3, 3] += np.array([0.6, 0.0, 0.8]) * 1e-4  # 1e-4 mm away

    assert sameGeometry(volumeNode, createVolumeFromArray(scene, array, shifted, "near"), toleranceMm=2e-4)
    assert not sameGeometry(volumeNode, createVolumeFromArray(scene, array, shifted, "far"), toleranceMm=0.5e-4)
    assert not sameGeometry(volumeNode, createVolumeFromArray(scene, array[:-1], ijkToRas, "smaller"))


def test_update_volume_from_array_keeps_geometry(scene, rng):
    volumeNode, array, ijkToRas = makeVolume(scene, "flipped-axes", rng)
    newArray = (array * 2).astype(np.float32)
    newBefore = newArray.copy()

    updateVolumeFromArray(volumeNode, newArray)
    newArray += 1

    np.testing.assert_array_equal(arrayFromVolume(volumeNode), newBefore)
    assert arrayFromVolume(volumeNode).dtype == np.float32
    np.testing.assert_allclose(ijkToRasFromVolume(volumeNode), ijkToRas, rtol=0, atol=1e-12)


def test_two_dimensional_sitk_image_becomes_one_slice(scene):
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((10.0, 20.0))

    volumeNode = createVolumeFromSitkImage(scene, image, "slice")

    assert arrayFromVolume(volumeNode).shape == (1, 3, 4)
    np.testing.assert_allclose(ijkToRasFromVolume(volumeNode) @ [3, 2, 0, 1], [-11.5, -20.5, 0.0, 1.0])


def test_metatensor_in_lps_space_is_converted_to_ras(scene, rng):
    from monai.utils import SpaceKeys

    volumeNode, array, ijkToRas = makeVolume(scene, "oblique", rng)
    tensor = metaTensorFromVolume(volumeNode)
    tensor.affine = LPS_TO_RAS @ tensor.affine.numpy()
    tensor.meta["space"] = SpaceKeys.LPS

    copyNode = createVolumeFromMetaTensor(scene, tensor, "lps")

    np.testing.assert_allclose(ijkToRasFromVolume(copyNode), ijkToRas, rtol=0, atol=1e-12)


def test_labelmap_volume_keeps_its_class_and_integer_voxels(scene, rng):
    import slicer

    volumeNode, array, _ = makeVolume(scene, "odd-size-37x53x11", rng, dtype=np.uint8, labelmap=True)

    assert isinstance(volumeNode, slicer.vtkMRMLLabelMapVolumeNode)
    assert isinstance(
        createVolumeFromSitkImage(scene, sitkImageFromVolume(volumeNode), "l", labelmap=True),
        slicer.vtkMRMLLabelMapVolumeNode,
    )
    np.testing.assert_array_equal(arrayFromVolume(volumeNode), array)


@pytest.mark.parametrize(
    ("array", "ijkToRas", "labelmap", "message"),
    [
        (np.zeros((4, 5)), np.eye(4), False, "3D voxel array"),
        (np.zeros((4, 5, 6), np.complex64), np.eye(4), False, "not supported"),
        (np.zeros((4, 5, 6), np.float32), np.eye(4), True, "integer voxels"),
        (np.zeros((4, 5, 6)), np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), False, "shears"),
        (np.zeros((4, 5, 6)), np.diag([1.0, 0.0, 1.0, 1.0]), False, "zero-length axis"),
        (np.zeros((4, 5, 6)), np.eye(3), False, "4x4"),
        (np.zeros((4, 5, 6)), np.diag([1.0, 1.0, np.nan, 1.0]), False, "finite"),
    ],
)
def test_bad_input_is_refused_before_the_scene_changes(scene, array, ijkToRas, labelmap, message):
    with pytest.raises(MedAIInputError, match=message):
        createVolumeFromArray(scene, array, ijkToRas, "bad", labelmap=labelmap)
    assert scene.GetNumberOfNodes() == 0


def test_vector_volumes_are_refused_clearly(scene):
    import slicer
    import vtk

    vectorNode = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(4, 3, 2)
    imageData.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    vectorNode.SetAndObserveImageData(imageData)
    rgbImage = sitk.Image([4, 3, 2], sitk.sitkVectorUInt8, 3)

    for call in (arrayFromVolume, sitkImageFromVolume, metaTensorFromVolume):
        with pytest.raises(MedAIInputError, match="several components"):
            call(vectorNode)
    with pytest.raises(MedAIInputError, match="several components"):
        createVolumeFromSitkImage(scene, rgbImage, "rgb")
    with pytest.raises(MedAIInputError, match="no voxels"):
        arrayFromVolume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))
    assert not isinstance(vectorNode, slicer.vtkMRMLLabelMapVolumeNode)
