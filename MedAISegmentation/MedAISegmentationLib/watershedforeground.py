"""The watershed's first half: smoothing, the foreground, distances to the background and object size.

Arrays are in storage order with ``spacing_mm`` listing the voxel size along each array axis, in
millimetres; axes of size 1 are ignored, so a one-slice volume is handled as a 2D image. The
thresholds and the automatic pipeline are described in :mod:`.watershed`, which re-exports the
public functions of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedAICommonLib.errors import MedAIInputError

if TYPE_CHECKING:  # pragma: no cover
    from .watershed import WatershedSettings

__all__ = ["distance_to_background_mm", "estimate_object_radius_mm"]

# The adaptive foreground keeps voxels this many robust standard deviations above the background.
_NOISE_SIGMAS = 3.0
# Global Otsu ignores the brightest 0.5 % of voxels, so a few saturated objects cannot lift it.
_OTSU_CLIP_PERCENTILE = 99.5
# Beyond this width (in voxels) a recursive Gaussian is cheaper than a sampled kernel.
_RECURSIVE_GAUSSIAN_VOXELS = 3.0


def _squeezed(array: np.ndarray, spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The array without its size-1 axes, and the spacing of the remaining axes."""
    spacing = np.asarray(spacing_mm, dtype=float)
    if spacing.shape != (array.ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise MedAIInputError(f"spacing_mm must hold {array.ndim} positive numbers, got {list(spacing_mm)}.")
    keep = [axis for axis in range(array.ndim) if array.shape[axis] > 1]
    return array.reshape([array.shape[axis] for axis in keep]), spacing[keep]


def _check_image(image: np.ndarray) -> None:
    if image.size == 0 or image.ndim == 0:
        raise MedAIInputError("The image is empty.")
    if image.squeeze().ndim not in (2, 3):
        raise MedAIInputError(f"The image must be 2D or 3D, got shape {image.shape}.")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise MedAIInputError(f"The image must hold real numbers, got {image.dtype}.")
    if not np.all(np.isfinite(image)):
        raise MedAIInputError("The image contains NaN or infinite voxels.")
    if image.min() == image.max():
        raise MedAIInputError(f"The image is constant (every voxel is {image.flat[0]}); there is nothing to split.")


def _gaussian(image: np.ndarray, sigma_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Gaussian smoothing with a standard deviation in mm (float32 result)."""
    sigma_voxels = sigma_mm / spacing
    if sigma_mm <= 0:
        return image.astype(np.float32, copy=False)
    if sigma_voxels.max() <= _RECURSIVE_GAUSSIAN_VOXELS:
        return ndimage.gaussian_filter(image.astype(np.float32, copy=False), sigma_voxels, truncate=3.0)
    sitk_image = sitk.GetImageFromArray(image.astype(np.float32, copy=False))
    sitk_image.SetSpacing([float(s) for s in spacing[::-1]])
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk_image, float(sigma_mm)))


def distance_to_background_mm(mask: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) from each voxel of ``mask`` to the nearest voxel outside it; 0 outside.

    Args:
        mask: boolean foreground, storage order.
        spacing_mm: voxel size along each array axis, mm.

    Returns:
        float32 distances shaped like ``mask`` (SimpleITK's exact Maurer transform).
    """
    squeezed, spacing = _squeezed(np.asarray(mask, dtype=bool), spacing_mm)
    return _distance_mm(squeezed, spacing).reshape(np.shape(mask))


def _distance_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from each foreground voxel centre to the nearest background voxel centre."""
    background = sitk.GetImageFromArray((~mask).astype(np.uint8))
    background.SetSpacing([float(s) for s in spacing[::-1]])
    # Distances measured outside the background's border voxels are distances to background voxels.
    distance = sitk.SignedMaurerDistanceMap(
        background, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    return np.maximum(sitk.GetArrayFromImage(distance), 0.0)


def estimate_object_radius_mm(
    mask: np.ndarray, spacing_mm: Sequence[float], distance_mm: np.ndarray | None = None
) -> float:
    """Typical object radius: the median, over the connected parts of ``mask``, of their deepest distance.

    Touching objects form one part whose deepest point still lies in its largest object, so the
    estimate is not fooled by clumps. Parts no deeper than one voxel (noise) are ignored.

    Args:
        mask: boolean foreground, storage order.
        spacing_mm: voxel size along each array axis, mm.
        distance_mm: the distance map of ``mask`` when already computed.

    Returns:
        The radius in mm; 0 when the mask is empty.
    """
    mask, spacing = _squeezed(np.asarray(mask, dtype=bool), spacing_mm)
    distance = _distance_mm(mask, spacing) if distance_mm is None else distance_mm.reshape(mask.shape)
    parts, count = ndimage.label(mask)
    if count == 0:
        return 0.0
    depths = np.array(
        [distance[box][parts[box] == index + 1].max() for index, box in enumerate(ndimage.find_objects(parts))]
    )
    deep = depths[depths > spacing.max()]
    return float(np.median(deep if deep.size else depths))


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def _adaptive_foreground(smoothed: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Voxels brighter than their neighbourhood and significantly brighter than the background.

    Returns:
        (mask, background floor in image units, the object radius in mm that sized the neighbourhood).
    """
    otsu = _otsu(np.minimum(smoothed, np.percentile(smoothed, _OTSU_CLIP_PERCENTILE)))
    background = smoothed[smoothed <= otsu]
    level = float(np.median(background))
    noise = 1.4826 * float(np.median(np.abs(background - level)))
    # A voxel above the global Otsu threshold is never dismissed as background noise.
    floor = min(level + _NOISE_SIGMAS * noise, otsu)
    radius_mm = estimate_object_radius_mm(smoothed > otsu, spacing)
    if radius_mm <= 0:
        return smoothed > floor, floor, radius_mm
    local_mean = _gaussian(smoothed, radius_mm, spacing)
    mask = (smoothed > local_mean) & (smoothed > floor)
    # The local mean test is noisy at the scale of a voxel and leaves holes inside large objects.
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask))
    return mask, floor, radius_mm


def _smoothed(
    image: np.ndarray, spacing_mm: Sequence[float], settings: WatershedSettings
) -> tuple[np.ndarray, np.ndarray]:
    image, spacing = _squeezed(image, spacing_mm)
    sigma_mm = float(spacing.min()) if settings.smoothing_mm is None else float(settings.smoothing_mm)
    smoothed = _gaussian(image, sigma_mm, spacing)
    return (-smoothed if settings.dark_objects else smoothed), spacing


def _foreground(
    smoothed: np.ndarray, spacing: np.ndarray, settings: WatershedSettings
) -> tuple[np.ndarray, float, float]:
    threshold = settings.threshold
    radius_mm = 0.0
    if threshold == "adaptive":
        mask, used, radius_mm = _adaptive_foreground(smoothed, spacing)
    elif threshold == "otsu":
        used = _otsu(smoothed)
        mask = smoothed > used
    else:
        used = -float(threshold) if settings.dark_objects else float(threshold)
        mask = smoothed >= used
    shown = -used if settings.dark_objects else used
    if not mask.any() or mask.all():
        name = f"{threshold} threshold ({shown:g})" if isinstance(threshold, str) else f"threshold {shown:g}"
        low, high = sorted(float(v) * (-1 if settings.dark_objects else 1) for v in (smoothed.min(), smoothed.max()))
        problem = "no voxel in the foreground" if not mask.any() else "no background; every voxel is foreground"
        raise MedAIInputError(f"The {name} leaves {problem} (the smoothed image spans {low:g} to {high:g}).")
    return mask, shown, radius_mm
