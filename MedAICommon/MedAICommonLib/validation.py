"""Checks of user input that fail early with one clear sentence.

Every check raises :class:`~MedAICommonLib.errors.MedAIInputError` naming the file, node or
array and what is wrong with it, and creates nothing (no node, no file). Call them before any
work so that a bad input never leaves a half-made result behind.

Example:
    >>> from MedAICommonLib.validation import checkImageArray
    >>> import numpy as np
    >>> checkImageArray(np.zeros((4, 5, 6)), "fixed image")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import MedAIInputError

__all__ = ["ImageHeader", "checkInputFile", "checkImageArray", "checkVolumeNode", "checkReadableImage"]


class ImageHeader(NamedTuple):
    """What an image file says about itself, read without loading the voxels.

    Attributes:
        dimension: number of image axes with more than one voxel beyond the first three
            (a 3D NIfTI stored with a fourth axis of length 1 counts as 3D).
        size: voxels along each axis, in file order (I, J, K, ...).
        spacingMm: voxel size in millimetres along each axis.
        components: values per voxel (1 for a scalar image, 3 for a vector or RGB image).
        pixelType: the voxel type as SimpleITK names it (``"16-bit signed integer"``...).
    """

    dimension: int
    size: tuple[int, ...]
    spacingMm: tuple[float, ...]
    components: int
    pixelType: str


def checkInputFile(path, what: str = "image", allowDirectory: bool = False) -> Path:
    """Check that a file given by the user exists, is a file, is not empty and can be read.

    Args:
        path: the file (str or Path).
        what: what the file should hold, in the user's words, used in the message
            (``"image"``, ``"segmentation"``, ``"transform"``, ``"scene"``...).
        allowDirectory: accept a non-empty folder (a DICOM series) instead of a file.

    Returns:
        The path as an absolute :class:`~pathlib.Path`.

    Raises:
        MedAIInputError: the path is missing, empty, a folder where a file is needed, or unreadable.
    """
    if path is None or str(path).strip() == "":
        raise MedAIInputError(f"No {what} file was given.")
    filePath = Path(path).expanduser().absolute()
    if not filePath.exists():
        raise MedAIInputError(f"The {what} file {filePath} does not exist.")
    if filePath.is_dir():
        if not allowDirectory:
            raise MedAIInputError(f"The {what} path {filePath} is a folder, but a file is needed.")
        if not os.access(filePath, os.R_OK | os.X_OK):
            raise MedAIInputError(f"The {what} folder {filePath} cannot be read (permission denied).")
        if not any(filePath.iterdir()):
            raise MedAIInputError(f"The {what} folder {filePath} is empty.")
        return filePath
    if not filePath.is_file():
        raise MedAIInputError(f"The {what} path {filePath} is not a regular file.")
    if filePath.stat().st_size == 0:
        raise MedAIInputError(f"The {what} file {filePath} is empty (0 bytes).")
    try:
        with open(filePath, "rb") as stream:
            stream.read(1)
    except OSError as error:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read ({error.strerror or error}).") from None
    return filePath


def checkImageArray(
    array,
    name: str,
    allowNaN: bool = False,
    ndims: Sequence[int] = (3,),
    allowInf: bool = False,
    allowConstant: bool = True,
) -> None:
    """Check a voxel array before computing on it.

    Args:
        array: the voxels (numpy array or anything ``numpy.asarray`` accepts), KJI order for volumes.
        name: what the array is, in the user's words (``"fixed image"``), used in the message.
        allowNaN: accept NaN voxels (for example a probability map with a masked-out region).
        ndims: accepted numbers of array dimensions; a 3D volume is 3, a vector volume 4.
        allowInf: accept infinite voxels (for example a distance map).
        allowConstant: accept an array whose voxels all have the same value.

    Raises:
        MedAIInputError: wrong number of dimensions, no voxels, a non-numeric type, NaN or Inf
            voxels where not allowed, or a constant array where not allowed.
    """
    values = np.asarray(array)
    if values.ndim not in tuple(ndims):
        expected = " or ".join(f"{n}D" for n in ndims)
        raise MedAIInputError(
            f"The {name} is {values.ndim}D (shape {'x'.join(map(str, values.shape))}), but a {expected} image is needed."
        )
    if values.size == 0:
        raise MedAIInputError(f"The {name} has no voxels (shape {'x'.join(map(str, values.shape))}).")
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise MedAIInputError(f"The {name} holds {values.dtype} values, not numbers.")
    if np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating):
        nanCount = int(np.count_nonzero(np.isnan(values)))
        if nanCount and not allowNaN:
            raise MedAIInputError(f"The {name} contains {nanCount} NaN voxel(s) (not a number).")
        infCount = int(np.count_nonzero(np.isinf(values)))
        if infCount and not allowInf:
            raise MedAIInputError(f"The {name} contains {infCount} infinite voxel(s).")
    if not allowConstant:
        finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
        if finite.size == 0 or finite.min() == finite.max():
            level = finite.flat[0] if finite.size else "NaN"
            raise MedAIInputError(f"The {name} is constant (every voxel is {level}); it holds no image content.")


def checkVolumeNode(
    volumeNode,
    name: str | None = None,
    allowNaN: bool = False,
    ndims: Sequence[int] = (3,),
    allowInf: bool = False,
    allowConstant: bool = True,
) -> None:
    """Check that a volume node holds voxels that can be computed on.

    A scalar volume gives a 3D KJI array (a 2D image is a volume with one slice); a volume with
    several components per voxel (vector, RGB) gives a 4D array and is refused unless 4 is in
    ``ndims``.

    Args:
        volumeNode: a ``vtkMRMLVolumeNode`` (scalar, label map or vector volume).
        name: what the volume is, in the user's words; defaults to the node's name.
        allowNaN, ndims, allowInf, allowConstant: as in :func:`checkImageArray`.

    Raises:
        MedAIInputError: no node, not a volume node, no image data, or :func:`checkImageArray` fails.
    """
    label = name or "input volume"
    if volumeNode is None:
        raise MedAIInputError(f"No {label} is selected.")
    if not (hasattr(volumeNode, "IsA") and volumeNode.IsA("vtkMRMLVolumeNode")):
        kind = volumeNode.GetClassName() if hasattr(volumeNode, "GetClassName") else type(volumeNode).__name__
        raise MedAIInputError(f"The {label} is a {kind}, not a volume node.")
    if name is None:
        label = f"volume '{volumeNode.GetName()}'"
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetNumberOfPoints() == 0 or imageData.GetPointData().GetScalars() is None:
        raise MedAIInputError(f"The {label} has no image data.")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    dims = imageData.GetDimensions()
    components = imageData.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    # A read-only view: the check never copies or changes the node's voxels.
    voxels = vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(shape)
    checkImageArray(voxels, label, allowNaN=allowNaN, ndims=ndims, allowInf=allowInf, allowConstant=allowConstant)


def checkReadableImage(
    path, ndims: Sequence[int] = (3,), what: str = "image", allowVector: bool = False
) -> ImageHeader:
    """Read only the header of an image file and refuse it if it cannot be the image needed.

    The voxels are not loaded, so a 4D or multi-component image is refused before any memory is
    spent on it. A 2D image counts as 2D here; a vector image counts one dimension more than its
    axes unless ``allowVector`` is set.

    Args:
        path: an image file that SimpleITK reads (NRRD, NIfTI, MHA, DICOM file, TIFF...).
        ndims: accepted numbers of dimensions (``(3,)``, or ``(2, 3)`` where a 2D image will do).
        what: what the file should hold, in the user's words, used in the message.
        allowVector: accept several components per voxel (a displacement field, an RGB image).

    Returns:
        The :class:`ImageHeader` read from the file.

    Raises:
        MedAIInputError: the file is missing or unreadable, or has the wrong number of dimensions.
    """
    import SimpleITK as sitk

    filePath = checkInputFile(path, what)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(filePath))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise MedAIInputError(
            f"The {what} file {filePath} cannot be read as an image (unknown format or damaged file)."
        ) from None
    size = tuple(int(s) for s in reader.GetSize())
    # Files often carry trailing axes of length 1 (NIfTI time, NRRD list); they do not make an image 4D.
    dimension = len(size)
    while dimension > 3 and size[dimension - 1] == 1:
        dimension -= 1
    components = int(reader.GetNumberOfComponents())
    header = ImageHeader(
        dimension,
        size,
        tuple(float(s) for s in reader.GetSpacing()),
        components,
        sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )
    effective = dimension + (1 if components > 1 and not allowVector else 0)
    if effective not in tuple(ndims):
        expected = " or ".join(f"{n}D" for n in ndims)
        sizeText = "x".join(map(str, size[:dimension]))
        if components > 1 and not allowVector and dimension in tuple(ndims):
            raise MedAIInputError(
                f"The {what} file {filePath} has {components} values per voxel (a vector or colour image), "
                f"but a single-value {expected} image is needed."
            )
        raise MedAIInputError(
            f"The {what} file {filePath} is a {dimension}D image ({sizeText}), but a {expected} image is needed."
        )
    return header
