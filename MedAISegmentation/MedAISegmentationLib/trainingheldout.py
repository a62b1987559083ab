"""Held-out scores of a trained network and of the classical baseline, for the model card.

``data.evaluation.method``:

- ``"dice"``: foreground Dice on the held-out item's own grid (Colin27 for the brain; the held-out
  slices of HeadCT). Probabilities computed on the model grid are interpolated back linearly.
- ``"instances"``: object F1 at IoU 0.5 (``evaluation.instance_metrics``) on the held-out region,
  objects from ``traininginstances.instancesFromProbabilities``.

``data.evaluation.baseline``: ``"otsu-brain"`` (Otsu threshold, erosion, largest component,
dilation, hole filling), ``"threshold"`` (``minimum`` intensity, e.g. 226 HU for bone) or
``"watershed"`` (the classical watershed of part 1 with its defaults).
"""

from __future__ import annotations

import numpy as np

from .trainingdata import loadSampleOnGrid, splitRegion
from .trainingevaluation import diceScore, predictProbabilities

__all__ = ["evaluateHeldOutData", "otsuBrainMask", "probabilitiesOnGrid"]


def probabilitiesOnGrid(probabilities: np.ndarray, modelAffine, targetAffine, targetShape) -> np.ndarray:
    """Interpolate (classes, *model grid) probabilities linearly onto another grid (both RAS affines)."""
    from scipy import ndimage

    mapping = np.linalg.inv(np.asarray(modelAffine)) @ np.asarray(targetAffine)
    dims = probabilities.ndim - 1
    matrix = mapping[:dims, :dims] if dims == 3 else mapping[:2, :2]
    offset = mapping[:dims, 3] if dims == 3 else mapping[:2, 3]
    out = [
        ndimage.affine_transform(p, matrix, offset, output_shape=tuple(targetShape), order=1, mode="nearest")
        for p in probabilities
    ]
    return np.stack(out)


def otsuBrainMask(image: np.ndarray, spacingMm: float = 1.0) -> np.ndarray:
    """Classical brain mask: Otsu threshold, 4 mm erosion, largest component, 4 mm dilation, holes filled."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    radius = max(1, int(round(4.0 / spacingMm)))
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), radius)
    mask = ndimage.binary_erosion(image > threshold_otsu(image), ball)
    labels, count = ndimage.label(mask)
    if count:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(ndimage.binary_dilation(mask, ball))


def _entry(metric, value, data, source):
    return {"metric": metric, "value": round(float(value), 4), "data": data, "source": source}


def _heldOutArrays(config: dict):
    """(native image, native labels, native affine, model-grid image, model affine, description)."""
    data = config["data"]
    heldOut = data["heldOut"]
    imageName = heldOut.get("image", data.get("image"))
    labelName = heldOut.get("labels", data.get("labels"))
    native = loadSampleOnGrid(imageName, labelName, None, config["spatialDims"])
    model = loadSampleOnGrid(imageName, None, config.get("spacingMm"), config["spatialDims"])
    if "region" not in heldOut:
        return native.image, native.labels, native.affine, model.image, model.affine, imageName
    # Held-out region: cut on the native grid; the model sees only that part, resampled.
    region = splitRegion(native.image.shape, heldOut["region"])
    starts = [s.start or 0 for s in region]
    shift = np.eye(4)
    shift[: len(starts), 3] = starts
    affine = native.affine @ shift
    image, labels = native.image[region], native.labels[region]
    modelImage, modelAffine = _resampleRegion(image, affine, config)
    where = f"{imageName}, held-out region {heldOut['region']}"
    return image, labels, affine, modelImage, modelAffine, where


def _resampleRegion(image, affine, config):
    """The region resampled to the model spacing by MONAI (RAS axes), with its affine."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    spacing = config.get("spacingMm")
    if spacing is None:
        return image, affine
    volume = image if image.ndim == 3 else image[..., None]
    pixdim = list(spacing) + ([1.0] if image.ndim == 2 else [])
    tensor = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None], affine=torch.as_tensor(affine)
    )
    resampled = Spacing(pixdim=pixdim, mode="bilinear")(tensor)
    array = resampled.numpy()[0]
    return (array if image.ndim == 3 else array[..., 0]), np.asarray(resampled.affine, dtype=np.float64)


def evaluateHeldOutData(config: dict, network) -> tuple:
    """See :func:`trainingevaluation.evaluateHeldOut`."""
    from .trainingaugment import scaleIntensity

    evaluation = config["data"].get("evaluation", {"method": "dice"})
    image, labels, affine, modelImage, modelAffine, where = _heldOutArrays(config)
    scaled = scaleIntensity(modelImage, config["intensity"])
    probabilities = probabilitiesOnGrid(predictProbabilities(config, network, scaled), modelAffine, affine, image.shape)
    source = f"measured by MedAISegmentationLib.trainingheldout ({config['id']} config), on {where}"
    if evaluation["method"] == "instances":
        return _instanceScores(evaluation, image, labels, probabilities, where, source)
    prediction = np.argmax(probabilities, axis=0)
    measured = [_entry("Dice", diceScore(prediction > 0, labels > 0), where, source)]
    baseline = evaluation.get("baseline")
    spacing = float(np.abs(np.diag(affine)[: image.ndim]).min())
    if baseline == "otsu-brain":
        mask = otsuBrainMask(image, spacing)
        baselines = [
            _entry(
                "Dice",
                diceScore(mask, labels > 0),
                where,
                "Otsu threshold, 4 mm erosion, largest component, dilation, hole filling",
            )
        ]
    elif baseline == "threshold":
        minimum = float(evaluation["minimum"])
        baselines = [
            _entry("Dice", diceScore(image >= minimum, labels > 0), where, f"intensity threshold >= {minimum:g}")
        ]
    else:
        baselines = []
    return measured, baselines


def _instanceScores(evaluation, image, labels, probabilities, where, source):
    from .evaluation import instance_metrics
    from .traininginstances import instancesFromProbabilities
    from .watershed import watershed_objects

    arguments = evaluation.get("arguments", {})
    objects = instancesFromProbabilities(probabilities, **arguments)
    ours = instance_metrics(labels, objects)
    classical = instance_metrics(labels, watershed_objects(image, spacing_mm=(1.0,) * image.ndim).labels)
    measured = [
        _entry("instance F1 at IoU 0.5", ours["f1"], where, source),
        _entry("mean F1 over IoU 0.5-0.95", ours["f1_mean"], where, source),
    ]
    baselines = [
        _entry(
            "instance F1 at IoU 0.5",
            classical["f1"],
            where,
            "classical watershed of MedAISegmentationLib.watershed, default settings",
        ),
        _entry("mean F1 over IoU 0.5-0.95", classical["f1_mean"], where, "classical watershed, default settings"),
    ]
    return measured, baselines
