"""Segmentation networks that MedAI trains and ships: its own U-Net, SegResNet, SwinUNETR and UNETR.

``buildNetwork`` is the one builder named by the model cards (``"builder":
"MedAISegmentationLib.networks:buildNetwork"``, ``"networkArguments"`` its keyword arguments).
MedAI's own ``"unet"`` is built from ``monai.networks.blocks`` and splits into ``encode`` and
``decode``: every dropout module lives in the decoder, so Monte Carlo dropout can run the encoder
once and the decoder many times (the features repeated along the batch axis). Dropout follows
``train()``/``eval()`` like any torch module: it is off at plain inference.

torch and MONAI are imported when a network is built, never when this module is imported.

Example::

    network = buildNetwork("unet", spatialDims=3, inChannels=1, outChannels=2, dropout=0.1)
    features = network.encode(image)  # image (B, 1, X, Y, Z)
    logits = network.decode(features)  # (B, 2, X, Y, Z), the same as network(image)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = ["ARCHITECTURES", "buildNetwork", "sizeMultiple"]

_UNET_CLASS = []

ARCHITECTURES = ("unet", "segresnet", "swinunetr", "unetr")
"""Names accepted by :func:`buildNetwork`."""


def buildNetwork(
    architecture: str,
    spatialDims: int,
    inChannels: int,
    outChannels: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    dropout: float = 0.1,
    **options: Any,
):
    """Build an untrained segmentation network that maps (B, inChannels, *spatial) to logits.

    Args:
        architecture: ``"unet"`` (MedAI's U-Net, residual units, strided convolutions, dropout in
            the decoder only), ``"segresnet"`` (MONAI SegResNet, ``channels[0]`` initial filters,
            one down-sampling per further entry of ``channels``), ``"swinunetr"`` (MONAI SwinUNETR,
            feature size ``channels[0]``) or ``"unetr"`` (MONAI UNETR; needs ``imgSize``, the patch
            size in voxels; ``channels[0]`` is its feature size).
        spatialDims: 2 or 3.
        inChannels: number of input channels (images), at least 1.
        outChannels: number of output classes including background, at least 2.
        channels: feature channels per resolution level, finest first.
        dropout: dropout rate 0-1 (the decoder's for ``"unet"``).
        **options: ``subunits`` (``"unet"``, convolutions per residual unit, default 2), ``imgSize``
            (``"unetr"``), ``hiddenSize``/``mlpDim``/``numHeads`` (``"unetr"``), ``depths``/``numHeads``
            (``"swinunetr"``).

    Returns:
        A ``torch.nn.Module`` in training mode.

    Raises:
        MedAIInputError: unknown architecture, bad dimension, channel count or dropout rate.
    """
    _checkArguments(architecture, spatialDims, inChannels, outChannels, channels, dropout)
    channels = tuple(int(c) for c in channels)
    if architecture == "unet":
        subunits = int(options.pop("subunits", 2))
        _refuseOptions(architecture, options)
        return _unetClass()(spatialDims, inChannels, outChannels, channels, dropout, subunits)
    if architecture == "segresnet":
        from monai.networks.nets import SegResNet

        _refuseOptions(architecture, options)
        blocksDown = (1,) + (2,) * (len(channels) - 1)
        return SegResNet(
            spatial_dims=spatialDims,
            init_filters=channels[0],
            in_channels=inChannels,
            out_channels=outChannels,
            dropout_prob=dropout or None,
            blocks_down=blocksDown,
            blocks_up=(1,) * (len(channels) - 1),
            norm=("GROUP", {"num_groups": math.gcd(8, channels[0])}),
        )
    if architecture == "swinunetr":
        return _buildSwinUNETR(spatialDims, inChannels, outChannels, channels, dropout, options)
    return _buildUNETR(spatialDims, inChannels, outChannels, channels, dropout, options)


def sizeMultiple(architecture: str, channels: Sequence[int] = (16, 32, 64, 128)) -> int:
    """Return the number that each side of a patch (in voxels) should be a multiple of.

    Args:
        architecture: one of :data:`ARCHITECTURES`.
        channels: the levels given to :func:`buildNetwork`.

    Returns:
        2 to the number of down-samplings (32 for the transformers).
    """
    if architecture in ("swinunetr", "unetr"):
        return 32 if architecture == "swinunetr" else 16
    return 2 ** (len(channels) - 1)


def _checkArguments(architecture, spatialDims, inChannels, outChannels, channels, dropout) -> None:
    if architecture not in ARCHITECTURES:
        raise MedAIInputError(
            f"Unknown network architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}."
        )
    if spatialDims not in (2, 3):
        raise MedAIInputError(f"A network works on 2 or 3 spatial dimensions, not {spatialDims}.")
    if int(inChannels) < 1 or int(outChannels) < 2:
        raise MedAIInputError(
            f"A segmentation network needs at least 1 input and 2 output channels, not {inChannels} and {outChannels}."
        )
    if len(channels) < 2 or any(int(c) < 1 for c in channels):
        raise MedAIInputError(f"Network channels must be at least two positive numbers, not {list(channels)}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise MedAIInputError(f"Dropout must be a rate in [0, 1), not {dropout}.")


def _refuseOptions(architecture: str, options: dict) -> None:
    if options:
        raise MedAIInputError(f"Unknown option(s) for {architecture!r}: {', '.join(sorted(options))}.")


def _buildSwinUNETR(spatialDims, inChannels, outChannels, channels, dropout, options):
    from monai.networks.nets import SwinUNETR

    depths = tuple(options.pop("depths", (2, 2, 2, 2)))
    numHeads = tuple(options.pop("numHeads", (3, 6, 12, 24)))
    _refuseOptions("swinunetr", options)
    return SwinUNETR(
        in_channels=inChannels,
        out_channels=outChannels,
        feature_size=max(12, channels[0] - channels[0] % 12),
        depths=depths,
        num_heads=numHeads,
        drop_rate=dropout,
        spatial_dims=spatialDims,
    )


def _buildUNETR(spatialDims, inChannels, outChannels, channels, dropout, options):
    from monai.networks.nets import UNETR

    if "imgSize" not in options:
        raise MedAIInputError("The 'unetr' architecture needs imgSize, the patch size in voxels.")
    imgSize = options.pop("imgSize")
    hiddenSize = int(options.pop("hiddenSize", 192))
    mlpDim = int(options.pop("mlpDim", 4 * hiddenSize))
    numHeads = int(options.pop("numHeads", 6))
    _refuseOptions("unetr", options)
    imgSize = [int(s) for s in (imgSize if isinstance(imgSize, (list, tuple)) else [imgSize] * spatialDims)]
    if len(imgSize) != spatialDims or any(s % 16 for s in imgSize):
        raise MedAIInputError(f"UNETR's imgSize must be {spatialDims} multiples of 16, not {imgSize}.")
    return UNETR(
        in_channels=inChannels,
        out_channels=outChannels,
        img_size=imgSize,
        feature_size=channels[0],
        hidden_size=hiddenSize,
        mlp_dim=mlpDim,
        num_heads=numHeads,
        dropout_rate=dropout,
        spatial_dims=spatialDims,
    )


def _unetClass():
    """Define MedAI's U-Net class on first use, so that importing this file never imports torch."""
    if _UNET_CLASS:
        return _UNET_CLASS[0]
    import torch
    from monai.networks.blocks import Convolution, ResidualUnit

    class MedAIUNet(torch.nn.Module):
        """U-Net of residual units; ``encode`` gives the skips and bottleneck, ``decode`` the logits.

        The encoder has one residual unit per level (stride 2 from the second level on). The
        decoder, per level from the coarsest: up-sampling (x2, nearest) and convolution, concatenation with
        the skip, dropout, residual unit; then a 1x1 convolution to the classes. Up-sampled
        features are padded to the skip's size, so any input size works (multiples of
        ``sizeMultiple`` avoid the padding). All dropout modules are in ``decoder``.
        """

        def __init__(self, spatialDims, inChannels, outChannels, channels, dropout, subunits=2):
            super().__init__()
            self.spatialDims = spatialDims
            self.encoder = torch.nn.ModuleList()
            previous = inChannels
            for level, width in enumerate(channels):
                self.encoder.append(
                    ResidualUnit(spatialDims, previous, width, strides=1 if level == 0 else 2, subunits=subunits)
                )
                previous = width
            self.decoder = torch.nn.ModuleDict(
                {
                    "up": torch.nn.ModuleList(),
                    "dropout": torch.nn.ModuleList(),
                    "fuse": torch.nn.ModuleList(),
                }
            )
            for level in range(len(channels) - 1, 0, -1):
                coarse, fine = channels[level], channels[level - 1]
                # Up-sampling then convolution: on CPUs, transposed 3D convolutions are many times slower.
                self.decoder["up"].append(
                    torch.nn.Sequential(
                        torch.nn.Upsample(scale_factor=2, mode="nearest"),
                        Convolution(spatialDims, coarse, fine, kernel_size=3),
                    )
                )
                self.decoder["dropout"].append(torch.nn.Dropout(p=dropout))
                self.decoder["fuse"].append(ResidualUnit(spatialDims, 2 * fine, fine, subunits=subunits))
            self.decoder["head"] = Convolution(spatialDims, channels[0], outChannels, kernel_size=1, conv_only=True)

        def encode(self, x):
            """Return the features of every level, finest first; the last one is the bottleneck."""
            features = []
            for stage in self.encoder:
                x = stage(x)
                features.append(x)
            return features

        def decode(self, features):
            """Return the logits (B, classes, *spatial) from :meth:`encode`'s features."""
            x = features[-1]
            skips = features[-2::-1]
            for up, dropout, fuse, skip in zip(
                self.decoder["up"], self.decoder["dropout"], self.decoder["fuse"], skips
            ):
                x = _matchSize(up(x), skip)
                x = fuse(dropout(torch.cat([x, skip], dim=1)))
            return self.decoder["head"](x)

        def forward(self, x):
            return self.decode(self.encode(x))

    def _matchSize(x, reference):
        # Odd sizes: up-sampling gives 2n voxels where the skip has 2n+1; pad or crop.
        pads = []
        for axis in range(x.dim() - 1, 1, -1):
            difference = reference.shape[axis] - x.shape[axis]
            pads += [0, difference]
        return torch.nn.functional.pad(x, pads) if any(pads) else x

    _UNET_CLASS.append(MedAIUNet)
    return MedAIUNet
