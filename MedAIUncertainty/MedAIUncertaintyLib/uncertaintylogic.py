"""Uncertainty estimation on MRML nodes, split into steps so that the heavy part runs in a background thread.

:meth:`UncertaintyLogicMixin.prepareUncertainty` reads and checks the nodes and loads the model (main
thread, nothing created); :meth:`UncertaintyJob.compute` samples the model and computes the maps and
the calibration (arrays only, safe in a :class:`~MedAICommonLib.threadjob.ThreadJob`);
:meth:`UncertaintyJob.createNodes` adds the output nodes. :meth:`UncertaintyLogicMixin.estimateUncertainty`
does the three in one call. A failure or Cancel leaves the scene as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback, subProgress

from .modelaccess import loadModel, modelLabels, prepareImage, runProbabilities, scalarToInputGrid
from .uncertaintymeasures import MEASURES, sampleStatistics
from .uncertaintyresults import UncertaintyOutput, calibrationMetrics, createUncertaintyNodes, referenceClasses

__all__ = ["METHODS", "REVIEW_THRESHOLDS", "UncertaintyJob", "UncertaintyLogicMixin"]

METHODS = ("mc-dropout", "tta", "ensemble")
REVIEW_THRESHOLDS = {"entropy": 0.5, "variance": 0.02, "mutual-information": 0.05}
"""Default "review" level of each map: half the maximum entropy; a spread of about 0.14 in probability."""


@dataclass
class UncertaintyJob:
    """Everything :meth:`compute` needs, read from the scene by :meth:`UncertaintyLogicMixin.prepareUncertainty`."""

    model: Any
    method: str
    samples: int
    measure: str
    reviewThreshold: float
    inputVolumeNode: Any
    ijkToRas: np.ndarray
    prepared: Any
    networks: list[Any]
    reference: np.ndarray | None = None
    outputSegmentationNode: Any = None
    uncertaintyVolumeNode: Any = None
    chartPngPath: str | None = None
    seed: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    def compute(
        self, progress: ProgressCallback | None = None, cancelToken: CancelToken | None = None
    ) -> dict[str, Any]:
        """Sample the model, compute the maps on the input grid and, with a reference, the calibration."""
        import torch

        from .sampling import ensemblePredictor, mcDropoutMode, mcDropoutPredictor, splitSamples, ttaPredictor

        started = time.perf_counter()
        network = self.networks[0]
        run = subProgress(progress, 0.0, 0.85)
        with torch.no_grad():
            if self.method == "mc-dropout":
                with mcDropoutMode(network):
                    probabilities = runProbabilities(
                        self.model, self.prepared.tensor, mcDropoutPredictor(network, self.samples), run, cancelToken
                    )
            elif self.method == "tta":
                spatialDims = self.prepared.tensor.dim() - 2
                predictor = ttaPredictor(network, self.samples, spatialDims, seed=self.seed)
                probabilities = runProbabilities(self.model, self.prepared.tensor, predictor, run, cancelToken)
            else:
                probabilities = runProbabilities(
                    self.model, self.prepared.tensor, ensemblePredictor(self.networks), run, cancelToken
                )
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        if progress is not None:
            progress(0.85, "Measuring how much the samples disagree")
        statistics = sampleStatistics(
            splitSamples(probabilities, len(self.networks) if self.method == "ensemble" else self.samples).cpu().numpy()
        )
        mean = self.prepared.toInputGrid(torch.from_numpy(statistics["mean"])[None]).astype(np.float32)
        maps = {measure: scalarToInputGrid(self.prepared, statistics[measure]) for measure in MEASURES}
        self.result = {
            "mean": mean,
            "labels": np.argmax(mean, axis=0),
            "maps": maps,
            "seconds": time.perf_counter() - started,
        }
        if self.reference is not None:
            if progress is not None:
                progress(0.95, "Calibration against the reference")
            self.result["metrics"] = calibrationMetrics(mean, self.reference, maps, self.measure)
        return self.result

    def createNodes(self, scene: Any = None) -> UncertaintyOutput:
        """Add (or fill) the output nodes from :attr:`result`; on failure the scene is left as it was."""
        if not self.result:
            raise RuntimeError("UncertaintyJob.createNodes needs compute() first.")
        return createUncertaintyNodes(self, scene or self.inputVolumeNode.GetScene())


class UncertaintyLogicMixin:
    """``estimateUncertainty`` and its steps; mixed into :class:`MedAIUncertaintyLib.logic.MedAIUncertaintyLogic`."""

    def prepareUncertainty(
        self,
        inputVolumeNode: Any,
        model: Any,
        method: str = "mc-dropout",
        samples: int = 10,
        measure: str = "entropy",
        device: str = "auto",
        referenceSegmentationNode: Any = None,
        outputSegmentationNode: Any = None,
        uncertaintyVolumeNode: Any = None,
        reviewThreshold: float | None = None,
        ensembleModels: list[Any] | None = None,
        chartPngPath: str | None = None,
        seed: int = 0,
    ) -> UncertaintyJob:
        """Check the inputs and load the model; nothing is added to the scene. See :meth:`estimateUncertainty`."""
        from MedAICommonLib.volumes import ijkToRasFromVolume

        from .sampling import dropoutModules

        if method not in METHODS:
            raise MedAIInputError(f"Unknown uncertainty method '{method}'; choose one of {', '.join(METHODS)}.")
        if measure not in MEASURES:
            raise MedAIInputError(f"Unknown uncertainty measure '{measure}'; choose one of {', '.join(MEASURES)}.")
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise MedAIInputError(f"The number of samples must be a whole number of at least 1, got {samples!r}.")
        if inputVolumeNode is None:
            raise MedAIInputError("Select an input volume.")
        loaded = loadModel(model, device)
        networks = _networks(loaded, method, ensembleModels, device)
        if method == "mc-dropout" and not dropoutModules(networks[0]):
            raise MedAIInputError(
                f"Model '{getattr(loaded, 'id', None) or getattr(getattr(loaded, 'card', None), 'id', 'model')}' has no dropout "
                "layers, so Monte Carlo dropout cannot sample it; use test-time augmentation (tta) or an ensemble."
            )
        reference = None
        if referenceSegmentationNode is not None:
            reference = referenceClasses(referenceSegmentationNode, inputVolumeNode, modelLabels(loaded))
        threshold = REVIEW_THRESHOLDS[measure] if reviewThreshold is None else float(reviewThreshold)
        return UncertaintyJob(
            loaded, method, int(samples), measure, threshold, inputVolumeNode, ijkToRasFromVolume(inputVolumeNode),
            prepareImage(loaded, inputVolumeNode), networks, reference, outputSegmentationNode, uncertaintyVolumeNode,
            chartPngPath, seed,
        )  # fmt: skip

    def estimateUncertainty(
        self,
        inputVolumeNode: Any,
        model: Any,
        method: str = "mc-dropout",
        samples: int = 10,
        measure: str = "entropy",
        device: str = "auto",
        referenceSegmentationNode: Any = None,
        outputSegmentationNode: Any = None,
        uncertaintyVolumeNode: Any = None,
        reviewThreshold: float | None = None,
        ensembleModels: list[Any] | None = None,
        chartPngPath: str | None = None,
        seed: int = 0,
        progress: ProgressCallback | None = None,
        cancelToken: CancelToken | None = None,
    ) -> UncertaintyOutput:
        """Segment with a model several times and show where the samples disagree.

        Args:
            inputVolumeNode: the image (``vtkMRMLScalarVolumeNode``); a linear parent transform is honoured.
            model: a registry id, a model path, or a :class:`~MedAIUncertaintyLib.modelaccess.NetworkModel`.
            method: ``"mc-dropout"`` (dropout on at inference), ``"tta"`` (test-time augmentation) or
                ``"ensemble"`` (the members of the model card's ``ensemble``, or ``ensembleModels``).
            samples: predictions combined (ignored for an ensemble: one per member); at least 1.
            measure: the map put into ``uncertaintyVolumeNode`` and used for the review segment and the
                error-detection AUC: ``"entropy"``, ``"variance"`` or ``"mutual-information"``.
            device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
            referenceSegmentationNode: optional truth; segments are matched to the model's labels by name
                (or a single segment to a single label); adds calibration and error detection.
            outputSegmentationNode, uncertaintyVolumeNode: nodes to overwrite (None: new ones).
            reviewThreshold: voxels whose ``measure`` reaches it form the "Review" segment
                (default :data:`REVIEW_THRESHOLDS`).
            ensembleModels: extra members (ids, paths or NetworkModels) of the same labels.
            chartPngPath: where the reliability diagram is written as a PNG (with a reference).
            seed: seed of the test-time augmentations.
            progress, cancelToken: progress callback and cancel token.

        Returns:
            :class:`UncertaintyOutput` (segmentation with the review segment, one volume per measure, the
            summary table, and with a reference the metrics and charts).

        Raises:
            MedAIInputError: bad method, measure or sample count; a model without dropout for
                Monte Carlo dropout; a reference that does not match the model's labels. Nothing is
                added to the scene then.
            MedAICancelledError: cancelled; nothing is added.
        """
        job = self.prepareUncertainty(
            inputVolumeNode, model, method, samples, measure, device, referenceSegmentationNode,
            outputSegmentationNode, uncertaintyVolumeNode, reviewThreshold, ensembleModels, chartPngPath, seed,
        )  # fmt: skip
        job.compute(progress, cancelToken)
        return job.createNodes()


def _networks(loaded: Any, method: str, ensembleModels: list[Any] | None, device: str) -> list[Any]:
    """The network, or for an ensemble every member (the card's, the NetworkModel's, or the extra ones)."""
    if method != "ensemble":
        # A card's ensemble loads as an averaging wrapper; dropout and augmentation sample its first member.
        network = loaded.network
        return [network if hasattr(network, "modules") else loaded.members[0]]
    members = list(getattr(loaded, "members", None) or [])
    if not members and getattr(loaded, "card", None) is not None:
        members = _cardMembers(loaded)
    members = members or [loaded.network]
    for extra in ensembleModels or []:
        members.append(loadModel(extra, device).network)
    return members


def _cardMembers(loaded: Any) -> list[Any]:
    """Networks of the card's ``ensemble`` entries, through the segmentation inference when it offers them."""
    try:
        from MedAISegmentationLib import modelinference
    except ImportError:
        return []
    loader = getattr(modelinference, "loadEnsembleNetworks", None)
    return list(loader(loaded)) if loader is not None else []
