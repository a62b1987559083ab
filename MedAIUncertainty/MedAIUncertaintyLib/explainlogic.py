"""Saliency heatmaps on MRML nodes (``explain``), with the sanity checks printed beside every heatmap.

Like the uncertainty estimate, in three steps: :meth:`ExplainLogicMixin.prepareExplanation` reads and
checks the nodes (nothing created), :meth:`ExplainJob.compute` makes the heatmap and the checks (torch
only, safe in a background thread), :meth:`ExplainJob.createNodes` writes the heatmap volume.

A classifier of patches (``task`` classification) explains the patch centred on ``centerRas`` (default:
the image centre); the heatmap volume is zero outside that patch. A segmentation model explains its
``targetLabel`` over a region: the voxels of ``regionSegmentationNode`` or, by default, where it
predicts that label; the whole image is explained at once (not by sliding window).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback

from .modelaccess import NetworkModel, loadModel, modelLabels, prepareImage, scalarToInputGrid
from .saliency import SALIENCY_METHODS, RegionScore, computeHeatmap
from .saliencychecks import RANDOMISATION_DRAWS, describeChecks, pointingGame, randomisationCorrelations

__all__ = ["ExplainJob", "ExplainOutput", "ExplainLogicMixin"]

_log = logging.getLogger("MedAI")


@dataclass
class ExplainOutput:
    """The heatmap volume (0-1 on the input grid) and its sanity checks (``checks`` is the printed text).

    ``randomisationCorrelation`` is the mean over :data:`RANDOMISATION_DRAWS` re-initialised networks
    (NaN when the checks were skipped); ``checks`` also gives its range between draws.
    """

    heatmapVolumeNode: Any
    randomisationCorrelation: float
    pointingGameHit: bool | None
    checks: str
    seconds: float
    targetLayer: str | None


@dataclass
class ExplainJob:
    """What :meth:`compute` needs; made by :meth:`ExplainLogicMixin.prepareExplanation`."""

    model: Any
    method: str
    classIndex: int
    inputVolumeNode: Any
    ijkToRas: np.ndarray
    tensor: Any
    placeHeatmap: Any
    region: Any
    referenceMask: np.ndarray | None
    heatmapVolumeNode: Any
    targetLayer: str | None
    sanityChecks: bool = True
    result: dict | None = None

    def compute(self, progress: ProgressCallback | None = None, cancelToken: CancelToken | None = None) -> dict:
        """The heatmap on the input grid, the randomisation correlation and the pointing game."""
        started = time.perf_counter()
        network = copy.deepcopy(self.model.network).eval()  # hooks and modes of the explainer stay off the user's model
        scorer = network if _isClassifier(self.model) else RegionScore(network, self.region)
        layer = self.targetLayer
        if self.method.startswith("gradcam") and layer is None and _isClassifier(self.model):
            layer = getattr(self.model, "targetLayer", None)
        if progress is not None:
            progress(0.1, f"Computing the {self.method} heatmap")
        heatmap = computeHeatmap(scorer, self.tensor, self.classIndex, self.method, layer)
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        correlation, correlationRange = float("nan"), None
        if self.sanityChecks:
            if progress is not None:
                progress(0.55, f"Sanity check: the same heatmap with {RANDOMISATION_DRAWS} re-initialised networks")
            region = None if _isClassifier(self.model) else _regionOf(scorer, self.classIndex)

            def randomHeatmap(randomNetwork: Any) -> np.ndarray:
                randomScorer = randomNetwork if region is None else RegionScore(randomNetwork, region)
                return computeHeatmap(randomScorer, self.tensor, self.classIndex, self.method, layer).numpy()

            correlations = randomisationCorrelations(
                self.model.network, heatmap.numpy(), randomHeatmap, cancelToken=cancelToken
            )
            correlation, correlationRange = float(correlations.mean()), (correlations.min(), correlations.max())
        onGrid = self.placeHeatmap(heatmap)
        hit = (
            pointingGame(onGrid, self.referenceMask)
            if self.referenceMask is not None and self.referenceMask.any()
            else None
        )
        checks = describeChecks(correlation, hit, correlationRange) if self.sanityChecks else "Sanity checks skipped."
        self.result = {
            "heatmap": onGrid,
            "correlation": correlation,
            "hit": hit,
            "checks": checks,
            "layer": layer,
            "seconds": time.perf_counter() - started,
        }
        return self.result

    def createNodes(self, scene: Any = None) -> ExplainOutput:
        """Write the heatmap into a new (or the given) volume with the heat colour table; print the checks."""
        from MedAICommonLib.volumes import createVolumeFromArray, setVolumeIjkToRas, updateVolumeFromArray

        from .uncertaintyoutput import showMapVolume, uncertaintyColorTable

        if self.result is None:
            raise RuntimeError("ExplainJob.createNodes needs compute() first.")
        scene = scene or self.inputVolumeNode.GetScene()
        values = self.result["heatmap"]
        if self.heatmapVolumeNode is not None:
            volumeNode = self.heatmapVolumeNode
            setVolumeIjkToRas(volumeNode, self.ijkToRas)
            updateVolumeFromArray(volumeNode, values)
        else:
            volumeNode = createVolumeFromArray(
                scene, values, self.ijkToRas, f"{self.inputVolumeNode.GetName()} {self.method} heatmap"
            )
        showMapVolume(volumeNode, values, uncertaintyColorTable(scene))
        _log.info("%s heatmap: %s", self.method, self.result["checks"])
        return ExplainOutput(
            volumeNode,
            self.result["correlation"],
            self.result["hit"],
            self.result["checks"],
            self.result["seconds"],
            self.result["layer"],
        )


def _isClassifier(model: Any) -> bool:
    return (
        getattr(model, "task", None) == "classification"
        or getattr(getattr(model, "card", None), "task", "") == "classification"
    )


def _regionOf(scorer: Any, classIndex: int) -> Any:
    """The region a RegionScore explained (so that the randomised network explains the same voxels)."""
    if getattr(scorer, "region", None) is not None:
        return scorer.region
    masks = getattr(scorer, "_masks", None)
    return None if masks is None else masks[:, classIndex : classIndex + 1]


class ExplainLogicMixin:
    """``explain`` and its steps; mixed into :class:`MedAIUncertaintyLib.logic.MedAIUncertaintyLogic`."""

    def prepareExplanation(
        self,
        inputVolumeNode: Any,
        model: Any,
        method: str = "gradcam",
        targetLabel: int = 1,
        centerRas: Any = None,
        regionSegmentationNode: Any = None,
        referenceSegmentationNode: Any = None,
        heatmapVolumeNode: Any = None,
        targetLayer: str | None = None,
        sanityChecks: bool = True,
        device: str = "auto",
    ) -> ExplainJob:
        """Check the inputs, load the model and prepare its input; nothing is added. See :meth:`explain`."""
        from MedAICommonLib.volumes import ijkToRasFromVolume

        if method not in SALIENCY_METHODS:
            raise MedAIInputError(f"Unknown saliency method '{method}'; choose one of {', '.join(SALIENCY_METHODS)}.")
        if inputVolumeNode is None:
            raise MedAIInputError("Select an input volume.")
        loaded = loadModel(model, device)
        labels = modelLabels(loaded)
        values = [value for _name, value, _color in labels]
        if (
            isinstance(targetLabel, bool)
            or not isinstance(targetLabel, (int, np.integer))
            or targetLabel not in [0, *values]
        ):
            names = ", ".join(f"{value} ({name})" for name, value, _color in labels)
            raise MedAIInputError(f"The model has no label {targetLabel!r}; its labels are 0 (background), {names}.")
        ijkToRas = ijkToRasFromVolume(inputVolumeNode)
        prepared = prepareImage(loaded, inputVolumeNode)
        reference = _referenceMask(referenceSegmentationNode, inputVolumeNode, labels, int(targetLabel))
        if _isClassifier(loaded):
            tensor, place = _classifierPatch(loaded, prepared, ijkToRas, centerRas)
            region = None
        else:
            tensor, place = prepared.tensor, lambda heatmap: scalarToInputGrid(prepared, heatmap)
            region = _regionOnModelGrid(loaded, regionSegmentationNode, inputVolumeNode)
        return ExplainJob(
            loaded,
            method,
            int(targetLabel),
            inputVolumeNode,
            ijkToRas,
            tensor,
            place,
            region,
            reference,
            heatmapVolumeNode,
            targetLayer,
            sanityChecks,
        )

    def explain(
        self,
        inputVolumeNode: Any,
        model: Any,
        method: str = "gradcam",
        targetLabel: int = 1,
        centerRas: Any = None,
        regionSegmentationNode: Any = None,
        referenceSegmentationNode: Any = None,
        heatmapVolumeNode: Any = None,
        targetLayer: str | None = None,
        sanityChecks: bool = True,
        device: str = "auto",
        progress: ProgressCallback | None = None,
        cancelToken: CancelToken | None = None,
    ) -> ExplainOutput:
        """Heatmap of what the model looked at for ``targetLabel``, on the input grid, with its sanity checks.

        Args:
            inputVolumeNode: the image; a linear parent transform is honoured.
            model: a registry id, a model path, or a :class:`~MedAIUncertaintyLib.modelaccess.NetworkModel`.
            method: ``"gradcam"``, ``"gradcampp"``, ``"occlusion"`` or ``"smoothgrad"``.
            targetLabel: the output label value explained (0 is background).
            centerRas: for a patch classifier, the patch centre (R, A, S) in millimetres; default the image centre.
            regionSegmentationNode: for a segmentation model, the voxels whose label is explained (default:
                where the model predicts ``targetLabel``).
            referenceSegmentationNode: the true object, for the pointing game (segment named like the label,
                or the only segment).
            heatmapVolumeNode: a volume to overwrite (None: a new one).
            targetLayer: Grad-CAM's layer (module name); default the coarsest rectified layer.
            sanityChecks: run the model-randomisation test (one more heatmap per re-initialised network, 5 of them).
            device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
            progress, cancelToken: progress callback and cancel token.

        Returns:
            :class:`ExplainOutput`; ``checks`` is also logged to the ``MedAI`` logger.

        Raises:
            MedAIInputError: unknown method, a label the model lacks, a patch outside the image.
                Nothing is added to the scene then.
        """
        job = self.prepareExplanation(
            inputVolumeNode, model, method, targetLabel, centerRas, regionSegmentationNode,
            referenceSegmentationNode, heatmapVolumeNode, targetLayer, sanityChecks, device,
        )  # fmt: skip
        job.compute(progress, cancelToken)
        return job.createNodes()


def _referenceMask(segmentationNode: Any, inputVolumeNode: Any, labels: list, targetLabel: int) -> np.ndarray | None:
    if segmentationNode is None:
        return None
    from .uncertaintyresults import referenceClasses

    return referenceClasses(segmentationNode, inputVolumeNode, labels) == targetLabel


def _classifierPatch(model: Any, prepared: Any, ijkToRas: np.ndarray, centerRas: Any) -> tuple[Any, Any]:
    """The patch around ``centerRas`` from the prepared 2D image, and the function placing its heatmap on the grid."""
    from .classifiernetwork import PATCH_SIZE_PX

    size = int(getattr(model, "patchSizePx", PATCH_SIZE_PX))
    image = prepared.tensor  # (1, 1, I, J)
    shapeIj = image.shape[2:]
    if centerRas is None:
        centre = [s // 2 for s in shapeIj]
    else:
        ijk = np.linalg.inv(ijkToRas) @ np.r_[np.asarray(centerRas, float)[:3], 1.0]
        centre = [int(round(v)) for v in ijk[:2]]
    start = [c - size // 2 for c in centre]
    if any(s < 0 or s + size > n for s, n in zip(start, shapeIj)):
        raise MedAIInputError(
            f"The {size}x{size}-pixel patch around {centerRas} does not fit inside the image of {shapeIj[0]}x{shapeIj[1]} pixels."
        )
    patch = image[:, :, start[0] : start[0] + size, start[1] : start[1] + size].transpose(
        2, 3
    )  # model patches are (row, column)

    def place(heatmap: Any) -> np.ndarray:
        grid = np.zeros((1, shapeIj[1], shapeIj[0]), dtype=np.float32)  # (K, J, I)
        grid[0, start[1] : start[1] + size, start[0] : start[0] + size] = heatmap.numpy()
        return grid

    return patch.contiguous(), place


def _regionOnModelGrid(model: Any, segmentationNode: Any, inputVolumeNode: Any) -> Any:
    """A region segmentation as a (1, 1, *model spatial) mask, through the same preparation as the image."""
    if segmentationNode is None:
        return None
    import slicer

    from MedAICommonLib.segmentations import labelmapFromSegmentation
    from MedAICommonLib.volumes import ijkToRasFromVolume, setVolumeIjkToRas, updateVolumeFromArray

    array, _ijkToRas, _segments = labelmapFromSegmentation(segmentationNode, inputVolumeNode)
    if not array.any():
        raise MedAIInputError(f"Region segmentation '{segmentationNode.GetName()}' is empty.")
    helper = slicer.vtkMRMLScalarVolumeNode()  # never enters the scene
    setVolumeIjkToRas(helper, ijkToRasFromVolume(inputVolumeNode))
    updateVolumeFromArray(helper, (array > 0).astype(np.float32))
    tensor = prepareImage(model, helper).tensor if not isinstance(model, NetworkModel) else None
    if tensor is None:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray((array > 0).transpose()))[None, None].float()
        tensor = tensor[..., 0] if model.spatialDims == 2 else tensor
    return (tensor > (tensor.min() + tensor.max()) / 2)[:, :1]
