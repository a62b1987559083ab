"""Training samples: MONAI dictionary transforms for patches, augmentation and intensity scaling.

A sample is a dictionary ``{"image": (1, *spatial) float32, "label": (1, *spatial)}`` in RAS axis
order on the model's grid. The intensity scaling is the model card's (``percentile`` or
``window``), applied to the whole image or synthetic window before the patch is cut, as the
inference applies it to the whole input. Randomness comes from MONAI's seeded transforms and from
numpy generators seeded by the training seed, so that a configuration always gives the same samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["scaleIntensity", "intensityAugmentation", "patchTransforms", "SyntheticHeadSource", "ArraySource"]


def scaleIntensity(image: np.ndarray, intensity: dict) -> np.ndarray:
    """Scale an image as a model card's ``intensity`` says.

    Args:
        image: float array, any shape.
        intensity: ``{"method": "percentile", "lower": 0.5, "upper": 99.5}`` (those percentiles to
            0 and 1, not clipped), ``{"method": "window", "minimum": -1000, "maximum": 2000}`` (to 0
            and 1, clipped) or ``{"method": "zscore"}``.

    Returns:
        A float32 copy.
    """
    image = np.asarray(image, dtype=np.float32)
    method = intensity.get("method", "percentile")
    if method == "percentile":
        low, high = np.percentile(image, [intensity.get("lower", 0.5), intensity.get("upper", 99.5)])
        return ((image - low) / max(float(high - low), 1e-6)).astype(np.float32)
    if method == "window":
        low, high = float(intensity["minimum"]), float(intensity["maximum"])
        return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return ((image - image.mean()) / max(float(image.std()), 1e-6)).astype(np.float32)


def _thickSlices(image, rng, maxFactor):
    """Average blocks of 2-``maxFactor`` slices along a random axis and repeat them (thick slices)."""
    axis = int(rng.integers(0, image.ndim))
    factor = int(rng.integers(2, int(maxFactor) + 1))
    length = image.shape[axis] - image.shape[axis] % factor
    moved = np.moveaxis(image, axis, 0)
    blocks = moved[:length].reshape((length // factor, factor) + moved.shape[1:]).mean(axis=1)
    thick = np.repeat(blocks, factor, axis=0)
    result = moved.copy()
    result[:length] = thick
    return np.moveaxis(result, 0, axis)


def intensityAugmentation(image: np.ndarray, rng: np.random.Generator, settings: dict) -> np.ndarray:
    """Random bias field, blur, thick slices, gamma and noise on an image scaled to about 0-1.

    Args:
        image: float32 array (2D or 3D), intensities about 0-1.
        rng: numpy generator.
        settings: the configuration's ``augmentation``: ``biasField`` (standard deviation of the log
            field), ``blurPx`` (largest Gaussian sigma), ``thickSlices`` (probability; factor 2-3),
            ``gamma`` (standard deviation of log gamma), ``noise`` (largest noise standard deviation);
            a missing or zero entry is skipped.

    Returns:
        The augmented image (a new array).
    """
    from scipy import ndimage

    from .brainsynthesis import smooth_field

    image = np.array(image, dtype=np.float32)
    if settings.get("biasField") and rng.random() < 0.8:
        cell = max(image.shape) / rng.uniform(2.0, 5.0)
        image *= np.exp(smooth_field(image.shape, rng, cell, rng.uniform(0.0, settings["biasField"])))
    if settings.get("blurPx") and rng.random() < 0.5:
        image = ndimage.gaussian_filter(image, rng.uniform(0.0, settings["blurPx"], image.ndim))
    if settings.get("thickSlices") and rng.random() < settings["thickSlices"]:
        image = _thickSlices(image, rng, 3)
    if settings.get("gamma"):
        image = np.clip(image, 0.0, None) ** np.exp(rng.normal(0.0, settings["gamma"]))
    if settings.get("noise"):
        scale = float(np.percentile(image, 99.5))
        image = image + rng.normal(0.0, rng.uniform(0.0, settings["noise"]) * scale, image.shape).astype(np.float32)
    return image.astype(np.float32)


def patchTransforms(config: dict, seed: int) -> Any:
    """MONAI dictionary transforms that cut a training patch: random affine (or crop) and flips.

    Args:
        config: the training configuration (``patchSizePx``, ``spatialDims``, ``augmentation``).
        seed: random seed of the transforms.

    Returns:
        A seeded ``monai.transforms.Compose`` acting on ``{"image", "label"}`` channel-first arrays.
    """
    from monai.transforms import Compose, RandAffined, RandFlipd, RandSpatialCropd, SpatialPadd

    size = list(config["patchSizePx"])
    settings = config.get("augmentation", {})
    affine = settings.get("affine")
    steps = [SpatialPadd(keys=["image", "label"], spatial_size=size, mode="constant")]
    if affine:
        radians = np.deg2rad(float(affine.get("rotateDeg", 0.0)))
        dims = config["spatialDims"]
        steps.append(
            RandAffined(
                keys=["image", "label"],
                spatial_size=size,
                prob=1.0,
                rotate_range=[radians] * (3 if dims == 3 else 1),
                scale_range=[float(affine.get("scale", 0.0))] * dims,
                translate_range=[float(affine.get("translatePx", 0.0))] * dims,
                mode=["bilinear", "nearest"],
                padding_mode="zeros",
            )
        )
    else:
        steps.append(RandSpatialCropd(keys=["image", "label"], roi_size=size, random_size=False))
    for axis in settings.get("flipAxes", []):
        steps.append(RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=int(axis)))
    transform = Compose(steps)
    transform.set_random_state(seed=seed)
    return transform


class SyntheticHeadSource:
    """Endless synthetic heads (``brainsynthesis``) around the MNI152 brain, augmented and scaled."""

    def __init__(self, config: dict, seed: int):
        from .trainingdata import brainTemplate

        self.config = config
        self.template = brainTemplate(float(config["spacingMm"][0]))
        self.rng = np.random.default_rng(seed)
        self.window = [int(s) for s in config["data"].get("windowPx", [96, 112, 96])]
        self.patches = patchTransforms(config, seed)

    def sample(self) -> dict:
        """Return one ``{"image", "label"}`` patch (channel first, numpy)."""
        from .brainsynthesis import synthesize_head

        image, mask = synthesize_head(self.template, self.rng, self.window)
        image = intensityAugmentation(image, self.rng, self.config.get("augmentation", {}))
        image = scaleIntensity(image, self.config["intensity"])
        return self.patches({"image": image[None], "label": mask[None].astype(np.float32)})


class ArraySource:
    """Patches from one image with labels (the training region of a sample-data item)."""

    def __init__(self, config: dict, seed: int, image: np.ndarray, labels: np.ndarray):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.image = scaleIntensity(image, config["intensity"])
        self.labels = labels.astype(np.float32)
        self.patches = patchTransforms(config, seed)
        foreground = np.argwhere(labels > 0)
        self.foreground = foreground if len(foreground) else None

    def sample(self) -> dict:
        """Return one ``{"image", "label"}`` patch; two thirds are centred near a foreground voxel."""
        image, labels = self.image, self.labels
        size = np.array(self.config["patchSizePx"])
        if self.foreground is not None and self.rng.random() < 0.67:
            centre = self.foreground[self.rng.integers(len(self.foreground))]
        else:
            centre = np.array([self.rng.integers(0, s) for s in image.shape])
        # A window twice the patch around the centre leaves the affine room to rotate.
        low = np.clip(centre - size, 0, None)
        window = tuple(slice(a, b) for a, b in zip(low, centre + size))
        image = intensityAugmentation(image[window], self.rng, self.config.get("augmentation", {}))
        return self.patches({"image": image[None], "label": labels[window][None]})
