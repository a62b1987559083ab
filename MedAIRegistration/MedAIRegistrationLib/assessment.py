"""Quality checks of a registration on MRML nodes: propagated-label Dice, landmark error, Jacobian, folding.

Works on any transform node (after a registration, or on demand). Transform nodes hold the modeling
transform "to parent" in RAS; they are turned into the ITK resampling transform (LPS) through
MedAICommonLib.transforms before measuring.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import rasToLps
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, sitkImageFromVolume

from .quality import dice_per_label, folding_fraction, jacobian_determinant_image, target_registration_error_mm

__all__ = ["labelsOnVolumeGrid", "propagateLabels", "assessTransform"]


def labelsOnVolumeGrid(labelsNode: Any, volumeNode: Any) -> tuple[np.ndarray, dict[str, int]]:
    """A label map of a segmentation or label map volume on a volume's voxel grid.

    Args:
        labelsNode: ``vtkMRMLSegmentationNode`` or ``vtkMRMLLabelMapVolumeNode`` (on the volume's grid).
        volumeNode: the volume whose grid the labels must lie on.

    Returns:
        ``(labels KJI, {name: label value})``; a label map volume's labels are named by their value.

    Raises:
        MedAIInputError: another node type, or a label map volume on another grid.
    """
    if labelsNode.IsA("vtkMRMLSegmentationNode"):
        labels, _, segments = labelmapFromSegmentation(labelsNode, volumeNode)
        return labels, {segment.name: segment.labelValue for segment in segments}
    if labelsNode.IsA("vtkMRMLLabelMapVolumeNode"):
        labels = arrayFromVolume(labelsNode)
        if labels.shape != arrayFromVolume(volumeNode).shape:
            raise MedAIInputError(
                f"The label map '{labelsNode.GetName()}' is not on the grid of '{volumeNode.GetName()}'."
            )
        return labels, {str(int(v)): int(v) for v in np.unique(labels) if v != 0}
    raise MedAIInputError(
        f"'{labelsNode.GetName()}' is a {labelsNode.GetClassName()}, not a segmentation or label map."
    )


def propagateLabels(transform: Any, movingLabelsNode: Any, movingVolumeNode: Any, fixedVolumeNode: Any):
    """Carry moving labels onto the fixed grid through a resampling transform (nearest neighbour).

    Args:
        transform: ``SimpleITK`` resampling transform, fixed LPS -> moving LPS, 3D.
        movingLabelsNode: segmentation or label map volume of the moving image.
        movingVolumeNode, fixedVolumeNode: the registered pair (their grids and parent transforms).

    Returns:
        ``(labels KJI on the fixed grid, {name: label value})``.
    """
    import SimpleITK as sitk

    movingLabels, names = labelsOnVolumeGrid(movingLabelsNode, movingVolumeNode)
    movingImage = sitkImageFromVolume(movingVolumeNode)
    labelImage = sitk.GetImageFromArray(movingLabels.astype(np.int32))
    labelImage.CopyInformation(movingImage)
    fixedImage = sitkImageFromVolume(fixedVolumeNode)
    propagated = sitk.Resample(labelImage, fixedImage, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return sitk.GetArrayFromImage(propagated), names


def _markupsPointsLps(markupsNode: Any) -> np.ndarray:
    points = [markupsNode.GetNthControlPointPositionWorld(i) for i in range(markupsNode.GetNumberOfControlPoints())]
    return rasToLps(np.array(points, dtype=float).reshape(-1, 3))


def assessTransform(
    transform: Any,
    fixedVolumeNode: Any,
    movingVolumeNode: Any,
    fixedLabelsNode: Any = None,
    movingLabelsNode: Any = None,
    fixedLandmarksNode: Any = None,
    movingLandmarksNode: Any = None,
    jacobianSpacingMm: float | None = None,
) -> tuple[dict[str, Any], Any]:
    """Measure how good a registration is.

    Args:
        transform: ``SimpleITK`` resampling transform (fixed LPS -> moving LPS), 3D.
        fixedVolumeNode, movingVolumeNode: the registered pair.
        fixedLabelsNode, movingLabelsNode: segmentations (or label maps) to compare after propagating
            the moving ones; segments are paired by name.
        fixedLandmarksNode, movingLandmarksNode: markups with the same points in the same order (RAS).
        jacobianSpacingMm: the grid spacing of the Jacobian map; None: the fixed volume's grid.

    Returns:
        ``(quality, jacobianImage)``: ``quality`` holds ``jacobianMin``, ``jacobianMax``,
        ``foldingFraction`` (share of fixed voxels with determinant <= 0), and when asked
        ``diceByLabel`` ({name: Dice}), ``meanDice``, ``treMm`` (per landmark), ``meanTreMm``;
        ``jacobianImage`` is the determinant map as a ``SimpleITK.Image`` on the fixed grid.

    Raises:
        MedAIInputError: only one of a pair is given, or landmarks are not paired.
    """
    import SimpleITK as sitk

    if bool(fixedLabelsNode) != bool(movingLabelsNode) or bool(fixedLandmarksNode) != bool(movingLandmarksNode):
        raise MedAIInputError("Give both the fixed and the moving labels (or landmarks), or neither.")
    fixedImage = sitkImageFromVolume(fixedVolumeNode)
    reference = fixedImage
    if jacobianSpacingMm:
        reference = _coarserGrid(fixedImage, float(jacobianSpacingMm))
    jacobian = jacobian_determinant_image(transform, reference)
    values = sitk.GetArrayViewFromImage(jacobian)
    quality: dict[str, Any] = {
        "jacobianMin": float(values.min()),
        "jacobianMax": float(values.max()),
        "foldingFraction": folding_fraction(jacobian),
    }
    if fixedLabelsNode:
        fixedLabels, fixedNames = labelsOnVolumeGrid(fixedLabelsNode, fixedVolumeNode)
        propagated, movingNames = propagateLabels(transform, movingLabelsNode, movingVolumeNode, fixedVolumeNode)
        common = [name for name in fixedNames if name in movingNames]
        if not common:
            raise MedAIInputError("The fixed and moving labels share no segment name, so no Dice can be measured.")
        dice = {}
        for name in common:
            score = dice_per_label(fixedLabels == fixedNames[name], propagated == movingNames[name], [1])
            dice[name] = score.get(1, 0.0)
        quality["diceByLabel"] = dice
        quality["meanDice"] = float(np.mean(list(dice.values())))
    if fixedLandmarksNode:
        errors = target_registration_error_mm(
            transform, _markupsPointsLps(fixedLandmarksNode), _markupsPointsLps(movingLandmarksNode)
        )
        quality["treMm"] = errors.tolist()
        quality["meanTreMm"] = float(errors.mean())
    return quality, jacobian


def _coarserGrid(image: Any, spacingMm: float) -> Any:
    import SimpleITK as sitk

    size = [max(1, round(n * s / spacingMm)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    spacing = [n * s / m for n, s, m in zip(image.GetSize(), image.GetSpacing(), size)]
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    return reference
