"""A chain of registration stages on SimpleITK images (pure functions, no MRML).

The result is in the ITK *resampling* convention (LPS mm): it maps fixed-space points to moving-space
points. :func:`register_images` is what the MRML logic and the benchmarks call.
"""

from __future__ import annotations

from typing import Any

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import subProgress

from .deformable import run_bspline_stage, run_demons_stage
from .projective import run_projective_stage
from .registration import LINEAR_TRANSFORMS, IterationRecord, StageSettings, raise_if_cancelled, run_linear_stage
from .settings import StageInputs
from .svf import run_svf_stage

__all__ = ["register_images", "check_images"]


def check_images(fixed: Any, moving: Any, fixed_mask: Any = None, moving_mask: Any = None) -> None:
    """Refuse inputs that cannot be registered, with one sentence naming the problem.

    Raises:
        MedAIInputError: dimensions differ, NaN or infinite voxels, a constant image, or an empty mask.
    """
    import numpy as np
    import SimpleITK as sitk

    if fixed.GetDimension() != moving.GetDimension():
        raise MedAIInputError(
            f"The fixed image is {fixed.GetDimension()}D and the moving image {moving.GetDimension()}D; "
            "register 2D with 2D and 3D with 3D."
        )
    for image, what in ((fixed, "fixed image"), (moving, "moving image")):
        values = sitk.GetArrayViewFromImage(image)
        if not np.all(np.isfinite(values)):
            raise MedAIInputError(f"The {what} contains NaN or infinite voxels; replace them before registering.")
        if values.min() == values.max():
            raise MedAIInputError(f"The {what} is constant ({values.flat[0]}); it holds nothing to align.")
    for mask, what in ((fixed_mask, "fixed mask"), (moving_mask, "moving mask")):
        if mask is not None and not np.any(sitk.GetArrayViewFromImage(mask)):
            raise MedAIInputError(f"The {what} is empty (no voxel inside); select a mask that covers the structure.")


def _check_overlap(fixed: Any, moving: Any, initial_transform: Any, initialization: str) -> None:
    """Without an initialization that aligns centres, the two physical boxes must overlap."""
    import numpy as np

    if initialization != "none":
        return

    def box(image: Any) -> tuple:
        corners = np.array(
            [
                image.TransformIndexToPhysicalPoint([c * (s - 1) for c, s in zip(corner, image.GetSize())])
                for corner in np.ndindex(*(2,) * image.GetDimension())
            ]
        )
        return corners.min(axis=0), corners.max(axis=0)

    fixedLow, fixedHigh = box(fixed)
    if initial_transform is not None:
        corners = [initial_transform.TransformPoint(tuple(p)) for p in (fixedLow, fixedHigh)]
        fixedLow, fixedHigh = np.min(corners, axis=0), np.max(corners, axis=0)
    movingLow, movingHigh = box(moving)
    if np.any(fixedHigh < movingLow) or np.any(movingHigh < fixedLow):
        raise MedAIInputError(
            "The fixed and moving images do not overlap in space; use initialization by geometry or moments, "
            "or an initial transform that brings them together."
        )


def register_images(
    fixed: Any,
    moving: Any,
    stages: list[StageSettings],
    initialization: str = "geometry",
    fixed_mask: Any = None,
    moving_mask: Any = None,
    initial_transform: Any = None,
    progress: Any = None,
    cancel_token: Any = None,
) -> tuple[Any, list[IterationRecord]]:
    """Register ``moving`` onto ``fixed`` through a chain of stages.

    Args:
        fixed, moving: SimpleITK images of the same dimension (2 or 3), LPS geometry.
        stages: the chain (see :mod:`MedAIRegistrationLib.presets`); linear stages come first.
        initialization: "geometry", "moments" or "none" (ignored when ``initial_transform`` is given).
        fixed_mask, moving_mask: optional SimpleITK masks on the images' grids (non-zero inside).
        initial_transform: optional linear resampling transform (LPS) to start from.
        progress: ``progress(fraction, message)``, fraction 0-1 of the whole chain.
        cancel_token: a :class:`MedAICommonLib.jobs.CancelToken`, checked at every iteration.

    Returns:
        ``(transform, history)``: the resampling transform (fixed LPS -> moving LPS; linear, or a
        composite ending with a B-spline or displacement field) and the metric per iteration.

    Raises:
        MedAIInputError: bad inputs (see :func:`check_images`), images that do not overlap, a
            deformable stage before a linear one, or a non-linear initial transform.
        MedAICancelledError: the user cancelled.
    """
    import SimpleITK as sitk

    check_images(fixed, moving, fixed_mask, moving_mask)
    if initial_transform is not None and not initial_transform.IsLinear():
        raise MedAIInputError("The initial transform must be linear (translation, rigid, similarity or affine).")
    _check_overlap(fixed, moving, initial_transform, initialization)
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    masks = [None if m is None else sitk.Cast(m != 0, sitk.sitkUInt8) for m in (fixed_mask, moving_mask)]
    inputs = StageInputs(fixed, moving, [], masks[0], masks[1], cancel_token)
    transform = initial_transform
    for index, stage in enumerate(stages):
        raise_if_cancelled(cancel_token)
        stageProgress = subProgress(progress, index / len(stages), (index + 1) / len(stages))
        if stage.transform in LINEAR_TRANSFORMS:
            if transform is not None and not transform.IsLinear():
                raise MedAIInputError("Linear stages must come before the B-spline or deformable stage.")
            transform = run_linear_stage(inputs, stage, index, transform, initialization, stageProgress)
        elif stage.transform == "projective":
            transform = run_projective_stage(inputs, stage, index, transform, stageProgress)
        elif stage.transform == "bspline":
            transform = run_bspline_stage(inputs, stage, index, transform, stageProgress)
        elif stage.method == "learned":
            # Imported here: the learned stage needs torch and its model only when a preset asks for it.
            from .learned import run_learned_stage

            transform = run_learned_stage(inputs, stage, index, transform, stageProgress)
        elif stage.method == "svf" and fixed.GetDimension() == 3:
            transform = run_svf_stage(inputs, stage, index, transform, stageProgress)
        else:
            transform = run_demons_stage(inputs, stage, index, transform, stageProgress)
    if progress is not None:
        progress(1.0, "Registration done.")
    return transform, inputs.history
