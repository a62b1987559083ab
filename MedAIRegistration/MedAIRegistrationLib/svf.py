"""Symmetric diffeomorphic registration: a stationary velocity field optimised with torch on local NCC.

The velocity field ``v`` lives on a grid coarser than the image; the fixed image is pulled halfway
by ``exp(-v/2)`` and the moving image halfway by ``exp(v/2)`` (scaling and squaring), and a normalised
gradient ascent (the largest update moves a set number of voxels, as in ANTs) maximises their local
normalised cross-correlation in that middle space, with a Gaussian-like smoothing of ``v`` and a
diffusion penalty on it. The fixed-to-moving mapping is then ``exp(v)``, invertible by construction (its inverse is
``exp(-v)``). Coarse to fine; torch on the CPU (or a GPU if the stage asks for one).

Displacements inside this file are in grid_sample's normalised coordinates (-1..1 corner to corner,
x = I, y = J, z = K), which are the same on every pyramid level because each level keeps the corners
of the fixed grid. The returned transform follows the ITK resampling convention (LPS mm).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .registration import IterationRecord, raise_if_cancelled
from .settings import StageInputs, StageSettings

__all__ = ["run_svf_stage", "box_mean", "local_ncc", "exponential"]

_SEED = 20261122


def box_mean(image: Any, radius: int) -> Any:
    """Mean over a (2r+1)^3 window (zeros outside), by cumulative sums: O(1) per voxel whatever r."""
    import torch.nn.functional as F

    width = 2 * radius + 1
    for dim in (2, 3, 4):
        length = image.shape[dim]
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (4 - dim)], pad[2 * (4 - dim) + 1] = radius + 1, radius
        summed = F.pad(image, pad).cumsum(dim)
        image = (summed.narrow(dim, width, length) - summed.narrow(dim, 0, length)) / width
    return image


def local_ncc(a: Any, b: Any, radius: int, weight: Any = None) -> Any:
    """Mean squared local correlation (0..1, 1 = locally linear intensities) of two (1,1,D,H,W) tensors."""
    import torch

    means = box_mean(torch.cat([a, b, a * a, b * b, a * b], 1), radius)
    ma, mb, maa, mbb, mab = means.unbind(1)
    covariance = mab - ma * mb
    variances = (maa - ma * ma).clamp_min(0) * (mbb - mb * mb).clamp_min(0)
    correlation = covariance * covariance / (variances + 1e-5)
    if weight is None:
        return correlation.mean()
    weight = weight[:, 0]
    return (correlation * weight).sum() / weight.sum().clamp_min(1.0)


def _identity_grid(shape: tuple, device: Any) -> Any:
    import torch

    axes = [torch.linspace(-1.0, 1.0, n, device=device) for n in shape]
    k, j, i = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([i, j, k], dim=-1)[None]


def _pull(image: Any, displacement: Any, grid: Any) -> Any:
    """``image(x + displacement(x))``; image (1,C,D,H,W), displacement (1,3,D,H,W) normalised."""
    import torch.nn.functional as F

    return F.grid_sample(
        image, grid + displacement.permute(0, 2, 3, 4, 1), mode="bilinear", padding_mode="border", align_corners=True
    )


def exponential(velocity: Any, grid: Any, steps: int = 6) -> Any:
    """The displacement of ``exp(velocity)`` by scaling and squaring (normalised units, same grid)."""
    displacement = velocity / (2**steps)
    for _ in range(steps):
        displacement = displacement + _pull(displacement, displacement, grid)
    return displacement


def _exponential_through(velocity: Any, grid: Any, steps: int) -> Any:
    """``exp(velocity)`` whose gradient is passed straight to the velocity (the log-domain demons
    approximation d exp(v)/dv ~ identity): the scaling and squaring stays out of the backward pass."""
    import torch

    with torch.no_grad():
        value = exponential(velocity, grid, steps)
    return value + (velocity - velocity.detach())


def _resize(tensor: Any, shape: tuple) -> Any:
    import torch.nn.functional as F

    if tuple(tensor.shape[2:]) == tuple(shape):
        return tensor
    return F.interpolate(tensor, size=tuple(shape), mode="trilinear", align_corners=True)


def _level_shape(shape: tuple, shrink: float) -> tuple:
    return tuple(max(4, int(round((n - 1) / shrink)) + 1) for n in shape)


def _normalised(image: Any, mask: Any) -> np.ndarray:
    values = np.asarray(image, dtype=np.float32)
    inside = values[mask > 0] if mask is not None else values[values > values.min()]
    low, high = np.percentile(inside if inside.size else values, [0.5, 99.5])
    return np.clip((values - low) / max(high - low, 1e-6), -0.5, 1.5).astype(np.float32)


def _diffusion(velocity_voxels: Any) -> Any:
    total = 0.0
    for dim in (2, 3, 4):
        total = total + velocity_voxels.diff(dim=dim).pow(2).mean()
    return total


def _smoothed(velocity: Any, sigma_voxels: float) -> Any:
    """Approximately Gaussian smoothing (sigma in voxels) by repeated box means of radius 1 (variance 2/3 each)."""
    passes = int(round(1.5 * sigma_voxels * sigma_voxels))
    for _ in range(passes):
        velocity = box_mean(velocity, 1)
    return velocity


def _optimise_level(fixed, moving, velocity, stage, level, stage_index, inputs, progress):
    """Adam on the velocity of one level; ``velocity`` is carried in normalised units on its own grid."""
    import torch

    image_grid = _identity_grid(tuple(fixed.shape[2:]), fixed.device)
    field_grid = _identity_grid(tuple(velocity.shape[2:]), fixed.device)
    # Voxel units of the velocity grid make Adam's step (learning_rate) mean about one voxel.
    to_voxels = torch.tensor([(n - 1) / 2.0 for n in reversed(velocity.shape[2:])], device=fixed.device)
    to_voxels = to_voxels.view(1, 3, 1, 1, 1)
    parameter = (velocity * to_voxels).detach().requires_grad_(True)
    rate = float(stage.learning_rate)
    iterations = int(stage.level_iterations[level] if stage.level_iterations else stage.iterations)
    radius = int(stage.ncc_radius_voxels)
    steps = int(stage.exponential_steps)
    for iteration in range(iterations):
        parameter.grad = None
        smooth = _smoothed(parameter, stage.field_smoothing_voxels)
        velocity = smooth / to_voxels
        if stage.symmetric:
            half_fixed = _resize(_exponential_through(-0.5 * velocity, field_grid, steps), fixed.shape[2:])
            warped_fixed = _pull(fixed, half_fixed, image_grid)
            half_moving = _resize(_exponential_through(0.5 * velocity, field_grid, steps), fixed.shape[2:])
        else:
            warped_fixed = fixed
            half_moving = _resize(_exponential_through(velocity, field_grid, steps), fixed.shape[2:])
        warped_moving = _pull(moving, half_moving, image_grid)
        similarity = local_ncc(warped_fixed, warped_moving, radius)
        loss = -similarity + float(stage.regularization) * _diffusion(smooth)
        loss.backward()
        with torch.no_grad():
            # Normalised gradient step: the largest update moves ``rate`` voxels, wherever the
            # gradient is strongest (as ANTs does); weak, noisy gradients elsewhere move little.
            gradient = parameter.grad
            largest = float(gradient.pow(2).sum(1).sqrt().amax())
            if largest < 1e-9:
                break  # the images already agree (a volume registered to itself stays at identity)
            parameter -= gradient * (rate / largest)
        value = float(similarity.detach())
        inputs.history.append(IterationRecord(stage_index, stage.transform, level, iteration, -value))
        if progress is not None:
            progress((iteration + 1) / iterations, f"deformable: iteration {iteration + 1}, LNCC {value:.4f}")
        raise_if_cancelled(inputs.cancel_token)
    with torch.no_grad():
        smooth = _smoothed(parameter, stage.field_smoothing_voxels)
        return (smooth / to_voxels).detach()


def run_svf_stage(
    inputs: StageInputs, stage: StageSettings, stage_index: int, previous: Any, progress: Any = None
) -> Any:
    """A diffeomorphic displacement field (symmetric LNCC, stationary velocity) on top of ``previous``.

    Args:
        inputs: 3D fixed and moving images (LPS), the metric history, the cancel token, and an optional
            fixed mask (both images are cut to it before comparing them).
        stage: ``shrink_factors`` (per level, of the fixed grid), ``smoothing_mm``,
            ``level_iterations``, ``learning_rate`` (largest step, voxels of the velocity grid),
            ``regularization`` (diffusion weight), ``ncc_radius_voxels``, ``velocity_shrink``
            (velocity grid coarser than the level's image by this factor), ``field_smoothing_voxels``
            (smoothing of the velocity, voxels of its grid), ``symmetric``, ``exponential_steps``,
            ``device``.
        previous: the linear resampling transform found so far (LPS), or None.
        progress: ``progress(fraction, message)`` for this stage.

    Returns:
        The composite resampling transform (LPS) ending with a ``SimpleITK.DisplacementFieldTransform``
        on the finest level's grid (the fixed grid's corners, ``shrink_factors[-1]`` coarser).

    Raises:
        MedAICancelledError: the user cancelled.
    """
    import SimpleITK as sitk
    import torch

    from MedAICommonLib.devices import resolveDevice
    from MedAICommonLib.jobs import subProgress

    from .deformable import compose

    fixed, fixed_mask = inputs.fixed, inputs.fixed_mask
    torch.manual_seed(_SEED)
    device = resolveDevice(stage.device)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    moving_on_fixed = sitk.Resample(inputs.moving, fixed, previous or identity, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = None if fixed_mask is None else sitk.GetArrayFromImage(fixed_mask)
    if fixed_mask is not None:
        # As for demons: both images keep only the masked structure, so that what lies outside it
        # in the moving image (a skull the fixed image lacks) cannot pull the field.
        inside = sitk.Cast(fixed_mask > 0, sitk.sitkFloat32)
        fixed, moving_on_fixed = sitk.Cast(fixed, sitk.sitkFloat32) * inside, moving_on_fixed * inside
    levels = len(stage.shrink_factors)
    velocity = None
    for level, (shrink, sigma_mm) in enumerate(zip(stage.shrink_factors, stage.smoothing_mm)):
        tensors = []
        for image, image_mask in ((fixed, mask), (moving_on_fixed, mask)):
            blurred = sitk.SmoothingRecursiveGaussian(image, float(sigma_mm)) if sigma_mm > 0 else image
            array = _normalised(sitk.GetArrayFromImage(blurred), image_mask)
            tensor = torch.from_numpy(array)[None, None].to(device)
            tensors.append(_resize(tensor, _level_shape(tuple(array.shape), float(shrink))))
        field_shape = _level_shape(tuple(tensors[0].shape[2:]), float(stage.velocity_shrink))
        velocity = (
            torch.zeros((1, 3, *field_shape), device=device) if velocity is None else _resize(velocity, field_shape)
        )
        velocity = _optimise_level(
            tensors[0], tensors[1], velocity, stage, level, stage_index, inputs,
            subProgress(progress, level / levels, (level + 1) / levels),
        )  # fmt: skip
    with torch.no_grad():
        final_shape = _level_shape(tuple(reversed(fixed.GetSize())), float(stage.shrink_factors[-1]))
        displacement = _resize(exponential(velocity, _identity_grid(tuple(velocity.shape[2:]), device)), final_shape)
    field = _field_transform(displacement.cpu().numpy()[0], fixed)
    return field if previous is None else compose(previous, field)


def _field_transform(normalised: np.ndarray, fixed: Any) -> Any:
    """A SimpleITK displacement field transform (LPS mm) from a (3, D, H, W) normalised displacement."""
    import SimpleITK as sitk

    size = np.array(fixed.GetSize(), dtype=float)
    shape = normalised.shape[1:]
    # Normalised -> index of the fixed grid (x = I ...), then index -> LPS through spacing and direction.
    index = np.stack([normalised[axis] * (size[axis] - 1) / 2.0 for axis in range(3)], axis=-1)
    to_physical = np.array(fixed.GetDirection()).reshape(3, 3) @ np.diag(fixed.GetSpacing())
    physical = index @ to_physical.T
    image = sitk.GetImageFromArray(physical.astype(np.float64), isVector=True)
    level_spacing = [s * (n - 1) / max(m - 1, 1) for s, n, m in zip(fixed.GetSpacing(), size, reversed(shape))]
    image.SetSpacing(level_spacing)
    image.SetOrigin(fixed.GetOrigin())
    image.SetDirection(fixed.GetDirection())
    return sitk.DisplacementFieldTransform(image)
