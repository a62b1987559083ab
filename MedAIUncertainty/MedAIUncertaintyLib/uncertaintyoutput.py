"""MRML outputs of the uncertainty estimate: map volumes with a colour table and window, the summary
table, the review segment, and the calibration charts (plot chart nodes and a PNG).

Every function here takes the scene or the nodes it fills; arrays are KJI on the input's grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from MedAICommonLib.tables import fillTable

__all__ = [
    "COLOR_TABLE_NAME",
    "uncertaintyColorTable",
    "showMapVolume",
    "fillSummaryTable",
    "addReviewSegment",
    "createCurveChart",
    "writeCalibrationPng",
]

COLOR_TABLE_NAME = "MedAI uncertainty"


def uncertaintyColorTable(scene: Any) -> Any:
    """The scene's "MedAI uncertainty" colour table (black - red - yellow - white), created once."""
    import slicer

    existing = scene.GetFirstNodeByName(COLOR_TABLE_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    colorNode = slicer.vtkMRMLColorTableNode()
    colorNode.SetName(COLOR_TABLE_NAME)
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(256)
    for index in range(256):
        t = index / 255.0
        red, green, blue = min(1.0, 3 * t), min(1.0, max(0.0, 3 * t - 1)), min(1.0, max(0.0, 3 * t - 2))
        colorNode.SetColor(index, f"{t:.3f}", red, green, blue, 1.0)
    colorNode.SetHideFromEditors(False)
    scene.AddNode(colorNode)
    return colorNode


def showMapVolume(volumeNode: Any, values: np.ndarray, colorNode: Any) -> tuple[float, float]:
    """Give a map volume the colour table and a window from 0 to its 99.5th percentile of non-zero voxels.

    Returns:
        The window ``(minimum, maximum)``.
    """
    positive = values[values > 0]
    top = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    top = top if top > 0 else 1.0
    displayNode = volumeNode.GetDisplayNode()
    if displayNode is None:
        volumeNode.CreateDefaultDisplayNodes()
        displayNode = volumeNode.GetDisplayNode()
    displayNode.SetAndObserveColorNodeID(colorNode.GetID())
    displayNode.AutoWindowLevelOff()
    displayNode.SetWindowLevelMinMax(0.0, top)
    # Zero means "samples agree": transparent when the map is shown over the image.
    displayNode.SetApplyThreshold(True)
    displayNode.SetLowerThreshold(top * 1e-3)
    displayNode.SetUpperThreshold(float(values.max()) + 1.0)
    return 0.0, top


def fillSummaryTable(tableNode: Any, rows: list[dict[str, Any]]) -> Any:
    """One row per segment: volume, mean of each map, uncertain volume (mm3) and its fraction."""
    return fillTable(
        tableNode,
        [
            ("Segment", "string", [row["segment"] for row in rows], ""),
            ("Label value", "int", [row["value"] for row in rows], ""),
            ("Volume", "double", [row["volumeMm3"] for row in rows], "mm3"),
            ("Mean entropy", "double", [row["entropy"] for row in rows], ""),
            ("Mean mutual information", "double", [row["mutual-information"] for row in rows], ""),
            ("Mean variance", "double", [row["variance"] for row in rows], ""),
            ("Uncertain volume", "double", [row["uncertainVolumeMm3"] for row in rows], "mm3"),
            ("Uncertain fraction", "double", [row["uncertainFraction"] for row in rows], ""),
        ],
    )


def addReviewSegment(segmentationNode: Any, reviewMask: np.ndarray, ijkToRas: np.ndarray, name: str = "Review") -> str:
    """Add the voxels to review as one segment drawn as an outline only; returns its segment ID."""
    from MedAICommonLib.sceneio import removeNodes
    from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap

    scene = segmentationNode.GetScene()
    helper = createSegmentationFromLabelmap(
        scene, reviewMask.astype(np.uint8), ijkToRas, [SegmentInfo(name, (1.0, 0.0, 1.0), 1)], name="review helper"
    )
    try:
        source = helper.GetSegmentation()
        segmentId = segmentationNode.GetSegmentation().GenerateUniqueSegmentID("Review")
        segmentationNode.GetSegmentation().CopySegmentFromSegmentation(source, source.GetNthSegmentID(0))
        copiedId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
        segmentId = copiedId or segmentId
    finally:
        removeNodes(scene, [helper])
    displayNode = segmentationNode.GetDisplayNode()
    if displayNode is not None:
        displayNode.SetSegmentVisibility2DFill(segmentId, False)
        displayNode.SetSegmentVisibility3D(segmentId, False)
    return segmentId


def createCurveChart(
    scene: Any, name: str, columns: dict[str, np.ndarray], curves: list[tuple[str, str, str]], axes: tuple[str, str]
) -> tuple[Any, Any]:
    """A table of ``columns`` and a chart with one line per ``(title, xColumn, yColumn)``.

    Returns:
        ``(tableNode, chartNode)``.
    """
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{name} table"))
    fillTable(
        tableNode,
        [
            (column, "double", np.nan_to_num(np.asarray(v, float), nan=np.nan).tolist(), "")
            for column, v in columns.items()
        ],
    )
    chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{name} chart"))
    for title, xColumn, yColumn in curves:
        seriesNode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{name} {title}"))
        seriesNode.SetAndObserveTableNodeID(tableNode.GetID())
        seriesNode.SetXColumnName(xColumn)
        seriesNode.SetYColumnName(yColumn)
        seriesNode.SetPlotType(seriesNode.PlotTypeScatter)
        seriesNode.SetMarkerStyle(seriesNode.MarkerStyleCircle)
        chartNode.AddAndObservePlotSeriesNodeID(seriesNode.GetID())
    chartNode.SetTitle(name)
    chartNode.SetXAxisTitle(axes[0])
    chartNode.SetYAxisTitle(axes[1])
    return tableNode, chartNode


def _panel(draw, box, title, xy, xLabel, yLabel, diagonal) -> None:
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, top - 16), title, fill=(0, 0, 0))
    draw.text((left, bottom + 4), xLabel, fill=(0, 0, 0))
    draw.text((left - 40, top), yLabel, fill=(0, 0, 0))

    def point(x: float, y: float) -> tuple[float, float]:
        return left + x * (right - left), bottom - y * (bottom - top)

    if diagonal:
        draw.line([point(0, 0), point(1, 1)], fill=(150, 150, 150), width=1)
    finite = [(x, y) for x, y in xy if np.isfinite(x) and np.isfinite(y)]
    if len(finite) > 1:
        draw.line([point(x, y) for x, y in finite], fill=(200, 30, 30), width=2)
    for x, y in finite:
        px, py = point(x, y)
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(200, 30, 30))


def writeCalibrationPng(
    path: str | Path, reliability: dict[str, np.ndarray], riskCoverage: dict[str, Any], title: str
) -> Path:
    """Reliability diagram (accuracy against confidence, diagonal = perfect) beside the risk-coverage curve."""
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (760, 380), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((20, 8), title, fill=(0, 0, 0))
    _panel(
        draw,
        (60, 50, 340, 330),
        "Reliability",
        zip(reliability["confidence"], reliability["accuracy"]),
        "confidence",
        "accuracy",
        True,
    )
    risk = np.asarray(riskCoverage["risk"], float)
    top = max(float(np.nanmax(risk)) if risk.size else 1.0, 1e-6)
    _panel(
        draw,
        (440, 50, 720, 330),
        f"Risk-coverage (risk axis 0-{top:.3g})",
        zip(riskCoverage["coverage"], risk / top),
        "coverage",
        "risk",
        False,
    )
    image.save(path)
    return path
