"""Input checks: each bad input gives one MedAIInputError naming the problem, and nothing is created."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.validation import checkImageArray, checkInputFile, checkReadableImage, checkVolumeNode


def test_checkInputFile_accepts_a_readable_file(tmp_path):
    path = tmp_path / "image.nrrd"
    path.write_bytes(b"NRRD0004\n")
    assert checkInputFile(str(path)) == path


@pytest.mark.parametrize("bad", [None, "", "   "])
def test_checkInputFile_no_path(bad):
    with pytest.raises(MedAIInputError, match="No segmentation file"):
        checkInputFile(bad, "segmentation")


def test_checkInputFile_problems_name_the_path(tmp_path):
    with pytest.raises(MedAIInputError, match="does not exist") as error:
        checkInputFile(tmp_path / "missing.nii.gz", "fixed image")
    assert "fixed image" in str(error.value) and "missing.nii.gz" in str(error.value)
    with pytest.raises(MedAIInputError, match="is a folder"):
        checkInputFile(tmp_path)
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(MedAIInputError, match="empty"):
        checkInputFile(tmp_path / "empty.nrrd")


def test_checkInputFile_folders_when_allowed(tmp_path):
    (tmp_path / "series").mkdir()
    with pytest.raises(MedAIInputError, match="folder .* is empty"):
        checkInputFile(tmp_path / "series", allowDirectory=True)
    (tmp_path / "series" / "1.dcm").write_bytes(b"x")
    assert checkInputFile(tmp_path / "series", allowDirectory=True) == tmp_path / "series"


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads every file")
def test_checkInputFile_unreadable(tmp_path):
    path = tmp_path / "secret.nrrd"
    path.write_bytes(b"data")
    path.chmod(0)
    with pytest.raises(MedAIInputError, match="cannot be read"):
        checkInputFile(path)


def test_checkImageArray_accepts_good_arrays(rng):
    checkImageArray(rng.normal(size=(11, 53, 37)), "image")
    checkImageArray(np.zeros((2, 3, 4), bool), "mask")
    checkImageArray(np.zeros((2, 3, 4, 3), np.float32), "field", ndims=(4,))


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((3, 4)), "2D .* 3D image"),
        (np.zeros((2, 3, 4, 5)), "4D"),
        (np.zeros((0, 3, 4)), "no voxels"),
        (np.array([[["a"]]]), "not numbers"),
    ],
)
def test_checkImageArray_refuses_wrong_shapes_and_types(array, match):
    with pytest.raises(MedAIInputError, match=match):
        checkImageArray(array, "moving image")


def test_checkImageArray_non_finite_values(rng):
    values = rng.normal(size=(5, 6, 7)).astype(np.float32)
    values[1, 2, 3] = np.nan
    values[2, 2, 2] = np.nan
    with pytest.raises(MedAIInputError, match="moving image contains 2 NaN"):
        checkImageArray(values, "moving image")
    checkImageArray(values, "probability map", allowNaN=True)
    values[np.isnan(values)] = 0
    values[0, 0, 0] = -np.inf
    with pytest.raises(MedAIInputError, match="1 infinite"):
        checkImageArray(values, "image")
    checkImageArray(values, "distance map", allowInf=True)


def test_checkImageArray_constant():
    checkImageArray(np.full((3, 4, 5), 7.0), "image")
    with pytest.raises(MedAIInputError, match="constant .* 7.0"):
        checkImageArray(np.full((3, 4, 5), 7.0), "image", allowConstant=False)
    withNaN = np.full((3, 4, 5), 2.0)
    withNaN[0, 0, 0] = np.nan
    with pytest.raises(MedAIInputError, match="constant"):
        checkImageArray(withNaN, "image", allowNaN=True, allowConstant=False)


def addVolume(scene, voxels, name="input"):
    imageData = vtkImageData()
    shape = voxels.shape
    imageData.SetDimensions(shape[2], shape[1], shape[0])
    components = shape[3] if voxels.ndim == 4 else 1
    imageData.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(voxels).reshape(-1, components), deep=True))
    volumeNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volumeNode.SetAndObserveImageData(imageData)
    return volumeNode


def test_checkVolumeNode(scene, rng):
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError, match="No fixed volume is selected"):
        checkVolumeNode(None, "fixed volume")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    with pytest.raises(MedAIInputError, match="vtkMRMLTableNode, not a volume"):
        checkVolumeNode(table)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(MedAIInputError, match="'empty' has no image data"):
        checkVolumeNode(empty)
    voxels = rng.normal(size=(4, 5, 6)).astype(np.float32)
    good = addVolume(scene, voxels, "ct")
    checkVolumeNode(good)
    voxels[1, 1, 1] = np.nan
    bad = addVolume(scene, voxels, "ct with hole")
    with pytest.raises(MedAIInputError, match="'ct with hole' contains 1 NaN"):
        checkVolumeNode(bad)
    checkVolumeNode(bad, allowNaN=True)
    vector = addVolume(scene, np.zeros((4, 5, 6, 3), np.float32), "rgb")
    with pytest.raises(MedAIInputError, match="4D"):
        checkVolumeNode(vector)
    checkVolumeNode(vector, ndims=(4,))
    # The checks created nothing and changed no voxels.
    assert scene.GetNumberOfNodes() == count + 5
    assert np.isnan(voxels[1, 1, 1])


def test_checkReadableImage_reads_only_the_header(tmp_path, rng):
    image = sitk.GetImageFromArray(rng.normal(size=(11, 53, 37)).astype(np.float32))
    image.SetSpacing((0.7, 0.7, 3.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    header = checkReadableImage(tmp_path / "ct.nii.gz")
    assert header.dimension == 3 and header.size == (37, 53, 11) and header.components == 1
    np.testing.assert_allclose(header.spacingMm, (0.7, 0.7, 3.0), rtol=1e-6)
    assert "32-bit float" in header.pixelType


def test_checkReadableImage_refusals(tmp_path):
    sitk.WriteImage(sitk.JoinSeries([sitk.Image([6, 5, 4], sitk.sitkInt16)] * 2), str(tmp_path / "4d.nrrd"))
    with pytest.raises(MedAIInputError, match=r"4d\.nrrd is a 4D image \(6x5x4x2\), but a 3D image is needed"):
        checkReadableImage(tmp_path / "4d.nrrd")
    assert checkReadableImage(tmp_path / "4d.nrrd", ndims=(3, 4)).dimension == 4
    # A trailing axis of length 1 does not make an image 4D.
    sitk.WriteImage(sitk.JoinSeries([sitk.Image([6, 5, 4], sitk.sitkInt16)]), str(tmp_path / "t1.nrrd"))
    assert checkReadableImage(tmp_path / "t1.nrrd").dimension == 3
    sitk.WriteImage(sitk.Image([6, 5, 4], sitk.sitkVectorFloat32, 3), str(tmp_path / "field.mha"))
    with pytest.raises(MedAIInputError, match="3 values per voxel"):
        checkReadableImage(tmp_path / "field.mha")
    assert checkReadableImage(tmp_path / "field.mha", allowVector=True).components == 3
    sitk.WriteImage(sitk.Image([6, 5], sitk.sitkUInt8), str(tmp_path / "slice.png"))
    with pytest.raises(MedAIInputError, match="2D"):
        checkReadableImage(tmp_path / "slice.png")
    assert checkReadableImage(tmp_path / "slice.png", ndims=(2, 3)).dimension == 2
    (tmp_path / "garbage.nrrd").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(MedAIInputError, match="garbage.nrrd cannot be read as an image"):
        checkReadableImage(tmp_path / "garbage.nrrd")
    with pytest.raises(MedAIInputError, match="does not exist"):
        checkReadableImage(tmp_path / "missing.nrrd")
