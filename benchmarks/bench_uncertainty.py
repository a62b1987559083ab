"""Benchmark: one plain inference against Monte Carlo dropout with 10 samples, in one run, on a 160x192x160 volume.

Both go through the same code (MedAIUncertaintyLib's sliding-window predictors, MedAI's U-Net from
``MedAISegmentationLib.networks`` with dropout in its decoder, the same window and overlap), so the
ratio measures what MC dropout adds: the encoder runs once per window and the decoder on the 10
samples batched. ``--naive`` also times 10 full forward passes per window, the cost without sharing.
With ``--model ID`` the registry model runs through the segmentation inference instead (its own
spacing, window and intensity), e.g. ``--model BrainExtractionT1``.

Without ``--model``, an untrained MedAI U-Net (16-32-64-128 channels, dropout 0.1 in the decoder) runs
behind a card like the brain model's (2 mm RAS grid, window 96); the timing does not depend on the weights.

The volume is Colin27 (181x217x181, 1 mm) cropped to 160x192x160 around its centre.

Example:
    $ nice -n 10 python benchmarks/bench_uncertainty.py --window 96 --samples 10 --naive
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def _volume(scene):
    from MedAICommonLib import sampledata
    from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume

    colin = sampledata.loadSampleData(scene, "Colin27")
    array, ijkToRas = arrayFromVolume(colin), ijkToRasFromVolume(colin)
    start = [(n - m) // 2 for n, m in zip(array.shape, (160, 192, 160))]
    cropped = array[start[0] : start[0] + 160, start[1] : start[1] + 192, start[2] : start[2] + 160]
    shifted = ijkToRas.copy()
    shifted[:3, 3] = ijkToRas[:3, :3] @ np.array(start[::-1]) + ijkToRas[:3, 3]
    return createVolumeFromArray(scene, cropped.astype(np.float32), shifted, "Colin27 160x192x160")


def _model(args):
    """The registry model, or an untrained MedAI U-Net behind a card like the shipped brain model's (2 mm, RAS)."""
    import torch

    from MedAICommonLib.modelcards import ModelCard, ModelLabel, ModelWeights
    from MedAISegmentationLib.modelloading import LoadedModel
    from MedAISegmentationLib.networks import buildNetwork
    from MedAIUncertaintyLib.modelaccess import loadModel

    if args.model:
        return loadModel(args.model, "cpu")
    torch.manual_seed(0)
    network = buildNetwork("unet", 3, 1, 2, channels=tuple(args.channels), dropout=0.1).eval()
    card = ModelCard(
        "benchmark-unet", "untrained U-Net", "segmentation", "MRI", "MedAI U-Net", "state_dict",
        ModelWeights("none", None, None), "none", "none", [ModelLabel("Brain", 1, (0.9, 0.7, 0.6))],
        inputSpacingMm=(args.spacing,) * 3, roiSizePx=(args.window,) * 3, orientation="RAS",
        intensity={"method": "percentile", "lower": 0.5, "upper": 99.5},
    )  # fmt: skip
    return LoadedModel(card, network, torch.device("cpu"), members=[network])


def _timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=96, help="sliding window side in voxels (own network)")
    parser.add_argument("--spacing", type=float, default=2.0, help="model grid spacing in mm (own network)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--model", help="a registry model id instead of the untrained U-Net")
    parser.add_argument("--naive", action="store_true", help="also time N full forward passes per window")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()

    import torch

    from MedAICommonLib.sceneio import createScene
    from MedAIUncertaintyLib.modelaccess import prepareImage, runProbabilities
    from MedAIUncertaintyLib.sampling import mcDropoutMode, mcDropoutPredictor
    from MedAIUncertaintyLib.uncertaintylogic import _networks

    if args.threads:
        torch.set_num_threads(args.threads)
    scene = createScene()
    volume = _volume(scene)
    model = _model(args)
    network = _networks(model, "mc-dropout", None, "cpu")[0]
    prepared = prepareImage(model, volume)
    with torch.no_grad():
        runProbabilities(model, prepared.tensor[:, :, :48, :48, :48])  # warm-up (first-call allocations)
        plain, _ = _timed(lambda: prepared.toInputGrid(runProbabilities(model, prepared.tensor)))
        print(f"plain inference {plain:.2f} s (model grid {tuple(prepared.tensor.shape[2:])})", flush=True)
        with mcDropoutMode(network):
            shared, _ = _timed(
                lambda: runProbabilities(model, prepared.tensor, mcDropoutPredictor(network, args.samples))
            )
            naive = None
            if args.naive:
                predictor = mcDropoutPredictor(network, args.samples, shareEncoder=False)
                naive, _ = _timed(lambda: runProbabilities(model, prepared.tensor, predictor))
    whole, output = _timed(
        lambda: (
            __import__("MedAIUncertaintyLib.logic", fromlist=["x"])
            .MedAIUncertaintyLogic()
            .estimateUncertainty(volume, model, "mc-dropout", args.samples)
        )
    )
    numbers = {
        "volume": [160, 192, 160],
        "modelGrid": list(prepared.tensor.shape[2:]),
        "samples": args.samples,
        "plainSeconds": round(plain, 2),
        "mcDropoutSeconds": round(shared, 2),
        "ratio": round(shared / plain, 2),
        "mcDropoutEndToEndSeconds": round(whole, 2),
        "ratioEndToEnd": round(whole / plain, 2),
        "naiveSeconds": None if naive is None else round(naive, 2),
        "naiveRatio": None if naive is None else round(naive / plain, 2),
        "torchThreads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    print(f"plain inference {plain:.2f} s; MC dropout x{args.samples} {shared:.2f} s (ratio {shared / plain:.2f}); "
          f"end to end with maps and nodes {whole:.2f} s (ratio {whole / plain:.2f})")  # fmt: skip
    if naive is not None:
        print(f"without sharing the encoder: {naive:.2f} s (ratio {naive / plain:.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(numbers, handle, indent=2)
    print(json.dumps(numbers))


if __name__ == "__main__":
    main()
