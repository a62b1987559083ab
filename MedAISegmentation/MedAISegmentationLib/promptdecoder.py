"""SAM's mask decoder, computed faster on the CPU with the same weights and the same results.

A prompt with a cached embedding only runs the decoder, so its speed is what the user feels on
every click. ``segment-anything``'s modules spend about half of their CPU time moving memory: the
image tokens enter the transformer as a transposed view (every projection copies them), the same
``keys + positional encoding`` sum is formed twice per block, and the two transposed convolutions
of the upscaling run through a slow generic path. Here the same arithmetic is done on contiguous
tensors, with PyTorch's fused attention, and the 2x2, stride-2 transposed convolutions as matrix
products: each output pixel depends on one input pixel only, so a transposed convolution is a
product with the ``(in, out x 2 x 2)`` weight matrix followed by a pixel shuffle. Outputs agree with
``MaskDecoder.predict_masks`` to float rounding (``Testing/test_prompt_decoder.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["predictMasks"]


def _attend(layer: Any, q: Any, k: Any, v: Any) -> Any:
    """SAM's ``Attention`` (projections, heads, scaled dot product, output projection)."""
    import torch

    q, k, v = layer.q_proj(q), layer.k_proj(k), layer.v_proj(v)
    batch, count, channels = q.shape
    heads = layer.num_heads

    def split(x):
        return x.view(batch, x.shape[1], heads, channels // heads).transpose(1, 2)

    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return layer.out_proj(out.transpose(1, 2).reshape(batch, count, channels))


def _twoWayTransformer(transformer: Any, image: Any, imagePe: Any, tokens: Any) -> tuple[Any, Any]:
    """``TwoWayTransformer.forward``: ``image`` and ``imagePe`` (B, C, h, w), ``tokens`` (B, N, C)."""
    keys = image.flatten(2).transpose(1, 2).contiguous()
    keyPe = imagePe.flatten(2).transpose(1, 2).contiguous()
    queries = tokens
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = _attend(layer.self_attn, queries, queries, queries)
        else:
            q = queries + tokens
            queries = queries + _attend(layer.self_attn, q, q, queries)
        queries = layer.norm1(queries)
        keysWithPe = keys + keyPe  # the same sum serves both cross attentions of the block
        queries = layer.norm2(queries + _attend(layer.cross_attn_token_to_image, queries + tokens, keysWithPe, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(keys + _attend(layer.cross_attn_image_to_token, keysWithPe, queries + tokens, queries))
    final = _attend(transformer.final_attn_token_to_image, queries + tokens, keys + keyPe, keys)
    return transformer.norm_final_attn(queries + final), keys


def _upscaledMask(upscaling: Any, hyper: Any, image: Any) -> Any:
    """``hyper`` (B, 1, C2) times ``upscaling(image)`` (B, C2, 4h, 4w): the mask logits (B, 1, 4h, 4w).

    ``upscaling`` is SAM's ``Sequential(ConvTranspose2d(C, C1, 2, 2), LayerNorm2d, GELU,
    ConvTranspose2d(C1, C2, 2, 2), GELU)``; ``image`` (B, C, h, w).
    """
    import torch
    from torch.nn.functional import gelu, layer_norm

    first, norm, _, second, _ = upscaling
    batch, channels, height, width = image.shape
    c1, c2 = first.out_channels, second.out_channels
    pixels = image.permute(0, 2, 3, 1).reshape(-1, channels)
    # (pixel, c1, 2x2 offset) -> (pixel, offset, c1): the channel norm runs over the last axis.
    x = torch.addmm(first.bias.repeat_interleave(4), pixels, first.weight.reshape(channels, c1 * 4))
    x = gelu(layer_norm(x.view(-1, c1, 4).transpose(1, 2), (c1,), norm.weight, norm.bias, norm.eps))
    x = torch.addmm(second.bias.repeat_interleave(4), x.reshape(-1, c1), second.weight.reshape(c1, c2 * 4))
    x = gelu(x.view(batch, -1, c2, 4).transpose(2, 3))  # (B, pixel x offset1, offset2, c2)
    masks = x @ hyper.view(batch, 1, c2, 1)
    # (B, row, col, row offset 1, col offset 1, row offset 2, col offset 2) -> (B, 4 rows, 4 cols)
    masks = masks.view(batch, height, width, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
    return masks.reshape(batch, 1, 4 * height, 4 * width)


def predictMasks(decoder: Any, embeddings: Any, imagePe: Any, sparse: Any, dense: Any) -> tuple[Any, Any]:
    """SAM's ``MaskDecoder.predict_masks`` with one image per prompt and the single-mask output.

    ``segment-anything`` repeats every image embedding for every prompt; here prompt ``b`` is decoded
    on image ``b``, so the flips of a slice are decoded in one batch.

    Args:
        decoder: a ``segment_anything`` ``MaskDecoder``.
        embeddings: (1 or B, C, h, w) image embeddings; imagePe: (1, C, h, w) positional encoding.
        sparse, dense: the prompt encoder's (B, N, C) and (B, C, h, w) embeddings.

    Returns:
        ``(mask logits (B, 1, 4h, 4w), predicted IoU (B, 1))``.
    """
    import torch

    outputTokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((outputTokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
    source = embeddings.expand(tokens.shape[0], -1, -1, -1) if embeddings.shape[0] == 1 else embeddings
    source = source + dense
    positions = imagePe.expand(tokens.shape[0], -1, -1, -1)
    batch, channels, height, width = source.shape
    hs, keys = _twoWayTransformer(decoder.transformer, source, positions, tokens)
    image = keys.transpose(1, 2).reshape(batch, channels, height, width)
    hyper = decoder.output_hypernetworks_mlps[0](hs[:, 1, :])[:, None]  # the single-mask token
    masks = _upscaledMask(decoder.output_upscaling, hyper, image)
    return masks, decoder.iou_prediction_head(hs[:, 0, :])[:, :1]
