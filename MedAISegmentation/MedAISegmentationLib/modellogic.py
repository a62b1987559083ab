"""Segmentation with a network on MRML nodes: ``MedAISegmentationLogic().segmentWithModel``.

One run is a :class:`ModelSegmentationJob` in three steps, so that the desktop computes off the
main thread: the constructor (main thread) checks the nodes, reads their voxels and loads the
model; :meth:`~ModelSegmentationJob.compute` (any thread) runs the network on tensors only;
:meth:`~ModelSegmentationJob.createNodes` (main thread) adds the segmentation (and the class
probabilities when asked, see :mod:`.modeloutput`). A cancelled or failed run adds nothing.

Inputs: one volume node per input channel of the model, in the card's order, or a
``vtkMRMLSequenceNode`` of volumes (one per channel; same number of frames): every frame is
segmented and the output is a new sequence of segmentations with the same index values (added to
the browser of the input sequence when there is one).

Example::

    result = MedAISegmentationLogic().segmentWithModel(t1Node, model="BrainExtractionT1", fast=True)
    print(result.segmentationNode.GetName(), result.seconds, result.device)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import CancelToken, ProgressCallback, subProgress

from .modelinference import LoadedModel, loadSegmentationModel, predictLabels, predictProbabilities
from .modelloading import importBuilder
from .modeloutput import createModelSegmentation, createProbabilityVolume

__all__ = ["ModelSegmentationOutput", "ModelSegmentationJob", "ModelInferenceLogic", "labelsFromProbabilities"]


@dataclass
class ModelSegmentationOutput:
    """What :meth:`ModelInferenceLogic.segmentWithModel` made.

    Attributes:
        segmentationNode: the ``vtkMRMLSegmentationNode`` on the first input's grid; for a sequence
            input, the ``vtkMRMLSequenceNode`` of segmentations (one per frame).
        probabilityVolumeNode: ``vtkMRMLVectorVolumeNode`` (component c = class c) or, for a
            sequence, a sequence of them; None unless ``keepProbabilities``.
        seconds: wall time of the run (loading, computing and creating nodes).
        device: where the network ran in the end (``"cpu"``, ``"cuda"``...), after any fallback.
        messages: fallbacks taken (GPU out of memory), for the status line.
    """

    segmentationNode: Any
    probabilityVolumeNode: Any
    seconds: float
    device: str
    messages: list[str]


def labelsFromProbabilities(card: Any, probabilities: np.ndarray, spacingMmKji: Any) -> tuple[np.ndarray, bool]:
    """The label map (KJI) of class probabilities ``(L, K, J, I)``: the most probable class, or objects.

    When the card has ``postprocessing`` (``{"function": "module:function", "arguments": {...}}``),
    ``function(probabilities, spacingMm=spacingMmKji, **arguments)`` gives the label map instead
    (instance splitting of touching nuclei); the second value says so.
    """
    if card.postprocessing:
        function = importBuilder(card.postprocessing["function"], f"post-processing of model '{card.id}'")
        arguments = card.postprocessing.get("arguments", {})
        return np.asarray(function(probabilities, spacingMm=tuple(spacingMmKji), **arguments)), True
    dtype = np.uint8 if probabilities.shape[0] < 256 else np.int16
    return probabilities.argmax(0).astype(dtype), False


def _isSequence(node: Any) -> bool:
    return node is not None and node.IsA("vtkMRMLSequenceNode")


def _frames(nodes: list[Any]) -> list[list[Any]]:
    """Channel volume nodes per frame: ``[[v1, v2]]`` for volumes, one list per index of sequences."""
    if not any(_isSequence(node) for node in nodes):
        return [nodes]
    if not all(_isSequence(node) for node in nodes):
        raise MedAIInputError("Give either volume nodes or sequence nodes as the model's inputs, not both.")
    counts = {node.GetNumberOfDataNodes() for node in nodes}
    if len(counts) != 1 or 0 in counts:
        raise MedAIInputError(
            f"The input sequences must have the same, non-zero number of frames, got {sorted(counts)}."
        )
    return [[node.GetNthDataNode(index) for node in nodes] for index in range(counts.pop())]


class ModelSegmentationJob:
    """One model run in three steps (see the module docstring)."""

    def __init__(
        self,
        inputNodes: Any,
        model: Any = "BrainExtractionT1",
        device: str = "auto",
        fast: bool = False,
        keepProbabilities: bool = False,
        outputSegmentationNode: Any = None,
        outputName: str | None = None,
    ) -> None:
        from MedAICommonLib.volumes import metaTensorFromVolume

        nodes = list(inputNodes) if isinstance(inputNodes, (list, tuple)) else [inputNodes]
        if not nodes or any(node is None for node in nodes):
            raise MedAIInputError("Give at least one input volume node.")
        self.started = time.perf_counter()
        self.inputNodes = nodes
        self.frameNodes = _frames(nodes)
        if outputSegmentationNode is not None and (
            _isSequence(nodes[0]) or not outputSegmentationNode.IsA("vtkMRMLSegmentationNode")
        ):
            raise MedAIInputError("outputSegmentationNode must be a segmentation node (and the input not a sequence).")
        self.loadedModel = model if isinstance(model, LoadedModel) else loadSegmentationModel(model, device)
        self.tensors = [[metaTensorFromVolume(node) for node in frame] for frame in self.frameNodes]
        self.fast, self.keepProbabilities = fast, keepProbabilities
        self.outputSegmentationNode = outputSegmentationNode
        self.outputName = outputName or f"{nodes[0].GetName()} {self.loadedModel.card.id}"
        self.labels: list[tuple[np.ndarray, bool]] = []
        self.probabilities: list[np.ndarray | None] = []
        self.messages: list[str] = []

    def compute(self, progress: ProgressCallback | None = None, cancelToken: CancelToken | None = None) -> None:
        """Run the network on every frame (thread-safe: touches no MRML node)."""
        count = len(self.tensors)
        for index, channels in enumerate(self.tensors):
            if cancelToken is not None:
                cancelToken.raiseIfCancelled()
            frameProgress = subProgress(progress, index / count, (index + 1) / count)
            arguments = (self.loadedModel, channels, self.fast, frameProgress, cancelToken, self.messages.append)
            if not (self.keepProbabilities or self.loadedModel.card.postprocessing):
                self.labels.append((predictLabels(*arguments), False))
                self.probabilities.append(None)
                continue
            probabilities = predictProbabilities(*arguments)
            spacingKji = np.linalg.norm(np.asarray(channels[0].affine, dtype=float)[:3, :3], axis=0)[::-1]
            self.labels.append(labelsFromProbabilities(self.loadedModel.card, probabilities, spacingKji))
            self.probabilities.append(probabilities if self.keepProbabilities else None)

    def createNodes(self) -> ModelSegmentationOutput:
        """Add the outputs to the scene of the first input (main thread); nothing stays behind on failure."""
        from MedAICommonLib.sceneio import removeNodes

        if len(self.labels) != len(self.frameNodes):
            raise RuntimeError("createNodes needs a finished compute().")
        scene = self.inputNodes[0].GetScene()
        created: list[Any] = []
        try:
            if _isSequence(self.inputNodes[0]):
                segmentation, probability = self._createSequences(scene, created)
            else:
                segmentation, probability = self._createFrame(scene, 0, created, self.outputSegmentationNode)
        except BaseException:
            removeNodes(scene, created)
            raise
        seconds = time.perf_counter() - self.started
        return ModelSegmentationOutput(segmentation, probability, seconds, self.loadedModel.device.type, self.messages)

    def _createFrame(self, scene: Any, index: int, created: list, outputNode: Any = None) -> tuple[Any, Any]:
        inputNode = self.frameNodes[index][0]
        labels, instances = self.labels[index]
        card = self.loadedModel.card
        segmentation = createModelSegmentation(scene, labels, inputNode, card, self.outputName, outputNode, instances)
        if outputNode is None:
            created.append(segmentation)
        probability = None
        if self.probabilities[index] is not None:
            name = f"{self.outputName} probabilities"
            probability = createProbabilityVolume(scene, self.probabilities[index], inputNode, name)
            created.append(probability)
        return segmentation, probability

    def _createSequences(self, scene: Any, created: list) -> tuple[Any, Any]:
        from MedAICommonLib.sceneio import removeNodes

        source = self.inputNodes[0]
        outputs = [self._newSequence(scene, source, self.outputName, created)]
        if self.keepProbabilities:
            outputs.append(self._newSequence(scene, source, f"{self.outputName} probabilities", created))
        for index in range(len(self.frameNodes)):
            frame: list[Any] = []
            nodes = self._createFrame(scene, index, frame)
            for sequence, node in zip(outputs, nodes):
                sequence.SetDataNodeAtValue(node, source.GetNthIndexValue(index))
            removeNodes(scene, frame)  # the sequences hold copies
        browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
        for browser in [browsers.GetItemAsObject(i) for i in range(browsers.GetNumberOfItems())]:
            if browser.IsSynchronizedSequenceNode(source.GetID(), True):
                for sequence in outputs:
                    browser.AddSynchronizedSequenceNode(sequence)
        return outputs[0], outputs[1] if len(outputs) > 1 else None

    @staticmethod
    def _newSequence(scene: Any, source: Any, name: str, created: list) -> Any:
        sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
        created.append(sequence)
        sequence.SetIndexName(source.GetIndexName())
        sequence.SetIndexUnit(source.GetIndexUnit())
        sequence.SetIndexType(source.GetIndexType())
        return sequence


class ModelInferenceLogic:
    """Mixin of :class:`~.logic.MedAISegmentationLogic`: segmentation with shipped or users' networks."""

    def prepareModelSegmentation(self, inputVolumeNodes: Any, model: Any = "BrainExtractionT1", **options: Any):
        """Check the inputs, read them and load the model: the first step of :meth:`segmentWithModel`.

        Returns:
            A :class:`ModelSegmentationJob`; call ``compute(progress, cancelToken)`` (any thread), then ``createNodes()``.
        """
        return ModelSegmentationJob(inputVolumeNodes, model, **options)

    def segmentWithModel(
        self,
        inputVolumeNodes: Any,
        model: Any = "BrainExtractionT1",
        device: str = "auto",
        fast: bool = False,
        keepProbabilities: bool = False,
        outputSegmentationNode: Any = None,
        progress: ProgressCallback | None = None,
        cancelToken: CancelToken | None = None,
        outputName: str | None = None,
    ) -> ModelSegmentationOutput:
        """Segment volumes with a network; outputs lie on the first input's grid, under its parent transform.

        Args:
            inputVolumeNodes: a scalar volume node, or a list (one per input channel, in the card's
                order; they may lie on different grids), or sequence node(s) of volumes (every frame).
            model: a model id (``"BrainExtractionT1"``, ``"NucleiFluorescence2D"``, ``"HeadCTBone"``), a
                path (TorchScript file, MONAI bundle folder, nnU-Net v2 results folder), a ``ModelCard``,
                or a :class:`LoadedModel` (reused, e.g. cached by the panel).
            device: ``"auto"`` (GPU if any, CPU fallback on out-of-memory), ``"cpu"``, ``"cuda"`` or ``"mps"``.
            fast: use the card's coarser ``fastSpacingMm``.
            keepProbabilities: also add the class probabilities (see :mod:`.modeloutput`).
            outputSegmentationNode: an existing segmentation whose segments are replaced; None: a new one.
            progress: ``progress(fraction, message)``.
            cancelToken: checked between window batches and frames.
            outputName: name of new nodes (default ``"<input> <model id>"``).

        Returns:
            A :class:`ModelSegmentationOutput`.

        Raises:
            MedAIInputError: bad input (wrong channel count, 2D image for a 3D model, empty image,
                missing or corrupt weights...), raised before the scene is touched.
            MedAICancelledError: cancelled; the scene is as it was.
        """
        job = self.prepareModelSegmentation(
            inputVolumeNodes,
            model,
            device=device,
            fast=fast,
            keepProbabilities=keepProbabilities,
            outputSegmentationNode=outputSegmentationNode,
            outputName=outputName,
        )
        job.compute(progress, cancelToken)
        return job.createNodes()
