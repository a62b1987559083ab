"""Evaluation on MRML nodes: a prediction against a reference, per segment and per object, into tables.

Both sides may be segmentation nodes or label map (integer) volumes on any grids: the prediction
is resampled onto the reference grid (nearest neighbour, world RAS, parent transforms honoured).
The metrics themselves are computed by :mod:`.evaluation` on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import volumeGeometry
from MedAICommonLib.jobs import ProgressCallback
from MedAICommonLib.resampling import resampleLabelsNearest, sameGrid
from MedAICommonLib.sceneio import removeNodes
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.tables import fillTable
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from . import evaluation

__all__ = ["EvaluationLogic", "EvaluationOutput"]


@dataclass
class EvaluationOutput:
    """What :meth:`MedAISegmentationLogic.evaluateSegmentation` measured.

    Attributes:
        segments: one dict per compared segment: ``segment`` (name), ``reference_label``,
            ``prediction_label`` (None when absent) and the metrics of
            :func:`evaluation.segment_metrics` (volumes in ``volumeUnit``, distances in mm).
        instances: :func:`evaluation.instance_metrics` when asked for, else None.
        tableNode: ``vtkMRMLTableNode`` with one row per segment, or None.
        instanceTableNode: ``vtkMRMLTableNode`` with the instance metrics (one row per metric), or None.
        volumeUnit: ``"mm3"``, or ``"mm2"`` for one-slice images.
    """

    segments: list[dict[str, Any]]
    instances: dict[str, Any] | None
    tableNode: Any
    instanceTableNode: Any
    volumeUnit: str

    def report(self) -> dict[str, Any]:
        """JSON-ready results; undefined values (NaN) become None."""
        return _jsonReady({"volumeUnit": self.volumeUnit, "segments": self.segments, "instances": self.instances})


def _jsonReady(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonReady(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonReady(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


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


class EvaluationLogic:
    """The evaluation entry point of ``MedAISegmentationLogic`` (a mixin without state)."""

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
            iouThreshold: IoU from which a matched object pair counts (instance level).
            tableNode: a ``vtkMRMLTableNode`` to overwrite with the per-segment rows; None: a new one.
            createTables: put the results into table nodes (else only the returned numbers).
            progress: ``progress(fraction, message)``.
            cancelToken: ``MedAICommonLib.jobs.CancelToken``.

        Returns:
            :class:`EvaluationOutput`; ``report()`` gives the JSON of ``medai evaluate --report``.

        Raises:
            MedAIInputError: a missing or unsuitable node; nothing is added to the scene then.
            MedAICancelledError: when cancelled; nothing is added to the scene then.
        """
        import slicer

        if referenceNode is None or predictionNode is None:
            raise MedAIInputError("Select both a reference and a prediction.")
        reference, ijkToRas, referenceNames = _labelsOf(referenceNode, "reference")
        prediction, predictionIjkToRas, predictionNames = _labelsOf(predictionNode, "prediction")
        if not sameGrid(reference.shape, ijkToRas, prediction.shape, predictionIjkToRas):
            prediction = resampleLabelsNearest(prediction, predictionIjkToRas, reference.shape, ijkToRas)
        spacingMm = volumeGeometry(ijkToRas)[0][::-1].copy()
        instances = None
        if instanceLevel:
            instances = evaluation.instance_metrics(reference, prediction, iou_threshold=iouThreshold)
            pairs = [("All objects", _ALL_LABELS, _ALL_LABELS)]
        else:
            byName = all(isinstance(n, slicer.vtkMRMLSegmentationNode) for n in (referenceNode, predictionNode))
            pairs = _segmentPairs(referenceNames, predictionNames, byName)
        rows = []
        for index, (name, referenceValue, predictionValue) in enumerate(pairs):
            if cancelToken is not None:
                cancelToken.raiseIfCancelled()
            if progress is not None:
                progress(index / max(len(pairs), 1), f"Comparing {name}")
            referenceMask, predictionMask = _mask(reference, referenceValue), _mask(prediction, predictionValue)
            row: dict[str, Any] = {"segment": name}
            for key, value in (("reference_label", referenceValue), ("prediction_label", predictionValue)):
                row[key] = None if value == _ALL_LABELS else value
            row.update(evaluation.segment_metrics(referenceMask, predictionMask, spacingMm))
            rows.append(row)
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        unit = "mm2" if sum(n > 1 for n in reference.shape) == 2 else "mm3"
        output = EvaluationOutput(rows, instances, None, None, unit)
        if createTables:
            _evaluationTables(output, referenceNode.GetScene(), tableNode)
        if progress is not None:
            progress(1.0, "Done")
        return output


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


_SEGMENT_COLUMNS = [
    ("Dice", "dice", ""),
    ("IoU", "iou", ""),
    ("Sensitivity", "sensitivity", ""),
    ("Specificity", "specificity", ""),
    ("Precision", "precision", ""),
    ("Reference volume", "reference_volume", "VOLUME"),
    ("Prediction volume", "prediction_volume", "VOLUME"),
    ("Volume difference", "volume_difference", "VOLUME"),
    ("Hausdorff", "hausdorff_mm", "mm"),
    ("Hausdorff 95%", "hausdorff95_mm", "mm"),
    ("Average surface distance", "average_surface_distance_mm", "mm"),
]


def _labelText(value: int | None) -> str:
    return "" if value is None else str(value)


def _evaluationTables(output: EvaluationOutput, scene: Any, tableNode: Any) -> None:
    """Fill (or add) the per-segment table and, with instance metrics, an instance table."""
    created = []
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("Segment metrics"))
        created.append(tableNode)
    try:
        rows = output.segments
        columns = [
            ("Segment", "string", [row["segment"] for row in rows], ""),
            ("Reference label", "string", [_labelText(row["reference_label"]) for row in rows], ""),
            ("Prediction label", "string", [_labelText(row["prediction_label"]) for row in rows], ""),
        ]
        for title, key, unit in _SEGMENT_COLUMNS:
            columns.append(
                (title, "double", [row[key] for row in rows], output.volumeUnit if unit == "VOLUME" else unit)
            )
        output.tableNode = fillTable(tableNode, columns)
        if output.instances is not None:
            instances = {k: v for k, v in output.instances.items() if not isinstance(v, dict)}
            instanceTable = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("Instance metrics"))
            created.append(instanceTable)
            output.instanceTableNode = fillTable(
                instanceTable,
                [
                    ("Metric", "string", list(instances), ""),
                    ("Value", "double", [float(v) for v in instances.values()], ""),
                ],
            )
    except Exception:
        removeNodes(scene, created)
        raise
