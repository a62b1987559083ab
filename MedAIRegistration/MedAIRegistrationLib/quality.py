"""Quality checks of a registration result (pure numpy and SimpleITK, no MRML).

Transforms are SimpleITK transforms in the ITK *resampling* convention (LPS mm): they map fixed-space
points to moving-space points. Points are LPS millimetres unless a name says otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "dice_per_label",
    "target_registration_error_mm",
    "displacement_field_image",
    "jacobian_determinant_image",
    "folding_fraction",
    "inverse_consistency_error_mm",
]


def dice_per_label(reference: np.ndarray, propagated: np.ndarray, labels: list[int] | None = None) -> dict[int, float]:
    """Dice overlap per label value of two label arrays on the same grid.

    Args:
        reference: the fixed image's labels (integers, 0 = background).
        propagated: the moving labels carried onto the fixed grid by the registration.
        labels: the label values to report; default every non-zero value in either array.

    Returns:
        ``{label: dice}``; a label absent from both arrays is left out.

    Raises:
        MedAIInputError: the arrays differ in shape.
    """
    reference, propagated = np.asarray(reference), np.asarray(propagated)
    if reference.shape != propagated.shape:
        raise MedAIInputError(f"Label arrays differ in shape: {reference.shape} and {propagated.shape}.")
    if labels is None:
        labels = sorted(set(np.unique(reference)) | set(np.unique(propagated)) - {0})
    scores = {}
    for label in labels:
        inReference, inPropagated = reference == label, propagated == label
        total = int(inReference.sum()) + int(inPropagated.sum())
        if total:
            scores[int(label)] = 2.0 * float(np.logical_and(inReference, inPropagated).sum()) / total
    return scores


def target_registration_error_mm(transform: Any, fixed_points: Any, moving_points: Any) -> np.ndarray:
    """Distance from each moving landmark to where the transform maps its paired fixed landmark.

    Args:
        transform: the resampling transform (fixed LPS -> moving LPS).
        fixed_points, moving_points: N x D arrays of paired points, LPS mm (D = transform dimension).

    Returns:
        N distances in mm.

    Raises:
        MedAIInputError: the point lists differ in length or are empty.
    """
    fixedPoints, movingPoints = np.asarray(fixed_points, float), np.asarray(moving_points, float)
    if fixedPoints.shape != movingPoints.shape or fixedPoints.size == 0:
        raise MedAIInputError(
            f"Landmarks must be paired: got {len(fixedPoints)} fixed and {len(movingPoints)} moving point(s)."
        )
    mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in fixedPoints])
    return np.linalg.norm(mapped - movingPoints, axis=1)


def displacement_field_image(transform: Any, reference: Any) -> Any:
    """The displacement ``T(x) - x`` (LPS mm) of a transform on the grid of ``reference`` (vector image)."""
    import SimpleITK as sitk

    toField = sitk.TransformToDisplacementFieldFilter()
    toField.SetReferenceImage(reference)
    toField.SetOutputPixelType(sitk.sitkVectorFloat64)
    return toField.Execute(transform)


def jacobian_determinant_image(transform: Any, reference: Any) -> Any:
    """The Jacobian determinant of the resampling transform on the grid of ``reference``.

    Values above 1 mean fixed-space volume maps to more moving-space volume (the moving image is
    locally shrunk when aligned); values at or below 0 mean the transform folds there.

    Returns:
        A float ``SimpleITK.Image`` on the reference grid.
    """
    import SimpleITK as sitk

    if transform.IsLinear():
        # Exact: finite differences would blur the constant determinant at the image border.
        dimension = transform.GetDimension()
        origin = np.array(transform.TransformPoint((0.0,) * dimension))
        columns = [np.array(transform.TransformPoint(tuple(np.eye(dimension)[i]))) - origin for i in range(dimension)]
        determinant = sitk.Image(reference.GetSize(), sitk.sitkFloat64) + float(np.linalg.det(np.array(columns).T))
        determinant.CopyInformation(reference)
        return determinant
    field = displacement_field_image(transform, reference)
    if reference.GetDimension() == 3 and reference.GetSize()[2] == 1:
        # A 2D image held as one slice: finite differences across a single slice are meaningless.
        planar = sitk.Compose([sitk.VectorIndexSelectionCast(field, c)[:, :, 0] for c in (0, 1)])
        determinant = sitk.JoinSeries(sitk.DisplacementFieldJacobianDeterminant(planar))
        determinant.CopyInformation(reference)
        return determinant
    return sitk.DisplacementFieldJacobianDeterminant(field)


def folding_fraction(jacobian: Any, mask: Any = None) -> float:
    """Share (0-1) of the voxels where the Jacobian determinant is at or below zero.

    Args:
        jacobian: a SimpleITK image or numpy array of determinants.
        mask: optional array or image of the same shape; only non-zero voxels count.
    """
    import SimpleITK as sitk

    values = sitk.GetArrayFromImage(jacobian) if isinstance(jacobian, sitk.Image) else np.asarray(jacobian)
    if mask is not None:
        inside = sitk.GetArrayFromImage(mask) if isinstance(mask, sitk.Image) else np.asarray(mask)
        values = values[inside != 0]
    if values.size == 0:
        return 0.0
    return float(np.count_nonzero(values <= 0)) / values.size


def inverse_consistency_error_mm(forward: Any, backward: Any, reference: Any, max_points: int = 20000) -> float:
    """Mean distance |B(F(x)) - x| in mm over points of the reference grid.

    Args:
        forward: resampling transform fixed -> moving (registration of moving onto fixed).
        backward: resampling transform moving -> fixed (registration of fixed onto moving).
        reference: the fixed image; up to ``max_points`` of its voxel centres are used, evenly spread.

    Returns:
        The mean round-trip error in mm (0 for a perfectly consistent pair).
    """
    size = np.array(reference.GetSize())
    step = max(1, int(np.ceil((size.prod() / max_points) ** (1.0 / len(size)))))
    axes = [np.arange(0, n, step) for n in size]
    indices = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(size))
    errors = []
    for index in indices:
        point = reference.TransformContinuousIndexToPhysicalPoint(tuple(float(i) for i in index))
        roundTrip = backward.TransformPoint(forward.TransformPoint(point))
        errors.append(np.linalg.norm(np.subtract(roundTrip, point)))
    return float(np.mean(errors))
