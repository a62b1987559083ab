"""Geometry shared by the volume, segmentation, transform and file bridges: LPS <-> RAS and matrix checks.

Conventions used by every function here:

- Positions are millimetres. RAS (Slicer, MRML nodes, MONAI) and LPS (ITK, SimpleITK, DICOM, most
  image and transform files) differ only in the sign of x and y, so one flip converts both ways.
- Matrices are 4x4 homogeneous float64 numpy arrays.
- An IJK-to-RAS matrix maps a voxel index ``(i, j, k, 1)`` to the RAS position of the voxel
  centre; its columns are the axis directions scaled by the spacing.

This is the one place that knows these conventions; the other modules import them from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MedAIInputError

__all__ = [
    "LPS_TO_RAS",
    "rasToLps",
    "lpsToRas",
    "checkedAffine",
    "volumeGeometry",
    "sitkImageGeometryLps",
    "ijkToRasFromSitkImage",
    "sitkImageFromArray",
    "linearTransformToWorld",
]

#: Flips x and y; it converts RAS to LPS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Columns whose cosine exceeds this are sheared: MRML, ITK and NIfTI cannot hold such a grid.
_ORTHOGONALITY_TOLERANCE = 1e-4


def rasToLps(points: Any) -> np.ndarray:
    """Convert points from RAS to LPS millimetres (or back: the flip is its own inverse).

    Args:
        points: one point (3,) or many (N, 3), in RAS mm.

    Returns:
        A new float array of the same shape, in LPS mm.
    """
    converted = np.array(points, dtype=float)
    converted[..., :2] *= -1.0
    return converted


def lpsToRas(points: Any) -> np.ndarray:
    """Convert points from LPS to RAS millimetres; see :func:`rasToLps`."""
    return rasToLps(points)


def checkedAffine(matrix: Any, name: str) -> np.ndarray:
    """Check that a matrix is a finite 4x4 affine matrix.

    Args:
        matrix: the matrix (numpy array or nested lists).
        name: what the matrix is, used in the message (``"The IJK-to-RAS matrix"``, ``"toParentRas"``).

    Returns:
        The matrix as a float64 array (the input itself when it already is one; never modified).

    Raises:
        MedAIInputError: not 4x4, non-finite values, or a last row other than 0 0 0 1.
    """
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (4, 4):
        raise MedAIInputError(f"{name} must be a 4x4 matrix, got shape {array.shape}.")
    if not np.all(np.isfinite(array)) or not np.allclose(array[3], [0.0, 0.0, 0.0, 1.0]):
        raise MedAIInputError(f"{name} must be a finite affine matrix with last row 0 0 0 1.")
    return array


def volumeGeometry(ijkToRas: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split an IJK-to-RAS matrix into spacing, axis directions and origin.

    Works as well for an IJK-to-LPS matrix (the parts are then in LPS).

    Args:
        ijkToRas: 4x4 matrix, RAS millimetres per voxel index.

    Returns:
        ``(spacingMm (3,), directions (3, 3) with unit axis columns, originRas (3,))``.

    Raises:
        MedAIInputError: not a finite affine 4x4 matrix, a zero-length axis, or sheared axes.
    """
    matrix = checkedAffine(ijkToRas, "The IJK-to-RAS matrix")
    spacingMm = np.linalg.norm(matrix[:3, :3], axis=0)
    if np.any(spacingMm <= 0.0):
        raise MedAIInputError(f"The IJK-to-RAS matrix has a zero-length axis (spacing {spacingMm.tolist()} mm).")
    directions = matrix[:3, :3] / spacingMm
    cosines = directions.T @ directions - np.eye(3)
    if np.max(np.abs(cosines)) > _ORTHOGONALITY_TOLERANCE:
        raise MedAIInputError("The IJK-to-RAS matrix shears the voxel grid; its axes must be orthogonal.")
    return spacingMm, directions, matrix[:3, 3].copy()


def sitkImageGeometryLps(image: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid of a 2D or 3D SimpleITK image as 3D LPS geometry.

    A 2D image is read as the one-slice volume that ``SimpleITK.JoinSeries`` makes of it: z origin
    0, z spacing 1 mm, z axis along LPS z.

    Args:
        image: a 2D or 3D ``SimpleITK.Image`` (or anything with its geometry getters).

    Returns:
        ``(originLps (3,), spacingMm (3,), directionLps (3, 3) with unit axis columns)``.
    """
    dimension = image.GetDimension()
    originLps, spacingMm, directionLps = np.zeros(3), np.ones(3), np.eye(3)
    originLps[:dimension] = image.GetOrigin()
    spacingMm[:dimension] = image.GetSpacing()
    directionLps[:dimension, :dimension] = np.reshape(image.GetDirection(), (dimension, dimension))
    return originLps, spacingMm, directionLps


def ijkToRasFromSitkImage(image: Any) -> np.ndarray:
    """Return the IJK-to-RAS matrix of a 3D SimpleITK image (whose geometry is LPS).

    Args:
        image: a 3D ``SimpleITK.Image``.

    Returns:
        A 4x4 float64 array mapping voxel indices to RAS millimetres.

    Raises:
        MedAIInputError: the image is not 3D.
    """
    if image.GetDimension() != 3:
        raise MedAIInputError(f"Expected a 3D image, got a {image.GetDimension()}D image.")
    originLps, spacingMm, directionLps = sitkImageGeometryLps(image)
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = directionLps * spacingMm
    ijkToLps[:3, 3] = originLps
    return LPS_TO_RAS @ ijkToLps


def sitkImageFromArray(array: np.ndarray, ijkToRas: Any) -> Any:
    """A 3D SimpleITK image (LPS geometry) holding a copy of a KJI array on the grid ``ijkToRas``.

    Args:
        array: voxels in KJI order.
        ijkToRas: 4x4 IJK-to-RAS matrix of the grid, millimetres.

    Returns:
        A ``SimpleITK.Image`` with the array's voxel type, spacing, LPS origin and direction.

    Raises:
        MedAIInputError: the matrix is not an affine matrix without shear.
    """
    import SimpleITK as sitk

    spacingMm, directions, originLps = volumeGeometry(LPS_TO_RAS @ np.asarray(ijkToRas, dtype=float))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacingMm.tolist())
    image.SetOrigin(originLps.tolist())
    image.SetDirection(directions.ravel().tolist())
    return image


def linearTransformToWorld(node: Any, what: str) -> np.ndarray:
    """The 4x4 matrix (RAS mm) of the transforms above a node; identity when it has none.

    Args:
        node: a transformable MRML node (volume, segmentation...).
        what: the kind of node in the user's words, for the message (``"Volume"``).

    Returns:
        A new float64 array mapping the node's local RAS to world RAS.

    Raises:
        MedAIInputError: a transform above the node is non-linear.
    """
    import slicer
    import vtk

    transformNode = node.GetParentTransformNode()
    if transformNode is None:
        return np.eye(4)
    if not transformNode.IsTransformToWorldLinear():
        raise MedAIInputError(
            f"{what} '{node.GetName()}' is under the non-linear transform '{transformNode.GetName()}'; "
            "harden or remove the transform first."
        )
    matrix = vtk.vtkMatrix4x4()
    transformNode.GetMatrixTransformToWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)
