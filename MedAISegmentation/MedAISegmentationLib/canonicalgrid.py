"""One canonical axis order for voxel arrays, and a volume's own grid: shared by the watershed and prompts.

The canonical order stores a KJI array so that its axes run along +S, +A, +R (the storage axes
closest to them), so an algorithm that works on the array gives the same objects in physical
space whether the volume was stored with permuted, flipped or oblique axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["canonicalAxes", "toCanonical", "fromCanonical", "localIjkToRas"]


def canonicalAxes(ijkToRas: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """How to store a KJI array so that its axes run along +S, +A, +R (the closest storage axes).

    Returns:
        ``(order, flipped)``: ``np.flip(array.transpose(order), flipped)`` is canonical.
    """
    from scipy.optimize import linear_sum_assignment

    directions = np.asarray(ijkToRas, dtype=float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    # cosine[a, r]: array axis a (KJI: column 2 - a) against RAS axis r.
    cosine = np.stack([directions[:, 2 - axis] for axis in range(3)])
    arrayAxes, rasAxes = linear_sum_assignment(np.abs(cosine), maximize=True)
    axisFor = dict(zip(rasAxes.tolist(), arrayAxes.tolist()))
    order = (axisFor[2], axisFor[1], axisFor[0])  # S, A, R: the KJI order of an RAS-aligned volume
    flipped = tuple(position for position, axis in enumerate(order) if cosine[axis, 2 - position] < 0)
    return order, flipped


def toCanonical(array: np.ndarray | None, order, flipped) -> np.ndarray | None:
    """``array`` (KJI) in the canonical order of :func:`canonicalAxes`; None stays None."""
    return None if array is None else np.ascontiguousarray(np.flip(array.transpose(order), flipped))


def fromCanonical(array: np.ndarray, order, flipped) -> np.ndarray:
    """The inverse of :func:`toCanonical`: a canonical array back in the volume's KJI order."""
    return np.ascontiguousarray(np.flip(array, flipped).transpose(np.argsort(order)))


def localIjkToRas(volumeNode: Any) -> np.ndarray:
    """The volume's own IJK-to-RAS matrix, relative to its parent transform."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)
