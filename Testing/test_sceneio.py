"""Scene I/O on real MRML (slicer-core): every node type saved and reloaded exactly, whole
scenes (.mrml, .mrb) restored, bad input refused before anything is created, failed saves
leaving the disk as it was."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from MedAICommonLib import sceneio
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.validation import checkVolumeNode

SIZE_IJK = (37, 53, 11)
# NIfTI stores the geometry in float32: its round trip is exact to float32 precision only.
NIFTI_TOLERANCE_MM = 2e-5
GEOMETRIES = {
    "oblique-0.7x0.7x3.0": ((0.7, 0.7, 3.0), (1, 1, 1)),
    "oblique-3.0x0.7x0.7-flippedI": ((3.0, 0.7, 0.7), (-1, 1, 1)),
    "oblique-1.1x0.9x2.0-flippedJK": ((1.1, 0.9, 2.0), (1, -1, -1)),
}


# --------------------------------------------------------------------------------------------
# Helpers that build nodes with plain MRML calls


def rotation(rng) -> np.ndarray:
    """A random rotation of 5 to 30 degrees about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(5.0, 30.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def makeIjkToRas(rng, geometry: str) -> np.ndarray:
    spacing, flips = GEOMETRIES[geometry]
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = rotation(rng) @ np.diag(spacing) @ np.diag(flips)
    ijkToRas[:3, 3] = rng.uniform(-60, 60, size=3)
    return ijkToRas


def toVtkMatrix(array: np.ndarray) -> vtkMatrix4x4:
    matrix = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def fromVtkMatrix(matrix: vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def addVolume(scene, voxels: np.ndarray, ijkToRas: np.ndarray, name: str, labelmap: bool = False):
    imageData = vtkImageData()
    imageData.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    imageData.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(voxels).ravel(), deep=True))
    nodeClass = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    volumeNode = scene.AddNewNodeByClass(nodeClass, name)
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.SetIJKToRASMatrix(toVtkMatrix(ijkToRas))
    return volumeNode


def voxelsOf(volumeNode) -> np.ndarray:
    imageData = volumeNode.GetImageData()
    dims = imageData.GetDimensions()
    return vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0]).copy()


def ijkToRasOf(volumeNode) -> np.ndarray:
    matrix = vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return fromVtkMatrix(matrix)


def labelVoxels(rng) -> np.ndarray:
    """A label map with values 0, 1, 2 and 7 (a gap), touching blobs."""
    labels = np.zeros(SIZE_IJK[::-1], np.int16)
    labels[2:6, 5:20, 4:15] = 1
    labels[3:8, 20:35, 10:30] = 2
    labels[6:10, 30:50, 20:35] = 7
    labels[rng.random(labels.shape) < 0.01] = 7
    return labels


def addSegmentation(scene, rng, geometry: str):
    """A segmentation imported from a label map with values 1, 2, 7, then named and coloured."""
    labelmapNode = addVolume(scene, labelVoxels(rng), makeIjkToRas(rng, geometry), "labels", labelmap=True)
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode)
    segmentation = segmentationNode.GetSegmentation()
    for index, (name, color) in enumerate(
        [("liver", (0.8, 0.2, 0.1)), ("spleen", (0.1, 0.6, 0.3)), ("tumour", (0.25, 0.5, 0.75))]
    ):
        segmentation.GetNthSegment(index).SetName(name)
        segmentation.GetNthSegment(index).SetColor(*color)
    scene.RemoveNode(labelmapNode)
    return segmentationNode


def segmentsOf(segmentationNode) -> list[tuple[str, tuple[float, ...], int, np.ndarray, np.ndarray]]:
    """Per segment: name, colour, label value, voxels of its binary labelmap over the segment's
    extent (in its own layer's geometry), and the image-to-world (RAS) matrix of that layer."""
    segmentation = segmentationNode.GetSegmentation()
    result = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        layer = segment.GetRepresentation("Binary labelmap")
        imageToWorld = vtkMatrix4x4()
        layer.GetImageToWorldMatrix(imageToWorld)
        extent = layer.GetExtent()
        shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        voxels = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(shape)
        ijkToRas = fromVtkMatrix(imageToWorld)
        ijkToRas[:3, 3] += ijkToRas[:3, :3] @ np.array(extent[::2], float)
        mask = voxels == segment.GetLabelValue()
        result.append((segment.GetName(), segment.GetColor(), segment.GetLabelValue(), mask, ijkToRas))
    return result


def rasOfLabelVoxels(mask: np.ndarray, ijkToRas: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask)
    ijk1 = np.column_stack([kji[:, ::-1], np.ones(len(kji))])
    points = (ijkToRas @ ijk1.T).T[:, :3]
    return points[np.lexsort(points.T[::-1])]


def nodeCount(scene) -> int:
    return scene.GetNumberOfNodes()


def filesIn(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# createScene


def test_createScene_has_default_colours_and_logics():
    scene = sceneio.createScene()
    assert scene.GetNodeByID("vtkMRMLColorTableNodeLabels") is not None
    assert scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None
    logicClasses = {logic.GetClassName() for logic in scene.medaiLogics}
    assert {"vtkSlicerSegmentationsModuleLogic", "vtkSlicerMarkupsLogic", "vtkSlicerVolumesLogic"} <= logicClasses


# --------------------------------------------------------------------------------------------
# Volumes


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("extension", [".nrrd", ".nii.gz", ".nii", ".mha", ".nhdr"])
def test_volume_round_trip_is_exact(scene, rng, tmp_path, geometry, extension):
    voxels = rng.normal(100, 30, size=SIZE_IJK[::-1]).astype(np.float32)
    ijkToRas = makeIjkToRas(rng, geometry)
    volumeNode = addVolume(scene, voxels, ijkToRas, "ct")
    written = sceneio.saveNode(volumeNode, tmp_path / f"ct{extension}")
    assert volumeNode.GetStorageNode() is None, "saving must not change the node"

    loaded = sceneio.loadVolume(scene, written)
    assert loaded.IsA("vtkMRMLScalarVolumeNode") and not loaded.IsA("vtkMRMLLabelMapVolumeNode")
    assert loaded.GetName() == "ct_1"
    np.testing.assert_array_equal(voxelsOf(loaded), voxels)
    tolerance = NIFTI_TOLERANCE_MM if extension.startswith(".nii") else 1e-6
    np.testing.assert_allclose(ijkToRasOf(loaded), ijkToRas, atol=tolerance, rtol=0)
    # Loaded nodes are ready for Slicer: storage node points at the file, display node exists.
    assert Path(loaded.GetStorageNode().GetFileName()) == written
    assert loaded.GetDisplayNode() is not None


@pytest.mark.parametrize("extension", [".nrrd", ".nii.gz"])
def test_labelmap_volume_round_trip(scene, rng, tmp_path, extension):
    labels = labelVoxels(rng).astype(np.uint8)
    ijkToRas = makeIjkToRas(rng, "oblique-3.0x0.7x0.7-flippedI")
    labelNode = addVolume(scene, labels, ijkToRas, "labels", labelmap=True)
    written = sceneio.saveNode(labelNode, tmp_path / f"labels{extension}")
    loaded = sceneio.loadVolume(scene, written, name="reloaded", labelmap=True)
    assert loaded.IsA("vtkMRMLLabelMapVolumeNode") and loaded.GetName() == "reloaded"
    reloaded = voxelsOf(loaded)
    assert reloaded.dtype == np.uint8
    np.testing.assert_array_equal(reloaded, labels)
    np.testing.assert_allclose(ijkToRasOf(loaded), ijkToRas, atol=NIFTI_TOLERANCE_MM, rtol=0)
    assert loaded.GetDisplayNode().IsA("vtkMRMLLabelMapVolumeDisplayNode")


def test_volume_file_written_by_simpleitk_has_slicer_geometry(scene, rng, tmp_path):
    """An LPS file from another tool: the node's IJK-to-RAS is the file's geometry with x, y negated."""
    voxels = rng.integers(-1000, 2000, size=SIZE_IJK[::-1]).astype(np.int16)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetOrigin((12.5, -40.25, 7.0))
    direction = rotation(rng)
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "image.mha"))

    loaded = sceneio.loadVolume(scene, tmp_path / "image.mha")
    lpsToRas = np.diag([-1.0, -1.0, 1.0])
    expected = np.eye(4)
    expected[:3, :3] = lpsToRas @ direction @ np.diag([0.7, 0.7, 3.0])
    expected[:3, 3] = lpsToRas @ np.array([12.5, -40.25, 7.0])
    np.testing.assert_allclose(ijkToRasOf(loaded), expected, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(voxelsOf(loaded), voxels)


def writeDicomSeries(folder: Path, voxels: np.ndarray, spacing, origin, direction) -> None:
    """Write one DICOM file per slice with SimpleITK (LPS geometry in the DICOM tags)."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.4242"
    for k in range(voxels.shape[0]):
        # The writer fills position, orientation and pixel spacing from the image geometry.
        slice2d = sitk.GetImageFromArray(voxels[k : k + 1])
        slice2d.SetSpacing(spacing)
        slice2d.SetOrigin(tuple(np.asarray(origin) + direction[:, 2] * spacing[2] * k))
        slice2d.SetDirection(direction.ravel().tolist())
        tags = {
            "0008|0060": "CT",
            "0020|000d": series + ".1",
            "0020|000e": series + ".2",
            "0020|0013": str(k + 1),
            "0018|0050": f"{spacing[2]:.6f}",
        }
        for tag, value in tags.items():
            slice2d.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice2d)


def test_dicom_series_folder_loads_with_geometry(scene, rng, tmp_path):
    voxels = rng.integers(-1000, 2000, size=(9, 40, 30)).astype(np.int16)
    spacing = (0.8, 0.6, 2.5)
    direction = rotation(rng)
    origin = (-100.0, 50.5, 20.25)
    writeDicomSeries(tmp_path / "series", voxels, spacing, origin, direction)
    # The slices are given in reverse file order on purpose: the reader must sort by position.
    for path in (tmp_path / "series").iterdir():
        path.rename(path.with_name("x" + str(999 - int(path.stem[5:])) + ".dcm"))

    loaded = sceneio.loadVolume(scene, tmp_path / "series", name="dicom")
    np.testing.assert_array_equal(voxelsOf(loaded), voxels)
    lpsToRas = np.diag([-1.0, -1.0, 1.0])
    expected = np.eye(4)
    # DICOM stores geometry as decimal strings of at most 16 characters, hence the tolerance.
    expected[:3, :3] = lpsToRas @ direction @ np.diag(spacing)
    expected[:3, 3] = lpsToRas @ np.array(origin)
    np.testing.assert_allclose(ijkToRasOf(loaded), expected, atol=1e-4, rtol=0)


def test_single_real_dicom_file(scene):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    loaded = sceneio.loadVolume(scene, path)
    assert loaded.GetImageData().GetDimensions() == (dataset.Columns, dataset.Rows, 1)
    position = np.array([float(v) for v in dataset.ImagePositionPatient])
    np.testing.assert_allclose(ijkToRasOf(loaded)[:3, 3], position * [-1, -1, 1], atol=1e-6)
    # SimpleITK applies the rescale to Hounsfield units.
    expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    np.testing.assert_array_equal(voxelsOf(loaded)[0], expected)


@pytest.mark.parametrize("extension", [".tif", ".png", ".nrrd"])
def test_two_dimensional_image_loads_as_one_slice_volume(scene, rng, tmp_path, extension):
    pixels = rng.integers(0, 255, size=(53, 37)).astype(np.uint8)
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((3.0, -4.0))
    sitk.WriteImage(image, str(tmp_path / f"nuclei{extension}"))
    loaded = sceneio.loadNode(scene, tmp_path / f"nuclei{extension}")
    assert loaded.GetImageData().GetDimensions() == (37, 53, 1)
    np.testing.assert_array_equal(voxelsOf(loaded)[0], pixels)
    if extension == ".nrrd":  # TIFF and PNG keep no origin
        np.testing.assert_allclose(ijkToRasOf(loaded)[:3, 3], [-3.0, 4.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(np.diag(ijkToRasOf(loaded))[:3], [-0.5, -0.25, 1.0], atol=1e-6)


# --------------------------------------------------------------------------------------------
# Segmentations


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_segmentation_round_trip_keeps_names_colours_values(scene, rng, tmp_path, geometry):
    segmentationNode = addSegmentation(scene, rng, geometry)
    before = segmentsOf(segmentationNode)
    assert [value for _, _, value, _, _ in before] == [1, 2, 7]
    written = sceneio.saveNode(segmentationNode, tmp_path / "organs.seg.nrrd")
    loaded = sceneio.loadSegmentation(scene, written)
    assert loaded.GetName() == "organs"
    after = segmentsOf(loaded)
    assert len(after) == 3
    for (name, color, value, mask, ijkToRas), (name2, color2, value2, mask2, ijkToRas2) in zip(before, after):
        assert (name2, value2) == (name, value)
        np.testing.assert_allclose(color2, color, atol=1e-6)
        np.testing.assert_array_equal(mask2, mask)
        np.testing.assert_allclose(ijkToRas2, ijkToRas, atol=1e-6, rtol=0)
    assert loaded.GetDisplayNode() is not None


def test_segmentation_as_labelmap_file_keeps_label_values_and_positions(scene, rng, tmp_path):
    segmentationNode = addSegmentation(scene, rng, "oblique-3.0x0.7x0.7-flippedI")
    before = segmentsOf(segmentationNode)
    written = sceneio.saveNode(segmentationNode, tmp_path / "organs.nii.gz")
    image = sitk.ReadImage(str(written))
    labels = sitk.GetArrayFromImage(image)
    assert set(np.unique(labels)) == {0, 1, 2, 7}
    assert not any(key.startswith("Segment") for key in image.GetMetaDataKeys())
    # Every labelled voxel of the file sits where the segment's voxels were, in RAS.
    dimension = 3
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = np.reshape(image.GetDirection(), (dimension, dimension)) @ np.diag(image.GetSpacing())
    ijkToLps[:3, 3] = image.GetOrigin()
    ijkToRasFile = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijkToLps
    for _, _, value, mask, ijkToRas in before:
        np.testing.assert_allclose(
            rasOfLabelVoxels(labels == value, ijkToRasFile), rasOfLabelVoxels(mask, ijkToRas), atol=NIFTI_TOLERANCE_MM
        )
    reloaded = sceneio.loadSegmentation(scene, written)
    assert [value for _, _, value, _, _ in segmentsOf(reloaded)] == [1, 2, 7]


def test_overlapping_segments_refused_as_labelmap_and_kept_as_seg_nrrd(scene, rng, tmp_path):
    segmentationNode = addSegmentation(scene, rng, "oblique-0.7x0.7x3.0")
    segmentation = segmentationNode.GetSegmentation()
    # A fourth segment overlapping 'liver' forces a second layer.
    overlap = slicer.vtkOrientedImageData()
    overlap.DeepCopy(segmentation.GetNthSegment(0).GetRepresentation("Binary labelmap"))
    segmentation.AddEmptySegment("overlap", "overlap", (1.0, 1.0, 0.0))
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        overlap, segmentationNode, "overlap", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
    )
    assert segmentation.GetNumberOfLayers() == 2
    with pytest.raises(MedAIInputError, match="overlap"):
        sceneio.saveNode(segmentationNode, tmp_path / "organs.nii.gz")
    assert filesIn(tmp_path) == []
    loaded = sceneio.loadSegmentation(scene, sceneio.saveNode(segmentationNode, tmp_path / "organs.seg.nrrd"))
    assert loaded.GetSegmentation().GetNumberOfLayers() == 2
    assert [s[0] for s in segmentsOf(loaded)] == ["liver", "spleen", "tumour", "overlap"]


# --------------------------------------------------------------------------------------------
# Transforms


def rigidMatrix(rng) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation(rng)
    matrix[:3, 3] = rng.uniform(-20, 20, size=3)
    return matrix


@pytest.mark.parametrize("extension", [".h5", ".tfm", ".txt"])
def test_linear_transform_round_trip(scene, rng, tmp_path, extension):
    matrix = rigidMatrix(rng)
    matrix[:3, :3] *= [1.1, 0.9, 1.05]  # an affine, not only rigid, part
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moveToFixed")
    transformNode.SetMatrixTransformToParent(toVtkMatrix(matrix))
    written = sceneio.saveNode(transformNode, tmp_path / f"t{extension}")
    loaded = sceneio.loadNode(scene, written) if extension == ".txt" else sceneio.loadTransform(scene, written)
    assert loaded.IsA("vtkMRMLLinearTransformNode")
    reloaded = vtkMatrix4x4()
    loaded.GetMatrixTransformToParent(reloaded)
    np.testing.assert_allclose(fromVtkMatrix(reloaded), matrix, atol=1e-9, rtol=0)


def test_itk_transform_file_is_read_in_slicer_convention(scene, rng, tmp_path):
    """An ITK file holds the resampling transform (fixed -> moving) in LPS; the node holds its
    inverse, the modeling transform to parent, in RAS."""
    itkTransform = sitk.Euler3DTransform((1.0, -2.0, 3.0), 0.1, -0.2, 0.15, (5.0, -7.0, 11.0))
    sitk.WriteTransform(itkTransform, str(tmp_path / "rigid.h5"))
    loaded = sceneio.loadTransform(scene, tmp_path / "rigid.h5")
    toParent = vtkMatrix4x4()
    loaded.GetMatrixTransformToParent(toParent)
    lpsToRas = np.diag([-1.0, -1.0, 1.0])
    for point in rng.uniform(-50, 50, size=(5, 3)):
        movedRas = fromVtkMatrix(toParent) @ np.append(point, 1.0)
        # The modeling transform maps the moving point onto the fixed point whose resampled value it gives.
        resampledLps = np.array(itkTransform.TransformPoint(tuple(lpsToRas @ movedRas[:3])))
        np.testing.assert_allclose(lpsToRas @ resampledLps, point, atol=1e-9)


def displacementFieldImage(rng) -> sitk.Image:
    field = rng.normal(0, 2.0, size=(8, 9, 10, 3))
    image = sitk.GetImageFromArray(field, isVector=True)
    image.SetSpacing((4.0, 5.0, 6.0))
    image.SetOrigin((-20.0, -25.0, -30.0))
    image.SetDirection(rotation(rng).ravel().tolist())
    return image


def mappedPoints(transformNode, points: np.ndarray) -> np.ndarray:
    transform = transformNode.GetTransformToParent()
    return np.array([transform.TransformPoint(*point) for point in points])


@pytest.mark.parametrize("extension", [".nii.gz", ".nrrd", ".mha"])
def test_displacement_field_image_loads_as_grid_transform_and_round_trips(scene, rng, tmp_path, extension):
    sitk.WriteImage(displacementFieldImage(rng), str(tmp_path / f"field{extension}"))
    loaded = sceneio.loadNode(scene, tmp_path / f"field{extension}")
    assert loaded.IsA("vtkMRMLGridTransformNode")
    points = rng.uniform(-10, 10, size=(20, 3))
    expected = mappedPoints(loaded, points)
    assert np.abs(expected - points).max() > 0.1, "the field must move points"
    for output in (f"again{extension}", "again.h5"):
        reloaded = sceneio.loadTransform(scene, sceneio.saveNode(loaded, tmp_path / output))
        assert reloaded.IsA("vtkMRMLGridTransformNode")
        np.testing.assert_allclose(mappedPoints(reloaded, points), expected, atol=1e-5)


def test_bspline_transform_round_trip(scene, rng, tmp_path):
    reference = sitk.Image([20, 20, 20], sitk.sitkFloat32)
    reference.SetSpacing((2.0, 2.0, 2.0))
    bspline = sitk.BSplineTransformInitializer(reference, [3, 3, 3])
    bspline.SetParameters(rng.normal(0, 1.5, size=bspline.GetNumberOfParameters()).tolist())
    sitk.WriteTransform(bspline, str(tmp_path / "bspline.h5"))
    loaded = sceneio.loadTransform(scene, tmp_path / "bspline.h5")
    assert loaded.IsA("vtkMRMLBSplineTransformNode")
    points = rng.uniform(5, 35, size=(20, 3))
    expected = mappedPoints(loaded, points)
    reloaded = sceneio.loadTransform(scene, sceneio.saveNode(loaded, tmp_path / "again.h5"))
    np.testing.assert_allclose(mappedPoints(reloaded, points), expected, atol=1e-9)


def test_linear_transform_refused_as_image(scene, tmp_path):
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    with pytest.raises(MedAIInputError, match="grid"):
        sceneio.saveNode(transformNode, tmp_path / "t.nii.gz")
    assert filesIn(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Markups and tables


def addPoints(scene, rng):
    markupsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    points = rng.uniform(-100, 100, size=(6, 3))
    for index, point in enumerate(points):
        markupsNode.AddControlPoint(*point, f"L{index}")
    return markupsNode, points


def pointsOf(markupsNode) -> np.ndarray:
    return np.array([markupsNode.GetNthControlPointPosition(i) for i in range(markupsNode.GetNumberOfControlPoints())])


@pytest.mark.parametrize("extension", [".mrk.json", ".fcsv", ".csv"])
def test_point_markups_round_trip(scene, rng, tmp_path, extension):
    markupsNode, points = addPoints(scene, rng)
    written = sceneio.saveNode(markupsNode, tmp_path / f"landmarks{extension}")
    loaded = sceneio.loadMarkups(scene, written)
    assert loaded.IsA("vtkMRMLMarkupsFiducialNode") and loaded.GetName() == "landmarks_1"
    tolerance = 1e-9 if extension != ".fcsv" else 1e-5  # .fcsv keeps about 6 significant digits
    np.testing.assert_allclose(pointsOf(loaded), points, atol=tolerance, rtol=0)
    assert [loaded.GetNthControlPointLabel(i) for i in range(6)] == [f"L{i}" for i in range(6)]


def test_markups_json_is_lps_on_disk_and_curve_type_kept(scene, rng, tmp_path):
    curveNode = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", "centerline")
    curveNode.AddControlPoint(10.0, 20.0, 30.0)
    curveNode.AddControlPoint(-5.0, 7.5, 1.0)
    written = sceneio.saveNode(curveNode, tmp_path / "centerline.mrk.json")
    import json

    stored = json.loads(written.read_text())["markups"][0]
    assert stored["coordinateSystem"] == "LPS"
    np.testing.assert_allclose(stored["controlPoints"][0]["position"], [-10.0, -20.0, 30.0])
    loaded = sceneio.loadNode(scene, written)
    assert loaded.IsA("vtkMRMLMarkupsCurveNode")
    np.testing.assert_allclose(pointsOf(loaded), [[10.0, 20.0, 30.0], [-5.0, 7.5, 1.0]], atol=1e-12)


def test_points_csv_written_by_hand(scene, tmp_path):
    (tmp_path / "seeds.csv").write_text("label,R,A,S\nseed1,1.5,-2,3\n,4,5,6e1\n")
    loaded = sceneio.loadMarkups(scene, tmp_path / "seeds.csv")
    np.testing.assert_allclose(pointsOf(loaded), [[1.5, -2, 3], [4, 5, 60]])
    (tmp_path / "bad.csv").write_text("label,R,A\nseed1,1.5,-2\n")
    count = nodeCount(scene)
    with pytest.raises(MedAIInputError, match="r, a, s"):
        sceneio.loadMarkups(scene, tmp_path / "bad.csv")
    assert nodeCount(scene) == count


@pytest.mark.parametrize("extension", [".tsv", ".csv"])
def test_table_round_trip(scene, rng, tmp_path, extension):
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", "metrics")
    values = rng.normal(size=4)
    # Slicer's table files do not escape tabs or double quotes inside cells; commas are fine.
    names = ["liver", "spleen, left", "tumour core", "vessel-1"]
    numbers = vtkDoubleArray()
    numbers.SetName("dice")
    texts = vtkStringArray()
    texts.SetName("segment")
    for value, name in zip(values, names):
        numbers.InsertNextValue(value)
        texts.InsertNextValue(name)
    tableNode.AddColumn(texts)
    tableNode.AddColumn(numbers)
    written = sceneio.saveNode(tableNode, tmp_path / f"metrics{extension}")
    assert list(tmp_path.glob("metrics.schema.*")), "the column types travel in the schema file"
    loaded = sceneio.loadTable(scene, written)
    assert loaded.GetNumberOfRows() == 4 and loaded.GetNumberOfColumns() == 2
    assert [loaded.GetCellText(row, 0) for row in range(4)] == names
    reloadedValues = vtk_to_numpy(loaded.GetTable().GetColumnByName("dice"))
    np.testing.assert_array_equal(reloadedValues, values)


# --------------------------------------------------------------------------------------------
# Whole scenes


def buildScene(scene, rng):
    """One node of every kind, a volume under a linear transform; returns what to compare."""
    ct = addVolume(
        scene,
        rng.normal(size=SIZE_IJK[::-1]).astype(np.float32),
        makeIjkToRas(rng, "oblique-3.0x0.7x0.7-flippedI"),
        "ct",
    )
    labels = addVolume(scene, labelVoxels(rng), makeIjkToRas(rng, "oblique-0.7x0.7x3.0"), "labels", labelmap=True)
    segmentationNode = addSegmentation(scene, rng, "oblique-1.1x0.9x2.0-flippedJK")
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    transformNode.SetMatrixTransformToParent(toVtkMatrix(rigidMatrix(rng)))
    ct.SetAndObserveTransformNodeID(transformNode.GetID())
    markupsNode, _ = addPoints(scene, rng)
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", "metrics")
    tableNode.AddColumn().SetName("note")
    tableNode.AddEmptyRow()
    tableNode.SetCellText(0, 0, "dice 0.93")
    return {
        "ct": ct,
        "labels": labels,
        "segmentation": segmentationNode,
        "registration": transformNode,
        "landmarks": markupsNode,
        "metrics": tableNode,
    }


def assertSameScene(original: dict, loadedScene) -> None:
    def find(name):
        node = loadedScene.GetFirstNodeByName(name)
        assert node is not None, f"'{name}' missing after reload"
        return node

    for name in ("ct", "labels"):
        node = find(name)
        assert node.GetClassName() == original[name].GetClassName()
        np.testing.assert_array_equal(voxelsOf(node), voxelsOf(original[name]))
        np.testing.assert_allclose(ijkToRasOf(node), ijkToRasOf(original[name]), atol=1e-6, rtol=0)
    assert find("ct").GetParentTransformNode() is find("registration")
    matrices = [vtkMatrix4x4(), vtkMatrix4x4()]
    original["registration"].GetMatrixTransformToParent(matrices[0])
    find("registration").GetMatrixTransformToParent(matrices[1])
    np.testing.assert_allclose(fromVtkMatrix(matrices[1]), fromVtkMatrix(matrices[0]), atol=1e-9)
    for before, after in zip(segmentsOf(original["segmentation"]), segmentsOf(find("segmentation"))):
        assert (after[0], after[2]) == (before[0], before[2])
        np.testing.assert_allclose(after[1], before[1], atol=1e-6)
        np.testing.assert_array_equal(after[3], before[3])
        np.testing.assert_allclose(after[4], before[4], atol=1e-6)
    np.testing.assert_allclose(pointsOf(find("landmarks")), pointsOf(original["landmarks"]), atol=1e-9)
    assert find("metrics").GetCellText(0, 0) == "dice 0.93"


@pytest.mark.parametrize("extension", [".mrml", ".mrb"])
def test_scene_round_trip_restores_every_node(rng, tmp_path, extension):
    scene = sceneio.createScene()
    original = buildScene(scene, rng)
    written = sceneio.saveScene(scene, tmp_path / f"case{extension}")
    assert original["ct"].GetStorageNode() is not None
    if extension == ".mrb":
        assert filesIn(tmp_path) == ["case.mrb"]
        assert any(name.endswith("case.mrml") for name in zipfile.ZipFile(written).namelist())
    else:
        assert "case.mrml" in filesIn(tmp_path) and "case_Data/ct.nrrd" in filesIn(tmp_path)
    loadedScene = sceneio.loadScene(written)
    assertSameScene(original, loadedScene)
    # Loading into an existing scene adds the nodes beside what is there.
    sceneio.loadScene(written, scene)
    assert len([n for n in (scene.GetNthNode(i) for i in range(nodeCount(scene))) if n.GetName() == "ct"]) == 2


def test_scene_saved_twice_overwrites_in_place(rng, tmp_path):
    scene = sceneio.createScene()
    buildScene(scene, rng)
    sceneio.saveScene(scene, tmp_path / "case.mrml")
    first = filesIn(tmp_path)
    sceneio.saveScene(scene, tmp_path / "case.mrml")
    assert filesIn(tmp_path) == first
    assertSameScene(
        {
            k: scene.GetFirstNodeByName(k)
            for k in ("ct", "labels", "segmentation", "registration", "landmarks", "metrics")
        },
        sceneio.loadScene(tmp_path / "case.mrml"),
    )


def test_two_scenes_in_one_folder_keep_their_own_data(rng, tmp_path):
    sceneA, sceneB = sceneio.createScene(), sceneio.createScene()
    voxelsA = rng.normal(size=(4, 5, 6)).astype(np.float32)
    addVolume(sceneA, voxelsA, np.eye(4), "ct")
    addVolume(sceneB, voxelsA + 1, np.eye(4), "ct")
    sceneio.saveScene(sceneA, tmp_path / "caseA.mrml")
    sceneio.saveScene(sceneB, tmp_path / "caseB.mrml")
    reloadedA = sceneio.loadScene(tmp_path / "caseA.mrml").GetFirstNodeByName("ct")
    np.testing.assert_array_equal(voxelsOf(reloadedA), voxelsA)


def test_real_nifti_sample_matches_simpleitk(scene):
    """nilearn's MNI152 T1 (a real NIfTI): same voxels and geometry as SimpleITK reads them."""
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    loaded = sceneio.loadVolume(scene, path)
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(voxelsOf(loaded), sitk.GetArrayFromImage(image))
    expected = np.eye(4)
    expected[:3, :3] = (
        np.diag([-1.0, -1.0, 1.0]) @ np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    )
    expected[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.array(image.GetOrigin())
    np.testing.assert_allclose(ijkToRasOf(loaded), expected, atol=1e-9)
    assert loaded.GetName() == "mni_icbm152_t1_tal_nlin_sym_09a_converted"


# --------------------------------------------------------------------------------------------
# Bad input: a clear error, and the scene as it was


def writeGarbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size=4000, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize(
    "loader, fileName",
    [
        (sceneio.loadVolume, "image.nrrd"),
        (sceneio.loadVolume, "image.nii.gz"),
        (sceneio.loadSegmentation, "organs.seg.nrrd"),
        (sceneio.loadTransform, "t.h5"),
        (sceneio.loadTransform, "t.tfm"),
        (sceneio.loadTransform, "field.nii.gz"),
        (sceneio.loadMarkups, "points.mrk.json"),
        (sceneio.loadMarkups, "points.fcsv"),
        (sceneio.loadNode, "anything.nrrd"),
    ],
)
def test_unreadable_and_missing_files_refused_without_nodes(scene, tmp_path, loader, fileName):
    count = nodeCount(scene)
    with pytest.raises(MedAIInputError, match="does not exist") as missing:
        loader(scene, tmp_path / fileName)
    assert str(tmp_path / fileName) in str(missing.value)
    with pytest.raises(MedAIInputError, match="cannot be read") as garbage:
        loader(scene, writeGarbage(tmp_path / fileName))
    assert fileName in str(garbage.value)
    (tmp_path / fileName).write_bytes(b"")
    with pytest.raises(MedAIInputError, match="empty"):
        loader(scene, tmp_path / fileName)
    (tmp_path / fileName).unlink()
    (tmp_path / fileName).mkdir()
    with pytest.raises(MedAIInputError, match="folder"):
        loader(scene, tmp_path / fileName)
    assert nodeCount(scene) == count


def test_four_dimensional_image_refused(scene, tmp_path):
    image = sitk.JoinSeries([sitk.Image([6, 5, 4], sitk.sitkFloat32)] * 3)
    sitk.WriteImage(image, str(tmp_path / "timeseries.nii.gz"))
    count = nodeCount(scene)
    with pytest.raises(MedAIInputError, match="4D") as error:
        sceneio.loadVolume(scene, tmp_path / "timeseries.nii.gz")
    assert "timeseries.nii.gz" in str(error.value)
    with pytest.raises(MedAIInputError, match="4D"):
        sceneio.loadNode(scene, tmp_path / "timeseries.nii.gz")
    sitk.WriteImage(sitk.Image([6, 5, 4], sitk.sitkVectorFloat32, 3), str(tmp_path / "rgb.nrrd"))
    with pytest.raises(MedAIInputError, match="values per voxel"):
        sceneio.loadVolume(scene, tmp_path / "rgb.nrrd")
    sitk.WriteImage(sitk.Image([6, 5, 4], sitk.sitkFloat32), str(tmp_path / "scalar.nrrd"))
    with pytest.raises(MedAIInputError, match="3 are needed"):
        sceneio.loadTransform(scene, tmp_path / "scalar.nrrd")
    assert nodeCount(scene) == count


@pytest.mark.parametrize("badValue", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(scene, rng, tmp_path, badValue):
    voxels = rng.normal(size=SIZE_IJK[::-1]).astype(np.float32)
    voxels[3, 4, 5] = badValue
    image = sitk.GetImageFromArray(voxels)
    sitk.WriteImage(image, str(tmp_path / "bad.nrrd"))
    count = nodeCount(scene)
    with pytest.raises(MedAIInputError, match="NaN|infinite") as error:
        sceneio.loadVolume(scene, tmp_path / "bad.nrrd", allowNaN=False)
    assert "bad.nrrd" in str(error.value)
    assert nodeCount(scene) == count
    # Loading as such is faithful; the check before computing refuses it.
    loaded = sceneio.loadVolume(scene, tmp_path / "bad.nrrd")
    assert np.isnan(voxelsOf(loaded)[3, 4, 5]) == np.isnan(badValue)
    with pytest.raises(MedAIInputError, match="NaN|infinite"):
        checkVolumeNode(loaded)


def test_dicom_folder_without_dicom_refused(scene, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    count = nodeCount(scene)
    with pytest.raises(MedAIInputError, match="no DICOM"):
        sceneio.loadVolume(scene, tmp_path / "notes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedAIInputError, match="empty"):
        sceneio.loadVolume(scene, tmp_path / "empty")
    assert nodeCount(scene) == count


def test_broken_scenes_refused_and_rolled_back(rng, tmp_path):
    scene = sceneio.createScene()
    buildScene(scene, rng)
    sceneio.saveScene(scene, tmp_path / "case.mrml")
    target = sceneio.createScene()
    count = nodeCount(target)
    writeGarbage(tmp_path / "case_Data" / "ct.nrrd")
    (tmp_path / "case_Data" / "metrics.tsv").unlink()
    with pytest.raises(MedAIInputError, match=r"ct\.nrrd.*metrics\.tsv|metrics\.tsv.*ct\.nrrd"):
        sceneio.loadScene(tmp_path / "case.mrml", target)
    assert nodeCount(target) == count
    with pytest.raises(MedAIInputError, match="not a .mrb"):
        sceneio.loadScene(writeGarbage(tmp_path / "garbage.mrb"), target)
    with pytest.raises(MedAIInputError, match="MRML"):
        sceneio.loadScene(writeGarbage(tmp_path / "garbage.mrml"), target)
    with zipfile.ZipFile(tmp_path / "nomrml.mrb", "w") as bundle:
        bundle.writestr("x/readme.txt", "nothing")
    with pytest.raises(MedAIInputError, match="no .mrml"):
        sceneio.loadScene(tmp_path / "nomrml.mrb", target)
    with pytest.raises(MedAIInputError, match="loadScene"):
        sceneio.loadNode(target, tmp_path / "case.mrml")
    assert nodeCount(target) == count


# --------------------------------------------------------------------------------------------
# Failed saves leave the disk as it was


def test_failed_saves_leave_no_file(scene, rng, tmp_path):
    emptyVolume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(MedAIInputError, match="could not be saved"):
        sceneio.saveNode(emptyVolume, tmp_path / "empty.nrrd")
    markupsNode, _ = addPoints(scene, rng)
    with pytest.raises(MedAIInputError, match="cannot be saved"):
        sceneio.saveNode(markupsNode, tmp_path / "points.nii.gz")
    with pytest.raises(MedAIInputError, match="does not exist"):
        sceneio.saveNode(markupsNode, tmp_path / "missing" / "points.mrk.json")
    with pytest.raises(MedAIInputError, match="No node"):
        sceneio.saveNode(None, tmp_path / "x.nrrd")
    with pytest.raises(MedAIInputError, match=".mrml or .mrb"):
        sceneio.saveScene(scene, tmp_path / "scene.zip")
    assert filesIn(tmp_path) == []


def test_failed_save_keeps_previous_file(scene, rng, tmp_path):
    target = tmp_path / "ct.nrrd"
    good = addVolume(scene, rng.normal(size=(4, 5, 6)).astype(np.float32), np.eye(4), "good")
    sceneio.saveNode(good, target)
    before = target.read_bytes()
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(MedAIInputError):
        sceneio.saveNode(empty, target)
    assert target.read_bytes() == before
    assert filesIn(tmp_path) == ["ct.nrrd"]


def test_scene_save_failure_leaves_no_file(rng, tmp_path):
    scene = sceneio.createScene()
    original = buildScene(scene, rng)
    # A storage node of the wrong kind cannot write its node: the save must fail as a whole.
    wrongStorage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    original["landmarks"].SetAndObserveStorageNodeID(wrongStorage.GetID())
    for name in ("case.mrb", "case.mrml"):
        with pytest.raises(MedAIInputError, match="landmarks"):
            sceneio.saveScene(scene, tmp_path / name)
    assert filesIn(tmp_path) == []
    # Without the pre-check, Slicer's own bundle writer fails too; nothing may be left behind.
    for name in ("case.mrb", "case.mrml"):
        with pytest.raises(MedAIInputError, match="could not be saved"):
            sceneio._atomicWrite(tmp_path / name, lambda target: _failingBundleWrite(scene, target))
    assert filesIn(tmp_path) == []


def _failingBundleWrite(scene, target: Path) -> None:
    bundle = target.parent / "bundle"
    bundle.mkdir()
    with sceneio._quietVtk():
        written = scene.SaveSceneToSlicerDataBundleDirectory(str(bundle))
    assert not written
    raise MedAIInputError(f"The scene could not be saved to {target.name}.")
