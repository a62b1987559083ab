"""Transform bridge: SimpleITK (resampling, LPS) <-> Slicer transform nodes (modeling "to parent", RAS).

Every check compares mapped points or resampled voxels on real MRML nodes (slicer-core), real
SimpleITK transforms and Slicer's own transform files (vtkMRMLTransformStorageNode), never a
hard-coded number.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.transforms import (
    createTransformNodeFromSitkTransform,
    lpsToRas,
    matrixFromSitkLinearTransform,
    rasToLps,
    resamplingMatrixLpsFromToParentRas,
    sitkTransformFromTransformNode,
    toParentRasFromResamplingMatrixLps,
    updateTransformNodeFromSitkTransform,
)

LINEAR_TOLERANCE_MM = 1e-6
NONLINEAR_TOLERANCE_MM = 1e-4

# (size, spacing mm, flipped): oblique in every case, anisotropic both ways, odd sizes.
GRIDS = {
    "thick-slices": ((9, 11, 5), (0.7, 0.7, 3.0), False),
    "thick-x-flipped": ((7, 13, 9), (3.0, 0.7, 0.7), True),
}


# ---------------------------------------------------------------------------------------------
# Helpers (independent of the bridge: they only use SimpleITK, VTK and MRML directly)


def _obliqueDirection(rng, flipped: bool) -> np.ndarray:
    axis = rng.normal(size=3)
    rotation = sitk.VersorTransform(tuple(axis / np.linalg.norm(axis)), np.deg2rad(rng.uniform(5, 30)))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3)
    if flipped:
        direction[:, 0] *= -1.0
    return direction


def _gridImage(rng, size, spacing, flipped, pixelType=sitk.sitkFloat32):
    image = sitk.Image(list(size), pixelType)
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(rng.uniform(-60, 60, 3)))
    image.SetDirection(tuple(_obliqueDirection(rng, flipped).ravel()))
    return image


def _insidePointsLps(rng, image, count=40, marginVoxels=1.0):
    """Random physical points (LPS) strictly inside an image, at least `marginVoxels` from its border."""
    high = np.array(image.GetSize()) - 1 - marginVoxels
    return [image.TransformContinuousIndexToPhysicalPoint(tuple(rng.uniform(marginVoxels, high))) for _ in range(count)]


def _gridPointsLps(image):
    return [image.TransformIndexToPhysicalPoint(tuple(int(v) for v in index)) for index in np.ndindex(*image.GetSize())]


def _mapRas(vtkTransform, pointsLps) -> np.ndarray:
    """Map LPS points through a VTK transform that works in RAS; return LPS points."""
    assert len(pointsLps) > 0
    return np.array([rasToLps(vtkTransform.TransformPoint(*lpsToRas(point))) for point in pointsLps])


def _mapSitk(transform, pointsLps) -> np.ndarray:
    assert len(pointsLps) > 0
    return np.array([transform.TransformPoint(tuple(float(v) for v in point)) for point in pointsLps])


def _randomBSpline(rng, image, meshSize=(3, 4, 2), amplitudeMm=2.0):
    bspline = sitk.BSplineTransformInitializer(image, list(meshSize), 3)
    bspline.SetParameters(tuple(rng.normal(0.0, amplitudeMm, bspline.GetNumberOfParameters())))
    return bspline


def _smoothDisplacementField(rng, image, amplitudeMm=1.5):
    """A smooth (invertible) displacement field on the image grid, in LPS mm."""
    indices = np.stack(np.meshgrid(*(np.arange(n) for n in image.GetSize()[::-1]), indexing="ij"), axis=-1)
    phases = rng.uniform(0, 2 * np.pi, 3)
    vectors = np.stack([amplitudeMm * np.sin(indices.sum(axis=-1) / (3.0 + c) + phases[c]) for c in range(3)], axis=-1)
    field = sitk.GetImageFromArray(vectors.astype(np.float64), isVector=True)
    field.CopyInformation(image)
    return field


def _writeWithSlicer(scene, transformNode, path):
    storageNode = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storageNode.SetFileName(str(path))
    assert storageNode.WriteData(transformNode) == 1


def _readWithSlicer(scene, path, nodeClass="vtkMRMLTransformNode"):
    transformNode = scene.AddNewNodeByClass(nodeClass)
    storageNode = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storageNode.SetFileName(str(path))
    assert storageNode.ReadData(transformNode) == 1
    return transformNode


def _volumeNodeFromSitk(scene, image):
    """A scalar volume node with the image's voxels and geometry (LPS -> RAS by flipping x and y)."""
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    ijkToLps[:3, 3] = image.GetOrigin()
    volumeNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    volumeNode.SetIJKToRASMatrix(_vtkMatrix(np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijkToLps))
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(*image.GetSize())
    voxels = sitk.GetArrayFromImage(image)
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=True))
    volumeNode.SetAndObserveImageData(imageData)
    return volumeNode


def _sitkImageFromVolumeNode(volumeNode):
    """The voxels and geometry of a volume node as a SimpleITK image (LPS)."""
    imageData = volumeNode.GetImageData()
    dims = imageData.GetDimensions()
    voxels = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(dims[::-1])
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ijkToLps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _arrayFromVtkMatrix(matrix)
    spacing = np.linalg.norm(ijkToLps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(voxels.copy())
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((ijkToLps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(ijkToLps[:3, 3]))
    return image


def _phantom(rng, image):
    """A smooth 'real-ish' image: blobs of different brightness plus noise, on the image's grid."""
    indices = np.stack(np.meshgrid(*(np.arange(n) for n in image.GetSize()[::-1]), indexing="ij"), axis=-1)
    voxels = rng.normal(0.0, 2.0, indices.shape[:3])
    for brightness in (100.0, 60.0, 30.0):
        centre = rng.uniform(0, image.GetSize()[::-1])
        radius = rng.uniform(2.0, 5.0)
        voxels += brightness * np.exp(-np.sum(((indices - centre) / radius) ** 2, axis=-1))
    phantom = sitk.GetImageFromArray(voxels.astype(np.float32))
    phantom.CopyInformation(image)
    return phantom


def _vtkMatrix(array):
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row][column]))
    return matrix


def _arrayFromVtkMatrix(matrix):
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _rigidAboutObliqueAxis(rng):
    """A rigid resampling transform (LPS): 10-30 degrees about an oblique axis, off-origin centre, translation."""
    axis = rng.normal(size=3)
    rigid = sitk.VersorRigid3DTransform()
    rigid.SetRotation(tuple(axis / np.linalg.norm(axis)), np.deg2rad(rng.uniform(10, 30)))
    rigid.SetCenter(tuple(rng.uniform(-50, 50, 3)))
    rigid.SetTranslation(tuple(rng.uniform(-20, 20, 3)))
    return rigid


# ---------------------------------------------------------------------------------------------
# Linear transforms


def test_rigid_from_sitk_moves_moving_points_onto_fixed_points(scene, rng):
    rigid = _rigidAboutObliqueAxis(rng)
    fixedLps = rng.uniform(-100, 100, (25, 3))
    movingLps = _mapSitk(rigid, fixedLps)

    transformNode = createTransformNodeFromSitkTransform(scene, rigid, "Rigid")

    assert transformNode.IsA("vtkMRMLLinearTransformNode")
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformFromParent(), fixedLps), movingLps, atol=LINEAR_TOLERANCE_MM
    )
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformToParent(), movingLps), fixedLps, atol=LINEAR_TOLERANCE_MM
    )
    # Moving points (markups) placed under the node land on the fixed points in world RAS.
    markupsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    for moving in movingLps:
        markupsNode.AddControlPoint(*lpsToRas(moving))
    markupsNode.SetAndObserveTransformNodeID(transformNode.GetID())
    for index, fixed in enumerate(fixedLps):
        worldRas = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, worldRas)
        np.testing.assert_allclose(rasToLps(worldRas), fixed, atol=LINEAR_TOLERANCE_MM)


def test_rigid_node_to_sitk_maps_fixed_points_to_moving_points(scene, rng):
    # A modeling transform built directly in RAS with VTK, without the bridge.
    axisRas = rng.normal(size=3)
    modelingRas = vtk.vtkTransform()
    modelingRas.Translate(*rng.uniform(-20, 20, 3))
    modelingRas.RotateWXYZ(rng.uniform(10, 30), *axisRas)
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transformNode.SetMatrixTransformToParent(modelingRas.GetMatrix())
    movingRas = rng.uniform(-100, 100, (25, 3))
    fixedRas = np.array([modelingRas.TransformPoint(*point) for point in movingRas])

    resampling = sitkTransformFromTransformNode(transformNode)

    np.testing.assert_allclose(_mapSitk(resampling, rasToLps(fixedRas)), rasToLps(movingRas), atol=LINEAR_TOLERANCE_MM)
    matrixLps = resamplingMatrixLpsFromToParentRas(_arrayFromVtkMatrix(modelingRas.GetMatrix()))
    np.testing.assert_allclose(matrixFromSitkLinearTransform(resampling), matrixLps, atol=1e-9)
    np.testing.assert_allclose(
        toParentRasFromResamplingMatrixLps(matrixLps), _arrayFromVtkMatrix(modelingRas.GetMatrix()), atol=1e-9
    )


@pytest.mark.parametrize("extension", ["h5", "tfm"])
def test_linear_node_written_by_slicer_reads_in_sitk_as_the_bridge_transform(scene, rng, tmp_path, extension):
    rigid = _rigidAboutObliqueAxis(rng)
    transformNode = createTransformNodeFromSitkTransform(scene, rigid, "Rigid")
    path = tmp_path / f"rigid.{extension}"

    _writeWithSlicer(scene, transformNode, path)
    fromSlicerFile = sitk.ReadTransform(str(path))

    pointsLps = rng.uniform(-100, 100, (25, 3))
    np.testing.assert_allclose(
        _mapSitk(fromSlicerFile, pointsLps), _mapSitk(rigid, pointsLps), atol=LINEAR_TOLERANCE_MM
    )
    np.testing.assert_allclose(
        _mapSitk(fromSlicerFile, pointsLps),
        _mapSitk(sitkTransformFromTransformNode(transformNode), pointsLps),
        atol=LINEAR_TOLERANCE_MM,
    )
    # And the other way: a file written by SimpleITK, read by Slicer, equals the bridge's node.
    sitkPath = tmp_path / f"sitk.{extension}"
    sitk.WriteTransform(rigid, str(sitkPath))
    readBySlicer = _readWithSlicer(scene, sitkPath, "vtkMRMLLinearTransformNode")
    np.testing.assert_allclose(
        _mapRas(readBySlicer.GetTransformToParent(), pointsLps),
        _mapRas(transformNode.GetTransformToParent(), pointsLps),
        atol=LINEAR_TOLERANCE_MM,
    )


def _linearTransforms(rng):
    rigid = _rigidAboutObliqueAxis(rng)
    euler = sitk.Euler3DTransform(
        tuple(rng.uniform(-20, 20, 3)), *rng.uniform(-0.5, 0.5, 3), tuple(rng.uniform(-9, 9, 3))
    )
    similarity = sitk.Similarity3DTransform(1.2, (0.3, -0.5, 0.8), 0.4, (4.0, -3.0, 2.0), (10.0, 20.0, -5.0))
    affine = sitk.AffineTransform(tuple(np.eye(3).ravel() + rng.normal(0, 0.1, 9)), (1.0, 2.0, 3.0), (-7.0, 8.0, 9.0))
    translation = sitk.TranslationTransform(3, (5.0, -6.0, 7.0))
    flippedScale = sitk.ScaleTransform(3, (-1.0, 1.5, 0.7))
    return {
        "versor-rigid": rigid,
        "euler": euler,
        "similarity": similarity,
        "affine": affine,
        "translation": translation,
        "flipped-scale": flippedScale,
        "linear-composite": sitk.CompositeTransform([affine, rigid, translation]),
    }


@pytest.mark.parametrize("kind", list(_linearTransforms(np.random.default_rng(0))))
def test_every_linear_type_round_trips(scene, rng, kind):
    transform = _linearTransforms(rng)[kind]
    pointsLps = rng.uniform(-100, 100, (20, 3))
    parametersBefore = transform.GetParameters()

    transformNode = createTransformNodeFromSitkTransform(scene, transform, kind)
    back = sitkTransformFromTransformNode(transformNode)

    assert transformNode.IsA("vtkMRMLLinearTransformNode")
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformFromParent(), pointsLps),
        _mapSitk(transform, pointsLps),
        atol=LINEAR_TOLERANCE_MM,
    )
    np.testing.assert_allclose(_mapSitk(back, pointsLps), _mapSitk(transform, pointsLps), atol=LINEAR_TOLERANCE_MM)
    assert transform.GetParameters() == parametersBefore


def test_resampling_with_sitk_agrees_with_hardening_a_linear_transform(scene, rng):
    moving = _phantom(rng, _gridImage(rng, (37, 53, 11), (0.7, 0.7, 3.0), flipped=True))
    rigid = _rigidAboutObliqueAxis(rng)
    transformNode = createTransformNodeFromSitkTransform(scene, rigid, "Rigid")
    volumeNode = _volumeNodeFromSitk(scene, moving)
    volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())
    landmarkIndex = tuple(
        int(v) for v in np.unravel_index(np.argmax(sitk.GetArrayFromImage(moving)), moving.GetSize()[::-1])[::-1]
    )

    import slicer

    slicer.vtkSlicerTransformLogic.hardenTransform(volumeNode)
    hardened = _sitkImageFromVolumeNode(volumeNode)

    # The landmark voxel, moved onto the fixed space by MRML, maps back to it through the sitk transform.
    fixedLandmark = hardened.TransformIndexToPhysicalPoint(landmarkIndex)
    np.testing.assert_allclose(
        rigid.TransformPoint(fixedLandmark),
        moving.TransformIndexToPhysicalPoint(landmarkIndex),
        atol=LINEAR_TOLERANCE_MM,
    )
    # Resampling the moving image onto the hardened grid with the sitk transform gives it back voxel for voxel.
    resampled = sitk.Resample(moving, hardened, rigid, sitk.sitkLinear, -1000.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(moving), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# B-spline and displacement field transforms


@pytest.mark.parametrize("grid", list(GRIDS))
def test_bspline_round_trips_both_ways(scene, rng, tmp_path, grid):
    size, spacing, flipped = GRIDS[grid]
    image = _gridImage(rng, size, spacing, flipped)
    bspline = _randomBSpline(rng, image)
    pointsLps = _insidePointsLps(rng, image)

    transformNode = createTransformNodeFromSitkTransform(scene, bspline, "BSpline")
    back = sitkTransformFromTransformNode(transformNode)

    assert transformNode.IsA("vtkMRMLBSplineTransformNode")
    expected = _mapSitk(bspline, pointsLps)
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformFromParent(), pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM
    )
    np.testing.assert_allclose(_mapSitk(back, pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM)

    # node -> sitk -> node, starting from a node that Slicer's own reader made from an ITK file.
    path = tmp_path / "bspline.h5"
    sitk.WriteTransform(bspline, str(path))
    readBySlicer = _readWithSlicer(scene, path)
    again = createTransformNodeFromSitkTransform(scene, sitkTransformFromTransformNode(readBySlicer), "Again")
    np.testing.assert_allclose(
        _mapRas(again.GetTransformFromParent(), pointsLps),
        _mapRas(readBySlicer.GetTransformFromParent(), pointsLps),
        atol=NONLINEAR_TOLERANCE_MM,
    )
    np.testing.assert_allclose(
        _mapRas(readBySlicer.GetTransformFromParent(), pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM
    )


@pytest.mark.parametrize("grid", list(GRIDS))
def test_displacement_field_round_trips_both_ways(scene, rng, tmp_path, grid):
    size, spacing, flipped = GRIDS[grid]
    field = _smoothDisplacementField(rng, _gridImage(rng, size, spacing, flipped, sitk.sitkVectorFloat64))
    displacement = sitk.DisplacementFieldTransform(sitk.Image(field))
    pointsLps = _insidePointsLps(rng, field)
    gridPointsLps = _gridPointsLps(field)

    transformNode = createTransformNodeFromSitkTransform(scene, displacement, "Field")
    back = sitkTransformFromTransformNode(transformNode)

    assert transformNode.IsA("vtkMRMLGridTransformNode")
    expected = _mapSitk(displacement, pointsLps)
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformFromParent(), pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM
    )
    np.testing.assert_allclose(_mapSitk(back, pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM)

    # node -> sitk -> node from Slicer's reader, which interpolates cubically: grid points agree exactly.
    path = tmp_path / "field.h5"
    sitk.WriteTransform(displacement, str(path))
    readBySlicer = _readWithSlicer(scene, path)
    viaBridge = sitkTransformFromTransformNode(readBySlicer)
    again = createTransformNodeFromSitkTransform(scene, viaBridge, "Again")
    slicerOnGrid = _mapRas(readBySlicer.GetTransformFromParent(), gridPointsLps)
    np.testing.assert_allclose(slicerOnGrid, _mapSitk(displacement, gridPointsLps), atol=NONLINEAR_TOLERANCE_MM)
    np.testing.assert_allclose(_mapSitk(viaBridge, gridPointsLps), slicerOnGrid, atol=NONLINEAR_TOLERANCE_MM)
    np.testing.assert_allclose(
        _mapRas(again.GetTransformFromParent(), gridPointsLps), slicerOnGrid, atol=NONLINEAR_TOLERANCE_MM
    )


def test_grid_node_made_with_vtk_converts_to_the_same_displacement_field(scene, rng):
    # A grid built in RAS with VTK alone: extent not starting at 0, scaled and shifted vectors, flipped axis.
    extent = (2, 8, 1, 9, 3, 6)
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    gridImage = vtk.vtkImageData()
    gridImage.SetExtent(*extent)
    gridImage.SetOrigin(*rng.uniform(-30, 30, 3))
    gridImage.SetSpacing(3.0, 0.7, 0.7)
    vectors = rng.normal(0.0, 0.5, (int(np.prod(dims)), 3))
    gridImage.GetPointData().SetScalars(numpy_support.numpy_to_vtk(vectors, deep=True))
    import slicer

    gridRas = slicer.vtkOrientedGridTransform()
    gridRas.SetDisplacementGridData(gridImage)
    directionRas = np.eye(4)
    directionRas[:3, :3] = _obliqueDirection(rng, flipped=True)
    gridRas.SetGridDirectionMatrix(_vtkMatrix(directionRas))
    gridRas.SetDisplacementScale(1.5)
    gridRas.SetDisplacementShift(0.1)
    gridRas.SetInterpolationModeToLinear()
    transformNode = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    transformNode.SetAndObserveTransformFromParent(gridRas)
    ijkToRas = directionRas[:3, :3] * np.array(gridImage.GetSpacing())
    insideRas = [
        np.array(gridImage.GetOrigin())
        + ijkToRas @ [rng.uniform(lo + 1, hi - 1) for lo, hi in zip(extent[::2], extent[1::2])]
        for _ in range(30)
    ]
    pointsLps = rasToLps(np.array(insideRas))

    displacement = sitkTransformFromTransformNode(transformNode)

    np.testing.assert_allclose(
        _mapSitk(displacement, pointsLps), _mapRas(gridRas, pointsLps), atol=NONLINEAR_TOLERANCE_MM
    )
    again = createTransformNodeFromSitkTransform(scene, displacement, "Again")
    np.testing.assert_allclose(
        _mapRas(again.GetTransformFromParent(), pointsLps), _mapRas(gridRas, pointsLps), atol=NONLINEAR_TOLERANCE_MM
    )


@pytest.mark.parametrize("kind", ["bspline", "field-h5", "field-nrrd"])
def test_nonlinear_nodes_save_and_reload_exactly(scene, rng, tmp_path, kind):
    size, spacing, flipped = GRIDS["thick-x-flipped"]
    image = _gridImage(rng, size, spacing, flipped, sitk.sitkVectorFloat64)
    if kind == "bspline":
        transform = _randomBSpline(rng, image)
        pointsLps = _insidePointsLps(rng, image)
    else:
        transform = sitk.DisplacementFieldTransform(_smoothDisplacementField(rng, image))
        pointsLps = _gridPointsLps(image)  # Slicer's reader interpolates cubically between them
    transformNode = createTransformNodeFromSitkTransform(scene, transform, kind)
    path = tmp_path / ("transform.nrrd" if kind == "field-nrrd" else "transform.h5")

    _writeWithSlicer(scene, transformNode, path)
    reloaded = _readWithSlicer(scene, path)

    np.testing.assert_allclose(
        _mapRas(reloaded.GetTransformFromParent(), pointsLps),
        _mapRas(transformNode.GetTransformFromParent(), pointsLps),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        _mapSitk(sitkTransformFromTransformNode(reloaded), pointsLps), _mapSitk(transform, pointsLps), atol=1e-9
    )
    if kind != "field-nrrd":
        np.testing.assert_allclose(
            _mapSitk(sitk.ReadTransform(str(path)), pointsLps), _mapSitk(transform, pointsLps), atol=1e-9
        )


def test_resampling_with_sitk_agrees_with_hardening_a_bspline(scene, rng):
    moving = _phantom(rng, _gridImage(rng, (37, 53, 11), (0.7, 0.7, 3.0), flipped=False))
    bspline = _randomBSpline(rng, moving, amplitudeMm=1.5)
    transformNode = createTransformNodeFromSitkTransform(scene, bspline, "BSpline")
    volumeNode = _volumeNodeFromSitk(scene, moving)
    volumeNode.SetAndObserveTransformNodeID(transformNode.GetID())

    import slicer

    slicer.vtkSlicerTransformLogic.hardenTransform(volumeNode)
    hardened = _sitkImageFromVolumeNode(volumeNode)

    resampled = sitk.GetArrayFromImage(sitk.Resample(moving, hardened, bspline, sitk.sitkLinear, 0.0))
    # Compare where the sitk sample point lies inside the moving image (MRML fills the outside differently).
    ones = sitk.Image(moving.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(moving)
    inside = sitk.GetArrayFromImage(sitk.Resample(ones, hardened, bspline, sitk.sitkNearestNeighbor, 0.0)) > 0
    inside &= sitk.GetArrayFromImage(sitk.Resample(ones, hardened, bspline, sitk.sitkLinear, 0.0)) > 0.999
    assert inside.mean() > 0.3
    np.testing.assert_allclose(sitk.GetArrayFromImage(hardened)[inside], resampled[inside], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Composites, parents, 2D, modeling grids, refusals


def test_composite_affine_then_bspline_matches_slicer_file(scene, rng, tmp_path):
    image = _gridImage(rng, (9, 11, 5), (0.7, 0.7, 3.0), False)
    affine = sitk.AffineTransform(
        tuple(np.eye(3).ravel() + rng.normal(0, 0.05, 9)), tuple(rng.uniform(-5, 5, 3)), image.GetOrigin()
    )
    composite = sitk.CompositeTransform([affine, _randomBSpline(rng, image)])  # ITK applies the B-spline first
    pointsLps = _insidePointsLps(rng, image)

    transformNode = createTransformNodeFromSitkTransform(scene, composite, "Composite")
    back = sitkTransformFromTransformNode(transformNode)
    _writeWithSlicer(scene, transformNode, tmp_path / "composite.h5")

    expected = _mapSitk(composite, pointsLps)
    np.testing.assert_allclose(
        _mapRas(transformNode.GetTransformFromParent(), pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM
    )
    np.testing.assert_allclose(_mapSitk(back, pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM)
    np.testing.assert_allclose(
        _mapSitk(sitk.ReadTransform(str(tmp_path / "composite.h5")), pointsLps), expected, atol=NONLINEAR_TOLERANCE_MM
    )


def test_parent_transforms_are_honoured(scene, rng):
    image = _gridImage(rng, (9, 11, 5), (0.7, 0.7, 3.0), True)
    parentRigid, childBSpline = _rigidAboutObliqueAxis(rng), _randomBSpline(rng, image)
    parentNode = createTransformNodeFromSitkTransform(scene, parentRigid, "Parent")
    childNode = createTransformNodeFromSitkTransform(scene, childBSpline, "Child")
    childNode.SetAndObserveTransformNodeID(parentNode.GetID())
    fixedLps = _mapSitk(parentRigid.GetInverse(), _insidePointsLps(rng, image))

    fromWorld = sitkTransformFromTransformNode(childNode)

    # World -> parent's space (parent's resampling), then -> child's space (child's resampling).
    expected = _mapSitk(childBSpline, _mapSitk(parentRigid, fixedLps))
    np.testing.assert_allclose(_mapSitk(fromWorld, fixedLps), expected, atol=NONLINEAR_TOLERANCE_MM)


def test_2d_transforms_become_3d_nodes_that_leave_z_unchanged(scene, rng):
    euler = sitk.Euler2DTransform((3.0, -4.0), 0.3, (2.0, -1.0))
    field2d = sitk.GetImageFromArray(rng.normal(0, 1.0, (11, 13, 2)), isVector=True)
    field2d.SetSpacing((0.5, 0.8))
    field2d.SetOrigin((3.0, 4.0))
    field2d.SetDirection((0.0, 1.0, 1.0, 0.0))
    points2d = [field2d.TransformContinuousIndexToPhysicalPoint(tuple(rng.uniform(1, 9, 2))) for _ in range(20)]
    for transform in (euler, sitk.DisplacementFieldTransform(sitk.Image(field2d))):
        transformNode = createTransformNodeFromSitkTransform(scene, transform, "Flat")
        back = sitkTransformFromTransformNode(transformNode)
        points3d = [(*point, 0.0) for point in points2d]
        expected = np.array([(*transform.TransformPoint(point), 0.0) for point in points2d])
        np.testing.assert_allclose(
            _mapRas(transformNode.GetTransformFromParent(), points3d), expected, atol=NONLINEAR_TOLERANCE_MM
        )
        np.testing.assert_allclose(_mapSitk(back, points3d), expected, atol=NONLINEAR_TOLERANCE_MM)


def test_modeling_grid_is_sampled_as_its_resampling_inverse(scene, rng):
    size, spacing, flipped = GRIDS["thick-slices"]
    field = _smoothDisplacementField(
        rng, _gridImage(rng, size, spacing, flipped, sitk.sitkVectorFloat64), amplitudeMm=1.0
    )
    helperNode = createTransformNodeFromSitkTransform(
        scene, sitk.DisplacementFieldTransform(sitk.Image(field)), "Helper"
    )
    modelingNode = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    modelingNode.SetAndObserveTransformToParent(helperNode.GetTransformFromParent())  # stored as "to parent"
    gridPointsLps = _gridPointsLps(field)

    resampling = sitkTransformFromTransformNode(modelingNode)

    np.testing.assert_allclose(
        _mapSitk(resampling, gridPointsLps),
        _mapRas(modelingNode.GetTransformFromParent(), gridPointsLps),
        atol=NONLINEAR_TOLERANCE_MM,
    )


def test_update_replaces_the_transform_and_refuses_nonlinear_in_a_linear_node(scene, rng):
    image = _gridImage(rng, (9, 11, 5), (0.7, 0.7, 3.0), False)
    rigid = _rigidAboutObliqueAxis(rng)
    linearNode = createTransformNodeFromSitkTransform(scene, sitk.Euler3DTransform(), "Linear")
    pointsLps = rng.uniform(-50, 50, (10, 3))

    updateTransformNodeFromSitkTransform(linearNode, rigid)

    np.testing.assert_allclose(
        _mapRas(linearNode.GetTransformFromParent(), pointsLps), _mapSitk(rigid, pointsLps), atol=LINEAR_TOLERANCE_MM
    )
    with pytest.raises(MedAIInputError, match="linear transform node"):
        updateTransformNodeFromSitkTransform(linearNode, _randomBSpline(rng, image))
    np.testing.assert_allclose(
        _mapRas(linearNode.GetTransformFromParent(), pointsLps), _mapSitk(rigid, pointsLps), atol=LINEAR_TOLERANCE_MM
    )


def test_bad_input_is_refused_before_anything_is_created(scene, rng):
    image = _gridImage(rng, (9, 11, 5), (0.7, 0.7, 3.0), False)
    thinPlate = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for point in rng.uniform(-50, 50, (5, 3)):
        source.InsertNextPoint(*point)
        target.InsertNextPoint(*(point + rng.normal(0, 2, 3)))
    thinPlate.SetSourceLandmarks(source)
    thinPlate.SetTargetLandmarks(target)
    thinPlateNode = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    thinPlateNode.SetAndObserveTransformFromParent(thinPlate)
    invertedBSplineNode = scene.AddNewNodeByClass("vtkMRMLBSplineTransformNode")
    bsplineNode = createTransformNodeFromSitkTransform(scene, _randomBSpline(rng, image), "BSpline")
    invertedBSplineNode.SetAndObserveTransformToParent(bsplineNode.GetTransformFromParent())
    nodeCount = scene.GetNumberOfNodes()

    with pytest.raises(MedAIInputError, match="vtkThinPlateSplineTransform"):
        sitkTransformFromTransformNode(thinPlateNode)
    with pytest.raises(MedAIInputError, match="to parent"):
        sitkTransformFromTransformNode(invertedBSplineNode)
    with pytest.raises(MedAIInputError, match="vtkMRMLTransformNode"):
        sitkTransformFromTransformNode(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))
    nodeCount += 1
    with pytest.raises(MedAIInputError, match="3D cubic"):
        createTransformNodeFromSitkTransform(scene, sitk.BSplineTransform(2), "Flat")
    with pytest.raises(MedAIInputError, match="SimpleITK transform"):
        createTransformNodeFromSitkTransform(scene, np.eye(4), "Matrix")
    with pytest.raises(MedAIInputError, match="order 3"):
        createTransformNodeFromSitkTransform(scene, sitk.BSplineTransformInitializer(image, [2, 2, 2], 2), "Quadratic")
    with pytest.raises(MedAIInputError, match="singular"):
        toParentRasFromResamplingMatrixLps(np.diag([1.0, 0.0, 1.0, 1.0]))
    assert scene.GetNumberOfNodes() == nodeCount
