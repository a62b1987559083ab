"""Watershed outputs in the scene: the segmentation or label map node and the object table.

:class:`WatershedNodes` is the node-creating half of :class:`~.watershedlogic.WatershedJob`; it
runs on the main thread after the voxels were computed, and on failure removes every node it added.
Outputs lie on the input's own grid, under the input's parent transform; centroids are world RAS mm.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.sceneio import removeNodes
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
from MedAICommonLib.tables import fillTable
from MedAICommonLib.volumes import createVolumeFromArray

from .canonicalgrid import localIjkToRas

__all__ = ["WatershedOutput", "WatershedNodes", "objectColor"]


def objectColor(objectNumber: int) -> tuple[float, float, float]:
    """A colour (RGB 0-1) for object n; hues step by the golden ratio so neighbours in number differ."""
    hue = (0.1 + objectNumber * 0.6180339887) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65 if objectNumber % 2 else 0.9, 0.95)


@dataclass
class WatershedOutput:
    """What :meth:`MedAISegmentationLogic.runWatershed` made.

    Attributes:
        outputNode: the ``vtkMRMLSegmentationNode`` ("Object 1", ...) or ``vtkMRMLLabelMapVolumeNode``.
        tableNode: ``vtkMRMLTableNode`` with one row per object (volume, centroid RAS), or None.
        objectCount: number of objects.
        volumeUnit: ``"mm3"``, or ``"mm2"`` for a one-slice (2D) image.
        objectRadiusMm, minSeedDistanceMm, threshold: what the automatic choices came to.
    """

    outputNode: Any
    tableNode: Any
    objectCount: int
    volumeUnit: str
    objectRadiusMm: float
    minSeedDistanceMm: float | None
    threshold: float | None
    volumesMm: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (for ``--report`` and the worker protocol)."""
        return {
            "objectCount": self.objectCount,
            "volumeUnit": self.volumeUnit,
            "objectRadiusMm": self.objectRadiusMm,
            "minSeedDistanceMm": self.minSeedDistanceMm,
            "threshold": self.threshold,
            "volumesMm": self.volumesMm,
        }


class WatershedNodes:
    """Adds a watershed job's outputs to the input's scene (mixed into ``WatershedJob``).

    Uses the job's ``inputVolumeNode``, ``result``, ``outputType``, ``outputNode``, ``outputName``,
    ``createTable``, ``tableNode``, ``seedNames``, ``spacingMm``, ``image`` and ``worldIjkToRas``.
    """

    def _segments(self, values: list[int]) -> list[SegmentInfo]:
        return [
            SegmentInfo(self.seedNames.get(value, f"Object {value}"), objectColor(value), value) for value in values
        ]

    def createNodes(self, cancelToken: Any = None) -> WatershedOutput:
        """Add the output node and the object table to the input's scene (after :meth:`compute`)."""
        if self.result is None:
            raise RuntimeError("WatershedJob.createNodes() needs compute() first.")
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        labels, scene = self.result.labels, self.inputVolumeNode.GetScene()
        counts = np.bincount(labels.ravel())
        values = [int(v) for v in np.flatnonzero(counts) if v != 0]
        if self.outputType == "segmentation" and values and values[-1] > 32767:
            raise MedAIInputError(f"{values[-1]} objects do not fit in a segmentation; choose the label map output.")
        created: list[Any] = []
        try:
            outputNode = self._outputNode(scene, labels, values, created)
            tableNode = self._objectTable(scene, labels, values, counts, created) if self.createTable else None
        except Exception:
            removeNodes(scene, created)
            raise
        volumes = counts * self._voxelSize()
        return WatershedOutput(
            outputNode=outputNode,
            tableNode=tableNode,
            objectCount=len(values),
            volumeUnit=self.result.unit,
            objectRadiusMm=self.result.object_radius_mm,
            minSeedDistanceMm=self.result.min_seed_distance_mm,
            threshold=self.result.threshold,
            volumesMm=[float(volumes[v]) for v in values],
        )

    def _outputNode(self, scene: Any, labels: np.ndarray, values: list[int], created: list[Any]) -> Any:
        from MedAICommonLib.volumes import setVolumeIjkToRas, updateVolumeFromArray

        ijkToRas = localIjkToRas(self.inputVolumeNode)
        if self.outputType == "labelmap" and self.outputNode is not None:
            node = self.outputNode
            setVolumeIjkToRas(node, ijkToRas)
            updateVolumeFromArray(node, labels.astype(np.int32))
        elif self.outputType == "labelmap":
            node = createVolumeFromArray(scene, labels.astype(np.int32), ijkToRas, self.outputName, labelmap=True)
            created.append(node)
        elif self.outputNode is not None:
            import slicer

            # Built in a private scene, then copied: the user's scene never sees a temporary node.
            scratch = slicer.vtkMRMLScene()
            made = createSegmentationFromLabelmap(scratch, labels, ijkToRas, self._segments(values), self.outputName)
            node = self.outputNode
            node.GetSegmentation().DeepCopy(made.GetSegmentation())
            node.CreateDefaultDisplayNodes()
            scratch.Clear(1)
        else:
            node = createSegmentationFromLabelmap(scene, labels, ijkToRas, self._segments(values), self.outputName)
            created.append(node)
        node.SetAndObserveTransformNodeID(self.inputVolumeNode.GetTransformNodeID())
        return node

    def _voxelSize(self) -> float:
        """Voxel volume in mm3, or pixel area in mm2 for a one-slice image."""
        return float(np.prod([s for s, n in zip(self.spacingMm, self.image.shape) if n > 1]))

    def _objectTable(self, scene: Any, labels: np.ndarray, values: list[int], counts: np.ndarray, created: list) -> Any:
        centroidKji = _labelCentroidsKji(labels, counts)[:, values]
        ras = (self.worldIjkToRas @ np.vstack([centroidKji[::-1], np.ones(len(values))]))[:3]
        tableNode = self.tableNode
        if tableNode is None:
            tableNode = scene.AddNewNodeByClass(
                "vtkMRMLTableNode", scene.GenerateUniqueName(f"{self.outputName} table")
            )
            created.append(tableNode)
        columns = [
            ("Object", "string", [self.seedNames.get(v, f"Object {v}") for v in values], ""),
            ("Label", "int", values, ""),
            ("Volume", "double", (counts[values] * self._voxelSize()).tolist(), self.result.unit),
        ]
        columns += [(f"Centroid {axis}", "double", ras[row].tolist(), "mm") for row, axis in enumerate("RAS")]
        return fillTable(tableNode, columns)


def _labelCentroidsKji(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean (k, j, i) index of every label value, shape (3, len(counts)); 0 for absent labels."""
    jIndex, iIndex = (grid.ravel().astype(float) for grid in np.indices(labels.shape[1:]))
    sums = np.zeros((3, counts.size))
    # Slice by slice: contiguous slices and two small index arrays instead of full-size coordinate arrays.
    for k in range(labels.shape[0]):
        flat = labels[k].ravel()
        sums[0] += k * np.bincount(flat, minlength=counts.size)
        sums[1] += np.bincount(flat, weights=jIndex, minlength=counts.size)
        sums[2] += np.bincount(flat, weights=iIndex, minlength=counts.size)
    return sums / np.maximum(counts, 1)
