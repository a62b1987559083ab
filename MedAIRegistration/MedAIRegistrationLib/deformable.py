"""Deformable registration stages on SimpleITK images: B-spline free-form and diffeomorphic demons.

Both run on top of the linear transform found before them and return a SimpleITK composite in the
ITK *resampling* convention (LPS): a fixed-space point is first displaced by the deformable part,
then mapped by the linear part into the moving image.
"""

from __future__ import annotations

from typing import Any

from .registration import IterationRecord, raise_if_cancelled, run_stage
from .settings import StageInputs, StageSettings, configure_method

__all__ = ["run_bspline_stage", "run_demons_stage", "compose"]


def compose(linear: Any, deformable: Any) -> Any:
    """The composite "deformable first, then linear" (resampling convention, LPS)."""
    import SimpleITK as sitk

    composite = sitk.CompositeTransform(linear.GetDimension())
    composite.AddTransform(linear)
    # ITK applies the last transform added first.
    composite.AddTransform(deformable)
    return composite


def run_bspline_stage(
    inputs: StageInputs, stage: StageSettings, stage_index: int, previous: Any, progress: Any = None
) -> Any:
    """A cubic B-spline free-form deformation on top of ``previous`` (a linear transform or None).

    The control points lie ``stage.grid_spacing_mm`` apart over the fixed image; each pyramid level
    doubles the control grid (SimpleITK's multi-resolution B-spline), so the last level has a
    spacing of ``grid_spacing_mm / 2 ** (levels - 1)``.

    Returns:
        The composite transform (resampling, LPS) ending with the ``SimpleITK.BSplineTransform``.

    Raises:
        MedAICancelledError, MedAIInputError: see :func:`MedAIRegistrationLib.registration.run_stage`.
    """
    import SimpleITK as sitk

    fixed = inputs.fixed
    levels = len(stage.shrink_factors)
    coarseSpacingMm = float(stage.grid_spacing_mm)
    extentMm = [size * spacing for size, spacing in zip(fixed.GetSize(), fixed.GetSpacing())]
    meshSize = [max(1, round(extent / coarseSpacingMm)) for extent in extentMm]
    bspline = sitk.BSplineTransformInitializer(fixed, meshSize, order=3)
    method = configure_method(stage, inputs.fixed_mask, inputs.moving_mask, inputs.fixed.GetNumberOfPixels())
    if previous is not None:
        method.SetMovingInitialTransform(previous)
    method.SetInitialTransformAsBSpline(bspline, inPlace=True, scaleFactors=[2**level for level in range(levels)])
    run_stage(method, inputs, stage, stage_index, progress)
    return bspline if previous is None else compose(previous, bspline)


def run_demons_stage(
    inputs: StageInputs, stage: StageSettings, stage_index: int, previous: Any, progress: Any = None
) -> Any:
    """A dense displacement field by diffeomorphic demons, coarse to fine, on top of ``previous``.

    The moving image is first resampled onto the fixed grid through ``previous`` and its histogram
    matched to the fixed one (demons compares intensities directly, so it suits one modality). The
    field is computed on the fixed grid shrunk by ``stage.shrink_factors`` and carried up level by
    level; it is returned on the last level's grid. Voxels outside ``fixed_mask`` are set to zero
    in both images, so that the field follows the masked structure only.

    Returns:
        The composite transform (resampling, LPS) ending with a ``SimpleITK.DisplacementFieldTransform``.

    Raises:
        MedAICancelledError: the user cancelled.
    """
    import SimpleITK as sitk

    fixed = inputs.fixed
    identity = sitk.Transform(fixed.GetDimension(), sitk.sitkIdentity)
    region, inside = fixed, None
    if inputs.fixed_mask is not None:
        inside = sitk.Cast(
            sitk.Resample(inputs.fixed_mask, fixed, identity, sitk.sitkNearestNeighbor) > 0, sitk.sitkUInt8
        )
        region, inside = _mask_box(fixed, inside, max(stage.shrink_factors))
    fixedFloat = sitk.Cast(region, sitk.sitkFloat32)
    movingOnFixed = sitk.Resample(inputs.moving, region, previous or identity, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    movingOnFixed = sitk.HistogramMatching(movingOnFixed, fixedFloat, 256, 15, True)
    if inside is not None:
        inside = sitk.Cast(inside, sitk.sitkFloat32)
        fixedFloat, movingOnFixed = fixedFloat * inside, movingOnFixed * inside
    field = None
    levels = len(stage.shrink_factors)
    for level, (shrink, sigmaMm) in enumerate(zip(stage.shrink_factors, stage.smoothing_mm)):
        fixedLevel = _pyramid_level(fixedFloat, int(shrink), float(sigmaMm))
        movingLevel = _pyramid_level(movingOnFixed, int(shrink), float(sigmaMm))
        if field is not None:
            field = sitk.Resample(field, fixedLevel, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
        field = _demons_level(fixedLevel, movingLevel, field, inputs, stage, stage_index, level)
        if progress is not None:
            progress((level + 1) / levels, f"deformable: level {level + 1}/{levels}")
    if region is not fixed:  # back onto the whole (last level's) fixed grid, no displacement outside the box
        whole = _pyramid_level(sitk.Cast(fixed, sitk.sitkFloat32), int(stage.shrink_factors[-1]), 0.0)
        field = sitk.Resample(field, whole, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
    displacement = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    return displacement if previous is None else compose(previous, displacement)


def _mask_box(fixed: Any, inside: Any, coarsestShrink: int) -> tuple[Any, Any]:
    """The fixed image and its mask cropped to the mask's bounding box plus a margin (same voxels and spacing).

    Voxels outside the mask are zeroed in both images, so demons has nothing to match there: the field
    only spreads into them by its smoothing. Computing it on the box alone saves most of the work on
    a skull-stripped atlas (a 1 mm MNI152 brain fills 40 per cent of its grid). The margin, 4 voxels
    of the coarsest level, lets the smoothed field fall towards zero before the box ends.

    Args:
        fixed: the fixed image; inside: its mask on the same grid (uint8, 1 inside).

    Returns:
        ``(fixed, inside)`` cropped; both unchanged when the mask is empty.
    """
    import numpy as np
    import SimpleITK as sitk

    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(inside)
    if not statistics.HasLabel(1):
        return fixed, inside
    box = statistics.GetBoundingBox(1)
    dims = fixed.GetDimension()
    margin = 4 * int(coarsestShrink)
    low = np.maximum(np.array(box[:dims]) - margin, 0)
    high = np.minimum(np.array(box[:dims]) + np.array(box[dims:]) + margin, fixed.GetSize())
    size, index = [int(n) for n in high - low], [int(n) for n in low]
    return sitk.RegionOfInterest(fixed, size, index), sitk.RegionOfInterest(inside, size, index)


def _pyramid_level(image: Any, shrink: int, sigmaMm: float) -> Any:
    import SimpleITK as sitk

    if sigmaMm > 0:
        image = sitk.SmoothingRecursiveGaussian(image, sigmaMm)
    return sitk.Shrink(image, [shrink] * image.GetDimension()) if shrink > 1 else image


def _demons_level(
    fixed: Any, moving: Any, field: Any, inputs: StageInputs, stage: StageSettings, stage_index: int, level: int
) -> Any:
    import SimpleITK as sitk

    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    iterations = stage.level_iterations[level] if stage.level_iterations else stage.iterations
    demons.SetNumberOfIterations(int(iterations))
    demons.SetSmoothDisplacementField(True)
    demons.SetStandardDeviations(float(stage.field_smoothing_voxels))
    if stage.update_smoothing_voxels > 0:
        demons.SetSmoothUpdateField(True)
        demons.SetUpdateFieldStandardDeviations(float(stage.update_smoothing_voxels))
    demons.SetUseGradientType(demons.Symmetric)

    def on_iteration() -> None:
        inputs.history.append(
            IterationRecord(stage_index, stage.transform, level, demons.GetElapsedIterations(), demons.GetMetric())
        )
        if inputs.cancel_token is not None and inputs.cancel_token.cancelled:
            demons.StopRegistration()

    demons.AddCommand(sitk.sitkIterationEvent, on_iteration)
    if field is None:
        field = demons.Execute(fixed, moving)
    else:
        field = demons.Execute(fixed, moving, field)
    raise_if_cancelled(inputs.cancel_token)
    return field
