"""The shipped brain extraction model on Colin27 stored with other geometries: masks agree in physical space.

Issue 4's quality bar: Colin27 stored permuted, flipped, oblique and anisotropic gives masks that agree
with the straight storage with Dice >= 0.98. To keep the test fast Colin27 is first resampled to
1.5 mm and the model runs in fast mode; each mask is compared at the voxel centres of the other storage.
Skipped until ``BrainExtractionT1`` is in the registry.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from MedAICommonLib.models import ModelRegistry
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume
from MedAISegmentationLib.logic import MedAISegmentationLogic
from MedAISegmentationLib.modelinference import loadSegmentationModel

MODEL = "BrainExtractionT1"
pytestmark = pytest.mark.skipif(MODEL not in ModelRegistry.load(), reason=f"{MODEL} is not in the registry yet")


def resampled(image: sitk.Image, spacing, direction=None, margin: float = 0.0) -> sitk.Image:
    """``image`` on a grid of ``spacing`` (mm) and ``direction`` (LPS) covering it (plus ``margin`` mm), linear."""
    direction = np.eye(3) if direction is None else np.asarray(direction)
    size = np.array(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
                        for corner in np.array(np.meshgrid(*[[0, n - 1] for n in size])).reshape(3, -1).T])  # fmt: skip
    local = corners @ direction  # coordinates along the new axes
    low, high = local.min(0) - margin, local.max(0) + margin
    grid = sitk.Image([int(n) for n in np.floor((high - low) / spacing) + 1], image.GetPixelID())
    grid.SetSpacing([float(s) for s in spacing])
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((direction @ low).tolist())
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0)


@pytest.fixture(scope="module")
def colin(tmp_path_factory):
    import slicer

    scene = slicer.vtkMRMLScene()
    image = resampled(sitkImageFromVolume(loadSampleData(scene, "Colin27")), (1.5, 1.5, 1.5))
    return scene, image, loadSegmentationModel(MODEL, "cpu")


def rotated(image: sitk.Image, rotation: np.ndarray) -> sitk.Image:
    """``image`` on a grid of its own size and spacing turned by ``rotation`` about its centre.

    The field of view keeps its size, as an oblique acquisition would: the percentiles that scale
    the intensities see about as much background as in the straight storage.
    """
    grid = sitk.Image(image.GetSize(), image.GetPixelID())
    grid.SetSpacing(image.GetSpacing())
    direction = rotation @ np.asarray(image.GetDirection()).reshape(3, 3)
    grid.SetDirection(direction.ravel().tolist())
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    halfSize = direction @ (np.asarray(image.GetSpacing()) * (np.asarray(image.GetSize()) - 1) / 2)
    grid.SetOrigin((centre - halfSize).tolist())
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0)


def storages(image: sitk.Image) -> dict[str, sitk.Image]:
    rotation = Rotation.from_euler("xyz", [18, -12, 25], degrees=True).as_matrix()
    return {
        "permuted and flipped": sitk.Flip(sitk.PermuteAxes(image, [2, 0, 1]), [True, False, True]),
        "oblique": rotated(image, rotation),
        "anisotropic 1.5x1.5x3": resampled(image, (1.5, 1.5, 3.0)),
        "anisotropic 3x1.5x1.5, flipped": sitk.Flip(resampled(image, (3.0, 1.5, 1.5)), [False, True, False]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "permuted and flipped",
        # Known failure (issue 4 stays open): the shipped model over-segments where the rotated grid cut the
        # scalp off or added background (Dice 0.91-0.93; a zero-padded straight copy gives 0.91 too), so the
        # model, not the geometry, is what is not invariant. Strict: passing would flag the fix.
        pytest.param("oblique", marks=pytest.mark.xfail(strict=True, reason="model sensitive to field of view")),
        "anisotropic 1.5x1.5x3",
        "anisotropic 3x1.5x1.5, flipped",
    ],
)
def test_colin27_masks_agree_in_physical_space(case, colin):
    scene, image, model = colin
    logic = MedAISegmentationLogic()
    straight = createVolumeFromSitkImage(scene, image, "Colin27 straight")
    stored = createVolumeFromSitkImage(scene, storages(image)[case], case)
    masks = []
    for node in (straight, stored):
        segmentation = logic.segmentWithModel(node, model=model, fast=True).segmentationNode
        masks.append(labelmapFromSegmentation(segmentation, stored)[0] > 0)  # both sampled on the stored grid
    assert masks[0].sum() * np.prod(stored.GetSpacing()) > 900e3  # a brain: more than 0.9 litre
    dice = 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum())
    assert dice >= 0.98, f"{case}: Dice {dice:.4f}"
