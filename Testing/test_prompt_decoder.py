"""MedAI's faster prompt decoder gives what ``segment-anything``'s ``MaskDecoder`` gives, with the real weights.

The decoder runs on every click, so ``promptdecoder`` re-arranges its arithmetic for the CPU; these
tests hold it to the reference module on a real Colin27 slice embedding, for box, point and mixed
prompts, one image and a batch of different images.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import torch

from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.volumes import arrayFromVolume
from MedAISegmentationLib.promptdecoder import predictMasks
from MedAISegmentationLib.promptmodels import load_prompt_model
from MedAISegmentationLib.promptslices import apply_window, intensity_window, prompt_region, to_model_frame


@pytest.fixture(scope="module")
def embeddings():
    """The LiteMedSAM model and the embeddings of two real slices (axial 90 and 60 of Colin27)."""
    scene = slicer.vtkMRMLScene()
    voxels = arrayFromVolume(loadSampleData(scene, "Colin27"))
    window = intensity_window(voxels)
    model = load_prompt_model("LiteMedSAM", "cpu")
    encoded = []
    for index in (90, 60):
        image = apply_window(voxels[index], window)
        modelInput, _ = to_model_frame(image, (1.0, 1.0), prompt_region(image.shape, (1.0, 1.0), None), 256)
        encoded.append(model.encode(modelInput))
    return model, torch.cat(encoded)


def _reference(model, embedding, boxes, points):
    """``MaskDecoder.predict_masks`` of segment-anything, one prompt at a time (first mask token)."""
    prompt, decoder = model.network.prompt_encoder, model.network.mask_decoder
    masks, ious = [], []
    with torch.inference_mode():
        for b in range(len(embedding)):
            sparse, dense = prompt(
                points=None if points is None else (points[0][b : b + 1], points[1][b : b + 1]),
                boxes=None if boxes is None else boxes[b : b + 1],
                masks=None,
            )
            mask, iou = decoder.predict_masks(embedding[b : b + 1], prompt.get_dense_pe(), sparse, dense)
            masks.append(mask[:, :1])
            ious.append(iou[:, :1])
    return torch.cat(masks), torch.cat(ious)


@pytest.mark.parametrize("prompts", ["box", "points", "box and points"])
def test_fast_decoder_matches_segment_anything(embeddings, prompts):
    model, embedding = embeddings
    boxes = torch.tensor([[40.0, 30.0, 215.0, 230.0], [60.0, 50.0, 190.0, 200.0]])
    points = (
        torch.tensor([[[128.0, 120.0], [30.0, 30.0]], [[100.0, 140.0], [200.0, 40.0]]]),
        torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
    )
    boxes = boxes if "box" in prompts else None
    points = points if "points" in prompts else None
    expected, expectedIou = _reference(model, embedding, boxes, points)
    prompt = model.network.prompt_encoder
    with torch.inference_mode():
        sparse, dense = prompt(points=points, boxes=boxes, masks=None)
        masks, iou = predictMasks(model.network.mask_decoder, embedding, prompt.get_dense_pe(), sparse, dense)
    assert masks.shape == expected.shape == (2, 1, 256, 256)
    assert expected.abs().max() > 5  # real logits, not a constant
    np.testing.assert_allclose(masks.numpy(), expected.numpy(), atol=2e-4 * float(expected.abs().max()))
    np.testing.assert_allclose(iou.numpy(), expectedIou.numpy(), atol=1e-4)
    assert np.mean((masks > 0).numpy() != (expected > 0).numpy()) < 1e-4  # the same pixels, but for rounding ties


def test_one_embedding_serves_a_batch_of_prompts(embeddings):
    """An embedding of batch 1 is shared by every prompt, as segment-anything does."""
    model, embedding = embeddings
    boxes = torch.tensor([[40.0, 30.0, 215.0, 230.0], [90.0, 90.0, 160.0, 160.0]])
    prompt = model.network.prompt_encoder
    with torch.inference_mode():
        sparse, dense = prompt(points=None, boxes=boxes, masks=None)
        shared, _ = predictMasks(model.network.mask_decoder, embedding[:1], prompt.get_dense_pe(), sparse, dense)
    expected, _ = _reference(model, embedding[:1].expand(2, -1, -1, -1), boxes, None)
    np.testing.assert_allclose(shared.numpy(), expected.numpy(), atol=2e-4 * float(expected.abs().max()))
    assert (shared[0] > 0).sum() > 2 * (shared[1] > 0).sum()  # the larger box gives the larger object
