"""MedAISegmentationLogic: the watershed and the evaluation on MRML nodes, without Qt.

Works in the Slicer desktop, in plain Python on ``slicer-core`` and behind the ``medai`` command
line. Every method takes the nodes it works on (there is no global scene), checks its inputs
before touching the scene, and on failure or cancel leaves the scene as it was.

Geometry: points are RAS millimetres (world, parent transforms applied); outputs lie on the
input's voxel grid, under the input's parent transform. Before computing, the voxels are put in
one canonical axis order (the storage axes closest to S, A, R, each increasing), so a volume
stored with permuted, flipped or oblique axes gives exactly the same objects in physical space.

Example (plain Python)::

    from MedAICommonLib import sceneio
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    scene = sceneio.createScene()
    image = sceneio.loadVolume(scene, "nuclei.tif")
    result = MedAISegmentationLogic().runWatershed(image)
    print(result.objectCount, result.tableNode.GetNumberOfRows())
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import LPS_TO_RAS, volumeGeometry
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap, labelmapFromSegmentation
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume

from . import evaluation, watershed

__all__ = ["MedAISegmentationLogic", "WatershedJob", "WatershedOutput", "EvaluationOutput", "objectColor"]

ProgressCallback = Callable[[float, str], None]
OUTPUT_TYPES = ("segmentation", "labelmap")


def objectColor(objectNumber: int) -> tuple[float, float, float]:
    """A colour (RGB 0-1) for object n; hues step by the golden ratio so neighbours in number differ."""
    hue = (0.1 + objectNumber * 0.6180339887) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65 if objectNumber % 2 else 0.9, 0.95)


def canonicalAxes(ijkToRas: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """How to store a KJI array so that its axes run along +S, +A, +R (the closest storage axes).

    Returns:
        ``(order, flipped)``: ``np.flip(array.transpose(order), flipped)`` is canonical.
    """
    from scipy.optimize import linear_sum_assignment

    directions = np.asarray(ijkToRas, dtype=float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    # cosine[a, r]: array axis a (KJI: column 2 - a) against RAS axis r.
    cosine = np.stack([directions[:, 2 - axis] for axis in range(3)])
    arrayAxes, rasAxes = linear_sum_assignment(np.abs(cosine), maximize=True)
    axisFor = dict(zip(rasAxes.tolist(), arrayAxes.tolist()))
    order = (axisFor[2], axisFor[1], axisFor[0])  # S, A, R: the KJI order of an RAS-aligned volume
    flipped = tuple(position for position, axis in enumerate(order) if cosine[axis, 2 - position] < 0)
    return order, flipped


def _toCanonical(array: np.ndarray | None, order, flipped) -> np.ndarray | None:
    return None if array is None else np.ascontiguousarray(np.flip(array.transpose(order), flipped))


def _fromCanonical(array: np.ndarray, order, flipped) -> np.ndarray:
    return np.ascontiguousarray(np.flip(array, flipped).transpose(np.argsort(order)))


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


def localIjkToRas(volumeNode: Any) -> np.ndarray:
    """The volume's own IJK-to-RAS matrix, relative to its parent transform."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)


def _sitkGrid(array: np.ndarray, ijkToRas: np.ndarray) -> Any:
    import SimpleITK as sitk

    spacingMm, directions, originLps = volumeGeometry(LPS_TO_RAS @ np.asarray(ijkToRas, dtype=float))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacingMm.tolist())
    image.SetOrigin(originLps.tolist())
    image.SetDirection(directions.ravel().tolist())
    return image


def resampleLabelsNearest(
    labels: np.ndarray, ijkToRas: np.ndarray, shape: tuple[int, ...], targetIjkToRas: np.ndarray
) -> np.ndarray:
    """A KJI label array moved onto another grid (nearest neighbour, 0 outside), both grids in world RAS."""
    import SimpleITK as sitk

    moving = _sitkGrid(np.ascontiguousarray(labels.astype(np.int32)), ijkToRas)
    target = _sitkGrid(np.zeros(shape, dtype=np.uint8), targetIjkToRas)
    resampled = sitk.Resample(moving, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return sitk.GetArrayFromImage(resampled)


def _sameGrid(shapeA, ijkToRasA, shapeB, ijkToRasB, toleranceMm: float = 1e-4) -> bool:
    if tuple(shapeA) != tuple(shapeB):
        return False
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in reversed(shapeA)], [1], indexing="ij")).reshape(4, -1)
    return bool(np.max(np.linalg.norm(((ijkToRasA - ijkToRasB) @ corners)[:3], axis=0)) <= toleranceMm)


def _fillTable(tableNode: Any, columns: list[tuple[str, str, list[Any], str]]) -> Any:
    """Replace a table's content by ``(name, "string"|"int"|"double", values, unit)`` columns."""
    import vtk

    arrays = {"string": vtk.vtkStringArray, "int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray}
    table = tableNode.GetTable()
    while table.GetNumberOfColumns():
        table.RemoveColumn(0)
    for name, kind, values, _unit in columns:
        column = arrays[kind]()
        column.SetName(name)
        column.SetNumberOfValues(len(values))
        for index, value in enumerate(values):
            column.SetValue(index, value)
        table.AddColumn(column)
    for name, _kind, _values, unit in columns:
        if unit:
            tableNode.SetColumnUnitLabel(name, unit)
    tableNode.Modified()
    return tableNode


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


def _removeNodes(scene: Any, nodes: list[Any]) -> None:
    """Remove nodes with their display and storage nodes (slicer-core's RemoveNode leaves those)."""
    for node in nodes:
        helpers = []
        for getCount, getNode in (
            ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
            ("GetNumberOfStorageNodes", "GetNthStorageNode"),
        ):
            if hasattr(node, getCount):
                helpers += [getattr(node, getNode)(index) for index in range(getattr(node, getCount)())]
        for helper in [*helpers, node]:
            if helper is not None and scene.IsNodePresent(helper):
                scene.RemoveNode(helper)


def _outputTypeOf(outputNode: Any) -> str | None:
    """The output type an existing output node asks for; None when no node is given."""
    if outputNode is None:
        return None
    if outputNode.IsA("vtkMRMLSegmentationNode"):
        return "segmentation"
    if outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
        return "labelmap"
    raise MedAIInputError(f"The output must be a segmentation or a label map node, got {outputNode.GetClassName()}.")


class WatershedJob:
    """One watershed run in three steps, so that the desktop can compute off the main thread.

    The constructor (main thread) reads and checks the nodes; :meth:`compute` works on numpy
    arrays only (any thread, touches no MRML); :meth:`createNodes` (main thread) adds the outputs.
    """

    def __init__(self, inputVolumeNode: Any, settings: watershed.WatershedSettings, **inputs: Any) -> None:
        checkVolumeNode(inputVolumeNode, allowConstant=False)
        self.inputVolumeNode = inputVolumeNode
        self.settings = settings
        self.worldIjkToRas = ijkToRasFromVolume(inputVolumeNode)
        self.image = arrayFromVolume(inputVolumeNode)
        # KJI order; rounded to a nanometre so that a grid composed with a parent transform gives the same numbers.
        self.spacingMm = np.round(volumeGeometry(self.worldIjkToRas)[0][::-1], 6)
        self.outputNode = inputs.get("outputNode")
        self.outputType = _outputTypeOf(self.outputNode) or inputs.get("outputType", "segmentation")
        if self.outputType not in OUTPUT_TYPES:
            raise MedAIInputError(f"outputType must be one of {OUTPUT_TYPES}, got {self.outputType!r}.")
        self.outputName = inputs.get("outputName") or f"{inputVolumeNode.GetName()} objects"
        self.createTable = inputs.get("createTable", True)
        self.tableNode = inputs.get("tableNode")
        self.mask = self._foregroundMask(inputs.get("foregroundSegmentationNode"), inputs.get("foregroundSegmentId"))
        self.seeds, self.seedNames, self.backgroundLabel = self._manualSeeds(inputs)
        self.result: watershed.WatershedResult | None = None

    def _foregroundMask(self, segmentationNode: Any, segmentId: str | None) -> np.ndarray | None:
        if segmentationNode is None:
            return None
        labels, _, segments = labelmapFromSegmentation(segmentationNode, self.inputVolumeNode)
        if segmentId is None:
            return labels > 0
        index = segmentationNode.GetSegmentation().GetSegmentIndex(segmentId)
        if index < 0:
            raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{segmentId}'.")
        return labels == segments[index].labelValue

    def _manualSeeds(self, inputs: dict[str, Any]) -> tuple[np.ndarray | None, dict[int, str], int | None]:
        segmentationNode, markupsNode = inputs.get("seedSegmentationNode"), inputs.get("seedMarkupsNode")
        backgroundId, backgroundMarkups = inputs.get("backgroundSegmentId"), inputs.get("backgroundMarkupsNode")
        if segmentationNode is None and markupsNode is None:
            if backgroundId is not None or backgroundMarkups is not None:
                raise MedAIInputError("A background seed needs object seeds (a seed segmentation or seed points).")
            return None, {}, None
        seeds = np.zeros(self.image.shape, dtype=np.int32)
        names: dict[int, str] = {}
        background = None
        if segmentationNode is not None:
            labels, _, segments = labelmapFromSegmentation(segmentationNode, self.inputVolumeNode)
            for index, segment in enumerate(segments):
                if not np.any(labels == segment.labelValue):
                    raise MedAIInputError(f"Seed segment '{segment.name}' has no voxel inside the input volume.")
                seeds[labels == segment.labelValue] = segment.labelValue
                if segmentationNode.GetSegmentation().GetNthSegmentID(index) == backgroundId:
                    background = segment.labelValue
                else:
                    names[segment.labelValue] = segment.name
            if backgroundId is not None and background is None:
                raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{backgroundId}'.")
        for node, isBackground in ((markupsNode, False), (backgroundMarkups, True)):
            if node is None:
                continue
            if isBackground and background is None:
                background = int(seeds.max()) + 1
            for index in range(node.GetNumberOfControlPoints()):
                value = background if isBackground else int(seeds.max()) + 1
                seeds[self._voxelOfPoint(node, index)] = value
                if not isBackground:
                    names[value] = node.GetNthControlPointLabel(index) or f"Object {value}"
        return seeds, names, background

    def _voxelOfPoint(self, markupsNode: Any, index: int) -> tuple[int, int, int]:
        ras = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, ras)
        ijk = np.linalg.solve(self.worldIjkToRas, [*ras, 1.0])[:3]
        voxel = np.round(ijk).astype(int)[::-1]
        if np.any(voxel < 0) or np.any(voxel >= self.image.shape):
            label = markupsNode.GetNthControlPointLabel(index)
            position = ", ".join(f"{c:.1f}" for c in ras)
            raise MedAIInputError(f"Seed point '{label}' at RAS ({position}) mm lies outside the input volume.")
        return tuple(voxel.tolist())

    def compute(self, progress: ProgressCallback | None = None, cancelToken: Any = None) -> watershed.WatershedResult:
        """Run the watershed on the voxels (numpy only; safe in a worker thread)."""
        order, flipped = canonicalAxes(self.worldIjkToRas)
        result = watershed.watershed_objects(
            _toCanonical(self.image, order, flipped),
            self.spacingMm[list(order)],
            self.settings,
            mask=_toCanonical(self.mask, order, flipped),
            markers=_toCanonical(self.seeds, order, flipped),
            background_label=self.backgroundLabel,
            progress=progress,
            cancel_token=cancelToken,
        )
        result.labels = _fromCanonical(result.labels, order, flipped)
        self.result = result
        return result

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
            _removeNodes(scene, created)
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
        return _fillTable(tableNode, columns)


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


class MedAISegmentationLogic:
    """The MedAISegmentation module's work on MRML nodes: watershed and evaluation.

    Qt-free: runs in the desktop, in plain Python on slicer-core and behind ``medai``.
    """

    def prepareWatershed(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        **inputs: Any,
    ) -> WatershedJob:
        """Check the inputs and read the voxels: the first step of :meth:`runWatershed`, same arguments."""
        known = {
            "foregroundSegmentationNode", "foregroundSegmentId", "seedSegmentationNode", "seedMarkupsNode",
            "backgroundSegmentId", "backgroundMarkupsNode", "outputType", "outputNode", "outputName", "createTable", "tableNode",
        }  # fmt: skip
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise TypeError(f"prepareWatershed() got unexpected keyword arguments {unknown}")
        settings = watershed.WatershedSettings(
            threshold=threshold,
            smoothing_mm=smoothingMm,
            min_seed_distance_mm=minSeedDistanceMm,
            seed_depth_mm=seedDepthMm,
            landscape=landscape,
            dark_objects=darkObjects,
        )
        return WatershedJob(inputVolumeNode, settings, **inputs)

    def runWatershed(
        self,
        inputVolumeNode: Any,
        threshold: str | float = "adaptive",
        smoothingMm: float | None = None,
        minSeedDistanceMm: float | None = None,
        seedDepthMm: float | None = None,
        landscape: str = "distance",
        darkObjects: bool = False,
        foregroundSegmentationNode: Any = None,
        foregroundSegmentId: str | None = None,
        seedSegmentationNode: Any = None,
        seedMarkupsNode: Any = None,
        backgroundSegmentId: str | None = None,
        backgroundMarkupsNode: Any = None,
        outputType: str = "segmentation",
        outputNode: Any = None,
        outputName: str | None = None,
        createTable: bool = True,
        tableNode: Any = None,
        progress: ProgressCallback | None = None,
        cancelToken: Any = None,
    ) -> WatershedOutput:
        """Split touching objects of a 2D (one-slice) or 3D volume by a seeded watershed.

        Args:
            inputVolumeNode: scalar volume; a linear parent transform is honoured, a non-linear one refused.
            threshold: ``"adaptive"`` (default: brighter than the neighbourhood and than the
                background noise), ``"otsu"`` (global Otsu) or an intensity in image units.
            smoothingMm: Gaussian standard deviation in mm; None: one voxel; 0: none.
            minSeedDistanceMm: seeds closer than this are one object; None: the estimated object radius.
            seedDepthMm: use distance maxima at least this deep (h-maxima) as seeds instead.
            landscape: ``"distance"`` (inverted distance to the background) or ``"gradient"``.
            darkObjects: objects are darker than the background.
            foregroundSegmentationNode: a segmentation whose segment (``foregroundSegmentId``,
                None: all segments) is the foreground instead of a threshold.
            seedSegmentationNode: manual seeds, one object per segment (named after it);
                ``backgroundSegmentId`` marks the segment that seeds the background.
            seedMarkupsNode: manual seeds, one object per control point (RAS, world);
                ``backgroundMarkupsNode`` holds points that seed the background.
            outputType: ``"segmentation"`` ("Object 1", ... in distinct colours) or ``"labelmap"``.
            outputNode: an existing segmentation or label map node to overwrite (its class then
                sets the output type); None: a new node.
            outputName: name of the new node; None: ``"<input> objects"``.
            createTable: add a table of object volumes (mm3, mm2 for 2D) and centroids (RAS mm).
            tableNode: an existing ``vtkMRMLTableNode`` to overwrite with that table; None: a new one.
            progress: ``progress(fraction, message)``.
            cancelToken: ``MedAICommonLib.jobs.CancelToken``.

        Returns:
            :class:`WatershedOutput`; the output lies on the input's grid, under its parent transform.

        Raises:
            MedAIInputError: a bad input (empty, constant or NaN image, a threshold leaving
                nothing, seeds outside the image...); nothing is added to the scene then.
            MedAICancelledError: when cancelled; nothing is added to the scene then.
        """
        parameters = dict(locals())
        for name in ("self", "progress", "cancelToken"):
            parameters.pop(name)
        job = self.prepareWatershed(**parameters)
        job.compute(progress, cancelToken)
        return job.createNodes(cancelToken)

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
        if not _sameGrid(reference.shape, ijkToRas, prediction.shape, predictionIjkToRas):
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
        output.tableNode = _fillTable(tableNode, columns)
        if output.instances is not None:
            instances = {k: v for k, v in output.instances.items() if not isinstance(v, dict)}
            instanceTable = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("Instance metrics"))
            created.append(instanceTable)
            output.instanceTableNode = _fillTable(
                instanceTable,
                [
                    ("Metric", "string", list(instances), ""),
                    ("Value", "double", [float(v) for v in instances.values()], ""),
                ],
            )
    except Exception:
        _removeNodes(scene, created)
        raise
