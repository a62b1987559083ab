"""Synthetic heads with skull, scalp and random surroundings around the MNI152 brain (SynthStrip style).

MNI152 is skull-stripped, so a network trained on it alone calls the whole head "brain". Here every
training sample grows random noisy shells around the MNI152 brain mask (CSF, inner table, diploe,
outer table, fat and muscle, skin), drops random ellipsoids outside the brain (eyes, muscles, neck,
neighbouring tissue), gives every layer a random intensity (and, half of the time, grey matter,
white matter and CSF too, from the MNI152 tissue maps), then adds texture. The brain mask is the
label. Bias field, blur, thick slices, noise, gamma and affine changes are applied afterwards by the
training transforms (``training``), so they are shared with the other tasks.

All arrays are numpy arrays on one grid, axes (X, Y, Z) in RAS order, isotropic ``spacingMm``; the
functions are pure and seeded by the numpy generator they receive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["BrainTemplate", "make_template", "crop_template", "synthesize_head", "smooth_field", "SHELLS_MM"]

SHELLS_MM = {
    "csf": (0.5, 4.0),
    "inner_table": (1.0, 3.0),
    "diploe": (0.0, 5.0),
    "outer_table": (1.0, 3.0),
    "fat_muscle": (1.0, 10.0),
    "skin": (1.0, 3.0),
}
"""Range (min, max) of each shell's thickness in mm, from the brain surface outwards."""


@dataclass
class BrainTemplate:
    """The MNI152 brain on a padded grid: T1 (0-1), tissue probabilities, mask and distance to it.

    Attributes:
        t1: template T1 scaled to 0-1, 0 outside the brain.
        grey, white: grey- and white-matter probabilities 0-1.
        mask: brain mask (bool), the label to learn.
        distance_mm: distance in mm of every voxel outside the mask to the mask (0 inside).
        spacing_mm: isotropic voxel size in mm.
    """

    t1: np.ndarray
    grey: np.ndarray
    white: np.ndarray
    mask: np.ndarray
    distance_mm: np.ndarray
    spacing_mm: float


def make_template(t1, grey, white, spacing_mm, padding_mm=30.0, threshold=0.05):
    """Build the template from MNI152 arrays that share one isotropic grid.

    Args:
        t1: skull-stripped T1 (any scale, 0 outside the brain), axes (X, Y, Z).
        grey, white: tissue probabilities on the same grid (0-1, or 0-255 which is rescaled).
        spacing_mm: voxel size in mm.
        padding_mm: margin added on every side, room for the shells and the surroundings.
        threshold: fraction of the T1's 99th percentile above which a voxel is brain.

    Returns:
        A :class:`BrainTemplate`.
    """
    t1 = np.asarray(t1, dtype=np.float32)
    scale = float(np.percentile(t1[t1 > 0], 99.0))
    t1 = np.clip(t1 / scale, 0.0, 1.0)
    grey, white = (np.asarray(a, dtype=np.float32) for a in (grey, white))
    if max(grey.max(), white.max()) > 1.5:
        grey, white = grey / 255.0, white / 255.0
    mask = t1 > threshold
    labels, count = ndimage.label(mask)
    if count > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(mask)
    pad = int(round(padding_mm / spacing_mm))
    t1, grey, white, mask = (np.pad(a, pad) for a in (t1 * mask, grey * mask, white * mask, mask))
    distance = ndimage.distance_transform_edt(~mask).astype(np.float32) * spacing_mm
    return BrainTemplate(t1, grey, white, mask, distance, float(spacing_mm))


def smooth_field(shape, rng, cell_vox, amplitude=1.0):
    """Return a smooth random field: normal values on a coarse lattice, interpolated linearly.

    Args:
        shape: output shape.
        rng: numpy generator.
        cell_vox: lattice spacing in voxels (larger is smoother).
        amplitude: standard deviation of the lattice values.
    """
    import torch

    coarse = [max(2, int(np.ceil(s / cell_vox)) + 1) for s in shape]
    lattice = torch.from_numpy(rng.normal(0.0, amplitude, coarse).astype(np.float32))[None, None]
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    field = torch.nn.functional.interpolate(lattice, size=tuple(shape), mode=mode, align_corners=True)
    return field[0, 0].numpy()


def _shell_labels(template, rng):
    """Label 0 background, 1-6 the shells of :data:`SHELLS_MM` outwards, 7 the brain."""
    distance = template.distance_mm + smooth_field(
        template.mask.shape, rng, 8.0 / template.spacing_mm * 2, rng.uniform(0.5, 3.0)
    )
    labels = np.zeros(template.mask.shape, dtype=np.uint8)
    outer = 0.0
    bounds = []
    for low, high in SHELLS_MM.values():
        outer += rng.uniform(low, high)
        bounds.append(outer)
    # Later shells first so that inner ones overwrite them.
    for index in range(len(bounds) - 1, -1, -1):
        labels[distance <= bounds[index]] = index + 1
    labels[template.mask] = 7
    return labels


def _add_blobs(labels, template, rng, first_label):
    """Paint random ellipsoids (eyes, muscles, neck) outside the brain; return the next free label."""
    shape = np.array(labels.shape)
    label = first_label
    for _ in range(int(rng.integers(2, 9))):
        centre = rng.uniform(0.05, 0.95, 3) * shape
        if rng.random() < 0.4:
            # Below the brain: the neck and skull base that real scans show and MNI152 lacks.
            centre[2] = rng.uniform(0.0, 0.35) * shape[2]
        radii = rng.uniform(4.0, 35.0, 3) / template.spacing_mm
        low = np.clip(np.floor(centre - radii), 0, shape).astype(int)
        high = np.clip(np.ceil(centre + radii) + 1, 0, shape).astype(int)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        grid = np.ogrid[box]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
        labels[box][inside & ~template.mask[box]] = label
        label += 1
    return label


def _brain_intensity(template, rng, image):
    """Brain voxels: the template's own contrast (scaled, gamma) or random tissue intensities."""
    mask = template.mask
    if rng.random() < 0.5:
        brain = template.t1[mask] ** np.exp(rng.normal(0.0, 0.3))
        if rng.random() < 0.25:
            brain = 1.0 - brain  # T2-like inverted contrast
        image[mask] = rng.uniform(0.3, 1.0) * brain + rng.uniform(0.0, 0.3)
    else:
        grey, white = template.grey[mask], template.white[mask]
        csf = np.clip(1.0 - grey - white, 0.0, 1.0)
        values = rng.uniform(0.0, 1.0, 3)
        image[mask] = grey * values[0] + white * values[1] + csf * values[2]


def crop_template(template, rng, shape):
    """Return a random window of ``shape`` voxels of the template (the whole axis where shorter)."""
    starts = [int(rng.integers(0, max(0, t - s) + 1)) for t, s in zip(template.mask.shape, shape)]
    window = tuple(slice(b, b + s) for b, s in zip(starts, shape))
    fields = (template.t1, template.grey, template.white, template.mask, template.distance_mm)
    return BrainTemplate(*(a[window] for a in fields), template.spacing_mm)


def synthesize_head(template, rng, shape=None):
    """Return one synthetic head and its brain mask.

    Args:
        template: from :func:`make_template`.
        rng: numpy generator (the only source of randomness).
        shape: size in voxels of a random window of the template to synthesise (a field of view
            that may cut the head, as real scans do); None: the whole template.

    Returns:
        ``(image, mask)``: float32 image in about 0-1 and uint8 brain mask (1 brain), both shaped
        like the window.
    """
    if shape is not None:
        template = crop_template(template, rng, shape)
    labels = _shell_labels(template, rng)
    count = _add_blobs(labels, template, rng, first_label=8)
    means = rng.uniform(0.0, 1.0, count).astype(np.float32)
    if rng.random() < 0.7:
        means[0] = rng.uniform(0.0, 0.1)  # air is usually dark
    image = means[labels]
    _brain_intensity(template, rng, image)
    texture = smooth_field(labels.shape, rng, rng.uniform(2.0, 6.0), rng.uniform(0.02, 0.15))
    image = image * (1.0 + texture)
    return np.clip(image, 0.0, None).astype(np.float32), template.mask.astype(np.uint8)
