"""Seeded watershed that splits touching objects, on numpy arrays with their voxel spacing.

The flooding picture: the image is a landscape, water rises from seeds, and where the water of two
seeds would meet a dam is built, so that each seed's basin becomes one object.

Arrays are given in storage order (KJI for MRML volumes) with ``spacing_mm`` listing the voxel size
along each array axis, in millimetres. Axes of size 1 are ignored, so a 512x512x1 slice is handled
as a 2D image (areas in mm2). Every distance (smoothing, seed distance, object radius) is in mm,
so anisotropic voxels are handled. The MRML-facing wrapper is ``logic.MedAISegmentationLogic``.

Automatic pipeline (defaults need no tuning):

1. smoothing by a Gaussian (one voxel by default);
2. foreground: ``"adaptive"`` (default) keeps voxels brighter than their neighbourhood (a Gaussian
   local mean whose width is the object radius estimated from a global Otsu foreground) and
   significantly brighter than the background (its median plus 3 robust standard deviations);
   ``"otsu"`` is the global Otsu threshold; a number is a fixed intensity threshold; a mask may
   also be given;
3. distance to the background in mm; seeds at its maxima, at least ``min_seed_distance_mm`` apart
   (default: the estimated object radius), or the maxima deeper than ``seed_depth_mm`` (h-maxima);
4. flooding (scikit-image ``watershed``) of the inverted distance, or of the gradient magnitude,
   restricted to the foreground; objects numbered by decreasing size.

Example::

    result = watershed_objects(image, spacing_mm=(1.0, 0.5, 0.5))
    print(result.object_count, result.object_radius_mm)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "WatershedSettings",
    "WatershedResult",
    "watershed_objects",
    "foreground_mask",
    "estimate_object_radius_mm",
    "distance_to_background_mm",
    "seed_markers",
    "flood",
    "object_volumes",
]

FOREGROUND_METHODS = ("adaptive", "otsu")
LANDSCAPES = ("distance", "gradient")
# The adaptive foreground keeps voxels this many robust standard deviations above the background.
_NOISE_SIGMAS = 3.0
# Global Otsu ignores the brightest 0.5 % of voxels, so a few saturated objects cannot lift it.
_OTSU_CLIP_PERCENTILE = 99.5
# Beyond this width (in voxels) a recursive Gaussian is cheaper than a sampled kernel.
_RECURSIVE_GAUSSIAN_VOXELS = 3.0


@dataclass
class WatershedSettings:
    """What the automatic watershed does; every default is chosen from the image itself.

    Attributes:
        threshold: ``"adaptive"`` (also for None), ``"otsu"`` or an intensity (image units);
            ignored when a foreground mask is given.
        smoothing_mm: Gaussian standard deviation in mm before thresholding; None: one voxel
            (the smallest spacing); 0: no smoothing.
        min_seed_distance_mm: two seeds closer than this belong to one object; None: the object
            radius estimated from the foreground.
        seed_depth_mm: when set, seeds are the distance maxima at least this deep (h-maxima)
            instead of ``min_seed_distance_mm``.
        landscape: ``"distance"`` (flood the inverted distance to the background, splits convex
            touching objects) or ``"gradient"`` (flood the gradient magnitude, follows edges).
        dark_objects: objects are darker than the background.
    """

    threshold: str | float = "adaptive"
    smoothing_mm: float | None = None
    min_seed_distance_mm: float | None = None
    seed_depth_mm: float | None = None
    landscape: str = "distance"
    dark_objects: bool = False

    def __post_init__(self) -> None:
        if self.threshold is None:
            self.threshold = "adaptive"
        numeric = isinstance(self.threshold, (int, float, np.number)) and not isinstance(self.threshold, bool)
        if not (self.threshold in FOREGROUND_METHODS or (numeric and np.isfinite(self.threshold))):
            raise MedAIInputError(
                f"threshold must be a finite number or one of {FOREGROUND_METHODS}, got {self.threshold!r}."
            )
        if self.landscape not in LANDSCAPES:
            raise MedAIInputError(f"landscape must be one of {LANDSCAPES}, got {self.landscape!r}.")
        for name in ("smoothing_mm", "min_seed_distance_mm", "seed_depth_mm"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise MedAIInputError(f"{name} must be a non-negative number of millimetres, got {value!r}.")


@dataclass
class WatershedResult:
    """Objects found by :func:`watershed_objects`.

    Attributes:
        labels: int32 array shaped like the input; 0 is background, objects are 1..N by decreasing size.
        volumes_mm: size of each object (index 0 is object 1), in mm3 (or mm2 for a 2D image).
        unit: ``"mm3"`` or ``"mm2"``.
        object_radius_mm: estimated radius of a typical object (median over foreground parts).
        min_seed_distance_mm: the seed distance used (None when seeds were given or h-maxima used).
        threshold: the intensity threshold used (the background floor for ``"adaptive"``); None with a mask.
        seed_count: number of seeds (markers) that were flooded.
    """

    labels: np.ndarray
    volumes_mm: np.ndarray
    unit: str
    object_radius_mm: float
    min_seed_distance_mm: float | None
    threshold: float | None
    seed_count: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def object_count(self) -> int:
        return int(len(self.volumes_mm))


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


def foreground_mask(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    threshold: str | float = "adaptive",
    smoothing_mm: float | None = None,
    dark_objects: bool = False,
) -> tuple[np.ndarray, float]:
    """The foreground that the watershed splits into objects.

    Args:
        image: 2D or 3D intensities, storage order.
        spacing_mm: voxel size along each array axis, mm.
        threshold: ``"adaptive"``, ``"otsu"`` or an intensity: voxels at or above it (after smoothing).
        smoothing_mm: Gaussian standard deviation in mm; None: the smallest spacing; 0: none.
        dark_objects: objects are darker than the background (the image is inverted first).

    Returns:
        (boolean mask shaped like ``image``, the intensity threshold used; for ``"adaptive"``, the
        background floor).

    Raises:
        MedAIInputError: an empty, constant or non-finite image, or a threshold that leaves no
            foreground or no background.
    """
    settings = WatershedSettings(threshold=threshold, smoothing_mm=smoothing_mm, dark_objects=dark_objects)
    _check_image(np.asarray(image))
    smoothed, spacing = _smoothed(np.asarray(image), spacing_mm, settings)
    mask, used, _ = _foreground(smoothed, spacing, settings)
    return mask.reshape(np.shape(image)), used


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


def _given(
    array: np.ndarray | None, shape: tuple[int, ...], spacing_mm: Sequence[float], what: str
) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    if array.shape != shape:
        raise MedAIInputError(f"The {what} has shape {array.shape}, but the image has shape {shape}.")
    return _squeezed(array, spacing_mm)[0]


def watershed_objects(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    settings: WatershedSettings | None = None,
    mask: np.ndarray | None = None,
    markers: np.ndarray | None = None,
    background_label: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel_token: Any = None,
) -> WatershedResult:
    """Split the foreground of a 2D or 3D image into objects by a seeded watershed.

    Args:
        image: intensities in storage order (KJI for MRML volumes); it is not modified.
        spacing_mm: voxel size along each array axis, mm.
        settings: see :class:`WatershedSettings`; defaults work without tuning.
        mask: boolean foreground to use instead of thresholding.
        markers: manual seeds (int labels >= 0, shaped like ``image``); each label becomes one
            object with the same label. Automatic seeds are found when None.
        background_label: the marker label that seeds the background; flooding then covers the
            whole image and that basin is removed.
        progress: ``progress(fraction, message)``.
        cancel_token: an object with ``raiseIfCancelled()`` (``MedAICommonLib.jobs.CancelToken``).

    Returns:
        :class:`WatershedResult`; automatic objects are numbered by decreasing size.

    Raises:
        MedAIInputError: a bad image, mask or seeds, or a threshold that leaves no foreground.
        MedAICancelledError: when cancelled.
    """
    settings = settings or WatershedSettings()
    image = np.asarray(image)
    _check_image(image)

    def stage(fraction: float, message: str) -> None:
        if cancel_token is not None:
            cancel_token.raiseIfCancelled()
        if progress is not None:
            progress(fraction, message)

    given_mask = _given(mask, image.shape, spacing_mm, "foreground mask")
    seeds = _given(markers, image.shape, spacing_mm, "seed label map")
    if seeds is not None and (not np.issubdtype(seeds.dtype, np.integer) or seeds.min() < 0 or not seeds.any()):
        raise MedAIInputError("The seeds must be a label map of non-negative integers with at least one seed.")
    stage(0.0, "Smoothing")
    smoothed, spacing = _smoothed(image, spacing_mm, settings)
    stage(0.15, "Finding the foreground")
    if given_mask is not None:
        foreground, threshold = given_mask.astype(bool), None
        if not foreground.any():
            raise MedAIInputError("The foreground mask is empty.")
    else:
        foreground, threshold, _ = _foreground(smoothed, spacing, settings)
    if seeds is not None and background_label is None:
        foreground = foreground | (seeds > 0)
    stage(0.4, "Measuring distances")
    distance = _distance_mm(foreground, spacing)
    radius_mm = estimate_object_radius_mm(foreground, spacing, distance)
    min_distance_mm = None
    if seeds is None:
        stage(0.55, "Placing seeds")
        if settings.seed_depth_mm is None:
            min_distance_mm = settings.min_seed_distance_mm if settings.min_seed_distance_mm is not None else radius_mm
        seeds = seed_markers(distance, spacing, min_distance_mm, settings.seed_depth_mm)
    stage(0.65, "Flooding")
    landscape = -distance if settings.landscape == "distance" else _gradient_mm(smoothed, spacing)
    labels = flood(landscape, seeds, None if background_label is not None else foreground)
    stage(0.9, "Numbering objects")
    if markers is None:
        labels = _by_decreasing_size(labels)
    elif background_label is not None:
        labels[labels == background_label] = 0
    labels = labels.reshape(image.shape)
    volumes = object_volumes(labels, spacing_mm) if labels.any() else np.zeros(0)
    stage(1.0, "Done")
    return WatershedResult(
        labels=labels,
        volumes_mm=volumes,
        unit="mm2" if spacing.size == 2 else "mm3",
        object_radius_mm=radius_mm,
        min_seed_distance_mm=min_distance_mm,
        threshold=threshold,
        seed_count=int(np.count_nonzero(np.bincount(seeds.ravel())[1:])),
    )
