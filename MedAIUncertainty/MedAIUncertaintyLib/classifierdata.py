"""Patches for the nucleus-versus-background classifier, cut from the real ``NucleiImage2D``/``NucleiMask2D``.

A patch is labelled 1 (nucleus) when its centre pixel lies inside an annotated nucleus, else 0. The
image is split by columns: training patches come from the columns left of ``heldBackFromColumn``
minus half a patch, held-back patches from the columns right of it plus half a patch, so that no
pixel of a held-back patch was ever seen in training. Arrays are (row, column) = (y, x) of the image
(the J, I axes of the volume); intensities are scaled with the 1st and 99.5th percentile of the whole
image to 0-1, the same way :func:`normalizeImage` scales an image at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PatchSet", "normalizeImage", "loadNucleiImage", "cutPatches", "samplePatchSets"]


@dataclass
class PatchSet:
    """Patches (N, 1, size, size) float32 in 0-1, labels (N,) 0/1, masks (N, size, size) bool (any nucleus)."""

    patches: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    centres: np.ndarray
    """(N, 2) row, column of each patch centre in the image."""


def normalizeImage(image: np.ndarray) -> np.ndarray:
    """Scale intensities with the 1st and 99.5th percentile to 0-1 (clipped), as float32."""
    lower, upper = np.percentile(image, [1.0, 99.5])
    return np.clip((image.astype(np.float32) - lower) / max(float(upper - lower), 1e-6), 0.0, 1.0)


def loadNucleiImage(imageName: str = "NucleiImage2D", maskName: str = "NucleiMask2D") -> tuple[np.ndarray, np.ndarray]:
    """The 2D sample image normalised to 0-1 and its instance mask, both (rows, columns)."""
    import SimpleITK as sitk

    from MedAICommonLib import sampledata

    image = sitk.GetArrayFromImage(sitk.ReadImage(str(sampledata.sampleDataPath(imageName))))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(sampledata.sampleDataPath(maskName))))
    return normalizeImage(np.squeeze(image)), np.squeeze(mask)


def cutPatches(image: np.ndarray, centres: np.ndarray, sizePx: int) -> np.ndarray:
    """Square patches (N, sizePx, sizePx) around (row, column) centres; centres must lie sizePx/2 from the edge."""
    half = sizePx // 2
    return np.stack([image[r - half : r - half + sizePx, c - half : c - half + sizePx] for r, c in centres])


def _centres(mask: np.ndarray, columns: tuple[int, int], count: int, sizePx: int, rng) -> np.ndarray:
    """``count`` patch centres in the column range, half nuclei and half background, drawn without repeats."""
    half = sizePx // 2
    rows, cols = np.mgrid[half : mask.shape[0] - half, max(columns[0], half) : min(columns[1], mask.shape[1] - half)]
    rows, cols = rows.ravel(), cols.ravel()
    inside = mask[rows, cols] > 0
    chosen = []
    for wanted in (inside, ~inside):
        indices = np.flatnonzero(wanted)
        chosen.append(rng.choice(indices, size=min(count // 2, indices.size), replace=False))
    picked = np.concatenate(chosen)
    return np.stack([rows[picked], cols[picked]], axis=1)


def samplePatchSets(
    image: np.ndarray,
    mask: np.ndarray,
    sizePx: int,
    heldBackFromColumn: int,
    trainCount: int,
    testCount: int,
    seed: int = 0,
) -> tuple[PatchSet, PatchSet]:
    """Training and held-back patch sets, balanced between nucleus and background centres.

    Args:
        image: (rows, columns) intensities in 0-1.
        mask: (rows, columns) instance labels, 0 is background.
        sizePx: patch side in pixels.
        heldBackFromColumn: first column of the held-back region.
        trainCount, testCount: patches per set (half of each class, fewer if a class has fewer pixels).
        seed: seed of the random draw.

    Returns:
        ``(training, heldBack)`` :class:`PatchSet`.
    """
    rng = np.random.default_rng(seed)
    half = sizePx // 2
    sets = []
    for columns, count in (
        ((0, heldBackFromColumn - half), trainCount),
        ((heldBackFromColumn + half, mask.shape[1]), testCount),
    ):
        centres = _centres(mask, columns, count, sizePx, rng)
        rng.shuffle(centres)
        patches = cutPatches(image, centres, sizePx)[:, None].astype(np.float32)
        masks = cutPatches(mask > 0, centres, sizePx)
        labels = (mask[centres[:, 0], centres[:, 1]] > 0).astype(np.int64)
        sets.append(PatchSet(patches, labels, masks, centres))
    return sets[0], sets[1]
