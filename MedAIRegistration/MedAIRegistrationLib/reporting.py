"""MRML helpers of the registration logic: the metric table and plot, and 2D images held as one slice.

A 2D image in Slicer is a volume with one slice. It is registered in 2D (a 3D optimiser would see
no gradient across the slice); the 2D result is then embedded in 3D (z unchanged) for the transform
node and the resampling. All transforms are SimpleITK resampling transforms in LPS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.transforms import matrixFromSitkLinearTransform, sitkAffineTransformFromMatrix

__all__ = ["createMetricTable", "to2D", "embedIn3D"]

METRIC_COLUMNS = ("stage", "transform", "level", "iteration", "metric")


def createMetricTable(scene: Any, history: list, name: str) -> tuple[Any, Any, Any]:
    """Add a table of the metric per iteration and a chart that plots it.

    Args:
        scene: the ``vtkMRMLScene``.
        history: ``IterationRecord`` items (stage, transform, level, iteration, metric_value).
        name: the table name; the chart and series are named after it.

    Returns:
        ``(tableNode, chartNode, seriesNode)``; the series plots the metric against the running
        iteration count (column ``step``).
    """
    import vtk

    table = vtk.vtkTable()
    columns = {}
    for column, arrayClass in (
        ("step", vtk.vtkIntArray),
        ("stage", vtk.vtkIntArray),
        ("transform", vtk.vtkStringArray),
        ("level", vtk.vtkIntArray),
        ("iteration", vtk.vtkIntArray),
        ("metric", vtk.vtkDoubleArray),
    ):
        columns[column] = arrayClass()
        columns[column].SetName(column)
        table.AddColumn(columns[column])
    for step, record in enumerate(history):
        columns["step"].InsertNextValue(step)
        columns["stage"].InsertNextValue(record.stage)
        columns["transform"].InsertNextValue(record.transform)
        columns["level"].InsertNextValue(record.level)
        columns["iteration"].InsertNextValue(record.iteration)
        columns["metric"].InsertNextValue(record.metric_value)
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    tableNode.SetAndObserveTable(table)
    seriesNode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} series")
    seriesNode.SetAndObserveTableNodeID(tableNode.GetID())
    seriesNode.SetXColumnName("step")
    seriesNode.SetYColumnName("metric")
    seriesNode.SetPlotType(seriesNode.PlotTypeScatter)
    chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
    chartNode.AddAndObservePlotSeriesNodeID(seriesNode.GetID())
    chartNode.SetXAxisTitle("iteration (all stages and levels)")
    chartNode.SetYAxisTitle("metric (lower is better)")
    return tableNode, chartNode, seriesNode


def to2D(item: Any) -> Any:
    """The 2D version of a one-slice image, or of a 3D linear transform that keeps z.

    Raises:
        MedAIInputError: the transform moves points across the slice plane, or is not linear.
    """
    import SimpleITK as sitk

    if isinstance(item, sitk.Image):
        return item[:, :, 0]
    if not item.IsLinear():
        raise MedAIInputError("Only a linear initial transform can be used with 2D images.")
    matrix = matrixFromSitkLinearTransform(item)
    if not np.allclose(matrix[2], [0, 0, 1, 0], atol=1e-6) or not np.allclose(matrix[:2, 2], 0, atol=1e-6):
        raise MedAIInputError("The initial transform moves points out of the 2D image plane.")
    affine = sitk.AffineTransform(2)
    affine.SetMatrix(matrix[:2, :2].ravel().tolist())
    affine.SetTranslation(matrix[:2, 3].tolist())
    return affine


def embedIn3D(transform: Any, fixed2D: Any, fixed3D: Any) -> Any:
    """A 3D transform that acts as a 2D ``transform`` in the slice plane and keeps z.

    Linear transforms stay exact (a 3D affine); a non-linear one becomes a displacement field
    sampled on the fixed image's grid (one slice, no displacement along z).
    """
    import SimpleITK as sitk

    from .quality import displacement_field_image

    if transform.IsLinear():
        return sitkAffineTransformFromMatrix(matrixFromSitkLinearTransform(transform))
    field2D = displacement_field_image(transform, fixed2D)
    components = [sitk.VectorIndexSelectionCast(field2D, c) for c in (0, 1)]
    zero = components[0] * 0.0
    field3D = sitk.JoinSeries(sitk.Compose([*components, zero]))
    field3D.CopyInformation(fixed3D)
    return sitk.DisplacementFieldTransform(sitk.Cast(field3D, sitk.sitkVectorFloat64))
