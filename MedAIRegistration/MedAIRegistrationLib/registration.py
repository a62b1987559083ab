"""Linear registration stages on SimpleITK images (pure functions, no MRML).

Every transform here follows the ITK *resampling* convention in LPS millimetres: it maps a point of
the fixed image to the matching point of the moving image, so ``SimpleITK.Resample(moving, fixed,
transform)`` puts the moving image onto the fixed grid. The MRML side (modeling "to parent", RAS)
is in :mod:`MedAIRegistrationLib.logic`, through MedAICommonLib's audited bridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError

from .settings import (
    INITIALIZATIONS,
    LINEAR_TRANSFORMS,
    METRICS,
    OPTIMIZERS,
    StageInputs,
    StageSettings,
    configure_method,
)

__all__ = [
    "LINEAR_TRANSFORMS",
    "METRICS",
    "OPTIMIZERS",
    "INITIALIZATIONS",
    "StageSettings",
    "StageInputs",
    "IterationRecord",
    "new_linear_transform",
    "initial_linear_transform",
    "run_stage",
    "run_linear_stage",
    "raise_if_cancelled",
]


@dataclass
class IterationRecord:
    """The metric value after one optimiser iteration (lower is better for every metric here)."""

    stage: int
    transform: str
    level: int
    iteration: int
    metric_value: float


def new_linear_transform(kind: str, dimension: int) -> Any:
    """An identity SimpleITK transform of a linear kind (resampling convention, LPS).

    Raises:
        MedAIInputError: an unknown kind, or projective (no SimpleITK registration supports it).
    """
    import SimpleITK as sitk

    if kind == "projective":
        if dimension == 3:
            raise MedAIInputError(
                "A projective (perspective) transform is for 2D images only; use affine for 3D volumes."
            )
        raise MedAIInputError("A projective transform is fitted by its own stage (projective.py), not as a linear one.")
    classes = {
        "translation": lambda: sitk.TranslationTransform(dimension),
        "rigid": lambda: sitk.Euler2DTransform() if dimension == 2 else sitk.Euler3DTransform(),
        "similarity": lambda: sitk.Similarity2DTransform() if dimension == 2 else sitk.Similarity3DTransform(),
        "affine": lambda: sitk.AffineTransform(dimension),
    }
    if kind not in classes:
        raise MedAIInputError(f"'{kind}' is not a linear transform; choose one of {', '.join(LINEAR_TRANSFORMS)}.")
    return classes[kind]()


def initial_linear_transform(kind: str, fixed: Any, moving: Any, initialization: str) -> Any:
    """A linear transform of ``kind`` whose centre and translation align the two images.

    Args:
        kind: one of :data:`LINEAR_TRANSFORMS`.
        fixed, moving: SimpleITK images (LPS).
        initialization: "geometry" (image centres), "moments" (centres of mass) or "none" (identity,
            centre of rotation at the fixed image centre).

    Returns:
        The transform (resampling convention, LPS).
    """
    import SimpleITK as sitk

    if initialization not in INITIALIZATIONS:
        raise MedAIInputError(f"Unknown initialization '{initialization}'; choose one of {', '.join(INITIALIZATIONS)}.")
    dimension = fixed.GetDimension()
    centred = new_linear_transform("rigid" if kind == "translation" else kind, dimension)
    if initialization == "none":
        centreIndex = [(size - 1) / 2.0 for size in fixed.GetSize()]
        centred.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint(centreIndex))
    else:
        mode = sitk.CenteredTransformInitializerFilter.MOMENTS
        if initialization == "geometry":
            mode = sitk.CenteredTransformInitializerFilter.GEOMETRY
        centred = sitk.CenteredTransformInitializer(fixed, moving, centred, mode)
    if kind != "translation":
        return centred
    shift = centred.GetTranslation() if initialization != "none" else (0.0,) * dimension
    return sitk.TranslationTransform(dimension, shift)


def run_stage(method: Any, inputs: StageInputs, stage: StageSettings, stage_index: int, progress: Any = None) -> None:
    """Execute a configured registration method, recording the metric and honouring the cancel token.

    Raises:
        MedAICancelledError: the user cancelled (the stage stops at its next iteration).
        MedAIInputError: the images do not overlap (SimpleITK found no valid metric samples).
    """
    import SimpleITK as sitk

    levels = len(stage.shrink_factors)

    def on_iteration() -> None:
        level = method.GetCurrentLevel()
        iteration = method.GetOptimizerIteration()
        value = method.GetMetricValue()
        inputs.history.append(IterationRecord(stage_index, stage.transform, level, iteration, float(value)))
        if progress is not None:
            fraction = (level + min(iteration / max(int(stage.iterations), 1), 1.0)) / levels
            progress(fraction, f"{stage.transform}: level {level + 1}/{levels}, metric {value:.4g}")
        if inputs.cancel_token is not None and inputs.cancel_token.cancelled:
            method.StopRegistration()

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        method.Execute(inputs.fixed, inputs.moving)
    except RuntimeError as error:
        text = str(error)
        if "outside" in text or "Too many samples" in text or "insufficient" in text.lower():
            raise MedAIInputError(
                "The fixed and moving images do not overlap enough to compare them; "
                "check their positions or use initialization by geometry or moments."
            ) from error
        raise
    finally:
        method.RemoveAllCommands()
    raise_if_cancelled(inputs.cancel_token)


def run_linear_stage(
    inputs: StageInputs,
    stage: StageSettings,
    stage_index: int,
    previous: Any,
    initialization: str,
    progress: Any = None,
) -> Any:
    """Run one linear stage on top of the transform found so far.

    Args:
        inputs: the images, masks, metric history and cancel token.
        stage: its settings; ``stage.transform`` is one of :data:`LINEAR_TRANSFORMS`.
        stage_index: the position of the stage in the preset (for the metric history).
        previous: the transform found by earlier stages (resampling, LPS), or None for the first stage.
        initialization: "geometry", "moments" or "none"; used only when ``previous`` is None.
        progress: ``progress(fraction, message)`` for this stage.

    Returns:
        A single linear SimpleITK transform (resampling, LPS) that includes ``previous``.

    Raises:
        MedAICancelledError, MedAIInputError: see :func:`run_stage`.
    """
    import SimpleITK as sitk

    fixed = inputs.fixed
    dimension = fixed.GetDimension()
    if previous is None:
        transform = initial_linear_transform(stage.transform, fixed, inputs.moving, initialization)
    else:
        # Each stage starts where the previous one ended: its own parameters start at identity.
        transform = new_linear_transform(stage.transform, dimension)
        if hasattr(transform, "SetCenter"):
            transform.SetCenter(_centre_of(previous, fixed))
    method = configure_method(stage, inputs.fixed_mask, inputs.moving_mask, inputs.fixed.GetNumberOfPixels())
    if previous is not None:
        method.SetMovingInitialTransform(previous)
    method.SetInitialTransform(transform, inPlace=True)
    run_stage(method, inputs, stage, stage_index, progress)
    if previous is None:
        return transform
    composite = sitk.CompositeTransform(dimension)
    composite.AddTransform(previous)
    composite.AddTransform(transform)
    return _as_single_linear(composite, dimension)


def _centre_of(transform: Any, fixed: Any) -> tuple:
    transform = transform.Downcast()
    if hasattr(transform, "GetCenter"):
        return transform.GetCenter()
    centreIndex = [(size - 1) / 2.0 for size in fixed.GetSize()]
    return fixed.TransformContinuousIndexToPhysicalPoint(centreIndex)


def _as_single_linear(composite: Any, dimension: int) -> Any:
    """Compose a chain of linear transforms into one affine transform (same mapping)."""
    import numpy as np
    import SimpleITK as sitk

    origin = np.array(composite.TransformPoint((0.0,) * dimension))
    matrix = np.empty((dimension, dimension))
    for axis in range(dimension):
        unit = [0.0] * dimension
        unit[axis] = 1.0
        matrix[:, axis] = np.array(composite.TransformPoint(tuple(unit))) - origin
    affine = sitk.AffineTransform(dimension)
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation(origin.tolist())
    return affine


def raise_if_cancelled(cancel_token: Any) -> None:
    """Stop between stages when the user cancelled."""
    if cancel_token is not None and cancel_token.cancelled:
        raise MedAICancelledError("Cancelled by the user.")
