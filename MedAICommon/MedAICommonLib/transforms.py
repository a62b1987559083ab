"""Transform nodes <-> SimpleITK transforms: the audited transform half of the geometry bridge.

Conventions (see ARCHITECTURE.md):

- SimpleITK and ITK transform files hold the *resampling* transform in LPS: a point of the fixed
  image maps to the matching point of the moving image.
- A Slicer transform node that moves the moving image onto the fixed one holds the *modeling*
  transform "to parent" in RAS. Its "from parent" transform is therefore the resampling transform
  in RAS, and it is exactly what Slicer writes to (and reads from) ITK files after flipping x and y.

The conversion is done here in memory (numpy), not through temporary files, so that it is fast and
never touches the disk. It mirrors Slicer's own converter (``vtkITKTransformConverter``, used by
``vtkMRMLTransformStorageNode``), and the tests prove that both agree by writing nodes with Slicer's
storage node and reading them with ``SimpleITK.ReadTransform``. Displacement fields created here
interpolate linearly, as ITK does, so the node maps every point as the SimpleITK transform does
(Slicer's file reader picks cubic interpolation, which agrees only on the grid points).
"""

from __future__ import annotations

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "rasToLps",
    "lpsToRas",
    "resamplingMatrixLpsFromToParentRas",
    "toParentRasFromResamplingMatrixLps",
    "matrixFromSitkLinearTransform",
    "sitkAffineTransformFromMatrix",
    "sitkTransformFromTransformNode",
    "createTransformNodeFromSitkTransform",
    "updateTransformNodeFromSitkTransform",
]

# Flipping x and y turns LPS into RAS and back; the matrix is its own inverse.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def rasToLps(points) -> np.ndarray:
    """Convert points from RAS to LPS millimetres (or back: the flip is its own inverse).

    Args:
        points: one point (3,) or many (N, 3), in RAS mm.

    Returns:
        A new float array of the same shape, in LPS mm.
    """
    converted = np.array(points, dtype=float)
    converted[..., :2] *= -1.0
    return converted


def lpsToRas(points) -> np.ndarray:
    """Convert points from LPS to RAS millimetres; see :func:`rasToLps`."""
    return rasToLps(points)


def resamplingMatrixLpsFromToParentRas(toParentRas) -> np.ndarray:
    """Turn a Slicer modeling "to parent" matrix (RAS) into the ITK resampling matrix (LPS).

    Args:
        toParentRas: 4x4 homogeneous matrix that moves the moving image onto the fixed one, RAS mm.

    Returns:
        4x4 matrix that maps a fixed-space LPS point to the moving-space LPS point.

    Raises:
        MedAIInputError: if the matrix is not a 4x4 invertible affine matrix.
    """
    matrix = _checkedAffine(toParentRas, "toParentRas")
    return _FLIP @ np.linalg.inv(matrix) @ _FLIP


def toParentRasFromResamplingMatrixLps(resamplingLps) -> np.ndarray:
    """Turn an ITK resampling matrix (LPS) into Slicer's modeling "to parent" matrix (RAS).

    Args:
        resamplingLps: 4x4 homogeneous matrix mapping fixed-space LPS points to moving-space LPS points.

    Returns:
        4x4 matrix that moves the moving image onto the fixed one, RAS mm.

    Raises:
        MedAIInputError: if the matrix is not a 4x4 invertible affine matrix.
    """
    matrix = _checkedAffine(resamplingLps, "resamplingLps")
    return np.linalg.inv(_FLIP @ matrix @ _FLIP)


def matrixFromSitkLinearTransform(transform) -> np.ndarray:
    """The 4x4 resampling matrix (LPS) of any linear SimpleITK transform, 2D ones embedded in 3D.

    Works for every linear type (Euler, Versor, Similarity, Affine, Translation, Scale, a composite
    of linear ones) because it probes the transform with points instead of reading its parameters.

    Args:
        transform: a linear ``SimpleITK.Transform`` of dimension 2 or 3 (resampling convention, LPS).

    Returns:
        4x4 matrix mapping fixed-space LPS points to moving-space LPS points; for a 2D transform
        z is left unchanged.

    Raises:
        MedAIInputError: if the transform is not linear or not 2D/3D.
    """
    dimension = _checkedSitkTransform(transform)
    if not transform.IsLinear():
        raise MedAIInputError(f"The {transform.GetName()} is not linear, so it has no matrix.")
    origin = np.array(transform.TransformPoint((0.0,) * dimension))
    matrix = np.eye(4)
    for axis in range(dimension):
        unit = np.zeros(dimension)
        unit[axis] = 1.0
        matrix[:dimension, axis] = np.array(transform.TransformPoint(tuple(unit))) - origin
    matrix[:dimension, 3] = origin
    return matrix


def sitkAffineTransformFromMatrix(resamplingLps):
    """A 3D ``SimpleITK.AffineTransform`` (centre at the origin) from a 4x4 resampling matrix in LPS.

    Args:
        resamplingLps: 4x4 matrix mapping fixed-space LPS points to moving-space LPS points.

    Returns:
        The ``SimpleITK.AffineTransform``.

    Raises:
        MedAIInputError: if the matrix is not a 4x4 invertible affine matrix.
    """
    import SimpleITK as sitk

    matrix = _checkedAffine(resamplingLps, "resamplingLps")
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(float(v) for v in matrix[:3, :3].ravel()))
    affine.SetTranslation(tuple(float(v) for v in matrix[:3, 3]))
    return affine


def sitkTransformFromTransformNode(transformNode):
    """The SimpleITK transform (resampling convention, LPS) equivalent to a Slicer transform node.

    The node's parent transforms are honoured: the result is the node's transform from world, so a
    moving image placed under the node lands where ``SimpleITK.Resample`` with the result puts it.

    Args:
        transformNode: a ``vtkMRMLTransformNode`` (linear, B-spline, grid, or a composite of them).

    Returns:
        ``SimpleITK.AffineTransform`` for linear nodes, ``SimpleITK.BSplineTransform`` (order 3),
        ``SimpleITK.DisplacementFieldTransform`` (linear interpolation), or a
        ``SimpleITK.CompositeTransform`` of them, all 3D, mapping fixed-space LPS points to
        moving-space LPS points.

    Raises:
        MedAIInputError: if the node is not a transform node, or holds a transform without an exact
            ITK equivalent (thin-plate spline, an inverted B-spline, a B-spline with a bulk matrix).
    """
    import slicer
    import vtk

    if transformNode is None or not transformNode.IsA("vtkMRMLTransformNode"):
        raise MedAIInputError("The transform node is missing or is not a vtkMRMLTransformNode.")
    if transformNode.IsTransformToWorldLinear():
        fromWorldRas = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformFromWorld(fromWorldRas)
        return sitkAffineTransformFromMatrix(_FLIP @ _arrayFromVtkMatrix(fromWorldRas) @ _FLIP)
    fromWorld = vtk.vtkGeneralTransform()
    transformNode.GetTransformFromWorld(fromWorld)
    collection = vtk.vtkCollection()
    slicer.vtkMRMLTransformNode.FlattenGeneralTransform(collection, fromWorld)
    # The flattened list starts with the transform applied first; ITK's composite applies its last first.
    count = collection.GetNumberOfItems()
    elements = [_sitkTransformFromVtk(collection.GetItemAsObject(i)) for i in reversed(range(count))]
    elements = _mergeLinearNeighbours(elements)
    if len(elements) == 1:
        return elements[0]
    import SimpleITK as sitk

    return sitk.CompositeTransform(elements)


def createTransformNodeFromSitkTransform(scene, transform, name: str):
    """Add a transform node holding a SimpleITK transform, converted to Slicer's conventions.

    Args:
        scene: the ``vtkMRMLScene`` to add the node to.
        transform: a 2D or 3D ``SimpleITK.Transform`` in the resampling convention (LPS): linear,
            ``BSplineTransform`` (3D, order 3), ``DisplacementFieldTransform`` or a composite of them.
        name: the node name.

    Returns:
        ``vtkMRMLLinearTransformNode``, ``vtkMRMLBSplineTransformNode``, ``vtkMRMLGridTransformNode``
        or (for a composite with a non-linear part) ``vtkMRMLTransformNode`` whose "to parent"
        is the modeling transform in RAS (moves the moving image onto the fixed one).

    Raises:
        MedAIInputError: for a transform type without a Slicer equivalent; nothing is added then.
    """
    if scene is None or not scene.IsA("vtkMRMLScene"):
        raise MedAIInputError("The scene is missing or is not a vtkMRMLScene.")
    fromParentRas, nodeClass = _vtkResamplingRasFromSitk(transform)
    transformNode = scene.AddNewNodeByClass(nodeClass, str(name))
    _setFromParent(transformNode, fromParentRas)
    return transformNode


def updateTransformNodeFromSitkTransform(transformNode, transform) -> None:
    """Replace the transform held by a node with a SimpleITK transform (resampling, LPS).

    Args:
        transformNode: the ``vtkMRMLTransformNode`` to update; its "to parent" becomes the modeling
            transform in RAS. A ``vtkMRMLLinearTransformNode`` only accepts linear transforms.
        transform: the ``SimpleITK.Transform``, as in :func:`createTransformNodeFromSitkTransform`.

    Raises:
        MedAIInputError: if the node or the transform is unsuitable; the node is then unchanged.
    """
    if transformNode is None or not transformNode.IsA("vtkMRMLTransformNode"):
        raise MedAIInputError("The transform node is missing or is not a vtkMRMLTransformNode.")
    fromParentRas, nodeClass = _vtkResamplingRasFromSitk(transform)
    if transformNode.IsA("vtkMRMLLinearTransformNode") and nodeClass != "vtkMRMLLinearTransformNode":
        raise MedAIInputError(
            f"The linear transform node '{transformNode.GetName()}' cannot hold a non-linear {transform.GetName()}."
        )
    _setFromParent(transformNode, fromParentRas)


# ---------------------------------------------------------------------------------------------
# SimpleITK -> VTK (resampling transform in RAS)


def _vtkResamplingRasFromSitk(transform):
    """Return (vtk transform of the resampling in RAS, MRML node class) for a SimpleITK transform."""
    import SimpleITK as sitk
    import vtk

    _checkedSitkTransform(transform)
    if transform.IsLinear():
        return _FLIP @ matrixFromSitkLinearTransform(transform) @ _FLIP, "vtkMRMLLinearTransformNode"
    elements = _flattenedSitkElements(transform)
    vtkElements = []
    for element in _mergeLinearNeighbours(elements):
        if element.IsLinear():
            vtkElements.append(_vtkLinearFromMatrix(_FLIP @ matrixFromSitkLinearTransform(element) @ _FLIP))
        elif isinstance(element, sitk.BSplineTransform):
            vtkElements.append(_vtkBSplineFromSitk(element))
        elif isinstance(element, sitk.DisplacementFieldTransform):
            vtkElements.append(_vtkGridFromSitk(element))
        else:
            raise MedAIInputError(
                f"A {element.GetName()} has no Slicer equivalent; use a linear, B-spline or displacement field transform."
            )
    if len(vtkElements) == 1:
        nodeClass = (
            "vtkMRMLBSplineTransformNode"
            if vtkElements[0].IsA("vtkOrientedBSplineTransform")
            else "vtkMRMLGridTransformNode"
        )
        return vtkElements[0], nodeClass
    general = vtk.vtkGeneralTransform()
    for element in vtkElements:  # PreMultiply (the default): like ITK, the last one is applied first
        general.Concatenate(element)
    return general, "vtkMRMLTransformNode"


def _flattenedSitkElements(transform) -> list:
    """The transforms of a (possibly nested) composite, in ITK order (the last is applied first)."""
    import SimpleITK as sitk

    transform = transform.Downcast()
    if not isinstance(transform, sitk.CompositeTransform):
        return [transform]
    elements = []
    for index in range(transform.GetNumberOfTransforms()):
        elements.extend(_flattenedSitkElements(transform.GetNthTransform(index)))
    return elements


def _vtkLinearFromMatrix(matrix):
    import vtk

    linear = vtk.vtkTransform()
    linear.SetMatrix(_vtkMatrix(matrix))
    return linear


def _vtkBSplineFromSitk(bspline):
    import SimpleITK as sitk
    import slicer

    if bspline.GetDimension() != 3 or bspline.GetOrder() != 3:
        raise MedAIInputError("Only 3D cubic (order 3) B-spline transforms have a Slicer equivalent.")
    coefficientImages = bspline.GetCoefficientImages()
    componentsLps = np.stack([sitk.GetArrayFromImage(image) for image in coefficientImages], axis=-1)
    transformRas = slicer.vtkOrientedBSplineTransform()
    transformRas.SetBorderModeToZero()  # ITK: no displacement outside the B-spline support
    transformRas.SetCoefficientData(_vtkImageFromVectors(componentsLps, coefficientImages[0]))
    transformRas.SetGridDirectionMatrix(_vtkMatrix(_gridDirectionRas(coefficientImages[0])))
    return transformRas


def _vtkGridFromSitk(displacementTransform):
    import SimpleITK as sitk
    import slicer

    field = displacementTransform.GetDisplacementField()
    vectorsLps = sitk.GetArrayFromImage(field).astype(np.float64)
    if field.GetDimension() == 2:
        # A 2D field becomes a one-slice 3D grid that leaves z unchanged.
        vectorsLps = np.concatenate([vectorsLps, np.zeros(vectorsLps.shape[:-1] + (1,))], axis=-1)[np.newaxis]
    transformRas = slicer.vtkOrientedGridTransform()
    transformRas.SetInterpolationModeToLinear()  # as ITK's DisplacementFieldTransform
    transformRas.SetDisplacementGridData(_vtkImageFromVectors(vectorsLps, field))
    transformRas.SetGridDirectionMatrix(_vtkMatrix(_gridDirectionRas(field)))
    return transformRas


def _gridDirectionRas(image) -> np.ndarray:
    dimension = image.GetDimension()
    directionLps = np.eye(4)
    directionLps[:dimension, :dimension] = np.array(image.GetDirection()).reshape(dimension, dimension)
    return _FLIP @ directionLps


def _vtkImageFromVectors(vectorsLps: np.ndarray, geometryImage):
    """vtkImageData (x fastest, RAS vectors and origin) from KJI-ordered LPS vectors and an image's geometry."""
    import vtk
    from vtk.util import numpy_support

    dimension = geometryImage.GetDimension()
    vectorsRas = rasToLps(vectorsLps)
    originLps = np.zeros(3)
    originLps[:dimension] = geometryImage.GetOrigin()
    spacing = np.ones(3)
    spacing[:dimension] = geometryImage.GetSpacing()
    image = vtk.vtkImageData()
    image.SetDimensions(vectorsRas.shape[2], vectorsRas.shape[1], vectorsRas.shape[0])
    image.SetOrigin(*lpsToRas(originLps))
    image.SetSpacing(*spacing)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(vectorsRas.reshape(-1, 3)), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def _setFromParent(transformNode, fromParentRas) -> None:
    if isinstance(fromParentRas, np.ndarray):
        transformNode.SetMatrixTransformFromParent(_vtkMatrix(fromParentRas))
    else:
        transformNode.SetAndObserveTransformFromParent(fromParentRas)


# ---------------------------------------------------------------------------------------------
# VTK (resampling transform in RAS) -> SimpleITK


def _sitkTransformFromVtk(transformRas):
    if transformRas.IsA("vtkLinearTransform"):
        matrix = _arrayFromVtkMatrix(transformRas.GetMatrix())
        return sitkAffineTransformFromMatrix(_FLIP @ matrix @ _FLIP)
    if transformRas.IsA("vtkOrientedBSplineTransform"):
        return _sitkBSplineFromVtk(transformRas)
    if transformRas.IsA("vtkOrientedGridTransform"):
        return _sitkDisplacementFieldFromVtk(transformRas)
    if transformRas.IsA("vtkGridTransform") or transformRas.IsA("vtkBSplineTransform"):
        raise MedAIInputError(
            f"A {transformRas.GetClassName()} without grid direction is not supported; use Slicer's oriented transforms."
        )
    raise MedAIInputError(
        f"A {transformRas.GetClassName()} has no exact ITK equivalent; convert it to a grid transform in Slicer first."
    )


def _sitkBSplineFromVtk(bsplineRas):
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


def _sitkDisplacementFieldFromVtk(gridRas):
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


def _vectorsAndGeometryFromVtkImage(image, directionRasMatrix):
    """KJI-ordered RAS vectors and the LPS geometry (origin, spacing, direction) of an oriented vtkImageData."""
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    vectorsRas = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).astype(np.float64)
    vectorsRas = vectorsRas.reshape(dims[2], dims[1], dims[0], 3)
    directionRas = np.eye(3)
    if directionRasMatrix is not None:
        directionRas = _arrayFromVtkMatrix(directionRasMatrix)[:3, :3]
    spacing = np.array(image.GetSpacing())
    # A vtkImageData extent need not start at 0: the first point lies at origin + D * S * extentMin.
    extentMin = np.array(image.GetExtent()[::2], dtype=float)
    originRas = np.array(image.GetOrigin()) + directionRas @ (spacing * extentMin)
    geometry = (rasToLps(originRas), spacing, (_FLIP[:3, :3] @ directionRas))
    return vectorsRas, geometry


def _setImageGeometry(image, geometry) -> None:
    originLps, spacing, directionLps = geometry
    image.SetOrigin(tuple(float(v) for v in originLps))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in directionLps.ravel()))


def _gridPointsRas(shapeKji, geometry) -> np.ndarray:
    originLps, spacing, directionLps = geometry
    k, j, i = np.meshgrid(*(np.arange(n) for n in shapeKji), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    return lpsToRas(originLps + (ijk * spacing) @ directionLps.T)


def _mergeLinearNeighbours(elements: list) -> list:
    """Compose neighbouring linear SimpleITK transforms (ITK order) into one affine transform each."""
    merged = []
    for element in elements:
        if merged and element.IsLinear() and merged[-1].IsLinear():
            # merged[-1] is applied after element, so its matrix multiplies on the left.
            matrix = matrixFromSitkLinearTransform(merged[-1]) @ matrixFromSitkLinearTransform(element)
            merged[-1] = sitkAffineTransformFromMatrix(matrix)
        else:
            merged.append(element)
    return merged


# ---------------------------------------------------------------------------------------------
# Small helpers


def _checkedSitkTransform(transform) -> int:
    import SimpleITK as sitk

    if not isinstance(transform, sitk.Transform):
        raise MedAIInputError(f"Expected a SimpleITK transform, got {type(transform).__name__}.")
    dimension = transform.GetDimension()
    if dimension not in (2, 3):
        raise MedAIInputError(f"Only 2D and 3D transforms are supported, got a {dimension}D {transform.GetName()}.")
    return dimension


def _checkedAffine(matrix, name: str) -> np.ndarray:
    array = np.asarray(matrix, dtype=float)
    if array.shape != (4, 4) or not np.all(np.isfinite(array)) or not np.allclose(array[3], [0, 0, 0, 1]):
        raise MedAIInputError(f"{name} must be a finite 4x4 affine matrix with last row 0 0 0 1.")
    if abs(np.linalg.det(array[:3, :3])) < 1e-12:
        raise MedAIInputError(f"{name} is singular and cannot be inverted.")
    return array


def _vtkMatrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row][column]))
    return matrix


def _arrayFromVtkMatrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _isIdentity(matrix) -> bool:
    return np.allclose(_arrayFromVtkMatrix(matrix), np.eye(4), atol=0.0, rtol=0.0)


def _vtkPointsFrom(points: np.ndarray):
    import vtk
    from vtk.util import numpy_support

    vtkPoints = vtk.vtkPoints()
    vtkPoints.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    return vtkPoints
