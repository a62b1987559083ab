"""Moving label maps between voxel grids in the world, and telling whether two grids are the same.

A grid here is a shape in **KJI** order plus its 4x4 **IJK-to-RAS** matrix in millimetres (see
:mod:`MedAICommonLib.volumes`); both grids of a call are in the same (world) RAS space, so a
parent transform must already be composed into the matrices (``volumes.ijkToRasFromVolume`` does).
Grids may be oblique, flipped or permuted relative to each other.

Example:
    >>> labels = resampleLabelsNearest(labels, ijkToRas, referenceShape, referenceIjkToRas)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import MedAIInputError
from .geometry import checkedAffine, sitkImageFromArray

__all__ = ["resampleLabelsNearest", "sameGrid"]


def sameGrid(
    shapeA: Sequence[int], ijkToRasA: Any, shapeB: Sequence[int], ijkToRasB: Any, toleranceMm: float = 1e-4
) -> bool:
    """Tell whether two voxel grids put every voxel centre at the same place.

    Args:
        shapeA: the first grid's shape, KJI order.
        ijkToRasA: its 4x4 IJK-to-RAS matrix, mm.
        shapeB: the second grid's shape, KJI order.
        ijkToRasB: its 4x4 IJK-to-RAS matrix, mm.
        toleranceMm: largest allowed distance between corresponding voxel centres, mm.

    Returns:
        True when the shapes are equal and every voxel centre lies within ``toleranceMm`` of its
        counterpart (checked at the grid corners, which bound the distance since both maps are affine).
    """
    if tuple(shapeA) != tuple(shapeB):
        return False
    difference = np.asarray(ijkToRasA, dtype=float) - np.asarray(ijkToRasB, dtype=float)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in reversed(tuple(shapeA))], [1], indexing="ij")).reshape(4, -1)
    return bool(np.max(np.linalg.norm((difference @ corners)[:3], axis=0)) <= toleranceMm)


def resampleLabelsNearest(labels: np.ndarray, ijkToRas: Any, shape: Sequence[int], targetIjkToRas: Any) -> np.ndarray:
    """A label array moved onto another grid by nearest neighbour; 0 where the target lies outside.

    Label values are kept exactly (no interpolation between labels).

    Args:
        labels: integer (or bool) label array, KJI order; it is not modified.
        ijkToRas: 4x4 IJK-to-RAS matrix of ``labels``, world RAS mm.
        shape: the target grid's shape, KJI order.
        targetIjkToRas: 4x4 IJK-to-RAS matrix of the target grid, world RAS mm.

    Returns:
        An int32 array of ``shape`` (KJI).

    Raises:
        MedAIInputError: labels that are not whole numbers fitting int32, a shape of the wrong
            length, or a matrix that is not affine or shears its grid.
    """
    import SimpleITK as sitk

    labels = np.asarray(labels)
    if labels.ndim != 3 or len(shape) != 3:
        raise MedAIInputError(
            f"Label arrays and target shapes must be 3D (KJI), got {labels.shape} and {tuple(shape)}."
        )
    if labels.dtype.kind not in "biu" or (labels.size and labels.max() > np.iinfo(np.int32).max):
        raise MedAIInputError(f"Labels must be whole numbers that fit in int32, got {labels.dtype} voxels.")
    checkedAffine(ijkToRas, "ijkToRas")
    checkedAffine(targetIjkToRas, "targetIjkToRas")
    moving = sitkImageFromArray(labels.astype(np.int32), ijkToRas)
    target = sitkImageFromArray(np.zeros(tuple(int(n) for n in shape), dtype=np.uint8), targetIjkToRas)
    resampled = sitk.Resample(moving, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return sitk.GetArrayFromImage(resampled)
