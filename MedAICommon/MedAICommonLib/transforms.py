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

from .errors import MedAIInputError
from .geometry import LPS_TO_RAS, checkedAffine, lpsToRas, rasToLps
from .transformgrids import sitkBSplineFromVtk, sitkDisplacementFieldFromVtk, vtkBSplineFromSitk, vtkGridFromSitk

__all__ = [
    "resamplingMatrixLpsFromToParentRas",
    "toParentRasFromResamplingMatrixLps",
    "matrixFromSitkLinearTransform",
    "sitkAffineTransformFromMatrix",
    "sitkTransformFromTransformNode",
    "createTransformNodeFromSitkTransform",
    "updateTransformNodeFromSitkTransform",
    # Defined in geometry; importable from here too.
    "rasToLps",
    "lpsToRas",
]


def resamplingMatrixLpsFromToParentRas(toParentRas) -> np.ndarray:
    """Turn a Slicer modeling "to parent" matrix (RAS) into the ITK resampling matrix (LPS).

    Args:
        toParentRas: 4x4 homogeneous matrix that moves the moving image onto the fixed one, RAS mm.

    Returns:
        4x4 matrix that maps a fixed-space LPS point to the moving-space LPS point.

    Raises:
        MedAIInputError: if the matrix is not a 4x4 invertible affine matrix.
    """
    matrix = _checkedInvertible(toParentRas, "toParentRas")
    return LPS_TO_RAS @ np.linalg.inv(matrix) @ LPS_TO_RAS


def toParentRasFromResamplingMatrixLps(resamplingLps) -> np.ndarray:
    """Turn an ITK resampling matrix (LPS) into Slicer's modeling "to parent" matrix (RAS).

    Args:
        resamplingLps: 4x4 homogeneous matrix mapping fixed-space LPS points to moving-space LPS points.

    Returns:
        4x4 matrix that moves the moving image onto the fixed one, RAS mm.

    Raises:
        MedAIInputError: if the matrix is not a 4x4 invertible affine matrix.
    """
    matrix = _checkedInvertible(resamplingLps, "resamplingLps")
    return np.linalg.inv(LPS_TO_RAS @ matrix @ LPS_TO_RAS)


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

    matrix = _checkedInvertible(resamplingLps, "resamplingLps")
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
        return sitkAffineTransformFromMatrix(LPS_TO_RAS @ slicer.util.arrayFromVTKMatrix(fromWorldRas) @ LPS_TO_RAS)
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
        return LPS_TO_RAS @ matrixFromSitkLinearTransform(transform) @ LPS_TO_RAS, "vtkMRMLLinearTransformNode"
    elements = _flattenedSitkElements(transform)
    vtkElements = []
    for element in _mergeLinearNeighbours(elements):
        if element.IsLinear():
            resamplingRas = LPS_TO_RAS @ matrixFromSitkLinearTransform(element) @ LPS_TO_RAS
            vtkElements.append(_vtkLinearFromMatrix(resamplingRas))
        elif isinstance(element, sitk.BSplineTransform):
            vtkElements.append(vtkBSplineFromSitk(element))
        elif isinstance(element, sitk.DisplacementFieldTransform):
            vtkElements.append(vtkGridFromSitk(element))
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
    import slicer
    import vtk

    linear = vtk.vtkTransform()
    linear.SetMatrix(slicer.util.vtkMatrixFromArray(matrix))
    return linear


def _setFromParent(transformNode, fromParentRas) -> None:
    import slicer

    if isinstance(fromParentRas, np.ndarray):
        transformNode.SetMatrixTransformFromParent(slicer.util.vtkMatrixFromArray(fromParentRas))
    else:
        transformNode.SetAndObserveTransformFromParent(fromParentRas)


# ---------------------------------------------------------------------------------------------
# VTK (resampling transform in RAS) -> SimpleITK


def _sitkTransformFromVtk(transformRas):
    import slicer

    if transformRas.IsA("vtkLinearTransform"):
        matrix = slicer.util.arrayFromVTKMatrix(transformRas.GetMatrix())
        return sitkAffineTransformFromMatrix(LPS_TO_RAS @ matrix @ LPS_TO_RAS)
    if transformRas.IsA("vtkOrientedBSplineTransform"):
        return sitkBSplineFromVtk(transformRas)
    if transformRas.IsA("vtkOrientedGridTransform"):
        return sitkDisplacementFieldFromVtk(transformRas)
    if transformRas.IsA("vtkGridTransform") or transformRas.IsA("vtkBSplineTransform"):
        raise MedAIInputError(
            f"A {transformRas.GetClassName()} without grid direction is not supported; use Slicer's oriented transforms."
        )
    raise MedAIInputError(
        f"A {transformRas.GetClassName()} has no exact ITK equivalent; convert it to a grid transform in Slicer first."
    )


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


def _checkedInvertible(matrix, name: str) -> np.ndarray:
    array = checkedAffine(matrix, name)
    if abs(np.linalg.det(array[:3, :3])) < 1e-12:
        raise MedAIInputError(f"{name} is singular and cannot be inverted.")
    return array
