"""The small patch classifier that ships with MedAI (nucleus versus background in fluorescence microscopy).

A plain convolutional network: two convolution blocks with max pooling, a last convolution block named
``features`` (the layer Grad-CAM reads, 1/4 of the input size), dropout, and a linear layer over the
flattened feature map (not global pooling: the task is "is the *centre* pixel a nucleus", so the
classifier must know where in the patch a nucleus lies). Batch normalisation keeps training short;
the dropout before the linear layer makes Monte Carlo dropout possible.

Example::

    network = buildPatchClassifier(patchSizePx=32)
    logits = network(torch.zeros(4, 1, 32, 32))  # (4, 2): background, nucleus
"""

from __future__ import annotations

from typing import Any

__all__ = ["buildPatchClassifier", "PATCH_SIZE_PX", "TARGET_LAYER"]

PATCH_SIZE_PX = 32
TARGET_LAYER = "features"
"""Name of the module whose activations Grad-CAM uses (8x8 for a 32x32 patch)."""


def buildPatchClassifier(
    inChannels: int = 1,
    classes: int = 2,
    patchSizePx: int = PATCH_SIZE_PX,
    channels: tuple[int, int, int] = (16, 32, 32),
    dropout: float = 0.2,
) -> Any:
    """Build the patch classifier (untrained).

    Args:
        inChannels: image channels (1 for one fluorescence channel).
        classes: output classes; class 0 is background.
        patchSizePx: side of the square input patch in pixels; a multiple of 4.
        channels: feature channels of the three convolution blocks.
        dropout: dropout rate before the linear layer (0 for none).

    Returns:
        A ``torch.nn.Module`` mapping (B, inChannels, patchSizePx, patchSizePx) to logits (B, classes).
    """
    import torch

    if patchSizePx % 4:
        raise ValueError(f"patchSizePx must be a multiple of 4, got {patchSizePx}.")

    def block(cIn: int, cOut: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(
            torch.nn.Conv2d(cIn, cOut, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(cOut),
            torch.nn.ReLU(inplace=False),
        )

    side = patchSizePx // 4
    network = torch.nn.Sequential()
    network.add_module("block1", block(inChannels, channels[0]))
    network.add_module("pool1", torch.nn.MaxPool2d(2))
    network.add_module("block2", block(channels[0], channels[1]))
    network.add_module("pool2", torch.nn.MaxPool2d(2))
    network.add_module(TARGET_LAYER, block(channels[1], channels[2]))
    network.add_module("flatten", torch.nn.Flatten())
    network.add_module("dropout", torch.nn.Dropout(dropout))
    network.add_module("classifier", torch.nn.Linear(channels[2] * side * side, classes))
    return network
