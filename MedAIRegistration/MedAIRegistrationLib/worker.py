"""Registration in a background process, for the Slicer panel (which must not freeze).

Parent side (in Slicer, Qt-free): :func:`createRegistrationWorker` writes the input nodes and the
settings into the worker's scratch folder and returns a
:class:`MedAICommonLib.jobs.WorkerProcess` (not started) running this file; :func:`loadWorkerResult`
puts what the worker wrote into the scene once it has finished. Child side: :func:`main` loads the
files into its own scene, runs :meth:`MedAIRegistrationLogic.registerVolumes` with progress on
stdout, and writes the transform (ITK ``.h5``, resampling convention, LPS), the resampled volume
and the metric history into the same folder.

Usage (child): ``python -m MedAIRegistrationLib.worker JOB.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["createRegistrationWorker", "loadWorkerResult", "main"]

_INPUT_NODES = (
    "fixedVolume", "movingVolume", "fixedLabels", "movingLabels", "fixedLandmarks", "movingLandmarks",
    "fixedMask", "movingMask", "initialTransform",
)  # fmt: skip
_SUFFIXES = {
    "vtkMRMLSegmentationNode": ".seg.nrrd",
    "vtkMRMLMarkupsFiducialNode": ".mrk.json",
    "vtkMRMLLabelMapVolumeNode": ".nrrd",
    "vtkMRMLScalarVolumeNode": ".nrrd",
    "vtkMRMLLinearTransformNode": ".h5",
    "vtkMRMLTransformNode": ".h5",
}


def createRegistrationWorker(nodes: dict[str, Any], settings: dict[str, Any], pythonPaths: list[str] = ()):
    """Write the inputs into a scratch folder and return the worker process that registers them.

    Args:
        nodes: ``{"fixedVolume": node, "movingVolume": node}`` and optionally ``fixedLabels``,
            ``movingLabels`` (segmentations), ``fixedLandmarks``, ``movingLandmarks`` (markups),
            ``fixedMask``, ``movingMask`` (label maps), ``initialTransform`` (linear transform); None
            values are left out.
        settings: keyword arguments of ``registerVolumes`` that are plain values
            (``transformType``, ``metric``, ``initialization``, ``createResampledVolume``...).
        pythonPaths: folders the child needs on its ``PYTHONPATH`` (the MedAI module folders in Slicer).

    Returns:
        A :class:`MedAICommonLib.jobs.WorkerProcess`, not started; its ``tempDir`` holds the files.
    """
    from MedAICommonLib.jobs import WorkerProcess
    from MedAICommonLib.sceneio import saveNode

    extraPath = os.pathsep.join([*pythonPaths, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    worker = WorkerProcess(
        ["-m", "MedAIRegistrationLib.worker", "{tempDir}/job.json"], env={"PYTHONPATH": extraPath}, useTempDir=True
    )
    files = {}
    for key in _INPUT_NODES:
        node = nodes.get(key)
        if node is not None:
            files[key] = str(saveNode(node, worker.tempDir / f"{key}{_SUFFIXES.get(node.GetClassName(), '.nrrd')}"))
    job = {"files": files, "settings": dict(settings)}
    (worker.tempDir / "job.json").write_text(json.dumps(job))
    return worker


def loadWorkerResult(
    scene: Any, result: dict, outputTransformNode: Any = None, outputVolumeNode: Any = None, tableNode: Any = None
):
    """Put a finished worker's files into the scene.

    Args:
        scene: the ``vtkMRMLScene``.
        result: the worker's ``MEDAI_RESULT`` (paths in its scratch folder, and the quality numbers).
        outputTransformNode: a transform node to receive the result; None creates one.
        outputVolumeNode: a volume to receive the resampled moving volume; None creates one if made.
        tableNode: a table node to receive the metric history; None keeps the new one.

    Returns:
        ``(transformNode, resampledVolumeNode or None, tableNode, chartNode, quality, jacobianVolumeNode or None)``.
    """
    import SimpleITK as sitk

    from MedAICommonLib.sceneio import loadVolume
    from MedAICommonLib.transforms import createTransformNodeFromSitkTransform, updateTransformNodeFromSitkTransform
    from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume, setVolumeIjkToRas, updateVolumeFromArray

    from .registration import IterationRecord
    from .reporting import createMetricTable

    transform = sitk.ReadTransform(result["transformFile"])
    if outputTransformNode is None:
        outputTransformNode = createTransformNodeFromSitkTransform(scene, transform, result["name"])
    else:
        updateTransformNodeFromSitkTransform(outputTransformNode, transform)
    resampledNode = None
    if result.get("resampledFile"):
        loaded = loadVolume(scene, result["resampledFile"], name=f"{result['name']} resampled")
        if outputVolumeNode is None:
            resampledNode = loaded
        else:
            updateVolumeFromArray(outputVolumeNode, arrayFromVolume(loaded))
            setVolumeIjkToRas(outputVolumeNode, ijkToRasFromVolume(loaded))
            scene.RemoveNode(loaded)
            resampledNode = outputVolumeNode
    jacobianNode = None
    if result.get("jacobianFile"):
        jacobianNode = loadVolume(scene, result["jacobianFile"], name=f"{result['name']} Jacobian")
    history = [IterationRecord(*record) for record in result["history"]]
    newTableNode, chartNode, seriesNode = createMetricTable(scene, history, f"{result['name']} metric")
    if tableNode is not None:
        tableNode.GetTable().DeepCopy(newTableNode.GetTable())
        tableNode.Modified()
        seriesNode.SetAndObserveTableNodeID(tableNode.GetID())
        scene.RemoveNode(newTableNode)
    else:
        tableNode = newTableNode
    return outputTransformNode, resampledNode, tableNode, chartNode, result["quality"], jacobianNode


def main(argv: list[str] | None = None) -> int:
    """Child side: register the volumes of ``JOB.json`` and report the result files."""
    import dataclasses

    from MedAICommonLib import sceneio
    from MedAICommonLib.jobs import progressToStdout, reportResult

    from .logic import MedAIRegistrationLogic

    jobPath = Path((argv if argv is not None else sys.argv[1:])[0])
    job = json.loads(jobPath.read_text())
    scene = sceneio.createScene()
    nodes = {f"{key}Node": sceneio.loadNode(scene, path) for key, path in job["files"].items()}
    result = MedAIRegistrationLogic().registerVolumes(**nodes, **job["settings"], progress=progressToStdout)
    folder = jobPath.parent
    name = result.transformNode.GetName()
    transformFile = sceneio.saveNode(result.transformNode, folder / "transform.h5")
    resampledFile = None
    if result.resampledVolumeNode is not None:
        resampledFile = str(sceneio.saveNode(result.resampledVolumeNode, folder / "resampled.nrrd"))
    jacobianFile = None
    if result.jacobianVolumeNode is not None:
        jacobianFile = str(sceneio.saveNode(result.jacobianVolumeNode, folder / "jacobian.nrrd"))
    history = [list(dataclasses.astuple(record)) for record in _history(result.tableNode)]
    reportResult(
        {
            "name": name,
            "transformFile": str(transformFile),
            "resampledFile": resampledFile,
            "jacobianFile": jacobianFile,
            "history": history,
            "quality": result.quality,
        }
    )
    return 0


def _history(tableNode: Any) -> list:
    from .registration import IterationRecord

    table = tableNode.GetTable()
    columns = [table.GetColumnByName(n) for n in ("stage", "transform", "level", "iteration", "metric")]
    return [IterationRecord(*(c.GetValue(row) for c in columns)) for row in range(table.GetNumberOfRows())]


if __name__ == "__main__":
    sys.exit(main())
