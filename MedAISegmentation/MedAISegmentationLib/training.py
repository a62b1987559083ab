"""Train a segmentation network from a JSON configuration (``medai train segmentation CONFIG``).

The configuration names the data, the grid (spacing, patch size), the network (``networks.buildNetwork``
arguments), the intensity scaling and augmentation, the iterations, the seed and the output. Training
is reproducible: one seed drives torch, MONAI's transforms and the numpy generators, and torch runs
deterministic CPU kernels with the configured number of threads. It writes into the output folder:
``<id>.pt`` (the network's ``state_dict``), ``<id>.card.json`` (a ready ``models.json`` entry, with
the accuracy measured on held-out data and the classical baseline) and ``<id>.log.jsonl`` (loss and
validation per step). See ``Resources/Models/configs/`` for the configurations of the shipped models.

Example::

    result = trainSegmentation("Resources/Models/configs/NucleiFluorescence2D.json", "/tmp/out")
    print(result.card["measuredAccuracy"])
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback

from .trainingconfig import loadTrainingConfig

__all__ = ["TrainingResult", "trainSegmentation", "buildConfiguredNetwork", "loadTrainingConfig"]


@dataclass
class TrainingResult:
    """What a training wrote and measured.

    Attributes:
        weightsPath: the ``state_dict`` file.
        cardPath: the ``models.json`` entry (JSON).
        card: that entry as a dictionary.
        losses: training loss per iteration.
        validation: ``(iteration, metric)`` pairs on the validation data.
        seconds: wall-clock seconds of the training loop (without the final evaluation).
    """

    weightsPath: Path
    cardPath: Path
    card: dict
    losses: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    seconds: float = 0.0


def buildConfiguredNetwork(config: dict):
    """Build the configuration's network (untrained), as the model card's builder will."""
    from .networks import buildNetwork

    return buildNetwork(**networkArguments(config))


def networkArguments(config: dict) -> dict:
    """The keyword arguments of ``buildNetwork`` for this configuration (the card's ``networkArguments``)."""
    network = dict(config["network"])
    arguments = {
        "architecture": network.pop("architecture"),
        "spatialDims": config["spatialDims"],
        "inChannels": len(config["inputChannels"]),
        "outChannels": config["outChannels"],
        "channels": list(network.pop("channels", (16, 32, 64, 128))),
        "dropout": float(network.pop("dropout", 0.1)),
    }
    arguments.update(network)
    return arguments


def _seedEverything(seed: int, threads: int) -> None:
    import torch
    from monai.utils import set_determinism

    torch.set_num_threads(threads)
    set_determinism(seed=seed)
    torch.manual_seed(seed)


def _dataSource(config: dict, seed: int):
    from .trainingaugment import ArraySource, SyntheticHeadSource
    from .trainingdata import labelsFromInstances, loadSampleOnGrid, splitRegion

    data = config["data"]
    if data["source"] == "synthetic-brain":
        return SyntheticHeadSource(config, seed)
    arrays = loadSampleOnGrid(data["image"], data["labels"], config.get("spacingMm"), config["spatialDims"])
    labels = arrays.labels
    if data.get("target", "labels") != "labels":
        labels = labelsFromInstances(labels, data["target"])
    else:
        labels = (labels > 0).astype(np.uint8) if config["outChannels"] == 2 else labels
    region = splitRegion(arrays.image.shape, data["trainRegion"])
    return ArraySource(config, seed, arrays.image[region], labels[region])


def _batch(source, batchSize: int, channelsLast: bool):
    import torch

    samples = [source.sample() for _ in range(batchSize)]
    images = torch.stack([torch.as_tensor(np.asarray(s["image"]), dtype=torch.float32) for s in samples])
    labels = torch.stack([torch.as_tensor(np.asarray(s["label"]), dtype=torch.float32) for s in samples])
    if channelsLast:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    return images, labels.round()


def trainSegmentation(
    configPath: str | os.PathLike,
    outputDir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
    evaluate: bool = True,
) -> TrainingResult:
    """Train, save the weights, measure held-out accuracy and baseline, and write the model card.

    Args:
        configPath: the JSON configuration (see ``trainingconfig``).
        outputDir: folder for the weights, card and log; None: the configuration's ``output``.
        progress: called with (fraction 0-1, message) after every iteration.
        cancelToken: checked every iteration; a cancelled training writes nothing more.
        evaluate: False skips the held-out evaluation (tests); the card then has no accuracy.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        MedAIInputError: bad configuration (before anything is written).
        MedAICancelledError: cancelled.
    """
    import torch
    from monai.losses import DiceCELoss

    config = loadTrainingConfig(configPath)
    output = Path(outputDir or config["output"]).expanduser()
    if output.exists() and not output.is_dir():
        raise MedAIInputError(f"The training output {output} is a file, not a folder.")
    progress = progress or (lambda fraction, message: None)
    cancelToken = cancelToken or CancelToken()
    schedule = config["training"]
    seed = int(schedule["seed"])
    _seedEverything(seed, int(schedule.get("threads", 2)))
    loadStart = os.getloadavg()
    progress(0.0, "Preparing training data")
    source = _dataSource(config, seed)
    network = buildConfiguredNetwork(config)
    channelsLast = config["spatialDims"] == 3
    if channelsLast:
        network = network.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(network.parameters(), lr=float(schedule["learningRate"]), weight_decay=1e-4)
    iterations = int(schedule["iterations"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(schedule["learningRate"]), total_steps=iterations, pct_start=0.05
    )
    lossFunction = DiceCELoss(to_onehot_y=True, softmax=True)
    output.mkdir(parents=True, exist_ok=True)
    logPath = output / f"{config['id']}.log.jsonl"
    result = TrainingResult(output / f"{config['id']}.pt", output / f"{config['id']}.card.json", {})
    start = time.perf_counter()
    with open(logPath, "w", encoding="utf-8") as log:
        for iteration in range(1, iterations + 1):
            cancelToken.raiseIfCancelled("Training cancelled.")
            network.train()
            images, labels = _batch(source, int(schedule.get("batchSize", 1)), channelsLast)
            loss = lossFunction(network(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            result.losses.append(float(loss))
            entry = {
                "iteration": iteration,
                "loss": round(float(loss), 5),
                "seconds": round(time.perf_counter() - start, 1),
            }
            if iteration % int(schedule.get("validationEvery", 0) or iterations + 1) == 0 or iteration == iterations:
                entry.update(_validate(config, network, result, iteration))
                torch.save(network.state_dict(), result.weightsPath)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            progress(iteration / iterations, f"Iteration {iteration}/{iterations}, loss {float(loss):.3f}")
    result.seconds = time.perf_counter() - start
    torch.save(network.state_dict(), result.weightsPath)
    machine = _machine(loadStart, int(schedule.get("threads", 2)))
    return finishTraining(config, network, result, machine, configPath, evaluate)


def _validate(config: dict, network, result: TrainingResult, iteration: int) -> dict:
    from .trainingevaluation import validationScore

    if not config["data"].get("validation"):
        return {}
    score = validationScore(config, network)
    result.validation.append((iteration, score))
    return {"validation": round(score, 4)}


def _machine(loadStart, threads: int) -> dict:
    import platform

    return {
        "processor": platform.processor() or platform.machine(),
        "cpuCount": os.cpu_count(),
        "torchThreads": threads,
        "loadAverageStart": round(loadStart[0], 2),
        "loadAverageEnd": round(os.getloadavg()[0], 2),
    }


def finishTraining(config, network, result: TrainingResult, machine: dict, configPath, evaluate=True) -> TrainingResult:
    """Measure held-out accuracy and baseline and write the card next to the weights."""
    from .trainingcard import buildModelCard

    measured, baselines = [], []
    if evaluate:
        from .trainingevaluation import evaluateHeldOut

        network.eval()
        measured, baselines = evaluateHeldOut(config, network)
    result.card = buildModelCard(config, result.weightsPath, measured, baselines, result.seconds, machine, configPath)
    result.cardPath.write_text(json.dumps(result.card, indent=2) + "\n", encoding="utf-8")
    return result
