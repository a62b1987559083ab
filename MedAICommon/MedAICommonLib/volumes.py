"""The audited geometry bridge for volumes: MRML <-> numpy, SimpleITK and MONAI.

Conventions used by every function here:

- Arrays are numpy arrays in **KJI** order (``array[k, j, i]``, slice index first), as in
  ``slicer.util.arrayFromVolume``. They are always copies: no function returns a view of
  VTK-owned memory, and no function modifies the array or node it was given.
- Geometry is a 4x4 **IJK-to-RAS** matrix in millimetres: ``ijkToRas @ [i, j, k, 1]`` is the
  RAS position of the voxel centre ``(i, j, k)``. Its columns are the axis directions scaled
  by the spacing; they must be mutually orthogonal (no shear), any handedness (flipped axes).
- SimpleITK images are in **LPS**: origin and direction are flipped in x and y.
- MONAI ``MetaTensor`` objects have shape ``(1, I, J, K)`` (channel first, IJK order) and
  ``affine`` = IJK-to-RAS, as ``LoadImage`` with ``affine_lps_to_ras=True`` and
  ``EnsureChannelFirst`` give them.
- A *linear* parent transform of a volume node is honoured: every ``...FromVolume`` function
  describes the volume where it appears in the world (the transform is hardened into the
  geometry). A non-linear parent transform is refused with :class:`MedAIInputError`.
- Only scalar volumes (one component per voxel) are supported; vector, RGB and tensor
  volumes are refused with :class:`MedAIInputError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MedAIInputError
from .geometry import LPS_TO_RAS, ijkToRasFromSitkImage, linearTransformToWorld, sitkImageFromArray, volumeGeometry
from .resampling import sameGrid

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK

__all__ = [
    "arrayFromVolume",
    "ijkToRasFromVolume",
    "setVolumeIjkToRas",
    "createVolumeFromArray",
    "updateVolumeFromArray",
    "sitkImageFromVolume",
    "createVolumeFromSitkImage",
    "metaTensorFromVolume",
    "createVolumeFromMetaTensor",
    "sameGeometry",
    # Defined in geometry; importable from here too.
    "LPS_TO_RAS",
    "volumeGeometry",
    "ijkToRasFromSitkImage",
]


def _checkScalarVolumeNode(volumeNode: Any) -> None:
    import slicer

    if not isinstance(volumeNode, slicer.vtkMRMLScalarVolumeNode):
        raise MedAIInputError(f"Expected a scalar or label map volume node, got {type(volumeNode).__name__}.")
    name = volumeNode.GetName()
    imageData = volumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        raise MedAIInputError(f"Volume '{name}' has no voxels (no image data).")
    if isinstance(volumeNode, slicer.vtkMRMLVectorVolumeNode) or imageData.GetNumberOfScalarComponents() != 1:
        raise MedAIInputError(f"Volume '{name}' has several components per voxel; only scalar volumes are supported.")


def arrayFromVolume(volumeNode: Any) -> np.ndarray:
    """Return a copy of the voxels of a scalar or label map volume node, in KJI order.

    Args:
        volumeNode: ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``.

    Returns:
        A new array of shape ``(K, J, I)`` with the node's voxel type (int16 stays int16).

    Raises:
        MedAIInputError: not a scalar volume node, or it has no voxels.
    """
    from vtk.util.numpy_support import vtk_to_numpy

    _checkScalarVolumeNode(volumeNode)
    imageData = volumeNode.GetImageData()
    shapeKji = tuple(reversed(imageData.GetDimensions()))
    return vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(shapeKji).copy()


def ijkToRasFromVolume(volumeNode: Any) -> np.ndarray:
    """Return the world IJK-to-RAS matrix of a volume node, including a linear parent transform.

    Args:
        volumeNode: any ``vtkMRMLVolumeNode``.

    Returns:
        A new 4x4 float64 array mapping voxel indices ``(i, j, k, 1)`` to world RAS millimetres.

    Raises:
        MedAIInputError: the node (or a transform above it) is under a non-linear transform.
    """
    import slicer
    import vtk

    if not isinstance(volumeNode, slicer.vtkMRMLVolumeNode):
        raise MedAIInputError(f"Expected a volume node, got {type(volumeNode).__name__}.")
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ijkToRas = slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)
    return linearTransformToWorld(volumeNode, "Volume") @ ijkToRas


def _checkArray(array: Any, labelmap: bool) -> np.ndarray:
    """Return the voxel array to store (bool becomes uint8) after checking it."""
    if not isinstance(array, np.ndarray):
        raise MedAIInputError(f"Expected a numpy array of voxels, got {type(array).__name__}.")
    if array.ndim != 3 or 0 in array.shape:
        raise MedAIInputError(f"Expected a non-empty 3D voxel array in KJI order, got shape {array.shape}.")
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf" or array.dtype == np.float16:
        raise MedAIInputError(f"Voxel type {array.dtype} is not supported; use an integer, float32 or float64 array.")
    if labelmap and array.dtype.kind == "f":
        raise MedAIInputError(f"A label map needs integer voxels, got {array.dtype}; cast it first (e.g. np.int16).")
    return array


def _setImageData(volumeNode: Any, array: np.ndarray) -> None:
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    scalars = numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    scalars.SetName("ImageScalars")
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    imageData.GetPointData().SetScalars(scalars)
    volumeNode.SetAndObserveImageData(imageData)


def setVolumeIjkToRas(volumeNode: Any, ijkToRas: Any) -> None:
    """Set the grid of a volume node (relative to its parent transform) from an IJK-to-RAS matrix.

    Args:
        volumeNode: any ``vtkMRMLVolumeNode``; its voxels are left as they are.
        ijkToRas: 4x4 IJK-to-RAS matrix in millimetres (orthogonal axes, any handedness).

    Raises:
        MedAIInputError: not a finite affine matrix, a zero-length axis, or sheared axes.
    """
    spacingMm, directions, originRas = volumeGeometry(ijkToRas)
    # Set the three parts directly: SetIJKToRASMatrix would re-derive them with its own rounding.
    volumeNode.SetSpacing(*spacingMm)
    volumeNode.SetOrigin(*originRas)
    volumeNode.SetIJKToRASDirections(directions.tolist())


def createVolumeFromArray(scene: Any, array: np.ndarray, ijkToRas: Any, name: str, labelmap: bool = False) -> Any:
    """Add a new volume node holding a copy of ``array`` on the grid ``ijkToRas``.

    Args:
        scene: the ``vtkMRMLScene`` to add the node (and its display node) to.
        array: voxels in KJI order, shape ``(K, J, I)``; its dtype is kept (bool becomes uint8).
        ijkToRas: 4x4 IJK-to-RAS matrix in millimetres (orthogonal axes, any handedness).
        name: node name (made unique in the scene).
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` (integer voxels only).

    Returns:
        The new ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``.

    Raises:
        MedAIInputError: bad array or matrix; nothing is added to the scene then.
    """
    voxels = _checkArray(array, labelmap)
    volumeGeometry(ijkToRas)  # checked before the scene is touched
    className = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    volumeNode = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
    setVolumeIjkToRas(volumeNode, ijkToRas)
    _setImageData(volumeNode, voxels)
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode


def updateVolumeFromArray(volumeNode: Any, array: np.ndarray) -> None:
    """Replace the voxels of a volume node by a copy of ``array``, keeping its geometry.

    Args:
        volumeNode: ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``; its origin,
            spacing, directions and parent transform stay as they are.
        array: voxels in KJI order; the shape may differ from the current one (the grid then
            grows or shrinks from voxel (0, 0, 0)); its dtype is kept (bool becomes uint8).

    Raises:
        MedAIInputError: not a scalar volume node, or a bad array.
    """
    import slicer

    if not isinstance(volumeNode, slicer.vtkMRMLScalarVolumeNode) or isinstance(
        volumeNode, slicer.vtkMRMLVectorVolumeNode
    ):
        raise MedAIInputError(f"Expected a scalar or label map volume node, got {type(volumeNode).__name__}.")
    voxels = _checkArray(array, isinstance(volumeNode, slicer.vtkMRMLLabelMapVolumeNode))
    _setImageData(volumeNode, voxels)


def sitkImageFromVolume(volumeNode: Any) -> SimpleITK.Image:
    """Return a SimpleITK image (LPS geometry) holding a copy of a volume's voxels.

    Args:
        volumeNode: scalar or label map volume node; a linear parent transform is hardened
            into the image geometry.

    Returns:
        A 3D ``SimpleITK.Image`` with the node's voxel type, spacing, LPS origin and direction.

    Raises:
        MedAIInputError: not a scalar volume, non-linear parent transform, or a transform
            that shears the grid.
    """
    return sitkImageFromArray(arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode))


def createVolumeFromSitkImage(scene: Any, image: SimpleITK.Image, name: str, labelmap: bool = False) -> Any:
    """Add a new volume node holding a copy of a SimpleITK image (2D images become one slice).

    Args:
        scene: the ``vtkMRMLScene`` to add the node to.
        image: a 2D or 3D scalar ``SimpleITK.Image`` (geometry in LPS).
        name: node name (made unique in the scene).
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` (integer voxels only).

    Returns:
        The new volume node, on the image's grid converted to RAS.

    Raises:
        MedAIInputError: a vector image, or an image that is neither 2D nor 3D.
    """
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MedAIInputError(f"Image '{name}' has several components per voxel; only scalar images are supported.")
    if image.GetDimension() == 2:
        image = sitk.JoinSeries([image])
    if image.GetDimension() != 3:
        raise MedAIInputError(f"Image '{name}' is {image.GetDimension()}D; a 2D or 3D image is needed.")
    return createVolumeFromArray(scene, sitk.GetArrayFromImage(image), ijkToRasFromSitkImage(image), name, labelmap)


def metaTensorFromVolume(volumeNode: Any) -> Any:
    """Return a MONAI ``MetaTensor`` of shape ``(1, I, J, K)`` whose ``affine`` is IJK-to-RAS.

    The tensor and its metadata match what ``LoadImage(image_only=True)`` followed by
    ``EnsureChannelFirst()`` give for the same volume saved to a file, except that the voxel
    type is kept (``LoadImage`` converts to float32 by default), with one change: unsigned 16-
    and 32-bit voxels (microscopy, some CT) become the next wider signed type, because torch has
    almost no arithmetic for them (even ``max`` fails on uint16).

    Args:
        volumeNode: scalar or label map volume node; a linear parent transform is hardened.

    Returns:
        A CPU ``monai.data.MetaTensor`` holding a copy of the voxels.

    Raises:
        MedAIInputError: not a scalar volume, or a non-linear parent transform.
    """
    import torch
    from monai.data import MetaTensor
    from monai.utils import SpaceKeys

    arrayIjk = np.ascontiguousarray(arrayFromVolume(volumeNode).transpose(2, 1, 0))
    wider = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}.get(arrayIjk.dtype)
    if wider is not None:
        arrayIjk = arrayIjk.astype(wider)
    ijkToRas = ijkToRasFromVolume(volumeNode)
    meta = {
        "affine": torch.as_tensor(ijkToRas, dtype=torch.float64),
        "original_affine": ijkToRas.copy(),
        "spatial_shape": np.array(arrayIjk.shape),
        "space": SpaceKeys.RAS,
        "original_channel_dim": float("nan"),
        "filename_or_obj": volumeNode.GetName(),
    }
    return MetaTensor(torch.from_numpy(arrayIjk)[None], meta=meta)


def createVolumeFromMetaTensor(scene: Any, tensor: Any, name: str, labelmap: bool = False) -> Any:
    """Add a new volume node holding a copy of a MONAI ``MetaTensor``.

    Args:
        scene: the ``vtkMRMLScene`` to add the node to.
        tensor: ``MetaTensor`` of shape ``(1, I, J, K)`` or ``(I, J, K)`` (any device); its
            ``affine`` is read as IJK-to-RAS, or IJK-to-LPS when ``tensor.meta["space"]`` is LPS.
        name: node name (made unique in the scene).
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` (integer or bool voxels only).

    Returns:
        The new volume node.

    Raises:
        MedAIInputError: not a MetaTensor, several channels, or a bad affine.
    """
    from monai.data import MetaTensor
    from monai.utils import SpaceKeys

    if not isinstance(tensor, MetaTensor):
        raise MedAIInputError(f"Expected a monai.data.MetaTensor, got {type(tensor).__name__}.")
    shape = tuple(tensor.shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3:
        raise MedAIInputError(f"Expected a tensor of shape (1, I, J, K) or (I, J, K), got {tuple(tensor.shape)}.")
    affine = tensor.affine.detach().cpu().numpy().astype(np.float64)
    if str(tensor.meta.get("space", SpaceKeys.RAS)) == str(SpaceKeys.LPS):
        affine = LPS_TO_RAS @ affine
    arrayIjk = tensor.detach().cpu().reshape(shape).numpy()
    return createVolumeFromArray(scene, np.ascontiguousarray(arrayIjk.transpose(2, 1, 0)), affine, name, labelmap)


def sameGeometry(volumeNodeA: Any, volumeNodeB: Any, toleranceMm: float = 1e-4) -> bool:
    """Tell whether two volumes lie on the same voxel grid in the world.

    Args:
        volumeNodeA: a volume node with voxels.
        volumeNodeB: another volume node with voxels.
        toleranceMm: largest allowed distance between corresponding voxel centres, in mm.

    Returns:
        True when both have the same dimensions and every voxel centre (checked at the grid
        corners, which bound the distance since the map is affine) is within ``toleranceMm``
        in world RAS, parent transforms included.

    Raises:
        MedAIInputError: a node without voxels, or under a non-linear transform.
    """
    import slicer

    dimensions = []
    for volumeNode in (volumeNodeA, volumeNodeB):
        if not isinstance(volumeNode, slicer.vtkMRMLVolumeNode) or volumeNode.GetImageData() is None:
            raise MedAIInputError(f"sameGeometry needs two volume nodes with voxels, got {type(volumeNode).__name__}.")
        dimensions.append(tuple(volumeNode.GetImageData().GetDimensions()))
    shapes = [dimension[::-1] for dimension in dimensions]
    return sameGrid(shapes[0], ijkToRasFromVolume(volumeNodeA), shapes[1], ijkToRasFromVolume(volumeNodeB), toleranceMm)
