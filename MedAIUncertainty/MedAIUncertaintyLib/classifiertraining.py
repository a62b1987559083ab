"""Training of the shipped nucleus-versus-background patch classifier (``medai train classification CONFIG``).

The config (JSON; ``Resources/Models/configs/classifier_nuclei2d.json`` made the shipped weights)
names the sample image and mask, the patch size, the first held-back column, the patch counts, the
iterations, batch size, learning rate, seed and the network's keyword arguments. Training is seeded
and runs on the CPU in about a minute. Augmentation: flips, 90-degree rotations, intensity gain and
gamma. The held-back region is evaluated with :func:`evaluateClassifier` (confusion matrix, rates,
ROC and AUC) and, when ``saliencyChecks`` > 0, with the Grad-CAM pointing game and the
model-randomisation test on that many held-back nucleus patches.

Outputs in ``outputDir``: the weights (a state dict), and ``report.json`` with the metrics, the ROC
curve, the sha256 and size of the weights, the seconds and the machine.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback

from .classifierdata import PatchSet, loadNucleiImage, samplePatchSets
from .classifiermetrics import binaryMetrics, rocCurve
from .classifiernetwork import buildPatchClassifier

__all__ = ["trainClassifierFromConfig", "trainClassifier", "evaluateClassifier", "classifierScores"]

_REQUIRED = ("image", "mask", "patchSizePx", "heldBackFromColumn", "trainPatches", "testPatches", "iterations")


def _readConfig(configPath: str | Path) -> dict[str, Any]:
    path = Path(configPath)
    if not path.is_file():
        raise MedAIInputError(f"Classifier config {path} does not exist.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise MedAIInputError(
            f"Classifier config {path} is not valid JSON: {error.msg} at line {error.lineno}."
        ) from None
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise MedAIInputError(f"Classifier config {path} lacks: {', '.join(missing)}.")
    return config


def _augment(batch, generator):
    """Random flips, 90-degree rotations, gain and gamma of a (B, 1, H, W) batch in 0-1."""
    import torch

    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-1)
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-2)
    batch = torch.rot90(batch, int(torch.randint(0, 4, (1,), generator=generator)), dims=(-2, -1))
    gain = 0.7 + 0.6 * torch.rand(batch.shape[0], 1, 1, 1, generator=generator)
    gamma = torch.exp(0.4 * (torch.rand(batch.shape[0], 1, 1, 1, generator=generator) - 0.5))
    return (batch.clamp(min=0) ** gamma * gain).clamp(0, 1.5)


def trainClassifier(
    training: PatchSet,
    config: dict[str, Any],
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
):
    """Train a new patch classifier on ``training``; returns the network in eval mode."""
    import torch

    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = buildPatchClassifier(**_networkArguments(config))
    optimiser = torch.optim.AdamW(network.parameters(), lr=float(config.get("learningRate", 2e-3)), weight_decay=1e-4)
    iterations, batchSize = int(config["iterations"]), int(config.get("batchSize", 64))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, float(config.get("learningRate", 2e-3)), total_steps=iterations
    )
    patches, labels = torch.from_numpy(training.patches), torch.from_numpy(training.labels)
    network.train()
    for iteration in range(iterations):
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        indices = torch.randint(0, patches.shape[0], (batchSize,), generator=generator)
        loss = torch.nn.functional.cross_entropy(network(_augment(patches[indices], generator)), labels[indices])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None and iteration % 50 == 0:
            progress(
                iteration / iterations,
                f"Training the classifier: iteration {iteration}, loss {float(loss.detach()):.3f}",
            )
    return network.eval()


def _networkArguments(config: dict[str, Any]) -> dict[str, Any]:
    arguments = dict(config.get("network", {}))
    if "channels" in arguments:
        arguments["channels"] = tuple(arguments["channels"])
    arguments.setdefault("patchSizePx", int(config["patchSizePx"]))
    return arguments


def classifierScores(network, patches: np.ndarray, batchSize: int = 512) -> np.ndarray:
    """Probability of class 1 (nucleus) for (N, 1, H, W) patches, the network in eval mode."""
    import torch

    scores = []
    with torch.no_grad():
        for start in range(0, patches.shape[0], batchSize):
            logits = network(torch.from_numpy(patches[start : start + batchSize]))
            scores.append(torch.softmax(logits, dim=1)[:, 1].numpy())
    return np.concatenate(scores)


def evaluateClassifier(network, heldBack: PatchSet, saliencyChecks: int = 0, seed: int = 0) -> dict[str, Any]:
    """Metrics of the classifier on held-back patches; with ``saliencyChecks`` > 0, the Grad-CAM checks too."""
    scores = classifierScores(network, heldBack.patches)
    metrics = binaryMetrics(scores, heldBack.labels)
    fpRate, tpRate, thresholds = rocCurve(scores, heldBack.labels)
    keep = np.unique(np.linspace(0, fpRate.size - 1, min(fpRate.size, 101)).round().astype(int))
    metrics["roc"] = {"falsePositiveRate": fpRate[keep].tolist(), "truePositiveRate": tpRate[keep].tolist()}
    if saliencyChecks > 0:
        from .saliencychecks import classifierSaliencyChecks

        metrics["saliency"] = [
            classifierSaliencyChecks(network, heldBack, saliencyChecks, method, seed=seed)
            for method in ("gradcam", "gradcampp")
        ]
    return metrics


def trainClassifierFromConfig(
    configPath: str | Path,
    outputDir: str | Path,
    progress: ProgressCallback | None = None,
    cancelToken: CancelToken | None = None,
) -> dict[str, Any]:
    """Train the patch classifier a config describes, evaluate it on its held-back region, save both.

    Args:
        configPath: the JSON config (see the module docstring).
        outputDir: folder for the weights (``weightsFile`` of the config) and ``report.json``; created.
        progress: ``progress(fraction, message)``.
        cancelToken: checked every iteration.

    Returns:
        The report (also written to ``outputDir/report.json``).

    Raises:
        MedAIInputError: the config is missing, not JSON, or lacks a key (nothing is written then).
    """
    import torch

    from MedAICommonLib.checksums import fileSha256

    config = _readConfig(configPath)
    started = time.perf_counter()
    image, mask = loadNucleiImage(config["image"], config["mask"])
    training, heldBack = samplePatchSets(
        image,
        mask,
        int(config["patchSizePx"]),
        int(config["heldBackFromColumn"]),
        int(config["trainPatches"]),
        int(config["testPatches"]),
        seed=int(config.get("seed", 0)),
    )
    network = trainClassifier(training, config, progress, cancelToken)
    trainingSeconds = time.perf_counter() - started
    if progress is not None:
        progress(0.95, "Evaluating on the held-back region")
    metrics = evaluateClassifier(network, heldBack, int(config.get("saliencyChecks", 0)), int(config.get("seed", 0)))
    outputDir = Path(outputDir)
    outputDir.mkdir(parents=True, exist_ok=True)
    weights = outputDir / config.get("weightsFile", "classifier.pt")
    torch.save(network.state_dict(), weights)
    report = {
        "config": str(configPath),
        "modelId": config.get("modelId", ""),
        "weights": {"file": weights.name, "sha256": fileSha256(weights), "sizeBytes": weights.stat().st_size},
        "trainingPatches": int(training.labels.size),
        "heldBackPatches": int(heldBack.labels.size),
        "heldBack": metrics,
        "seed": int(config.get("seed", 0)),
        "seconds": round(trainingSeconds, 1),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
    }
    (outputDir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if progress is not None:
        progress(1.0, f"Held-back AUC {metrics['auc']:.3f}")
    return report


def createClassifierReportNodes(scene: Any, metrics: dict[str, Any], name: str = "Classifier") -> tuple[Any, Any]:
    """The held-back metrics as MRML nodes: a table of the rates and confusion matrix, and the ROC as a plot chart.

    Args:
        scene: the ``vtkMRMLScene``.
        metrics: ``report["heldBack"]`` of :func:`trainClassifierFromConfig` (or :func:`evaluateClassifier`).
        name: prefix of the node names.

    Returns:
        ``(tableNode, rocChartNode)``.
    """
    from MedAICommonLib.tables import fillTable

    from .uncertaintyoutput import createCurveChart

    (tn, fp), (fn, tp) = metrics["confusionMatrix"]
    rows = [("AUC", metrics["auc"]), ("accuracy", metrics["accuracy"]), ("sensitivity", metrics["sensitivity"]),
            ("specificity", metrics["specificity"]), ("precision", metrics["precision"]), ("NPV", metrics["npv"]),
            ("true negatives", tn), ("false positives", fp), ("false negatives", fn), ("true positives", tp)]  # fmt: skip
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{name} metrics"))
    fillTable(
        tableNode,
        [("Metric", "string", [r[0] for r in rows], ""), ("Value", "double", [float(r[1]) for r in rows], "")],
    )
    roc = metrics["roc"]
    _rocTable, chartNode = createCurveChart(
        scene, f"{name} ROC (AUC {metrics['auc']:.3f})",
        {"false positive rate": roc["falsePositiveRate"], "true positive rate": roc["truePositiveRate"]},
        [("ROC", "false positive rate", "true positive rate")], ("false positive rate", "true positive rate"),
    )  # fmt: skip
    return tableNode, chartNode
