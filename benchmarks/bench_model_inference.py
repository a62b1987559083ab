"""Speed of MedAI's model inference against MONAI's bare sliding window, and fast mode against full mode.

Part 1 (``overhead``), in one process on one 160x192x160 volume (the centre of Colin27, 1 mm):

- **module end to end**: ``MedAISegmentationLogic().segmentWithModel`` from the MRML volume node to the
  segmentation node (input checks, intensity normalisation, model grid, sliding window, softmax,
  probabilities back onto the input grid, argmax, segmentation node);
- **bare MONAI**: ``monai.inferers.sliding_window_inference`` with the same network, window, overlap,
  batch and Gaussian blending on the already normalised tensor.

The network is that of ``BrainExtractionT1`` when it is installed, else a MedAI U-Net of the same
shape with random weights; its card is given the volume's spacing (1 mm, RAS) so that both sides
run the network on the same 160x192x160 grid. Target of issue 4: ratio <= 1.15.

Part 2 (``fast``): ``BrainExtractionT1`` on the whole of Colin27, full and fast mode: seconds and
Dice against ``Colin27BrainMask``. Target: fast <= 1/3 of the full time, Dice at most 0.02 lower.

Times are the best of ``--repeats`` runs (part 1 alternates the two sides after a one-window warm-up). Run it under ``nice -n 10`` on a shared machine.

Usage::

    nice -n 10 python benchmarks/bench_model_inference.py [--parts overhead fast] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from MedAICommonLib import sceneio
from MedAICommonLib.models import ModelRegistry
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume, metaTensorFromVolume
from MedAISegmentationLib.logic import MedAISegmentationLogic
from MedAISegmentationLib.modelinference import LoadedModel, loadSegmentationModel, prepareInput

BRAIN = "BrainExtractionT1"


def centreBlock(scene, volumeNode, sizeIjk):
    array = arrayFromVolume(volumeNode)
    starts = [(n - s) // 2 for n, s in zip(array.shape, sizeIjk[::-1])]
    block = array[tuple(slice(a, a + s) for a, s in zip(starts, sizeIjk[::-1]))]
    ijkToRas = ijkToRasFromVolume(volumeNode)
    ijkToRas[:3, 3] = ijkToRas[:3, :3] @ np.array(starts[::-1]) + ijkToRas[:3, 3]
    return createVolumeFromArray(scene, np.ascontiguousarray(block), ijkToRas, "block")


def benchmarkModel(roi, overlap) -> LoadedModel:
    """BrainExtractionT1 at the volume's own spacing, or a random U-Net on the same kind of card."""
    import torch

    from MedAICommonLib.modelcards import ModelCard, ModelWeights
    from MedAISegmentationLib.networks import buildNetwork

    if BRAIN in ModelRegistry.load():
        model = loadSegmentationModel(BRAIN, "cpu")
        model.card = copy.copy(model.card)
        source = "trained BrainExtractionT1 network"
    else:
        torch.manual_seed(0)
        # The architecture of Resources/Models/configs/BrainExtractionT1.json, with random weights.
        arguments = {"architecture": "unet", "spatialDims": 3, "inChannels": 1, "outChannels": 2}
        arguments |= {"channels": [8, 16, 32, 64], "dropout": 0.15, "subunits": 1}
        network = buildNetwork(**arguments).eval()
        card = ModelCard("Random", "random U-Net", "segmentation", "MR", "unet", "state_dict",
                         ModelWeights("none"), "none", "none", builder="MedAISegmentationLib.networks:buildNetwork",
                         networkArguments=arguments)  # fmt: skip
        model = LoadedModel(card, network, torch.device("cpu"), [network])
        source = "random MedAI U-Net of BrainExtractionT1's shape (8, 16, 32, 64), BrainExtractionT1 not installed"
    model.card.inputSpacingMm, model.card.orientation = (1.0, 1.0, 1.0), "RAS"
    model.card.roiSizePx = tuple(roi) if roi else (model.card.roiSizePx or (48, 48, 48))
    model.card.overlap = overlap if overlap is not None else model.card.overlap
    model.card.intensity = model.card.intensity if model.card.intensity.get("method") != "none" else {
        "method": "percentile", "lower": 0.5, "upper": 99.5}  # fmt: skip
    print(f"network: {source}; window {model.card.roiSizePx}, overlap {model.card.overlap}, Gaussian blending")
    return model


def best(function, repeats, warmUp=True):
    if warmUp:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def overhead(repeats, roi, overlap) -> None:
    import torch
    from monai.inferers import sliding_window_inference

    scene = sceneio.createScene()
    volume = centreBlock(scene, loadSampleData(scene, "Colin27"), (160, 192, 160))
    model = benchmarkModel(roi, overlap)
    logic = MedAISegmentationLogic()
    tensor = prepareInput(model, metaTensorFromVolume(volume)).tensor
    assert tuple(tensor.shape[2:]) == (160, 192, 160), tensor.shape

    def module():
        result = logic.segmentWithModel(volume, model=model)
        sceneio.removeNodes(scene, [result.segmentationNode])

    def bare():
        with torch.no_grad():
            logits = sliding_window_inference(tensor, model.card.roiSizePx, 1, model.network,
                                              overlap=model.card.overlap, mode="gaussian")  # fmt: skip
            return logits.argmax(1)

    with torch.no_grad():  # warm-up: one window, so that neither side pays for first-call set-up
        model.network(tensor[..., : model.card.roiSizePx[0], : model.card.roiSizePx[1], : model.card.roiSizePx[2]])
    bareTimes, moduleTimes = [], []
    for _ in range(repeats):  # alternate, so that both sides see the same load
        bareTimes.append(best(bare, 1, warmUp=False))
        moduleTimes.append(best(module, 1, warmUp=False))
    bareSeconds, moduleSeconds = min(bareTimes), min(moduleTimes)
    print(f"volume 160x192x160 at 1 mm, torch threads {torch.get_num_threads()}, best of {repeats}")
    print(f"bare MONAI sliding_window_inference: {bareSeconds:.2f} s")
    print(f"MedAI segmentWithModel, MRML in, segmentation node out: {moduleSeconds:.2f} s")
    print(f"ratio module / bare: {moduleSeconds / bareSeconds:.3f} (target <= 1.15)")


def fastMode(repeats) -> None:
    if BRAIN not in ModelRegistry.load():
        print(f"fast mode: skipped, {BRAIN} is not in the registry yet")
        return
    scene = sceneio.createScene()
    volume = loadSampleData(scene, "Colin27")
    reference = loadSampleData(scene, "Colin27BrainMask")
    truth = labelmapFromSegmentation(reference, volume)[0] > 0
    model = loadSegmentationModel(BRAIN, "cpu")
    logic = MedAISegmentationLogic()
    results = {}
    for fast in (False, True):
        outputs = []

        def run(fast=fast, outputs=outputs):
            outputs.append(logic.segmentWithModel(volume, model=model, fast=fast).segmentationNode)

        seconds = best(run, repeats)
        mask = labelmapFromSegmentation(outputs[-1], volume)[0] > 0
        dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
        results[fast] = (seconds, dice)
        spacing = model.card.fastSpacingMm if fast else model.card.inputSpacingMm
        print(
            f"{'fast' if fast else 'full'} mode ({spacing} mm): {seconds:.2f} s, Dice {dice:.4f} against Colin27BrainMask"
        )
    (fullSeconds, fullDice), (fastSeconds, fastDice) = results[False], results[True]
    print(f"fast / full time: {fastSeconds / fullSeconds:.3f} (target <= 0.333); "
          f"Dice change {fastDice - fullDice:+.4f} (target >= -0.02)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("overhead", "fast"), default=["overhead", "fast"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--roi", type=int, nargs=3, help="window size (default: the card's, else 48 48 48)")
    parser.add_argument("--overlap", type=float, help="window overlap (default: the card's)")
    arguments = parser.parse_args()
    if "overhead" in arguments.parts:
        overhead(arguments.repeats, arguments.roi, arguments.overlap)
    if "fast" in arguments.parts:
        fastMode(arguments.repeats)


if __name__ == "__main__":
    main()
