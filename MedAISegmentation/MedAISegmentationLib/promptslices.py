"""Slices for prompt models: a canonical display orientation, prompt coordinates, windowing and crops.

The same anatomy must give the same input to the model whatever the storage order of the volume.
The volume is first put in one canonical axis order (:func:`logic.canonicalAxes`: array axes along
+S, +A, +R), then a slice is shown as Slicer's slice views show it (radiological convention):

- axial: rows from anterior to posterior, columns from patient right to left;
- coronal: rows from superior to inferior, columns from right to left;
- sagittal: rows from superior to inferior, columns from anterior to posterior.

In each case that is the canonical slice with both axes reversed. A "display image" below is such a
2D array; display pixel ``(row, col)`` coordinates are continuous with pixel centres on integers.

The model frame is a square of ``input_size`` pixels; a region of the display image (the whole
slice, or a crop around a small prompt) is scaled by one factor in millimetres, so the model sees
the slice with its physical aspect ratio even when the pixels are anisotropic, and is padded on the
bottom and right (LiteMedSAM's own preprocessing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "SLICE_AXES",
    "CanonicalVolume",
    "Region",
    "canonical_volume",
    "display_slice",
    "display_coordinates",
    "intensity_window",
    "apply_window",
    "prompt_region",
    "to_model_frame",
    "logits_to_display",
]

SLICE_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
"""Canonical array axis that a view's slices cut (the array is stored S, A, R)."""

# A crop is used when the prompt is smaller than this fraction of the slice (in mm)...
_CROP_FRACTION = 0.25
# ... and is this many times the prompt's size, at least _MIN_CROP_PX display pixels.
_CROP_ZOOM = 4.0
_MIN_CROP_PX = 64


@dataclass
class CanonicalVolume:
    """A voxel array in canonical S, A, R axis order and how it relates to the stored array.

    Attributes:
        voxels: the canonical array (a copy).
        order, flipped: ``np.flip(stored.transpose(order), flipped)`` gives ``voxels``.
        spacing_mm: voxel size along the canonical axes (S, A, R order).
        ras_to_stored_kji: 4x4 matrix from world RAS mm to continuous stored (k, j, i) indices.
    """

    voxels: np.ndarray
    order: tuple[int, int, int]
    flipped: tuple[int, ...]
    spacing_mm: np.ndarray
    ras_to_stored_kji: np.ndarray

    def stored(self, canonical: np.ndarray) -> np.ndarray:
        """An array in canonical order put back in the stored (KJI) order."""
        return np.ascontiguousarray(np.flip(canonical, self.flipped).transpose(np.argsort(self.order)))

    def canonical_index(self, points_ras: np.ndarray) -> np.ndarray:
        """Continuous canonical indices (N, 3) of world RAS points (N, 3) in mm."""
        points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
        kji = (self.ras_to_stored_kji @ np.c_[points, np.ones(len(points))].T)[:3].T
        shape = self.voxels.shape
        index = kji[:, list(self.order)]
        for axis in self.flipped:
            index[:, axis] = shape[axis] - 1 - index[:, axis]
        return index


def canonical_volume(voxels_kji: np.ndarray, ijk_to_ras: np.ndarray) -> CanonicalVolume:
    """The canonical view of a stored KJI array with its world IJK-to-RAS matrix (mm)."""
    from .logic import canonicalAxes

    ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
    order, flipped = canonicalAxes(ijk_to_ras)
    spacing_kji = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)[::-1]
    # Swapping the first three rows turns continuous (i, j, k) into (k, j, i).
    ras_to_kji = np.linalg.inv(ijk_to_ras)[[2, 1, 0, 3]]
    canonical = np.ascontiguousarray(np.flip(voxels_kji.transpose(order), flipped))
    return CanonicalVolume(canonical, tuple(order), tuple(flipped), spacing_kji[list(order)], ras_to_kji)


def display_slice(volume: CanonicalVolume, axis: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A display image and its pixel size.

    Returns:
        ``(image (rows, cols), (row spacing, column spacing) in mm)``.
    """
    image = np.take(volume.voxels, index, axis=axis)[::-1, ::-1]
    spacing = np.delete(volume.spacing_mm, axis)
    return np.ascontiguousarray(image), spacing


def display_coordinates(volume: CanonicalVolume, axis: int, canonical_index: np.ndarray) -> np.ndarray:
    """Display ``(row, col)`` of continuous canonical indices (N, 3) on slices across ``axis``."""
    shape = np.delete(np.array(volume.voxels.shape), axis)
    inPlane = np.delete(np.asarray(canonical_index, dtype=float).reshape(-1, 3), axis, axis=1)
    return (shape - 1) - inPlane


def intensity_window(voxels: np.ndarray, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """The intensities mapped to 0 and 1.

    Args:
        voxels: the whole image (one window for all slices, so propagation sees consistent slices).
        window: ``(low, high)`` in the image's units (a CT window in HU, for instance); None: the
            0.5th and 99.5th percentiles of the voxels above the image's minimum (MedSAM's
            preprocessing for MR, microscopy and X-ray, where the minimum is the empty background;
            it also handles 16-bit images).

    Raises:
        MedAIInputError: a window whose high end is not above its low end, or a constant image.
    """
    if window is not None:
        low, high = (float(v) for v in window)
        if not high > low:
            raise MedAIInputError(f"The intensity window ({low}, {high}) must have its high end above its low end.")
        return low, high
    values = np.asarray(voxels)
    step = max(1, values.size // 2_000_000)  # percentiles of a regular subsample are as good and fast
    sample = values.reshape(-1)[::step]
    foreground = sample[sample > sample.min()]
    low, high = np.percentile(foreground if foreground.size > sample.size // 10 else sample, [0.5, 99.5])
    if not high > low:
        low, high = float(values.min()), float(values.max())
    if not high > low:
        raise MedAIInputError("The image is constant; there is nothing to segment.")
    return float(low), float(high)


def apply_window(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Intensities clipped to the window and scaled to 0-1 (float32)."""
    low, high = window
    return np.clip((np.asarray(image, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class Region:
    """A rectangle of the display image that is shown to the model: rows ``r0:r1``, columns ``c0:c1``.

    It may reach past the image (padded with the darkest intensity). Regions are snapped to a
    grid, so that nearby prompts share one region and one cached embedding.
    """

    r0: int
    r1: int
    c0: int
    c1: int


def prompt_region(image_shape, spacing_mm, box_rc: np.ndarray | None) -> Region:
    """The region to encode for a prompt: the whole slice, or a crop around a small box.

    Args:
        image_shape: (rows, cols) of the display image.
        spacing_mm: (row, col) pixel size in mm.
        box_rc: ``[[row0, col0], [row1, col1]]`` inclusive pixel-centre corners, or None.
    """
    rows, cols = image_shape
    full = Region(0, rows, 0, cols)
    if box_rc is None:
        return full
    spacing = np.asarray(spacing_mm, dtype=float)
    boxMm = (np.abs(box_rc[1] - box_rc[0]) + 1) * spacing
    sliceMm = np.array([rows, cols]) * spacing
    if boxMm.max() >= _CROP_FRACTION * sliceMm.max():
        return full
    pixel = spacing.min()
    wanted = max(_MIN_CROP_PX, _CROP_ZOOM * boxMm.max() / pixel)
    sideMm = pixel * 2 ** math.ceil(math.log2(wanted))
    if sideMm >= sliceMm.max() / 2:
        return full
    stride = sideMm / 2
    centreMm = (np.asarray(box_rc, dtype=float).mean(axis=0) + 0.5) * spacing
    tile = np.round((centreMm - sideMm / 2) / stride)
    start = np.round(tile * stride / spacing).astype(int)
    size = np.round(sideMm / spacing).astype(int)
    return Region(int(start[0]), int(start[0] + size[0]), int(start[1]), int(start[1] + size[1]))


def _scale(region: Region, spacing_mm, input_size: int, stretch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Model pixels per display pixel along rows and columns, and the scaled region's size."""
    extentMm = np.array([region.r1 - region.r0, region.c1 - region.c0]) * np.asarray(spacing_mm, dtype=float)
    if stretch:
        scaled = np.array([input_size, input_size])
    else:
        scaled = np.maximum(1, np.round(extentMm * input_size / extentMm.max())).astype(int)
    return scaled / np.array([region.r1 - region.r0, region.c1 - region.c0]), scaled


def to_model_frame(image01: np.ndarray, spacing_mm, region: Region, input_size: int, stretch: bool = False):
    """The model input of a region of a windowed display image, and a point mapper.

    ``stretch``: scale the region to the whole square frame (aspect ratio not kept, no padding), as
    LiteMedSAM's own package does, instead of keeping the millimetre aspect ratio and padding.

    Returns:
        ``(input (3, S, S) float32, to_model)``: ``to_model(rc)`` maps display (row, col) points
        (N, 2) to model-frame ``(x, y)`` points (N, 2).
    """
    import torch

    rows, cols = image01.shape
    crop = np.zeros((region.r1 - region.r0, region.c1 - region.c0), dtype=np.float32)
    rs, re_ = max(region.r0, 0), min(region.r1, rows)
    cs, ce = max(region.c0, 0), min(region.c1, cols)
    crop[rs - region.r0 : re_ - region.r0, cs - region.c0 : ce - region.c0] = image01[rs:re_, cs:ce]
    factor, scaled = _scale(region, spacing_mm, input_size, stretch)
    tensor = torch.from_numpy(crop)[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=tuple(scaled.tolist()), mode="bilinear", align_corners=False)
    frame = np.zeros((3, input_size, input_size), dtype=np.float32)
    frame[:, : scaled[0], : scaled[1]] = resized[0, 0].numpy()
    lo, hi = frame.min(), frame.max()
    if hi > lo:  # LiteMedSAM normalises each input to 0-1
        frame[:, : scaled[0], : scaled[1]] = (frame[:, : scaled[0], : scaled[1]] - lo) / (hi - lo)

    def to_model(rc: np.ndarray) -> np.ndarray:
        rc = np.asarray(rc, dtype=float).reshape(-1, 2)
        yx = (rc - [region.r0, region.c0] + 0.5) * factor - 0.5
        return yx[:, ::-1]

    return frame, to_model


def logits_to_display(logits: np.ndarray, spacing_mm, region: Region, image_shape, stretch: bool = False) -> np.ndarray:
    """Model-frame logits (S, S) back onto the display image (rows, cols); -inf outside the region."""
    import torch

    _, scaled = _scale(region, spacing_mm, logits.shape[0], stretch)
    valid = torch.from_numpy(np.ascontiguousarray(logits[: scaled[0], : scaled[1]], dtype=np.float32))[None, None]
    size = (region.r1 - region.r0, region.c1 - region.c0)
    back = torch.nn.functional.interpolate(valid, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    rows, cols = image_shape
    out = np.full((rows, cols), -np.inf, dtype=np.float32)
    rs, re_ = max(region.r0, 0), min(region.r1, rows)
    cs, ce = max(region.c0, 0), min(region.c1, cols)
    out[rs:re_, cs:ce] = back[rs - region.r0 : re_ - region.r0, cs - region.c0 : ce - region.c0]
    return out
