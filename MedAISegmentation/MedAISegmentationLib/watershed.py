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

:func:`watershed_seeds` stops before flooding (steps 1-3) and returns the foreground and the seeds
that :func:`watershed_objects` would flood, computed by the same code: the preview of a run.

Steps 1-3 (smoothing, foreground, distances, object radius) live in :mod:`.watershedforeground`,
seeds, flooding and numbering in :mod:`.watershedflood`; this module holds the settings, the
result and the pipeline, and re-exports the public functions of both.

Example::

    result = watershed_objects(image, spacing_mm=(1.0, 0.5, 0.5))
    print(result.object_count, result.object_radius_mm)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

from .watershedflood import _by_decreasing_size, _gradient_mm, flood, object_volumes, seed_markers
from .watershedforeground import (
    _check_image,
    _distance_mm,
    _foreground,
    _smoothed,
    _squeezed,
    distance_to_background_mm,
    estimate_object_radius_mm,
)

__all__ = [
    "WatershedSettings",
    "WatershedResult",
    "WatershedSeeds",
    "watershed_objects",
    "watershed_seeds",
    "foreground_mask",
    "estimate_object_radius_mm",
    "distance_to_background_mm",
    "seed_markers",
    "flood",
    "object_volumes",
]

FOREGROUND_METHODS = ("adaptive", "otsu")
LANDSCAPES = ("distance", "gradient")


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


def _given(
    array: np.ndarray | None, shape: tuple[int, ...], spacing_mm: Sequence[float], what: str
) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    if array.shape != shape:
        raise MedAIInputError(f"The {what} has shape {array.shape}, but the image has shape {shape}.")
    return _squeezed(array, spacing_mm)[0]


@dataclass
class WatershedSeeds:
    """What :func:`watershed_objects` floods, found by :func:`watershed_seeds` before any flooding.

    Attributes:
        foreground: boolean mask shaped like the image: the voxels the flooding fills (with a
            background seed the flooding covers the whole image; this mask then only shapes the distances).
        seeds: int32 markers shaped like the image, 0 where there is no seed; each label floods one object.
        object_radius_mm: estimated radius of a typical object (median over foreground parts).
        min_seed_distance_mm: the seed distance used (None when seeds were given or h-maxima used).
        threshold: the intensity threshold used (the background floor for ``"adaptive"``); None with a mask.
        background_label: the marker label that seeds the background, or None.
    """

    foreground: np.ndarray
    seeds: np.ndarray
    object_radius_mm: float
    min_seed_distance_mm: float | None
    threshold: float | None
    background_label: int | None = None
    # The squeezed arrays that the flooding goes on from (size-1 axes dropped).
    _smoothed: np.ndarray | None = field(default=None, repr=False)
    _distance: np.ndarray | None = field(default=None, repr=False)
    _spacing: np.ndarray | None = field(default=None, repr=False)

    @property
    def seed_count(self) -> int:
        """Number of object seeds: distinct marker labels, the background seed not counted."""
        present = np.flatnonzero(np.bincount(self.seeds.ravel()))
        return int(np.count_nonzero((present != 0) & (present != (self.background_label or 0))))


def _stages(progress: Callable[[float, str], None] | None, cancel_token: Any) -> Callable[[float, str], None]:
    def stage(fraction: float, message: str) -> None:
        if cancel_token is not None:
            cancel_token.raiseIfCancelled()
        if progress is not None:
            progress(fraction, message)

    return stage


def watershed_seeds(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    settings: WatershedSettings | None = None,
    mask: np.ndarray | None = None,
    markers: np.ndarray | None = None,
    background_label: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel_token: Any = None,
) -> WatershedSeeds:
    """The foreground and the seeds that :func:`watershed_objects` would flood (its steps 1-3).

    Same arguments, checks and code as :func:`watershed_objects`, which calls this function and
    then floods; so a preview made with it shows exactly what a run with the same settings splits.

    Returns:
        :class:`WatershedSeeds`.

    Raises:
        MedAIInputError: a bad image, mask or seeds, or a threshold that leaves no foreground.
        MedAICancelledError: when cancelled.
    """
    stage = _stages(progress, cancel_token)
    prepared = _seeds(
        np.asarray(image), spacing_mm, settings or WatershedSettings(), mask, markers, background_label, stage
    )
    stage(1.0, "Done")
    return prepared


def _seeds(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    settings: WatershedSettings,
    mask: np.ndarray | None,
    markers: np.ndarray | None,
    background_label: int | None,
    stage: Callable[[float, str], None],
) -> WatershedSeeds:
    _check_image(image)
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
    return WatershedSeeds(
        foreground=foreground.reshape(image.shape),
        seeds=seeds.astype(np.int32, copy=False).reshape(image.shape),
        object_radius_mm=radius_mm,
        min_seed_distance_mm=min_distance_mm,
        threshold=threshold,
        background_label=background_label,
        _smoothed=smoothed,
        _distance=distance,
        _spacing=spacing,
    )


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
    stage = _stages(progress, cancel_token)
    prepared = _seeds(image, spacing_mm, settings, mask, markers, background_label, stage)
    spacing, distance = prepared._spacing, prepared._distance
    seeds, foreground = prepared.seeds.reshape(distance.shape), prepared.foreground.reshape(distance.shape)
    stage(0.65, "Flooding")
    landscape = -distance if settings.landscape == "distance" else _gradient_mm(prepared._smoothed, spacing)
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
        object_radius_mm=prepared.object_radius_mm,
        min_seed_distance_mm=prepared.min_seed_distance_mm,
        threshold=prepared.threshold,
        seed_count=int(np.count_nonzero(np.bincount(seeds.ravel())[1:])),
    )
