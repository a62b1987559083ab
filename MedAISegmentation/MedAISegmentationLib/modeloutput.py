"""Output nodes of model segmentation: segments with the card's names, colours and terminology, probability volumes.

Probabilities are kept as ONE ``vtkMRMLVectorVolumeNode`` with one float32 component per class,
component ``c`` being the probability of label value ``c`` (component 0: background), on the
input's voxel grid and under its parent transform; the components sum to one in every voxel.
Saved as NRRD it is a 4D image whose first axis is the class.

Segments carry the card's label names and colours, and a standard terminology entry (SNOMED CT
codes, Slicer's terminology string) when the card gives one or the name is a known structure.
Every node is created on the main thread after all computing is done; if creating one fails the
ones already made are removed, so the scene is left as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.modelcards import ModelCard
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
from MedAICommonLib.volumes import setVolumeIjkToRas

from .canonicalgrid import localIjkToRas
from .watershedoutput import objectColor

__all__ = ["segmentInfos", "terminologyFor", "createModelSegmentation", "createProbabilityVolume", "KNOWN_TERMINOLOGY"]

_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
_TAIL = "~^^~Anatomic codes - DICOM master list~^^~^^"
KNOWN_TERMINOLOGY = {
    "brain": _ANATOMY + "SCT^12738006^Brain" + _TAIL,
    "bone": _ANATOMY + "SCT^272673000^Bone" + _TAIL,
    "skull": _ANATOMY + "SCT^89546000^Skull" + _TAIL,
    "nucleus": _ANATOMY + "SCT^84640000^Nucleus" + _TAIL,
    "nuclei": _ANATOMY + "SCT^84640000^Nucleus" + _TAIL,
}
"""Slicer terminology entries for label names that models of this project use (lower case)."""


def terminologyFor(name: str, given: str | None = None) -> str | None:
    """The card's terminology entry, else the known entry for the first word of ``name`` (``"Brain"``, ``"Bone"``)."""
    if given:
        return given
    words = name.lower().replace("-", " ").split()
    return next((KNOWN_TERMINOLOGY[w] for w in words if w in KNOWN_TERMINOLOGY), None)


def segmentInfos(card: ModelCard, labels: np.ndarray, instances: bool) -> list[SegmentInfo]:
    """One segment per class of the card (empty ones kept), or per object when instances were split.

    A user's model without labels in its card gets ``Label 1``... for every value present.
    """
    if instances:
        base = card.labels[0].name if card.labels else "Object"
        values = np.unique(labels)
        return [SegmentInfo(f"{base} {int(v)}", objectColor(int(v)), int(v)) for v in values if v > 0]
    if card.labels:
        return [SegmentInfo(label.name, label.color, label.value) for label in card.labels]
    from .modelbundle import defaultColor

    return [SegmentInfo(f"Label {int(v)}", defaultColor(int(v)), int(v)) for v in np.unique(labels) if v > 0]


def _tagTerminology(segmentationNode: Any, card: ModelCard) -> None:
    import slicer

    given = {label.name: label.terminology for label in card.labels}
    segmentation = segmentationNode.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        entry = terminologyFor(segment.GetName(), given.get(segment.GetName()))
        if entry:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)


def createModelSegmentation(
    scene: Any,
    labels: np.ndarray,
    inputVolumeNode: Any,
    card: ModelCard,
    name: str,
    outputNode: Any = None,
    instances: bool = False,
) -> Any:
    """A segmentation of ``labels`` (KJI, on the input's grid) under the input's parent transform.

    Args:
        scene: the scene to add to.
        labels: integer label map in the input volume's KJI order.
        inputVolumeNode: the (first) input volume; its grid and parent transform are used.
        card: the model card (segment names, colours, terminology).
        name: name of a new node.
        outputNode: an existing segmentation node whose segments are replaced, or None for a new one.
        instances: ``labels`` holds objects (1..N) rather than classes.

    Returns:
        The segmentation node (``outputNode`` when given).
    """
    created = createSegmentationFromLabelmap(
        scene, labels.astype(np.int16), localIjkToRas(inputVolumeNode), segmentInfos(card, labels, instances), name
    )
    _tagTerminology(created, card)
    if outputNode is None:
        created.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
        return created
    from MedAICommonLib.sceneio import removeNodes

    try:
        outputNode.GetSegmentation().DeepCopy(created.GetSegmentation())
        outputNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolumeNode)
        outputNode.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
        if outputNode.GetDisplayNode() is None:
            outputNode.CreateDefaultDisplayNodes()
    finally:
        removeNodes(scene, [created])
    return outputNode


def createProbabilityVolume(scene: Any, probabilities: np.ndarray, inputVolumeNode: Any, name: str) -> Any:
    """A ``vtkMRMLVectorVolumeNode``: component ``c`` = probability of class ``c``, on the input grid.

    Args:
        scene: the scene to add to.
        probabilities: float ``(L, K, J, I)`` on the input's grid.
        inputVolumeNode: the input volume (grid and parent transform).
        name: node name (made unique).
    """
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    classes = probabilities.shape[0]
    voxels = np.ascontiguousarray(np.moveaxis(probabilities.astype(np.float32), 0, -1)).reshape(-1, classes)
    scalars = numpy_to_vtk(voxels, deep=True)
    scalars.SetName("ClassProbabilities")
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(probabilities.shape[3], probabilities.shape[2], probabilities.shape[1])
    imageData.GetPointData().SetScalars(scalars)
    volumeNode = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
    setVolumeIjkToRas(volumeNode, localIjkToRas(inputVolumeNode))
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode
