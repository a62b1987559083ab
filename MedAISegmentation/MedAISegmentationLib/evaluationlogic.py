"""Evaluation on MRML nodes: a prediction against a reference, per segment and per object, into tables.

Both sides may be segmentation nodes or label map (integer) volumes on any grids: the prediction
is resampled onto the reference grid (nearest neighbour, world RAS, parent transforms honoured).
The metrics themselves are computed by :mod:`.evaluation` on numpy arrays.

:meth:`EvaluationLogic.evaluateSegmentation` does it all in one call;
:meth:`EvaluationLogic.prepareEvaluation` returns an :class:`EvaluationJob` whose three steps the
desktop spreads over the main thread (reading the nodes, adding the tables) and a worker thread
(the metrics, which take seconds to a minute).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import volumeGeometry
from MedAICommonLib.jobs import ProgressCallback
from MedAICommonLib.resampling import resampleLabelsNearest, sameGrid
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from . import evaluation
from .evaluationoutput import EvaluationOutput, evaluationTables

__all__ = ["EvaluationLogic", "EvaluationJob", "EvaluationOutput"]


def _labelNames(node: Any, values: list[int]) -> dict[int, str]:
    """Names of label values from a label map's own colour table, else ``Label <value>``."""
    displayNode = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
    colorNode = displayNode.GetColorNode() if displayNode is not None else None
    # Slicer's built-in tables name values arbitrarily ("jake"); only a user's or a file's table names structures.
    if colorNode is not None and not (
        colorNode.IsA("vtkMRMLColorTableNode") and colorNode.GetType() in (colorNode.User, colorNode.File)
    ):
        colorNode = None
    names = {}
    for value in values:
        name = colorNode.GetColorName(value) if colorNode is not None and value < colorNode.GetNumberOfColors() else ""
        names[value] = name if name and name != "(none)" else f"Label {value}"
    return names


def _labelsOf(node: Any, what: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(KJI label array, world IJK-to-RAS, {value: name}) of a segmentation or integer volume node."""
    import slicer

    if isinstance(node, slicer.vtkMRMLSegmentationNode):
        labels, ijkToRas, segments = labelmapFromSegmentation(node)
        return labels, ijkToRas, {segment.labelValue: segment.name for segment in segments}
    if not isinstance(node, slicer.vtkMRMLScalarVolumeNode):
        raise MedAIInputError(f"The {what} must be a segmentation or a label map volume, got {type(node).__name__}.")
    labels = arrayFromVolume(node)
    # Label maps written by other tools often hold whole numbers in a float type.
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.array_equal(labels, np.round(labels)):
        labels = labels.astype(np.int32)
    if labels.dtype.kind not in "biu" or labels.min() < 0:
        raise MedAIInputError(
            f"The {what} '{node.GetName()}' holds {labels.dtype} voxels that are not labels (whole numbers >= 0)."
        )
    values = [int(v) for v in np.unique(labels) if v != 0]
    return labels, ijkToRasFromVolume(node), _labelNames(node, values)


_ALL_LABELS = -1  # a "segment" that is the union of every non-zero label


def _mask(labels: np.ndarray, value: int | None) -> np.ndarray:
    if value == _ALL_LABELS:
        return labels > 0
    return labels == value if value is not None else np.zeros(labels.shape, dtype=bool)


def _segmentPairs(referenceNames: dict[int, str], predictionNames: dict[int, str], byName: bool) -> list[tuple]:
    """``(name, reference value or None, prediction value or None)`` for each compared segment."""
    if byName and set(referenceNames.values()) & set(predictionNames.values()):
        predictionByName = {name: value for value, name in predictionNames.items()}
        pairs = [(name, value, predictionByName.get(name)) for value, name in referenceNames.items()]
        paired = set(referenceNames.values())
        return pairs + [(name, None, value) for value, name in predictionNames.items() if name not in paired]
    values = sorted(set(referenceNames) | set(predictionNames))
    return [
        (
            referenceNames.get(v) or predictionNames[v],
            v if v in referenceNames else None,
            v if v in predictionNames else None,
        )
        for v in values
    ]


def _checkTableNode(node: Any, what: str) -> None:
    if node is not None and not node.IsA("vtkMRMLTableNode"):
        raise MedAIInputError(f"The {what} must be a table node, got {node.GetClassName()}.")


class EvaluationJob:
    """One evaluation in three steps, so that the desktop can compute off the main thread.

    The constructor (main thread) checks the nodes and reads their voxels; :meth:`compute` works on
    numpy arrays only (any thread, touches no MRML, no Qt); :meth:`createNodes` (main thread) fills
    or adds the metric tables. Arguments as :meth:`EvaluationLogic.evaluateSegmentation`.
    """

    def __init__(
        self,
        referenceNode: Any,
        predictionNode: Any,
        instanceLevel: bool = False,
        iouThreshold: float = 0.5,
        tableNode: Any = None,
        instanceTableNode: Any = None,
        createTables: bool = True,
    ) -> None:
        import slicer

        if referenceNode is None or predictionNode is None:
            raise MedAIInputError("Select both a reference and a prediction.")
        if not 0.0 < iouThreshold <= 1.0:
            raise MedAIInputError(f"The IoU threshold must lie in (0, 1], got {iouThreshold}.")
        _checkTableNode(tableNode, "segment metrics table")
        _checkTableNode(instanceTableNode, "object metrics table")
        if tableNode is not None and tableNode is instanceTableNode:
            raise MedAIInputError("The segment metrics and the object metrics need two different tables.")
        self.reference, self.ijkToRas, referenceNames = _labelsOf(referenceNode, "reference")
        self.prediction, self.predictionIjkToRas, predictionNames = _labelsOf(predictionNode, "prediction")
        if instanceLevel:
            self.pairs = [("All objects", _ALL_LABELS, _ALL_LABELS)]
        else:
            byName = all(isinstance(n, slicer.vtkMRMLSegmentationNode) for n in (referenceNode, predictionNode))
            self.pairs = _segmentPairs(referenceNames, predictionNames, byName)
        self.instanceLevel, self.iouThreshold = instanceLevel, iouThreshold
        self.scene = referenceNode.GetScene()
        self.tableNode, self.instanceTableNode, self.createTables = tableNode, instanceTableNode, createTables
        self.output: EvaluationOutput | None = None

    def compute(self, progress: ProgressCallback | None = None, cancelToken: Any = None) -> EvaluationOutput:
        """Compute the metrics (numpy, SimpleITK and MONAI only; safe in a worker thread).

        Checks ``cancelToken`` before each segment. Returns the :class:`EvaluationOutput` without
        tables (``tableNode`` and ``instanceTableNode`` None until :meth:`createNodes`).
        """
        reference, ijkToRas, prediction = self.reference, self.ijkToRas, self.prediction
        if not sameGrid(reference.shape, ijkToRas, prediction.shape, self.predictionIjkToRas):
            if progress is not None:
                progress(0.0, "Resampling the prediction onto the reference grid")
            prediction = resampleLabelsNearest(prediction, self.predictionIjkToRas, reference.shape, ijkToRas)
        spacingMm = volumeGeometry(ijkToRas)[0][::-1].copy()
        instances = None
        if self.instanceLevel:
            if progress is not None:
                progress(0.0, "Matching objects")
            instances = evaluation.instance_metrics(reference, prediction, iou_threshold=self.iouThreshold)
        rows = []
        for index, (name, referenceValue, predictionValue) in enumerate(self.pairs):
            if cancelToken is not None:
                cancelToken.raiseIfCancelled()
            if progress is not None:
                progress(index / max(len(self.pairs), 1), f"Comparing {name}")
            referenceMask, predictionMask = _mask(reference, referenceValue), _mask(prediction, predictionValue)
            row: dict[str, Any] = {"segment": name}
            for key, value in (("reference_label", referenceValue), ("prediction_label", predictionValue)):
                row[key] = None if value == _ALL_LABELS else value
            row.update(evaluation.segment_metrics(referenceMask, predictionMask, spacingMm))
            rows.append(row)
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        unit = "mm2" if sum(n > 1 for n in reference.shape) == 2 else "mm3"
        self.output = EvaluationOutput(rows, instances, None, None, unit)
        if progress is not None:
            progress(1.0, "Done")
        return self.output

    def createNodes(self, cancelToken: Any = None) -> EvaluationOutput:
        """Fill (or add) the metric tables in the reference's scene (main thread, after :meth:`compute`).

        Without ``createTables`` nothing is added and the output is returned as computed.

        Raises:
            RuntimeError: :meth:`compute` has not run.
            MedAICancelledError: when cancelled; nothing is added to the scene then.
        """
        if self.output is None:
            raise RuntimeError("EvaluationJob.createNodes() needs compute() first.")
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        if self.createTables:
            evaluationTables(self.output, self.scene, self.tableNode, self.instanceTableNode)
        return self.output


class EvaluationLogic:
    """The evaluation entry points of ``MedAISegmentationLogic`` (a mixin without state)."""

    def prepareEvaluation(
        self,
        referenceNode: Any,
        predictionNode: Any,
        instanceLevel: bool = False,
        iouThreshold: float = 0.5,
        tableNode: Any = None,
        instanceTableNode: Any = None,
        createTables: bool = True,
    ) -> EvaluationJob:
        """Check the inputs and read the voxels: the first step of :meth:`evaluateSegmentation`, same arguments.

        Raises:
            MedAIInputError: a missing or unsuitable node; nothing is added to the scene then.
        """
        return EvaluationJob(
            referenceNode, predictionNode, instanceLevel, iouThreshold, tableNode, instanceTableNode, createTables
        )

    def evaluateSegmentation(
        self,
        referenceNode: Any,
        predictionNode: Any,
        instanceLevel: bool = False,
        iouThreshold: float = 0.5,
        tableNode: Any = None,
        createTables: bool = True,
        progress: ProgressCallback | None = None,
        cancelToken: Any = None,
        instanceTableNode: Any = None,
    ) -> EvaluationOutput:
        """Compare a prediction with a reference (segmentation nodes or label map volumes, any grids).

        The prediction is resampled onto the reference grid (nearest neighbour, world RAS, parent
        transforms honoured). Segments are paired by name when both are segmentations sharing
        a segment name, else by label value; a segment missing on one side is compared with an
        empty mask. With ``instanceLevel`` every non-zero label is one object: objects are matched
        one-to-one by IoU and the voxel metrics are computed once, on all objects together.
        Overlapping segments of a segmentation node are merged first: a voxel counts for the
        later segment only.

        Args:
            referenceNode: ``vtkMRMLSegmentationNode`` or label map (integer) volume node.
            predictionNode: the same kinds.
            instanceLevel: also compute object counts, matching, precision, recall and F1.
            iouThreshold: IoU from which a matched object pair counts (instance level), in (0, 1].
            tableNode: a ``vtkMRMLTableNode`` to overwrite with the per-segment rows; None: a new one.
            createTables: put the results into table nodes (else only the returned numbers).
            progress: ``progress(fraction, message)``.
            cancelToken: ``MedAICommonLib.jobs.CancelToken``.
            instanceTableNode: a ``vtkMRMLTableNode`` to overwrite with the instance metrics
                (so that repeated evaluations reuse one table); None: a new one.

        Returns:
            :class:`EvaluationOutput`; ``report()`` gives the JSON of ``medai evaluate --report``.

        Raises:
            MedAIInputError: a missing or unsuitable node; nothing is added to the scene then.
            MedAICancelledError: when cancelled; nothing is added to the scene then.
        """
        job = self.prepareEvaluation(
            referenceNode, predictionNode, instanceLevel, iouThreshold, tableNode, instanceTableNode, createTables
        )
        job.compute(progress, cancelToken)
        return job.createNodes(cancelToken)
