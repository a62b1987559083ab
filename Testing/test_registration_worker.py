"""The background registration of the Slicer panel: a real worker process, its files and its result."""

from __future__ import annotations

import json

import numpy as np

from MedAICommonLib import sampledata
from MedAIRegistrationLib.worker import createRegistrationWorker, loadWorkerResult


def test_worker_process_registers_and_its_result_loads_into_the_scene(scene):
    fixed = sampledata.loadSampleData(scene, "BrainProtonDensitySliceBorder20")
    moving = sampledata.loadSampleData(scene, "BrainProtonDensitySliceShifted13x17y")
    settings = {"transformType": "translation", "metric": "mse", "createResampledVolume": True}
    seen = []
    with createRegistrationWorker({"fixedVolume": fixed, "movingVolume": moving}, settings) as worker:
        result = worker.runBlocking(progress=lambda fraction, message: seen.append(fraction))
        transformNode, resampled, table, chart, quality, jacobian = loadWorkerResult(scene, result)
    assert seen and max(seen) == 1.0
    # The node moves the moving image onto the fixed one: a moving point (13, 17) mm further goes back.
    toParent = transformNode.GetTransformToParent()
    movedRas = np.array(toParent.TransformPoint((-(60.0 + 13.0), -(80.0 + 17.0), 0.0)))
    assert np.allclose(movedRas[:2], (-60.0, -80.0), atol=0.05)
    assert resampled.GetImageData().GetDimensions() == fixed.GetImageData().GetDimensions()
    assert table.GetNumberOfRows() == quality["iterations"] > 0
    assert chart.GetNumberOfPlotSeriesNodes() == 1
    assert jacobian is None


def test_worker_takes_masks_an_initial_transform_and_returns_the_jacobian(scene):
    """The panel's advanced options travel to the worker: a fixed mask, an initial transform, the Jacobian map."""
    import vtk

    from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume

    fixed = sampledata.loadSampleData(scene, "BrainProtonDensitySliceBorder20")
    moving = sampledata.loadSampleData(scene, "BrainProtonDensitySliceShifted13x17y")
    brain = (arrayFromVolume(fixed) > 30).astype(np.uint8)
    mask = createVolumeFromArray(scene, brain, ijkToRasFromVolume(fixed), "brain", labelmap=True)
    # Start 10 mm off along x (modeling, RAS): the registration must still end at the (13, 17) mm shift.
    initial = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "start")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)
    initial.SetMatrixTransformToParent(matrix)
    nodes = {"fixedVolume": fixed, "movingVolume": moving, "fixedMask": mask, "initialTransform": initial}
    settings = {"transformType": "translation", "metric": "mse", "initialization": "none", "createJacobianVolume": True}
    with createRegistrationWorker(nodes, settings) as worker:
        assert {"fixedMask", "initialTransform"} <= set(json.loads((worker.tempDir / "job.json").read_text())["files"])
        result = worker.runBlocking()
        transformNode, _, _, _, quality, jacobian = loadWorkerResult(scene, result)
    toParent = transformNode.GetTransformToParent()
    movedRas = np.array(toParent.TransformPoint((-(60.0 + 13.0), -(80.0 + 17.0), 0.0)))
    assert np.allclose(movedRas[:2], (-60.0, -80.0), atol=0.05)
    assert jacobian is not None and np.allclose(arrayFromVolume(jacobian), 1.0)
