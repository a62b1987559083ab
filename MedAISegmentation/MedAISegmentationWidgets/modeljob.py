"""The panel's model run: the Lib's three-step ``ModelSegmentationJob`` plus what the panel chose.

``MedAISegmentationLogic.prepareModelSegmentation`` checks the inputs, reads their voxels and loads the
model (main thread); ``compute`` runs the network on tensors only (the background thread); ``createNodes``
adds the segmentation and, when asked, the class probabilities (main thread). :class:`ModelJob` adds the
panel's side: the user's own model with an optional card file laid over its card, the channel check in
the user's words, and an existing probability volume chosen as output (refilled instead of a new one).

Example (plain Python)::

    job = ModelJob(MedAISegmentationLogic(), [t1Node], model="BrainExtractionT1")
    job.compute()  # in a thread in the desktop
    run = job.createNodes()
    print(run.segmentationNode.GetName(), run.seconds)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = ["OWN_MODEL", "ModelJob", "ModelRun", "modelCard", "segmentationModelCards"]

OWN_MODEL = ":own:"
"""The model choice that means the user's own model file or folder (never a registry id)."""


def segmentationModelCards() -> list[Any]:
    """The registry's segmentation networks (``ModelCard``), in registry order."""
    from MedAICommonLib.models import ModelRegistry

    return ModelRegistry.load().segmentationNetworks()


def modelCard(idOrPath: str, cardPath: str = "") -> Any:
    """The card of a registry id or of a user's model file or folder, with the user's card file laid over it.

    Raises:
        MedAIInputError: unknown id, missing file or folder, or a malformed card file.
    """
    from MedAISegmentationLib.modelloading import resolveModelCard

    return resolveModelCard(idOrPath, cardFile=cardPath or None)


@dataclass
class ModelRun:
    """What a model run added to the scene.

    Attributes:
        segmentationNode: the output segmentation (one segment per label of the model, on the input's grid).
        probabilityVolumeNode: the class probabilities (0-1, one component per class) or None.
        seconds: the time the run took (s); device: where it ran in the end (``"cpu"``, ``"cuda"``...).
        messages: fallbacks taken (GPU out of memory).
    """

    segmentationNode: Any
    probabilityVolumeNode: Any
    seconds: float
    device: str
    messages: list


class ModelJob:
    """A model run as three steps: check, read and load (main thread), compute (thread), add nodes (main thread).

    Args:
        logic: a ``MedAISegmentationLogic`` (its ``prepareModelSegmentation``).
        inputVolumeNodes: one scalar volume per input channel, in the model card's order.
        model: a registry id or the path of the user's model file or folder.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; fast: the card's coarser spacing; keepProbabilities: also
            keep the class probabilities.
        outputSegmentationNode, outputProbabilityVolumeNode: existing nodes to refill, or None (new nodes).
        cardPath: the user's model card file laid over the card of ``model``, or None.

    Raises:
        MedAIInputError: a channel without a volume, no model, an unreadable model or card, wrong channel
            count, missing or corrupt weights; nothing is created.
    """

    def __init__(
        self,
        logic: Any,
        inputVolumeNodes: list,
        model: str,
        device: str = "auto",
        fast: bool = False,
        keepProbabilities: bool = False,
        outputSegmentationNode: Any = None,
        outputProbabilityVolumeNode: Any = None,
        cardPath: str | None = None,
    ) -> None:
        if not inputVolumeNodes or any(node is None for node in inputVolumeNodes):
            raise MedAIInputError("Select a volume for every input channel of the model.")
        if not model:
            raise MedAIInputError("Choose a model, or the file or folder of your own model.")
        self._job = logic.prepareModelSegmentation(
            list(inputVolumeNodes),
            modelCard(model, cardPath) if cardPath else model,
            device=device,
            fast=fast,
            keepProbabilities=keepProbabilities,
            outputSegmentationNode=outputSegmentationNode,
        )
        names = [channel["name"] for channel in self._job.loadedModel.card.inputChannels]
        if names and len(names) != len(inputVolumeNodes):
            raise MedAIInputError(
                f"The model takes {len(names)} input channel(s) ({', '.join(names)}); "
                f"{len(inputVolumeNodes)} volume(s) were given."
            )
        self._probabilityTarget = outputProbabilityVolumeNode if keepProbabilities else None
        self._computed = False

    def compute(self, progress=None, cancelToken=None) -> ModelJob:
        """Run the network (tensors only, safe in a background thread); returns self."""
        self._job.compute(progress, cancelToken)
        self._computed = True
        return self

    def createNodes(self) -> ModelRun:
        """Add the segmentation (and probabilities) to the scene of the first input (main thread)."""
        if not self._computed:
            raise RuntimeError("ModelJob.createNodes called before compute.")
        output = self._job.createNodes()
        probability, target = output.probabilityVolumeNode, self._probabilityTarget
        if probability is not None and target is not None and target.GetScene() is not None:
            if target.GetClassName() == probability.GetClassName():  # refill the chosen volume
                _copyVolume(probability, target)
                probability.GetScene().RemoveNode(probability)
                probability = target
        return ModelRun(output.segmentationNode, probability, output.seconds, output.device, list(output.messages))


def _copyVolume(source: Any, target: Any) -> None:
    """Voxels and IJK-to-RAS of ``source`` into ``target`` (same volume class), under the same parent transform."""
    import vtk

    imageData = vtk.vtkImageData()
    imageData.DeepCopy(source.GetImageData())
    ijkToRas = vtk.vtkMatrix4x4()
    source.GetIJKToRASMatrix(ijkToRas)
    target.SetIJKToRASMatrix(ijkToRas)
    target.SetAndObserveImageData(imageData)
    target.SetAndObserveTransformNodeID(source.GetTransformNodeID())
    target.CreateDefaultDisplayNodes()
