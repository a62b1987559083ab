"""The background registration of the Slicer panel: a real worker process, its files and its result."""

from __future__ import annotations

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
        transformNode, resampled, table, chart, quality = loadWorkerResult(scene, result)
    assert seen and max(seen) == 1.0
    # The node moves the moving image onto the fixed one: a moving point (13, 17) mm further goes back.
    toParent = transformNode.GetTransformToParent()
    movedRas = np.array(toParent.TransformPoint((-(60.0 + 13.0), -(80.0 + 17.0), 0.0)))
    assert np.allclose(movedRas[:2], (-60.0, -80.0), atol=0.05)
    assert resampled.GetImageData().GetDimensions() == fixed.GetImageData().GetDimensions()
    assert table.GetNumberOfRows() == quality["iterations"] > 0
    assert chart.GetNumberOfPlotSeriesNodes() == 1
