"""The watershed preview on real MRML nodes and real data: it shows what a run floods, before flooding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_watershed import _nodeIds, _randomRotation, _storedAs

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken, WorkerState
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.threadjob import ThreadJob
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume
from MedAISegmentationLib.logic import MedAISegmentationLogic
from MedAISegmentationLib.watershedlogic import watershedArgumentsFromPanel


@pytest.fixture
def logic():
    return MedAISegmentationLogic()


def _parts(preview, referenceVolumeNode):
    """Foreground and seed masks of a preview node, on the reference volume's grid (KJI)."""
    segmentation = preview.previewNode.GetSegmentation()
    labels, _, segments = labelmapFromSegmentation(preview.previewNode, referenceVolumeNode)
    masks = {}
    for part, segmentId in preview.segmentIds.items():
        value = segments[segmentation.GetSegmentIndex(segmentId)].labelValue
        masks[part] = labels == value
    # Seeds lie inside the foreground and win the merged label map there: put them back.
    masks["foreground"] |= masks["seeds"]
    return masks


def test_preview_shows_the_foreground_and_seeds_that_the_run_floods(scene, logic):
    """NucleiImage2D with defaults: one seed per object of the run, and the run fills exactly the foreground."""
    imageNode = loadSampleData(scene, "NucleiImage2D")
    image = arrayFromVolume(imageNode)
    nodesBefore = _nodeIds(scene)
    preview = logic.runWatershedPreview(imageNode)
    added = sorted(set(_nodeIds(scene)) - set(nodesBefore))
    assert [scene.GetNodeByID(i).GetClassName() for i in added if "Display" not in scene.GetNodeByID(i).GetClassName()] == [
        "vtkMRMLSegmentationNode"
    ]  # fmt: skip
    segmentation = preview.previewNode.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    assert names == ["Foreground", "Seeds"]
    display = preview.previewNode.GetDisplayNode()
    assert display.GetSegmentOpacity2DFill(preview.segmentIds["foreground"]) < 0.5  # the image shows through
    assert display.GetSegmentOpacity2DFill(preview.segmentIds["seeds"]) == 1.0
    masks = _parts(preview, imageNode)
    assert masks["foreground"].shape == image.shape

    run = logic.runWatershed(imageNode, outputType="labelmap", createTable=False)
    labels = arrayFromVolume(run.outputNode)
    print(
        f"\nPreview: {preview.seedCount} seeds, radius {preview.objectRadiusMm:.2f} mm; run: {run.objectCount} objects"
    )
    assert preview.seedCount == run.objectCount and run.objectCount > 90
    np.testing.assert_array_equal(masks["foreground"], labels > 0)
    # Every object of the run grew from a preview seed (and, counts being equal, from only one).
    assert set(np.unique(labels[masks["seeds"]])) == set(range(1, run.objectCount + 1))
    assert preview.objectRadiusMm == pytest.approx(run.objectRadiusMm)
    assert preview.minSeedDistanceMm == pytest.approx(run.minSeedDistanceMm)
    assert preview.threshold == pytest.approx(run.threshold)
    np.testing.assert_array_equal(arrayFromVolume(imageNode), image)


def test_preview_node_is_reused_and_follows_the_settings(scene, logic):
    imageNode = loadSampleData(scene, "NucleiImage2D")
    first = logic.runWatershedPreview(imageNode)
    nodesBefore = _nodeIds(scene)
    second = logic.runWatershedPreview(imageNode, minSeedDistanceMm=25.0, previewNode=first.previewNode)
    assert second.previewNode is first.previewNode and _nodeIds(scene) == nodesBefore
    assert second.previewNode.GetSegmentation().GetNumberOfSegments() == 2  # replaced, not appended
    run = logic.runWatershed(imageNode, minSeedDistanceMm=25.0, createTable=False)
    assert second.seedCount == run.objectCount < first.seedCount


def test_preview_with_manual_seeds_shows_them_and_the_background_seed(scene, logic):
    import vtk

    imageNode = loadSampleData(scene, "NucleiImage2D")
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    background = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Background")
    ijkToRas = ijkToRasFromVolume(imageNode)
    for node, ijk in ((seeds, (100, 120, 0)), (seeds, (300, 310, 0)), (background, (5, 5, 0))):
        node.AddControlPointWorld(vtk.vtkVector3d(*(ijkToRas @ [*ijk, 1.0])[:3]))
    preview = logic.runWatershedPreview(imageNode, seedMarkupsNode=seeds, backgroundMarkupsNode=background)
    assert preview.seedCount == 2 and set(preview.segmentIds) == {"foreground", "seeds", "background"}
    masks = _parts(preview, imageNode)
    assert [tuple(v) for v in np.argwhere(masks["seeds"])] == [(0, 120, 100), (0, 310, 300)]
    assert masks["background"][0, 5, 5] and np.count_nonzero(masks["background"]) == 1


def test_bad_input_and_cancel_leave_the_scene_and_the_preview_unchanged(scene, logic):
    imageNode = loadSampleData(scene, "NucleiImage2D")
    constantNode = createVolumeFromArray(scene, np.full((1, 30, 40), 3.0, np.float32), np.eye(4), "Constant")
    preview = logic.runWatershedPreview(imageNode)
    shown = labelmapFromSegmentation(preview.previewNode, imageNode)[0]
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match="constant"):
        logic.runWatershedPreview(constantNode)
    with pytest.raises(MedAIInputError, match="leaves no voxel in the foreground"):
        logic.runWatershedPreview(imageNode, threshold=1e6, previewNode=preview.previewNode)
    with pytest.raises(MedAIInputError, match="preview must be a segmentation"):
        logic.runWatershedPreview(imageNode, previewNode=constantNode)
    with pytest.raises(TypeError, match="outputNode"):
        logic.prepareWatershedPreview(imageNode, outputNode=preview.previewNode)
    token = CancelToken()
    token.cancel()
    with pytest.raises(MedAICancelledError):
        logic.runWatershedPreview(imageNode, previewNode=preview.previewNode, cancelToken=token)
    job = logic.prepareWatershedPreview(imageNode, previewNode=preview.previewNode)
    job.compute()
    with pytest.raises(MedAICancelledError):
        job.createNodes(token)  # Cancel pressed after the thread finished
    assert _nodeIds(scene) == nodesBefore
    np.testing.assert_array_equal(labelmapFromSegmentation(preview.previewNode, imageNode)[0], shown)


def test_panel_settings_drive_the_preview_through_a_thread_job(scene, logic):
    """The desktop path: panel settings -> prepare (main thread) -> ThreadJob(compute) -> createNodes."""
    imageNode = loadSampleData(scene, "NucleiImage2D")
    panel = SimpleNamespace(
        inputVolume=imageNode, thresholdMethod="otsu", threshold=0.0, autoSmoothing=False, smoothingMm=1.5,
        minSeedDistanceMm=0.0, seedDepthMm=0.0, landscape="distance", darkObjects=False,
        foregroundSegmentation=None, seedsSegmentation=None, seedsMarkups=None, backgroundMarkups=None,
        outputType="labelmap", outputSegmentation=None, outputLabelMap=None, objectTable=None,
    )  # fmt: skip
    job = logic.prepareWatershedPreview(**watershedArgumentsFromPanel(panel, preview=True))
    thread = ThreadJob(lambda progress, cancelToken: job.compute(progress, cancelToken) and job)
    thread.start()
    assert thread.wait(60)
    status = thread.poll()
    assert status.state == WorkerState.COMPLETED, status.errorMessage
    preview = status.result.createNodes()
    run = logic.runWatershed(**watershedArgumentsFromPanel(panel))
    assert run.outputNode.IsA("vtkMRMLLabelMapVolumeNode")  # the panel's output type reached the run
    assert preview.seedCount == run.objectCount
    direct = logic.runWatershedPreview(imageNode, threshold="otsu", smoothingMm=1.5)
    np.testing.assert_array_equal(
        labelmapFromSegmentation(direct.previewNode, imageNode)[0], labelmapFromSegmentation(preview.previewNode, imageNode)[0]
    )  # fmt: skip


@pytest.mark.parametrize(
    "caseName, order, flips", [("flipped", (0, 1, 2), (0, 2)), ("permuted and flipped", (1, 2, 0), (1,))]
)
def test_same_seeds_in_physical_space_whatever_the_storage(scene, logic, rng, caseName, order, flips):
    """Oblique 0.7x0.7x3.0 mm NucleiImage3D stored flipped or permuted: identical foreground and seeds after resampling."""
    image = arrayFromVolume(loadSampleData(scene, "NucleiImage3D"))
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = _randomRotation(rng) @ np.diag([0.7, 0.7, 3.0])
    ijkToRas[:3, 3] = [-20.0, 31.0, 7.5]
    referenceNode = createVolumeFromArray(scene, image, ijkToRas, "Reference")
    expected = logic.runWatershedPreview(referenceNode)
    array, matrix = _storedAs(image, ijkToRas, order, flips)
    variant = logic.runWatershedPreview(createVolumeFromArray(scene, array, matrix, caseName))
    assert variant.seedCount == expected.seedCount >= 10
    expectedMasks, variantMasks = _parts(expected, referenceNode), _parts(variant, referenceNode)
    for part in ("foreground", "seeds"):
        np.testing.assert_array_equal(variantMasks[part], expectedMasks[part])
