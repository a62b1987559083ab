"""Loading transforms: ITK transform files and displacement field images.

The files hold the ITK *resampling* transform (from parent) in LPS; the node gets the *modeling*
transform to parent in RAS, as Slicer reads it. Saving goes through
:func:`MedAICommonLib.sceneio.saveNode`, with the same conventions.
"""

from __future__ import annotations

import slicer

from .errors import MedAIInputError
from .nodeio import _IMAGE_EXTENSIONS, _addToScene, _baseName, _extension, _readInto
from .validation import checkInputFile, checkReadableImage

__all__ = ["loadTransform"]


def loadTransform(scene, path, name: str | None = None):
    """Load a transform: an ITK transform file (``.h5``, ``.tfm``, ``.mat``, ``.txt``; linear,
    B-spline or displacement field) or a displacement field image (``.nii.gz``, ``.nrrd``, ``.mha``).

    The file holds the ITK resampling transform (from parent, LPS); the node gets the modeling
    transform to parent in RAS, as Slicer reads it.

    Args:
        scene: the ``vtkMRMLScene`` to add the transform to.
        path: the transform file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        A ``vtkMRMLLinearTransformNode``, ``vtkMRMLBSplineTransformNode``, ``vtkMRMLGridTransformNode``
        or, for composite transforms, a ``vtkMRMLTransformNode``.

    Raises:
        MedAIInputError: missing or unreadable file, or an image that is not a 3D displacement field.
    """
    filePath = checkInputFile(path, "transform")
    extension = _extension(filePath)
    if extension in _IMAGE_EXTENSIONS:
        header = checkReadableImage(filePath, ndims=(3,), what="displacement field", allowVector=True)
        if header.components != 3:
            raise MedAIInputError(
                f"The displacement field file {filePath} has {header.components} value(s) per voxel, but 3 are needed."
            )
        nodeClass = slicer.vtkMRMLGridTransformNode
    else:
        probeNode = slicer.vtkMRMLTransformNode()
        _readInto(slicer.vtkMRMLTransformStorageNode(), probeNode, filePath, "transform")
        kind = slicer.vtkSlicerTransformLogic.GetTransformKind(probeNode)
        nodeClass = {
            slicer.vtkSlicerTransformLogic.TRANSFORM_LINEAR: slicer.vtkMRMLLinearTransformNode,
            slicer.vtkSlicerTransformLogic.TRANSFORM_BSPLINE: slicer.vtkMRMLBSplineTransformNode,
            slicer.vtkSlicerTransformLogic.TRANSFORM_GRID: slicer.vtkMRMLGridTransformNode,
        }.get(kind, slicer.vtkMRMLTransformNode)
    transformNode = nodeClass()
    storageNode = slicer.vtkMRMLTransformStorageNode()
    _readInto(storageNode, transformNode, filePath, "transform")
    return _addToScene(scene, transformNode, storageNode, name or _baseName(filePath))
