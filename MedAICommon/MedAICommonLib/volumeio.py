"""Loading volumes: image files through Slicer's volume reader or SimpleITK, and DICOM series.

Image files hold LPS geometry; the volume nodes hold RAS. The voxels keep the file's order, even
where its IJK axes are left-handed (Slicer's desktop would flip the K axis), so what is saved back
lies on exactly the same grid.
"""

from __future__ import annotations

from pathlib import Path

import slicer

from .errors import MedAIInputError
from .geometry import ijkToRasFromSitkImage
from .nodeio import _SLICER_VOLUME_EXTENSIONS, _addToScene, _baseName, _extension, _quietVtk, _readInto
from .validation import checkInputFile, checkReadableImage, checkVolumeNode
from .volumes import _setImageData

__all__ = ["loadVolume"]


def loadVolume(scene, path, name: str | None = None, labelmap: bool = False, allowNaN: bool = True):
    """Load a scalar volume or label map volume from an image file or a DICOM series folder.

    Args:
        scene: the ``vtkMRMLScene`` to add the volume to.
        path: an image file (NRRD, NIfTI ``.nii``/``.nii.gz``, MHA/MHD, a single DICOM file, TIFF...)
            or a folder holding a DICOM series (read with SimpleITK's ImageSeriesReader; when
            the folder holds several series the one with the most slices is read).
        name: the node name; defaults to the file name without its extension.
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` instead of a ``vtkMRMLScalarVolumeNode``.
        allowNaN: when False, refuse images with NaN or infinite voxels before adding anything.

    Returns:
        The new volume node, with IJK-to-RAS taken from the file (LPS in the file, RAS in the node).
        The voxels keep the file's order, even where its IJK axes are left-handed (Slicer's
        desktop would flip the K axis), so what is saved back lies on exactly the same grid.

    Raises:
        MedAIInputError: missing or unreadable file, an image with more than 3 dimensions or more
            than one value per voxel, or non-finite voxels when ``allowNaN`` is False.
    """
    filePath = checkInputFile(path, "image", allowDirectory=True)
    volumeNode = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storageNode = None
    if filePath.is_dir():
        _readWithSimpleITK(volumeNode, filePath)
    elif _extension(filePath) not in _SLICER_VOLUME_EXTENSIONS:
        # slicer-core's reader knows only NRRD, NIfTI, MetaImage and DICOM; SimpleITK reads the rest.
        checkReadableImage(filePath, ndims=(2, 3))
        _readWithSimpleITK(volumeNode, filePath)
    else:
        checkReadableImage(filePath, ndims=(2, 3))
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
        # Without SingleFile the archetype reader gathers similarly named files into one volume.
        storageNode.SetSingleFile(1)
        # Keep the file's voxel order: results written back must lie on exactly the same grid.
        storageNode.ForceRightHandedIJKCoordinateSystemOff()
        _readInto(storageNode, volumeNode, filePath, "image")
    if not allowNaN:
        checkVolumeNode(volumeNode, f"image in {filePath}", allowNaN=False)
    return _addToScene(scene, volumeNode, storageNode, name or _baseName(filePath))


def _readWithSimpleITK(volumeNode, path: Path) -> None:
    """Read a DICOM series folder, or any image file SimpleITK reads, into the node (LPS -> RAS)."""
    import SimpleITK as sitk

    try:
        if path.is_dir():
            seriesIds = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not seriesIds:
                raise MedAIInputError(f"The folder {path} holds no DICOM image series.")
            fileLists = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), sid) for sid in seriesIds]
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(max(fileLists, key=len))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise MedAIInputError(f"The image data in {path} cannot be read: {reason}") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (2, 3):
        raise MedAIInputError(
            f"The image in {path} is {image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} "
            "values per voxel, but a 2D or 3D single-value image is needed."
        )
    if image.GetDimension() == 2:
        image = sitk.JoinSeries([image])  # a one-slice volume
    _setImageData(volumeNode, sitk.GetArrayFromImage(image))
    volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRasFromSitkImage(image)))


def _keepVoxelOrderOnReload(scene) -> None:
    """Make every volume's storage node reload its file without flipping it to right-handed IJK."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if not node.IsA("vtkMRMLVolumeNode") or not node.GetSaveWithScene():
            continue
        storageNode = node.GetStorageNode()
        if storageNode is None:
            with _quietVtk():
                node.AddDefaultStorageNode()
            storageNode = node.GetStorageNode()
        if storageNode is not None and storageNode.IsA("vtkMRMLVolumeArchetypeStorageNode"):
            storageNode.ForceRightHandedIJKCoordinateSystemOff()
