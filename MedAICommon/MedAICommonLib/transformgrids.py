"""B-spline and displacement-field grids: SimpleITK transforms <-> Slicer's oriented VTK transforms.

Both sides hold the *resampling* transform (a fixed-space point maps to the moving space): the
SimpleITK transforms in LPS, the VTK transforms in RAS. :mod:`MedAICommonLib.transforms` turns the
VTK ones into (or reads them from) a transform node's "from parent", which makes its "to parent"
the modeling transform.

A grid's vectors are flipped in x and y, and so are its origin and axis directions; spacing and
voxel order (KJI arrays, x fastest in VTK) stay. Displacement fields made here interpolate
linearly, as ITK's ``DisplacementFieldTransform`` does, and B-splines have no displacement outside
their support, as in ITK.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MedAIInputError
from .geometry import LPS_TO_RAS, lpsToRas, rasToLps, sitkImageGeometryLps

__all__ = [
    "vtkBSplineFromSitk",
    "vtkGridFromSitk",
    "sitkBSplineFromVtk",
    "sitkDisplacementFieldFromVtk",
]


# ---------------------------------------------------------------------------------------------
# SimpleITK (LPS) -> VTK (RAS)


def vtkBSplineFromSitk(bspline: Any) -> Any:
    """The VTK B-spline transform (resampling, RAS) equivalent to a SimpleITK one (resampling, LPS).

    Args:
        bspline: a 3D cubic ``SimpleITK.BSplineTransform``.

    Returns:
        A ``vtkOrientedBSplineTransform`` with the same grid and coefficients, converted to RAS.

    Raises:
        MedAIInputError: the B-spline is not 3D or not of order 3.
    """
    import SimpleITK as sitk
    import slicer

    if bspline.GetDimension() != 3 or bspline.GetOrder() != 3:
        raise MedAIInputError("Only 3D cubic (order 3) B-spline transforms have a Slicer equivalent.")
    coefficientImages = bspline.GetCoefficientImages()
    componentsLps = np.stack([sitk.GetArrayFromImage(image) for image in coefficientImages], axis=-1)
    transformRas = slicer.vtkOrientedBSplineTransform()
    transformRas.SetBorderModeToZero()  # ITK: no displacement outside the B-spline support
    transformRas.SetCoefficientData(_vtkImageFromVectors(componentsLps, coefficientImages[0]))
    transformRas.SetGridDirectionMatrix(slicer.util.vtkMatrixFromArray(_gridDirectionRas(coefficientImages[0])))
    return transformRas


def vtkGridFromSitk(displacementTransform: Any) -> Any:
    """The VTK grid transform (resampling, RAS) equivalent to a SimpleITK displacement field (LPS).

    Args:
        displacementTransform: a 2D or 3D ``SimpleITK.DisplacementFieldTransform``; a 2D field
            becomes a one-slice 3D grid that leaves z unchanged.

    Returns:
        A ``vtkOrientedGridTransform`` with linear interpolation, on the field's grid in RAS.
    """
    import SimpleITK as sitk
    import slicer

    field = displacementTransform.GetDisplacementField()
    vectorsLps = sitk.GetArrayFromImage(field).astype(np.float64)
    if field.GetDimension() == 2:
        vectorsLps = np.concatenate([vectorsLps, np.zeros(vectorsLps.shape[:-1] + (1,))], axis=-1)[np.newaxis]
    transformRas = slicer.vtkOrientedGridTransform()
    transformRas.SetInterpolationModeToLinear()  # as ITK's DisplacementFieldTransform
    transformRas.SetDisplacementGridData(_vtkImageFromVectors(vectorsLps, field))
    transformRas.SetGridDirectionMatrix(slicer.util.vtkMatrixFromArray(_gridDirectionRas(field)))
    return transformRas


def _gridDirectionRas(image: Any) -> np.ndarray:
    directionRas = np.eye(4)
    directionRas[:3, :3] = LPS_TO_RAS[:3, :3] @ sitkImageGeometryLps(image)[2]
    return directionRas


def _vtkImageFromVectors(vectorsLps: np.ndarray, geometryImage: Any) -> Any:
    """vtkImageData (x fastest, RAS vectors and origin) from KJI-ordered LPS vectors and an image's geometry."""
    import vtk
    from vtk.util import numpy_support

    vectorsRas = lpsToRas(vectorsLps)
    originLps, spacingMm, _ = sitkImageGeometryLps(geometryImage)
    image = vtk.vtkImageData()
    image.SetDimensions(vectorsRas.shape[2], vectorsRas.shape[1], vectorsRas.shape[0])
    image.SetOrigin(*lpsToRas(originLps))
    image.SetSpacing(*spacingMm)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(vectorsRas.reshape(-1, 3)), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


# ---------------------------------------------------------------------------------------------
# VTK (RAS) -> SimpleITK (LPS)


def sitkBSplineFromVtk(bsplineRas: Any) -> Any:
    """The SimpleITK B-spline transform (resampling, LPS) equivalent to a VTK one (resampling, RAS).

    Args:
        bsplineRas: a ``vtkOrientedBSplineTransform`` applied forward (not inverted), without a
            bulk matrix.

    Returns:
        A 3D cubic ``SimpleITK.BSplineTransform``.

    Raises:
        MedAIInputError: the transform is inverted or has a bulk matrix; ITK has no equivalent.
    """
    import SimpleITK as sitk

    if bsplineRas.GetInverseFlag():
        raise MedAIInputError(
            "The B-spline transform is stored as 'to parent' (modeling), so its resampling inverse is not a B-spline; "
            "convert it to a grid transform first."
        )
    bulk = bsplineRas.GetBulkTransformMatrix()
    if bulk is not None and not _isIdentity(bulk):
        raise MedAIInputError("A B-spline transform with a bulk matrix has no ITK v4 equivalent.")
    bsplineRas.Update()
    coefficientsRas, geometry = _vectorsAndGeometryFromVtkImage(
        bsplineRas.GetCoefficientData(), bsplineRas.GetGridDirectionMatrix()
    )
    coefficientsLps = rasToLps(coefficientsRas * bsplineRas.GetDisplacementScale())
    images = []
    for component in range(3):
        image = sitk.GetImageFromArray(np.ascontiguousarray(coefficientsLps[..., component]))
        _setImageGeometry(image, geometry)
        images.append(image)
    return sitk.BSplineTransform(images, 3)


def sitkDisplacementFieldFromVtk(gridRas: Any) -> Any:
    """The SimpleITK displacement field transform (resampling, LPS) equivalent to a VTK grid (RAS).

    Args:
        gridRas: a ``vtkOrientedGridTransform``; when it is inverted, the resampling field is
            sampled from the inverse on the same grid.

    Returns:
        A 3D ``SimpleITK.DisplacementFieldTransform`` on the grid's geometry in LPS.
    """
    import SimpleITK as sitk
    from vtk.util import numpy_support

    gridRas.Update()  # the grid may be computed lazily from its inverse
    vectorsRas, geometry = _vectorsAndGeometryFromVtkImage(
        gridRas.GetDisplacementGrid(), gridRas.GetGridDirectionMatrix()
    )
    if gridRas.GetInverseFlag():
        # The resampling direction is the inverse of the stored field: sample it on the same grid.
        pointsRas = _gridPointsRas(vectorsRas.shape[:3], geometry)
        vtkPoints, mappedPoints = _vtkPointsFrom(pointsRas), _vtkPointsFrom(np.zeros((0, 3)))
        gridRas.TransformPoints(vtkPoints, mappedPoints)
        mappedRas = numpy_support.vtk_to_numpy(mappedPoints.GetData()).astype(np.float64)
        vectorsRas = (mappedRas - pointsRas).reshape(vectorsRas.shape)
    else:
        vectorsRas = vectorsRas * gridRas.GetDisplacementScale() + gridRas.GetDisplacementShift()
    field = sitk.GetImageFromArray(np.ascontiguousarray(rasToLps(vectorsRas)), isVector=True)
    _setImageGeometry(field, geometry)
    return sitk.DisplacementFieldTransform(field)


def _vectorsAndGeometryFromVtkImage(image: Any, directionRasMatrix: Any) -> tuple[np.ndarray, tuple]:
    """KJI-ordered RAS vectors and the LPS geometry (origin, spacing, direction) of an oriented vtkImageData."""
    import slicer
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    vectorsRas = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).astype(np.float64)
    vectorsRas = vectorsRas.reshape(dims[2], dims[1], dims[0], 3)
    directionRas = np.eye(3)
    if directionRasMatrix is not None:
        directionRas = slicer.util.arrayFromVTKMatrix(directionRasMatrix)[:3, :3]
    spacing = np.array(image.GetSpacing())
    # A vtkImageData extent need not start at 0: the first point lies at origin + D * S * extentMin.
    extentMin = np.array(image.GetExtent()[::2], dtype=float)
    originRas = np.array(image.GetOrigin()) + directionRas @ (spacing * extentMin)
    geometry = (rasToLps(originRas), spacing, (LPS_TO_RAS[:3, :3] @ directionRas))
    return vectorsRas, geometry


def _setImageGeometry(image: Any, geometry: tuple) -> None:
    originLps, spacing, directionLps = geometry
    image.SetOrigin(tuple(float(v) for v in originLps))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in directionLps.ravel()))


def _gridPointsRas(shapeKji: tuple, geometry: tuple) -> np.ndarray:
    originLps, spacing, directionLps = geometry
    k, j, i = np.meshgrid(*(np.arange(n) for n in shapeKji), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    return lpsToRas(originLps + (ijk * spacing) @ directionLps.T)


def _isIdentity(matrix: Any) -> bool:
    import slicer

    return np.allclose(slicer.util.arrayFromVTKMatrix(matrix), np.eye(4), atol=0.0, rtol=0.0)


def _vtkPointsFrom(points: np.ndarray) -> Any:
    import vtk
    from vtk.util import numpy_support

    vtkPoints = vtk.vtkPoints()
    vtkPoints.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    return vtkPoints
