"""What an uncertainty estimate gives back: the reference as class indices, the calibration numbers,
and the output nodes (segmentation with the review segment, map volumes, summary table, charts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError

from .uncertaintymeasures import (
    MEASURES,
    brierScore,
    errorDetectionAuc,
    expectedCalibrationError,
    reliabilityBins,
    riskCoverage,
)
from .uncertaintyoutput import (
    addReviewSegment,
    createCurveChart,
    fillSummaryTable,
    showMapVolume,
    uncertaintyColorTable,
    writeCalibrationPng,
)

__all__ = ["UncertaintyOutput", "referenceClasses", "calibrationMetrics", "createUncertaintyNodes"]


@dataclass
class UncertaintyOutput:
    """The nodes an uncertainty estimate made or filled, and its numbers.

    ``volumes``: one map volume per measure (entropy, variance, mutual-information); ``uncertaintyVolumeNode``
    is the one of the chosen measure. ``metrics`` (with a reference): ``ece``, ``brier``, ``errorAuc``
    (per measure), ``riskCoverageArea``, ``errorRate``, ``reliability`` and ``riskCoverage`` curves.
    """

    segmentationNode: Any
    reviewSegmentId: str
    uncertaintyVolumeNode: Any
    volumes: dict[str, Any]
    summaryTableNode: Any
    summary: list[dict[str, Any]]
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    chartNodes: dict[str, Any] = field(default_factory=dict)
    pngPath: str | None = None


def referenceClasses(segmentationNode: Any, inputVolumeNode: Any, labels: list[tuple]) -> np.ndarray:
    """The reference segmentation as model class indices (0 background) on the input grid (KJI).

    Segments match labels by name (case-insensitive); a single segment matches a single label.

    Raises:
        MedAIInputError: a segment matches no label.
    """
    from MedAICommonLib.segmentations import labelmapFromSegmentation

    array, _ijkToRas, segments = labelmapFromSegmentation(segmentationNode, inputVolumeNode)
    byName = {name.lower(): value for name, value, _color in labels}
    classes = np.zeros(array.shape, dtype=np.int16)
    for segment in segments:
        value = byName.get(segment.name.lower())
        if value is None and len(segments) == 1 and len(labels) == 1:
            value = labels[0][1]
        if value is None:
            raise MedAIInputError(
                f"Reference segment '{segment.name}' matches none of the model's labels ({', '.join(n for n, _v, _c in labels)})."
            )
        classes[array == segment.labelValue] = value
    return classes


def calibrationMetrics(
    mean: np.ndarray, reference: np.ndarray, maps: dict[str, np.ndarray], measure: str
) -> dict[str, Any]:
    """Calibration of the mean prediction and error detection by each map, over all voxels of the grid."""
    reliability = reliabilityBins(mean, reference, bins=10)
    curve = riskCoverage(maps[measure], mean, reference)
    errors = np.argmax(mean, axis=0) != reference
    return {
        "ece": expectedCalibrationError(mean, reference, bins=10),
        "brier": brierScore(mean, reference),
        "errorRate": float(errors.mean()),
        "errorAuc": {name: errorDetectionAuc(values, mean, reference) for name, values in maps.items()},
        "riskCoverageArea": curve["area"],
        "reliability": {key: np.asarray(value).tolist() for key, value in reliability.items()},
        "riskCoverage": {"coverage": curve["coverage"].tolist(), "risk": curve["risk"].tolist()},
    }


def _summaryRows(job: Any, result: dict[str, Any], names: list[tuple[str, int]]) -> list[dict[str, Any]]:
    voxelMm3 = float(abs(np.linalg.det(job.ijkToRas[:3, :3])))
    labels, maps = result["labels"], result["maps"]
    uncertain = maps[job.measure] >= job.reviewThreshold
    rows = []
    for name, value in names:
        inside = labels == value
        count = int(inside.sum())
        row = {"segment": name, "value": value, "volumeMm3": count * voxelMm3}
        for measure in MEASURES:
            row[measure] = float(maps[measure][inside].mean()) if count else float("nan")
        row["uncertainVolumeMm3"] = float(np.sum(uncertain & inside)) * voxelMm3
        row["uncertainFraction"] = float(np.sum(uncertain & inside)) / count if count else float("nan")
        rows.append(row)
    return rows


def _fillSegmentation(target: Any, source: Any) -> None:
    """Replace the segments of ``target`` by copies of those of ``source``."""
    segmentation, sourceSegmentation = target.GetSegmentation(), source.GetSegmentation()
    segmentation.RemoveAllSegments()
    for index in range(sourceSegmentation.GetNumberOfSegments()):
        segmentation.CopySegmentFromSegmentation(sourceSegmentation, sourceSegmentation.GetNthSegmentID(index))


def createUncertaintyNodes(job: Any, scene: Any) -> UncertaintyOutput:
    """Add the output nodes of a computed :class:`~MedAIUncertaintyLib.uncertaintylogic.UncertaintyJob`."""
    from MedAICommonLib.sceneio import removeNodes
    from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
    from MedAICommonLib.volumes import createVolumeFromArray, setVolumeIjkToRas, updateVolumeFromArray

    from .modelaccess import modelLabels

    result, name = job.result, job.inputVolumeNode.GetName()
    labels = modelLabels(job.model)
    created: list[Any] = []
    try:
        segmentation = createSegmentationFromLabelmap(
            scene, result["labels"].astype(np.uint8), job.ijkToRas,
            [SegmentInfo(n, tuple(c), v) for n, v, c in labels], name=f"{name} mean prediction",
        )  # fmt: skip
        created.append(segmentation)
        if job.outputSegmentationNode is not None:
            _fillSegmentation(job.outputSegmentationNode, segmentation)
            removeNodes(scene, [created.pop()])
            segmentation = job.outputSegmentationNode
        review = result["maps"][job.measure] >= job.reviewThreshold
        reviewId = addReviewSegment(segmentation, review, job.ijkToRas)
        colorNode = uncertaintyColorTable(scene)
        volumes = {}
        for measure in MEASURES:
            values = result["maps"][measure]
            if measure == job.measure and job.uncertaintyVolumeNode is not None:
                volumeNode = job.uncertaintyVolumeNode
                setVolumeIjkToRas(volumeNode, job.ijkToRas)
                updateVolumeFromArray(volumeNode, values)
            else:
                volumeNode = createVolumeFromArray(scene, values, job.ijkToRas, f"{name} {measure} ({job.method})")
                created.append(volumeNode)
            showMapVolume(volumeNode, values, colorNode)
            volumes[measure] = volumeNode
        rows = _summaryRows(job, result, [("Background", 0)] + [(n, v) for n, v, _c in labels])
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{name} uncertainty summary"))
        created.append(table)
        fillSummaryTable(table, rows)
        output = UncertaintyOutput(
            segmentation, reviewId, volumes[job.measure], volumes, table, rows, result["seconds"]
        )
        if "metrics" in result:
            _addCalibrationCharts(scene, job, output, created)
    except Exception:
        if job.outputSegmentationNode is not None and "reviewId" in locals():
            job.outputSegmentationNode.GetSegmentation().RemoveSegment(reviewId)
        removeNodes(scene, created)
        raise
    return output


def _addCalibrationCharts(scene: Any, job: Any, output: UncertaintyOutput, created: list[Any]) -> None:
    metrics = job.result["metrics"]
    output.metrics = metrics
    reliability, curve = metrics["reliability"], metrics["riskCoverage"]
    table, chart = createCurveChart(
        scene, "Reliability diagram",
        {"confidence": reliability["confidence"], "accuracy": reliability["accuracy"], "count": reliability["count"],
         "perfect": reliability["confidence"]},
        [("accuracy", "confidence", "accuracy"), ("perfect calibration", "confidence", "perfect")],
        ("mean confidence in bin", "accuracy in bin"),
    )  # fmt: skip
    created += [table, chart]
    riskTable, riskChart = createCurveChart(
        scene, "Risk-coverage", {"coverage": curve["coverage"], "risk": curve["risk"]},
        [("risk", "coverage", "risk")], ("coverage (fraction of voxels kept, most certain first)", "error rate among kept"),
    )  # fmt: skip
    created += [riskTable, riskChart]
    for chartNode in (chart, riskChart):
        for index in range(chartNode.GetNumberOfPlotSeriesNodes()):
            created.append(chartNode.GetNthPlotSeriesNode(index))
    output.chartNodes = {"reliability": chart, "riskCoverage": riskChart}
    if job.chartPngPath:
        title = f"ECE {metrics['ece']:.4f}  Brier {metrics['brier']:.4f}  error AUC ({job.measure}) {metrics['errorAuc'][job.measure]:.3f}"
        reliabilityArrays = {key: np.asarray(value, float) for key, value in reliability.items()}
        output.pngPath = str(writeCalibrationPng(job.chartPngPath, reliabilityArrays, curve, title))
