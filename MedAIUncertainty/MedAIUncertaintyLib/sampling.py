"""Sampled predictions: Monte Carlo dropout, test-time augmentation and ensembles, as sliding-window predictors.

Each ``*Predictor`` returns a callable ``predictor(x) -> logits`` for a batch of windows ``x``
(B, C, *spatial) that gives the logits of all N samples side by side, (B, N*L, *spatial), sample-major.
Sliding-window inference blends them like any logits; :func:`splitSamples` turns the softmax over
all N*L channels back into N probability maps (a softmax renormalised within each block of L equals
the softmax of that sample's blended logits, exactly), so that one sliding-window pass makes all
samples and shares every window's input preparation.

Monte Carlo dropout switches on only the dropout modules (normalisation layers stay in evaluation
mode) and restores every module's mode afterwards. A network with ``encode``/``decode`` and all its
dropout inside ``decode`` runs its encoder once per window and its decoder on the N samples batched.
Test-time augmentation: sample 0 is the image as it is; sample k > 0 flips the axes given by the bits
of k (among ``flipAxes``), rotates and scales slightly about the window centre and changes the
intensity; each prediction is mapped back by the exact inverse flip and the inverse affine matrix
before blending (the affine costs one linear interpolation each way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "dropoutModules",
    "mcDropoutMode",
    "mcDropoutPredictor",
    "ttaPredictor",
    "ensemblePredictor",
    "splitSamples",
    "encoderHasDropout",
]

Predictor = Callable[[Any], Any]


def dropoutModules(network: Any) -> list[Any]:
    """The dropout modules of ``network`` whose rate is above zero."""
    import torch

    kinds = (torch.nn.modules.dropout._DropoutNd, torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)
    return [module for module in network.modules() if isinstance(module, kinds) and float(module.p) > 0]


@contextlib.contextmanager
def mcDropoutMode(network: Any) -> Iterator[list[Any]]:
    """Within the block, ``network`` is in evaluation mode except its dropout modules; all modes are restored after.

    Raises:
        MedAIInputError: the network has no dropout (Monte Carlo dropout would give identical samples).
    """
    dropouts = dropoutModules(network)
    if not dropouts:
        raise MedAIInputError(
            "This model has no dropout layers, so Monte Carlo dropout cannot sample it; use test-time augmentation "
            "or an ensemble instead."
        )
    modes = [(module, module.training) for module in network.modules()]
    try:
        network.eval()
        for module in dropouts:
            module.train()
        yield dropouts
    finally:
        for module, training in modes:
            module.training = training


def encoderHasDropout(network: Any, example: Any) -> bool:
    """True when a dropout module runs during ``network.encode(example)`` (then the encoder cannot be shared)."""
    import torch

    fired = []
    handles = [module.register_forward_hook(lambda *_: fired.append(True)) for module in dropoutModules(network)]
    try:
        with torch.no_grad():
            network.encode(example)
    finally:
        for handle in handles:
            handle.remove()
    return bool(fired)


def _sampleMajor(logits: Any, samples: int, batch: int) -> Any:
    """(N*B, L, ...) sample-major rows -> (B, N*L, ...) channels."""
    shape = logits.shape
    stacked = logits.reshape(samples, batch, *shape[1:]).transpose(0, 1)
    return stacked.reshape(batch, samples * shape[1], *shape[2:])


def mcDropoutPredictor(network: Any, samples: int, samplesPerPass: int = 10, shareEncoder: bool = True) -> Predictor:
    """Predictor of ``samples`` Monte Carlo dropout samples; call it inside :func:`mcDropoutMode`.

    Args:
        network: the model; ``encode``/``decode`` are used when present and the encoder has no dropout.
        samples: N, at least 1.
        samplesPerPass: decoder samples batched together (memory against speed).
        shareEncoder: False forces N full forward passes (for comparison).
    """
    import torch

    state = {"share": None}

    def predictor(x: Any) -> Any:
        if state["share"] is None:
            state["share"] = bool(
                shareEncoder
                and hasattr(network, "encode")
                and hasattr(network, "decode")
                and not encoderHasDropout(network, x)
            )
        if not state["share"]:
            return torch.cat([network(x) for _ in range(samples)], dim=1)
        features = network.encode(x)
        blocks = []
        for start in range(0, samples, samplesPerPass):
            count = min(samplesPerPass, samples - start)
            repeated = [f.repeat(count, *([1] * (f.dim() - 1))) for f in features]
            blocks.append(_sampleMajor(network.decode(repeated), count, x.shape[0]))
        return torch.cat(blocks, dim=1)

    return predictor


def _affineGrid(matrix: Any, like: Any) -> Any:
    import torch

    theta = matrix[:-1].unsqueeze(0).expand(like.shape[0], -1, -1).to(like.dtype)
    return torch.nn.functional.affine_grid(theta, list(like.shape), align_corners=False)


def _randomAffine(spatialDims: int, generator: Any, maxRotationDeg: float, maxScale: float) -> Any:
    """A small rotation and scale in normalised coordinates, as a (D+1, D+1) matrix (float64)."""
    import math

    import torch

    matrix = torch.eye(spatialDims + 1, dtype=torch.float64)
    planes = [(0, 1)] if spatialDims == 2 else [(0, 1), (0, 2), (1, 2)]
    for a, b in planes:
        angle = math.radians(maxRotationDeg) * (2 * float(torch.rand(1, generator=generator)) - 1)
        rotation = torch.eye(spatialDims + 1, dtype=torch.float64)
        rotation[a, a] = rotation[b, b] = math.cos(angle)
        rotation[a, b], rotation[b, a] = -math.sin(angle), math.sin(angle)
        matrix = rotation @ matrix
    scale = 1 + maxScale * (2 * float(torch.rand(1, generator=generator)) - 1)
    matrix[:spatialDims, :spatialDims] *= scale
    return matrix


def ttaPredictor(
    network: Any,
    samples: int,
    spatialDims: int,
    flipAxes: Sequence[int] = (0,),
    maxRotationDeg: float = 5.0,
    maxScale: float = 0.05,
    intensityChange: float = 0.1,
    seed: int = 0,
) -> Predictor:
    """Predictor of ``samples`` test-time augmentations, each mapped back by its inverse (see module docstring).

    Args:
        network: the model, in evaluation mode.
        samples: N, at least 1; sample 0 is the unchanged image.
        spatialDims: 2 or 3.
        flipAxes: spatial axes (0 = first spatial axis of the model's tensor) that may be flipped.
        maxRotationDeg, maxScale: largest rotation (degrees, per plane) and relative scale change.
        intensityChange: largest relative gain and offset (in units of the normalised intensity).
        seed: seed of the augmentation draw (the same N augmentations for every window).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    plans = [([], None, 1.0, 0.0)]
    for k in range(1, samples):
        flips = [2 + axis for index, axis in enumerate(flipAxes) if (k >> index) & 1]
        matrix = _randomAffine(spatialDims, generator, maxRotationDeg, maxScale) if maxRotationDeg or maxScale else None
        gain = 1 + intensityChange * (2 * float(torch.rand(1, generator=generator)) - 1)
        offset = intensityChange * (2 * float(torch.rand(1, generator=generator)) - 1)
        plans.append((flips, matrix, gain, offset))

    def predictor(x: Any) -> Any:
        outputs = []
        for flips, matrix, gain, offset in plans:
            augmented = x * gain + offset if (gain != 1.0 or offset != 0.0) else x
            augmented = augmented.flip(flips) if flips else augmented
            if matrix is not None:
                augmented = torch.nn.functional.grid_sample(
                    augmented, _affineGrid(matrix, augmented), padding_mode="border", align_corners=False
                )
            logits = network(augmented)
            if matrix is not None:
                inverse = torch.linalg.inv(matrix)
                logits = torch.nn.functional.grid_sample(
                    logits, _affineGrid(inverse, logits), padding_mode="border", align_corners=False
                )
            outputs.append(logits.flip(flips) if flips else logits)
        return torch.cat(outputs, dim=1)

    return predictor


def ensemblePredictor(networks: Sequence[Any]) -> Predictor:
    """Predictor whose sample k is ensemble member k (all in evaluation mode, same labels)."""
    import torch

    if not networks:
        raise MedAIInputError("An ensemble needs at least one member network.")

    def predictor(x: Any) -> Any:
        return torch.cat([member(x) for member in networks], dim=1)

    return predictor


def splitSamples(probabilities: Any, samples: int) -> Any:
    """(1, N*L, *spatial) softmax over all channels -> (N, L, *spatial), each sample summing to one."""
    channels = probabilities.shape[1]
    if channels % samples:
        raise ValueError(f"{channels} channels cannot hold {samples} samples of equal size.")
    blocks = probabilities[0].reshape(samples, channels // samples, *probabilities.shape[2:])
    return blocks / blocks.sum(dim=1, keepdim=True).clamp_min(1e-30)
