"""Training data: sample data loaded onto the model's grid (RAS, spacing), splits and synthetic heads.

The arrays are prepared exactly as the inference of a model card prepares its input
(``MedAICommonLib.volumes.metaTensorFromVolume`` -> MONAI ``Orientation("RAS")`` -> ``Spacing``),
so that what the network sees in training is what it sees in use. A 2D image keeps its two axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "GridArrays",
    "loadSampleOnGrid",
    "splitRegion",
    "brainTemplate",
    "labelsFromInstances",
]


@dataclass
class GridArrays:
    """An image and its labels on the model's grid.

    Attributes:
        image: float32 (X, Y[, Z]) in RAS axis order.
        labels: uint8 or int32 array of the same shape (None when no labels were asked for).
        affine: 4x4 voxel-to-RAS of the grid (mm).
    """

    image: np.ndarray
    labels: np.ndarray | None
    affine: np.ndarray


def _metaTensorFromSample(scene, name: str, labels: bool, referenceNode=None):
    from MedAICommonLib import sampledata, segmentations, volumes

    node = sampledata.loadSampleData(scene, name)
    if node.IsA("vtkMRMLSegmentationNode"):
        import torch
        from monai.data import MetaTensor

        array, ijkToRas, _ = segmentations.labelmapFromSegmentation(node, referenceNode)
        arrayIjk = np.ascontiguousarray(array.transpose(2, 1, 0))
        return MetaTensor(torch.from_numpy(arrayIjk)[None], affine=torch.as_tensor(ijkToRas, dtype=torch.float64)), node
    return volumes.metaTensorFromVolume(node), node


def loadSampleOnGrid(imageName: str, labelName: str | None, spacingMm, spatialDims: int = 3) -> GridArrays:
    """Load a sample-data image (and labels) and resample it to RAS at ``spacingMm``.

    Args:
        imageName: sample-data name of the image (``MedAICommonLib.sampledata``).
        labelName: sample-data name of the labels (segmentation or label map) on the image's grid,
            or None.
        spacingMm: voxel size in mm per axis (X, Y[, Z]); None keeps the image's spacing.
        spatialDims: 2 for a 2D image (its one-voxel third axis is dropped), else 3.

    Returns:
        :class:`GridArrays`; labels resampled with nearest neighbour.

    Raises:
        MedAIInputError: unknown sample name.
    """
    import slicer
    from monai.transforms import Orientation, Spacing

    from MedAICommonLib.sampledata import sampleDataNames

    for name in (imageName, labelName):
        if name is not None and name not in sampleDataNames():
            raise MedAIInputError(f"Unknown sample data {name!r} in the training configuration.")
    scene = slicer.vtkMRMLScene()
    try:
        image, imageNode = _metaTensorFromSample(scene, imageName, False)
        label = _metaTensorFromSample(scene, labelName, True, imageNode)[0] if labelName else None
    finally:
        scene.Clear(1)
    image = Orientation(axcodes="RAS")(image.float())
    label = Orientation(axcodes="RAS")(label) if label is not None else None
    if spacingMm is not None:
        pixdim = list(spacingMm) + ([1.0] if spatialDims == 2 else [])
        image = Spacing(pixdim=pixdim, mode="bilinear")(image)
        if label is not None:
            label = Spacing(pixdim=pixdim, mode="nearest")(label)
    imageArray = image.numpy()[0].astype(np.float32)
    labelArray = label.numpy()[0].astype(np.int32) if label is not None else None
    if spatialDims == 2:
        imageArray = imageArray[..., 0]
        labelArray = labelArray[..., 0] if labelArray is not None else None
    return GridArrays(imageArray, labelArray, np.asarray(image.affine, dtype=np.float64))


def splitRegion(shape, region: dict) -> tuple:
    """Return the index slices of a region of an array, given as fractions of each axis.

    Args:
        shape: the array's shape.
        region: ``{"axis": 0, "start": 0.0, "stop": 0.75}``: along ``axis``, the part from
            ``start`` to ``stop`` (fractions of the length); the other axes are whole.

    Returns:
        A tuple of slices.

    Raises:
        MedAIInputError: bad axis or fractions.
    """
    axis = int(region.get("axis", 0))
    start, stop = float(region.get("start", 0.0)), float(region.get("stop", 1.0))
    if not 0 <= axis < len(shape) or not 0.0 <= start < stop <= 1.0:
        raise MedAIInputError(f"Bad data region {region}: axis 0-{len(shape) - 1}, 0 <= start < stop <= 1.")
    slices = [slice(None)] * len(shape)
    slices[axis] = slice(int(round(start * shape[axis])), int(round(stop * shape[axis])))
    return tuple(slices)


def brainTemplate(spacingMm: float, paddingMm: float = 30.0) -> Any:
    """The MNI152 brain template (nilearn's ICBM 2009a, via sample data) at ``spacingMm``, RAS.

    Args:
        spacingMm: isotropic voxel size in mm.
        paddingMm: margin around the template grid for the synthetic head.

    Returns:
        A ``brainsynthesis.BrainTemplate``.
    """
    from .brainsynthesis import make_template

    spacing = [float(spacingMm)] * 3
    t1 = loadSampleOnGrid("MNI152T1", None, spacing).image
    grey = loadSampleOnGrid("MNI152GreyMatter", None, spacing).image
    white = loadSampleOnGrid("MNI152WhiteMatter", None, spacing).image
    return make_template(t1, grey, white, float(spacingMm), paddingMm)


def labelsFromInstances(instances: np.ndarray, target: str) -> np.ndarray:
    """Turn an instance label image into classes the network learns.

    Args:
        instances: integer array, 0 background, one id per object.
        target: ``"foreground"`` (0/1) or ``"foreground-boundary"`` (0 background, 1 object
            interior, 2 object boundary: pixels of an object with a face neighbour of another id
            or background, so that the interiors of touching objects never touch).

    Returns:
        uint8 class image.
    """
    from scipy import ndimage

    instances = np.asarray(instances)
    foreground = instances > 0
    if target == "foreground":
        return foreground.astype(np.uint8)
    footprint = ndimage.generate_binary_structure(instances.ndim, 1)
    grown = ndimage.grey_dilation(instances, footprint=footprint)
    shrunk = ndimage.grey_erosion(instances, footprint=footprint)
    boundary = foreground & ((grown != instances) | (shrunk != instances))
    classes = foreground.astype(np.uint8)
    classes[boundary] = 2
    return classes
