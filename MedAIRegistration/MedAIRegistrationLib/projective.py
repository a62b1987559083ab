"""Projective (perspective, homography) registration of 2D images, optimised with torch's L-BFGS.

SimpleITK has no projective transform, so this stage fits the eight parameters of a 3x3 homography
itself: the fixed pixel centres (LPS mm) are mapped by the homography, then by the linear transform
found by the stages before it, and the moving image is sampled there (bilinear). The metric is mean
squares or global normalised cross-correlation ("mi" uses the correlation: this stage refines an
alignment that earlier mutual-information stages found). The result is returned as a 2D
``SimpleITK.DisplacementFieldTransform`` on the fixed grid (ITK resampling convention, LPS), exact
at every pixel centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

from .registration import IterationRecord, raise_if_cancelled
from .settings import StageInputs, StageSettings

__all__ = ["run_projective_stage", "homography_points"]


def homography_points(parameters: Any, points: Any) -> Any:
    """Map N x 2 points (normalised frame) by the homography whose first eight entries are ``parameters``
    added to the identity (row-major, the last entry fixed at 1). Works on numpy arrays and torch tensors."""
    h = parameters
    denominator = 1.0 + h[6] * points[:, 0] + h[7] * points[:, 1]
    x = ((1.0 + h[0]) * points[:, 0] + h[1] * points[:, 1] + h[2]) / denominator
    y = (h[3] * points[:, 0] + (1.0 + h[4]) * points[:, 1] + h[5]) / denominator
    return x, y


def _physical_points(image: Any) -> np.ndarray:
    """Pixel centres of a 2D image in LPS mm, N x 2, row-major (y slowest), as GetArrayFromImage orders them."""
    size = image.GetSize()
    j, i = np.meshgrid(np.arange(size[1]), np.arange(size[0]), indexing="ij")
    indices = np.stack([i.ravel(), j.ravel()], axis=1).astype(float)
    to_physical = np.array(image.GetDirection()).reshape(2, 2) @ np.diag(image.GetSpacing())
    return indices @ to_physical.T + np.array(image.GetOrigin())


def _linear_parts(previous: Any) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset of a linear resampling transform (y = M x + t), 2D."""
    origin = np.array(previous.TransformPoint((0.0, 0.0)))
    matrix = np.stack([np.array(previous.TransformPoint(tuple(e))) - origin for e in np.eye(2)], axis=1)
    return matrix, origin


def _metric(warped: Any, fixed: Any, inside: Any, metric: str) -> Any:
    warped, fixed, inside = warped[inside], fixed[inside], inside
    if metric == "mse":
        return (warped - fixed).pow(2).mean()
    warped, fixed = warped - warped.mean(), fixed - fixed.mean()
    return -(warped * fixed).sum() / (warped.norm() * fixed.norm()).clamp_min(1e-12)


def run_projective_stage(
    inputs: StageInputs, stage: StageSettings, stage_index: int, previous: Any, progress: Any = None
) -> Any:
    """Fit a homography on top of the linear transform ``previous`` (2D images only).

    Args:
        inputs: 2D fixed and moving images (LPS), metric history, cancel token, optional fixed mask.
        stage: ``shrink_factors``/``smoothing_mm`` (pyramid), ``iterations`` (L-BFGS iterations per
            level), ``metric`` (mse; ncc or mi use the correlation).
        previous: the linear resampling transform found so far (LPS), or None (identity).
        progress: ``progress(fraction, message)`` for this stage.

    Returns:
        A 2D ``SimpleITK.DisplacementFieldTransform`` (resampling, LPS) that includes ``previous``.

    Raises:
        MedAIInputError: 3D images, a non-linear ``previous``, or a degenerate fit.
        MedAICancelledError: the user cancelled.
    """
    import SimpleITK as sitk
    import torch

    fixed, moving = inputs.fixed, inputs.moving
    if fixed.GetDimension() != 2:
        raise MedAIInputError("A projective (perspective) transform is for 2D images only; use affine for 3D volumes.")
    if previous is not None and not previous.IsLinear():
        raise MedAIInputError("The projective stage must follow linear stages only.")
    matrix, offset = _linear_parts(previous) if previous is not None else (np.eye(2), np.zeros(2))
    points = _physical_points(fixed)
    centre, scale = points.mean(axis=0), float(np.ptp(points, axis=0).max()) / 2.0
    mask = None if inputs.fixed_mask is None else sitk.GetArrayFromImage(inputs.fixed_mask).ravel() > 0
    parameters = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    levels = len(stage.shrink_factors)
    for level, (shrink, sigma_mm) in enumerate(zip(stage.shrink_factors, stage.smoothing_mm)):
        fixed_level, moving_level = fixed, moving
        if sigma_mm > 0:
            fixed_level = sitk.SmoothingRecursiveGaussian(fixed, float(sigma_mm))
            moving_level = sitk.SmoothingRecursiveGaussian(moving, float(sigma_mm))
        # Every shrink-th pixel of the fixed image (inside the mask) takes part at this level.
        size = fixed.GetSize()
        chosen = (np.arange(size[1])[:: int(shrink), None] * size[0] + np.arange(size[0])[None, :: int(shrink)]).ravel()
        if mask is not None:
            chosen = chosen[mask[chosen]]
        problem = {
            "points": torch.from_numpy((points[chosen] - centre) / scale),
            "fixed": torch.from_numpy(sitk.GetArrayFromImage(fixed_level).astype(np.float64).ravel()[chosen]),
            "moving": torch.from_numpy(sitk.GetArrayFromImage(moving_level).astype(np.float64))[None, None],
            "toMoving": _to_moving_grid(moving, centre, scale, matrix, offset),
        }
        _fit_level(parameters, problem, inputs, stage, stage_index, level)
        if progress is not None:
            progress((level + 1) / levels, f"projective: level {level + 1}/{levels}")
    return _as_field(parameters.detach().numpy(), points, centre, scale, matrix, offset, fixed)


def _to_moving_grid(moving: Any, centre: np.ndarray, scale: float, matrix: np.ndarray, offset: np.ndarray):
    """(A, b) taking a homography output (normalised frame) to grid_sample's -1..1 coordinates of the moving image."""
    # normalised -> LPS (x scale + centre) -> previous linear (matrix, offset) -> moving index -> -1..1.
    to_index = np.linalg.inv(np.array(moving.GetDirection()).reshape(2, 2) @ np.diag(moving.GetSpacing()))
    to_unit = np.diag(2.0 / (np.array(moving.GetSize(), dtype=float) - 1.0))
    linear = to_unit @ to_index @ matrix * scale
    shift = to_unit @ to_index @ (matrix @ centre + offset - np.array(moving.GetOrigin())) - 1.0
    return linear, shift


def _fit_level(parameters: Any, problem: dict, inputs: StageInputs, stage: StageSettings, stage_index: int, level: int):
    """L-BFGS (strong Wolfe line search) on the homography parameters at one pyramid level."""
    import torch
    import torch.nn.functional as F

    linear, shift = (torch.from_numpy(a) for a in problem["toMoving"])
    optimiser = torch.optim.LBFGS([parameters], lr=1.0, max_iter=int(stage.iterations), line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimiser.zero_grad()
        x, y = homography_points(parameters, problem["points"])
        grid = (torch.stack([x, y], dim=1) @ linear.T + shift).view(1, 1, -1, 2)
        warped = F.grid_sample(problem["moving"], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        inside = (grid.abs() <= 1.0).all(dim=-1).view(-1)
        if int(inside.sum()) < 16:
            raise MedAIInputError("The projective fit moved the moving image out of view; start from an affine stage.")
        loss = _metric(warped.view(-1), problem["fixed"], inside, stage.metric)
        loss.backward()
        value = float(loss.detach())
        inputs.history.append(IterationRecord(stage_index, stage.transform, level, len(inputs.history), value))
        raise_if_cancelled(inputs.cancel_token)
        return loss

    optimiser.step(closure)


def _as_field(parameters, points, centre, scale, matrix, offset, fixed) -> Any:
    import SimpleITK as sitk

    x, y = homography_points(parameters, (points - centre) / scale)
    mapped = np.stack([x, y], axis=1) * scale + centre
    moved = mapped @ matrix.T + offset
    if not np.all(np.isfinite(moved)):
        raise MedAIInputError("The projective fit is degenerate (a point maps to infinity); use affine instead.")
    size = fixed.GetSize()
    displacement = (moved - points).reshape(size[1], size[0], 2)
    field = sitk.GetImageFromArray(displacement, isVector=True)
    field.CopyInformation(fixed)
    return sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
