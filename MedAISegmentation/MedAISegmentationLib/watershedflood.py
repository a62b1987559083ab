"""The watershed's second half: seeds at distance maxima, flooding from them, numbering the objects.

Arrays are in storage order with ``spacing_mm`` listing the voxel size along each array axis, in
millimetres (axes of size 1 are ignored). :mod:`.watershed` re-exports the public functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .watershedforeground import _squeezed

__all__ = ["seed_markers", "flood", "object_volumes"]


def seed_markers(
    distance_mm: np.ndarray,
    spacing_mm: Sequence[float],
    min_seed_distance_mm: float | None = None,
    seed_depth_mm: float | None = None,
) -> np.ndarray:
    """Seeds at the maxima of a distance map, one marker label per seed (1..N, int32).

    Args:
        distance_mm: distance to the background in mm (0 outside the foreground), storage order.
        spacing_mm: voxel size along each array axis, mm.
        min_seed_distance_mm: a seed is the largest distance within this many mm along each axis;
            maxima closer than that are merged into one seed. Used when ``seed_depth_mm`` is None.
        seed_depth_mm: keep the maxima that rise at least this many mm above their surroundings
            (h-maxima).

    Returns:
        int32 markers shaped like ``distance_mm``; 0 where there is no seed.
    """
    distance, spacing = _squeezed(np.asarray(distance_mm, dtype=np.float32), spacing_mm)
    full = np.ones((3,) * distance.ndim, dtype=bool)
    if seed_depth_mm is not None:
        image = sitk.GetImageFromArray(distance)
        flattened = sitk.HMaxima(image, float(max(seed_depth_mm, 1e-6)))
        peaks = sitk.GetArrayFromImage(sitk.RegionalMaxima(flattened, fullyConnected=True)).astype(bool)
        markers, _ = ndimage.label(peaks & (distance > 0), structure=full)
        return markers.astype(np.int32).reshape(np.shape(distance_mm))
    min_distance = float(min_seed_distance_mm or 0.0)
    half = np.maximum(np.round(min_distance / spacing), 1).astype(int)
    peaks = (distance == ndimage.maximum_filter(distance, size=tuple(2 * half + 1))) & (distance > 0)
    # Equal maxima closer than the seed distance (ridges, plateaus) are one seed.
    reach = np.maximum((half + 1) // 2, 1)
    near = ndimage.maximum_filter(peaks, size=tuple(2 * reach + 1))
    groups, _ = ndimage.label(near, structure=full)
    markers = np.where(peaks, groups, 0).astype(np.int32)
    return markers.reshape(np.shape(distance_mm))


def flood(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Flood ``landscape`` from ``markers`` (scikit-image's priority-queue watershed, face connectivity).

    The markers are imposed as the only minima: every marker voxel starts below the whole
    landscape, so a seed placed on a slope still floods its own basin.

    Returns:
        int32 labels: every voxel of ``mask`` (everything when None) reached from a marker
        gets that marker's label; 0 elsewhere.
    """
    from skimage.segmentation import watershed

    seeded = markers > 0
    if seeded.any():
        landscape = np.where(seeded, landscape.min() - 1.0, landscape)
    return watershed(landscape, markers, mask=mask, connectivity=1).astype(np.int32, copy=False)


def object_volumes(labels: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Size of objects 1..max(labels), in mm3 (mm2 when the image has only two axes longer than 1)."""
    labels, spacing = _squeezed(np.asarray(labels), spacing_mm)
    counts = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)[1:]
    return counts * float(np.prod(spacing))


def _by_decreasing_size(labels: np.ndarray, drop: int | None = None) -> np.ndarray:
    """Labels renumbered 1..N by decreasing size (a stable order); ``drop`` and empty labels vanish."""
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    if drop is not None and drop < counts.size:
        counts[drop] = 0
    order = np.argsort(-counts, kind="stable")
    kept = order[counts[order] > 0]
    lookup = np.zeros(counts.size, dtype=np.int32)
    lookup[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lookup[labels]


def _gradient_mm(smoothed: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Gradient magnitude in intensity units per mm."""
    return np.sqrt(sum(np.square(np.gradient(smoothed, spacing[axis], axis=axis)) for axis in range(smoothed.ndim)))
