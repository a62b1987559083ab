"""The voxel grid a segmentation network sees, and the resampling to it and back.

A grid is a shape in **IJK** order (as in a MONAI ``MetaTensor`` of shape ``(C, I, J, K)``) plus
its 4x4 **IJK-to-RAS** matrix in millimetres. The model grid of an input is axis-aligned with the
card's ``orientation`` (``"RAS"``: i towards R, j towards A, k towards S), has the card's spacing,
and covers the voxel centres of the input; so a volume stored permuted, flipped or oblique gives
the network the same picture. When the model grid equals the input grid, or differs only by
permuted or flipped axes at the same spacing, resampling is an exact copy of the voxels;
otherwise it is trilinear, in both directions: one axis at a time when the grids' axes are parallel
(another spacing), else ``torch.nn.functional.grid_sample`` (oblique grids).

Example:
    >>> modelAffine, modelShape = modelGrid(ijkToRas, (160, 192, 160), "RAS", (2.0, 2.0, 2.0))  # doctest: +SKIP
    >>> onModel = resampleTensor(image, ijkToRas, modelAffine, modelShape)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

__all__ = ["axisDirections", "modelGrid", "resampleTensor", "normalizeIntensity"]

_AXIS_OF_CODE = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def axisDirections(orientation: str) -> np.ndarray:
    """3x3 matrix whose column n is the RAS unit vector of model axis n (``"LPS"`` gives diag(-1, -1, 1))."""
    directions = np.zeros((3, 3))
    for column, code in enumerate(orientation.upper()):
        row, sign = _AXIS_OF_CODE[code]
        directions[row, column] = sign
    return directions


def modelGrid(
    ijkToRas: Any,
    shapeIjk: Sequence[int],
    orientation: str | None,
    spacingMm: Sequence[float] | None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The model's grid covering an input grid.

    Args:
        ijkToRas: 4x4 IJK-to-RAS matrix of the input (world RAS, mm); 3x3 for a 2D image.
        shapeIjk: the input's shape, IJK order (two numbers for a 2D image).
        orientation: axis codes of the model grid (``"RAS"``); None keeps the input's axes (so do 2D images).
        spacingMm: model spacing along its axes, mm; None keeps the input's spacing along the
            input axis closest to each model axis.

    Returns:
        ``(modelIjkToRas, modelShapeIjk)``; the input's own grid when both are None.
    """
    ijkToRas = np.asarray(ijkToRas, dtype=np.float64)
    if orientation is None and spacingMm is None:
        return ijkToRas.copy(), tuple(int(n) for n in shapeIjk)
    dims = len(shapeIjk)
    columns = ijkToRas[:dims, :dims]
    inputSpacing = np.linalg.norm(columns, axis=0)
    inputDirections = columns / inputSpacing
    directions = axisDirections(orientation) if orientation is not None and dims == 3 else inputDirections
    if spacingMm is None:
        closest = np.argmax(np.abs(directions.T @ inputDirections), axis=1)
        spacingMm = inputSpacing[closest]
    spacing = np.asarray(spacingMm, dtype=np.float64)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shapeIjk], [1], indexing="ij")).reshape(dims + 1, -1)
    inModelAxes = directions.T @ (ijkToRas @ corners)[:dims]
    low, high = inModelAxes.min(axis=1), inModelAxes.max(axis=1)
    # A tolerance keeps a grid that already has the model spacing from gaining a voxel by rounding.
    shape = tuple(int(n) for n in np.floor((high - low) / spacing + 1e-3).astype(int) + 1)
    modelIjkToRas = np.eye(dims + 1)
    modelIjkToRas[:dims, :dims] = directions * spacing
    modelIjkToRas[:dims, dims] = directions @ low
    return modelIjkToRas, shape


def _signedPermutation(matrix: np.ndarray, sourceShape: Sequence[int], targetShape: Sequence[int]):
    """(axes, flips) when target voxel centres are exactly source voxel centres, else None."""
    rotation, offset = matrix[:3, :3], matrix[:3, 3]
    rounded = np.round(rotation)
    if not np.allclose(rotation, rounded, atol=1e-6) or not np.allclose(offset, np.round(offset), atol=1e-4):
        return None
    if sorted(np.abs(rounded).sum(axis=0)) != [1, 1, 1] or sorted(np.abs(rounded).sum(axis=1)) != [1, 1, 1]:
        return None
    axes = [int(np.argmax(np.abs(rounded[:, t]))) for t in range(3)]  # source axis of each target axis
    flips = [bool(rounded[axes[t], t] < 0) for t in range(3)]
    for t in range(3):
        start = int(round(offset[axes[t]]))
        end = start + (-1 if flips[t] else 1) * (targetShape[t] - 1)
        if not (0 <= start < sourceShape[axes[t]] and 0 <= end < sourceShape[axes[t]]):
            return None
    starts = [int(round(offset[axes[t]])) for t in range(3)]
    return axes, flips, starts


def resampleTensor(
    tensor: Any,
    sourceIjkToRas: Any,
    targetIjkToRas: Any,
    targetShapeIjk: Sequence[int],
    padding: str = "zeros",
) -> Any:
    """Resample a channel-first tensor ``(C, I, J, K)`` (or ``(C, I, J)``) onto another grid.

    Args:
        tensor: float tensor on the source grid (any device); it is not modified.
        sourceIjkToRas: 4x4 IJK-to-RAS of the source grid (3x3 for a 2D grid), mm.
        targetIjkToRas: the same for the target grid.
        targetShapeIjk: target shape, IJK order.
        padding: ``"zeros"`` or ``"border"`` (probabilities, so they still sum to one) outside the source.

    Returns:
        A float tensor ``(C, *targetShapeIjk)`` on the tensor's device: a copy of voxels when the
        target centres are source centres, else trilinear (bilinear in 2D) interpolation.
    """

    dims = tensor.ndim - 1
    source, target = np.asarray(sourceIjkToRas, float), np.asarray(targetIjkToRas, float)
    targetToSource = np.linalg.solve(source, target)  # target index -> source index
    targetShape = tuple(int(n) for n in targetShapeIjk)
    sourceShape = tuple(tensor.shape[1:])
    full = np.eye(4)
    full[:dims, :dims], full[:dims, 3] = targetToSource[:dims, :dims], targetToSource[:dims, dims]
    exact = _signedPermutation(full, sourceShape + (1,) * (3 - dims), targetShape + (1,) * (3 - dims))
    if exact is not None:
        return _copyVoxels(tensor, *exact, targetShape + (1,) * (3 - dims)).reshape(tensor.shape[0], *targetShape)
    rotation = targetToSource[:dims, :dims]
    if np.count_nonzero(np.abs(rotation) > 1e-9 * np.abs(rotation).max()) == dims:
        return _separable(tensor, targetToSource, targetShape, padding, dims)
    return _interpolate(tensor, targetToSource, targetShape, padding, dims)


def _copyVoxels(tensor: Any, axes: list, flips: list, starts: list, targetShape3: tuple) -> Any:
    """The target voxels picked from the source by cropping, permuting and flipping axes (exact)."""
    import torch

    view = tensor.reshape(tensor.shape[0], *(tuple(tensor.shape[1:]) + (1,) * (4 - tensor.ndim)))
    for t in range(3):
        end = starts[t] + (-1 if flips[t] else 1) * (targetShape3[t] - 1)
        low = min(starts[t], end)
        view = view.narrow(1 + axes[t], low, targetShape3[t])
    view = view.permute(0, *(1 + a for a in axes))
    flipAxes = [1 + t for t in range(3) if flips[t]]
    view = torch.flip(view, flipAxes) if flipAxes else view
    return view.to(torch.float32).contiguous()


def _separable(tensor: Any, targetToSource: np.ndarray, targetShape: tuple, padding: str, dims: int) -> Any:
    """Axis-aligned grids: trilinear interpolation done one axis at a time (the same values, far less work)."""
    import torch

    values = tensor.to(torch.float32)
    sourceAxes = [int(np.argmax(np.abs(targetToSource[:dims, t]))) for t in range(dims)]
    for t, axis in enumerate(sourceAxes):
        size = values.shape[1 + axis]
        positions = torch.arange(targetShape[t], dtype=torch.float64, device=values.device)
        positions = positions * float(targetToSource[axis, t]) + float(targetToSource[axis, dims])
        if padding == "border":
            positions = positions.clamp(0, size - 1)
        below = positions.floor()
        weight = (positions - below).to(torch.float32)
        shape = [1] * values.ndim
        shape[1 + axis] = -1
        parts = []
        for index, factor in ((below, 1 - weight), (below + 1, weight)):
            inside = ((index >= 0) & (index <= size - 1)).to(torch.float32)
            taken = values.index_select(1 + axis, index.clamp(0, size - 1).long())
            parts.append(taken * (factor * inside).reshape(shape))
        values = parts[0] + parts[1]
    # Source axis sourceAxes[t] now has the length of target axis t: move it to place t.
    return values.permute(0, *[1 + axis for axis in sourceAxes]).contiguous()


def _interpolate(tensor: Any, targetToSource: np.ndarray, targetShape: tuple, padding: str, dims: int) -> Any:
    import torch
    import torch.nn.functional as functional

    sourceShape = tensor.shape[1:]
    # grid_sample takes normalised (x, y, z) = reversed axis order, -1..1 over voxel centres.
    reverse = np.eye(dims + 1)[list(range(dims - 1, -1, -1)) + [dims]]
    normSource = np.diag([2.0 / max(n - 1, 1) for n in sourceShape[::-1]] + [1.0])
    normSource[:dims, dims] = -1.0
    normTarget = np.diag([2.0 / max(n - 1, 1) for n in targetShape[::-1]] + [1.0])
    normTarget[:dims, dims] = -1.0
    theta = normSource @ reverse @ targetToSource @ reverse @ np.linalg.inv(normTarget)
    thetaTensor = torch.as_tensor(theta[:dims], dtype=torch.float32, device=tensor.device)[None]
    grid = functional.affine_grid(thetaTensor, [1, tensor.shape[0], *targetShape], align_corners=True)
    sampled = functional.grid_sample(
        tensor[None].to(torch.float32), grid, mode="bilinear", padding_mode=padding, align_corners=True
    )
    return sampled[0]


def normalizeIntensity(array: np.ndarray, intensity: dict[str, Any]) -> np.ndarray:
    """Scale voxel values as the model card says (float32 result; the input is not modified).

    Args:
        array: voxels of one input channel.
        intensity: ``{"method": "percentile", "lower": 0.5, "upper": 99.5}`` (percentiles of this
            image map to 0 and 1, not clipped, as the training of MedAI's models does),
            ``{"method": "window", "minimum": -1000, "maximum": 2000}`` (image units map to 0 and 1,
            clipped), ``{"method": "zscore"}`` (zero mean, unit standard deviation) or
            ``{"method": "none"}``. ``"clip"`` overrides the clipping to 0-1.

    Raises:
        MedAIInputError: the percentiles coincide (an image with almost one value).
    """
    values = np.asarray(array, dtype=np.float32)
    method = intensity.get("method", "none")
    if method == "none":
        return values.copy()
    if method == "zscore":
        std = float(values.std())
        return (values - float(values.mean())) / (std if std > 0 else 1.0)
    if method == "percentile":
        low, high = np.percentile(values, [intensity["lower"], intensity["upper"]])
    else:
        low, high = float(intensity["minimum"]), float(intensity["maximum"])
    if high <= low:
        raise MedAIInputError(
            f"The image has almost a single intensity ({low:g} at both the {intensity['lower']}th and "
            f"{intensity['upper']}th percentiles); the model cannot segment it."
        )
    scaled = (values - np.float32(low)) / np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0) if intensity.get("clip", method == "window") else scaled
