"""Evaluation results: the numbers, their JSON report, and the metric tables in the scene.

:func:`evaluationTables` is the node-creating half of :class:`~.evaluationlogic.EvaluationJob`; it
runs on the main thread after the metrics were computed, and on failure removes every node it added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.sceneio import removeNodes
from MedAICommonLib.tables import fillTable

__all__ = ["EvaluationOutput", "evaluationTables"]


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


def _segmentColumns(output: EvaluationOutput) -> list[tuple[str, str, list[Any], str]]:
    rows = output.segments
    columns = [
        ("Segment", "string", [row["segment"] for row in rows], ""),
        ("Reference label", "string", [_labelText(row["reference_label"]) for row in rows], ""),
        ("Prediction label", "string", [_labelText(row["prediction_label"]) for row in rows], ""),
    ]
    for title, key, unit in _SEGMENT_COLUMNS:
        columns.append((title, "double", [row[key] for row in rows], output.volumeUnit if unit == "VOLUME" else unit))
    return columns


def evaluationTables(
    output: EvaluationOutput, scene: Any, tableNode: Any = None, instanceTableNode: Any = None
) -> None:
    """Fill (or add) the per-segment table and, with instance metrics, the instance table.

    Args:
        output: the computed results; its ``tableNode`` and ``instanceTableNode`` are set here.
        scene: the ``vtkMRMLScene`` that receives new tables.
        tableNode: a ``vtkMRMLTableNode`` to overwrite with the per-segment rows; None: a new one.
        instanceTableNode: a ``vtkMRMLTableNode`` to overwrite with the instance metrics; None: a new
            one (only made when ``output.instances`` holds numbers).
    """
    created = []
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("Segment metrics"))
        created.append(tableNode)
    try:
        if output.instances is not None and instanceTableNode is None:
            instanceTableNode = scene.AddNewNodeByClass(
                "vtkMRMLTableNode", scene.GenerateUniqueName("Instance metrics")
            )
            created.append(instanceTableNode)
        output.tableNode = fillTable(tableNode, _segmentColumns(output))
        if output.instances is not None:
            instances = {k: v for k, v in output.instances.items() if not isinstance(v, dict)}
            output.instanceTableNode = fillTable(
                instanceTableNode,
                [
                    ("Metric", "string", list(instances), ""),
                    ("Value", "double", [float(v) for v in instances.values()], ""),
                ],
            )
    except Exception:
        output.tableNode = output.instanceTableNode = None
        removeNodes(scene, created)
        raise
