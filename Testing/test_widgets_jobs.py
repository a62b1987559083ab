"""The Segmentation panel's model and prompt jobs (``MedAISegmentation/MedAISegmentationWidgets``), Qt-free.

They run here as in the desktop: inputs read on the main thread, compute in a real background thread
(``ThreadJob``), results written on the main thread, on real MRML nodes (slicer-core), with a real
TorchScript network given as "your own model" with its own card file, and LiteMedSAM for the prompts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import slicer
from vtk.util.numpy_support import vtk_to_numpy

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.threadjob import ThreadJob
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume
from MedAICommonLib.worker import WorkerState
from MedAISegmentationLib.logic import MedAISegmentationLogic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedAISegmentation"))  # as Slicer's module path does

from MedAISegmentationWidgets.modeljob import ModelJob, modelCard, segmentationModelCards  # noqa: E402
from MedAISegmentationWidgets.promptjob import PromptJob, PromptUndo  # noqa: E402
from MedAISegmentationWidgets.tinymodel import brighterChannels, writeBrighterModel  # noqa: E402


def runInThread(job, cancel: bool = False):
    """Compute ``job`` in a background thread as the panel does; return the final status."""
    thread = ThreadJob(lambda progress, token: job.compute(progress, token))
    thread.start()
    if cancel:
        thread.cancel()
    assert thread.wait(300)
    return thread.poll()


# --- the model job: the user's own two-channel TorchScript model with a card file ----------------------


@pytest.fixture(scope="module")
def ownModel(tmp_path_factory):
    """A TorchScript network whose class 1 is "channel A brighter than channel B", and its card file."""
    return writeBrighterModel(tmp_path_factory.mktemp("ownmodel"))


def test_own_model_runs_in_a_thread_with_channels_in_card_order(scene, ownModel):
    modelPath, cardPath = ownModel
    a, b = brighterChannels(scene)
    assert [c["name"] for c in modelCard(modelPath, cardPath).inputChannels] == ["A", "B"]
    logic = MedAISegmentationLogic()
    chosenProbabilities = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "kept probabilities")
    job = ModelJob(logic, [a, b], modelPath, "cpu", keepProbabilities=True, cardPath=cardPath,
                   outputProbabilityVolumeNode=chosenProbabilities)  # fmt: skip
    assert runInThread(job).state == WorkerState.COMPLETED
    run = job.createNodes()
    labels, _, segments = labelmapFromSegmentation(run.segmentationNode, a)
    difference = arrayFromVolume(a) - arrayFromVolume(b)
    expected = difference > 0
    assert [s.name for s in segments] == ["Brighter"]
    assert (labels > 0).sum() > 200 and ((labels > 0) == expected).mean() > 0.99
    assert run.probabilityVolumeNode is chosenProbabilities  # the chosen volume is refilled, not a new one
    probabilities = vtk_to_numpy(chosenProbabilities.GetImageData().GetPointData().GetScalars())
    assert probabilities.shape == (expected.size, 2) and np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4)
    assert np.allclose(ijkToRasFromVolume(chosenProbabilities), ijkToRasFromVolume(a))

    # The same volumes in the other order: the other voxels (the order of the card is the order given).
    swapped = ModelJob(logic, [b, a], modelPath, "cpu", cardPath=cardPath, outputSegmentationNode=run.segmentationNode)
    assert runInThread(swapped).state == WorkerState.COMPLETED
    again = swapped.createNodes()
    assert again.segmentationNode is run.segmentationNode and again.probabilityVolumeNode is None
    labels = labelmapFromSegmentation(run.segmentationNode, a)[0]
    assert (((labels > 0) == ~expected) | (np.abs(difference) < 0.5)).mean() > 0.99


def test_model_job_cancel_and_bad_input_leave_the_scene_as_it_was(scene, ownModel):
    modelPath, cardPath = ownModel
    a, b = brighterChannels(scene)
    logic = MedAISegmentationLogic()
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError, match="every input channel"):
        ModelJob(logic, [a, None], modelPath, cardPath=cardPath)
    with pytest.raises(MedAIInputError, match="Choose a model"):
        ModelJob(logic, [a, b], "")
    with pytest.raises(MedAIInputError):
        ModelJob(logic, [a], modelPath, "cpu", cardPath=cardPath)  # one volume for a two-channel model
    job = ModelJob(logic, [a, b], modelPath, "cpu", keepProbabilities=True, cardPath=cardPath)
    assert runInThread(job, cancel=True).state == WorkerState.CANCELLED
    assert scene.GetNumberOfNodes() == count


# --- the prompt job: LiteMedSAM on the nuclei image, undo -----------------------------------------------


@pytest.fixture(scope="module")
def nuclei():
    from MedAISegmentationLib.promptsession import PromptSession

    scene = slicer.vtkMRMLScene()
    image = loadSampleData(scene, "NucleiImage2D")
    labels = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    largest = np.argsort(np.bincount(labels.ravel())[1:])[::-1][:2] + 1  # the two largest nuclei
    yield scene, image, [labels == value for value in largest], PromptSession(image, device="cpu", augment=False)
    scene.Clear(1)


def boxAround(scene, volumeNode, mask):
    """An ROI node around a mask's voxels (their outer faces), in RAS."""
    indices = np.argwhere(mask)
    corners = np.array([[*(indices.min(axis=0) - 0.5)[::-1], 1.0], [*(indices.max(axis=0) + 0.5)[::-1], 1.0]])
    ras = (ijkToRasFromVolume(volumeNode) @ corners.T)[:3]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenterWorld(*ras.mean(axis=1))
    roi.SetSizeWorld(*np.abs(ras[:, 1] - ras[:, 0]))
    return roi


def dice(a, b) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_prompts_run_in_a_thread_after_the_embedding_and_undo_step_back(nuclei):
    scene, image, (first, second), session = nuclei
    undo = PromptUndo()
    embedding = ThreadJob(lambda progress, token: session.prepareSlice("axial", 0, token))
    embedding.start()
    job = PromptJob(session, roiNode=boxAround(scene, image, first), waitFor=embedding)
    assert runInThread(job).state == WorkerState.COMPLETED
    assert session.isSlicePrepared("axial", 0)
    result = job.createNodes(undo)
    assert result.createdNode and dice(result.mask.astype(bool), first) > 0.8

    # A second object into a new segment of the same segmentation, then two undo steps.
    job = PromptJob(session, roiNode=boxAround(scene, image, second), segmentationNode=result.segmentationNode)
    assert runInThread(job).state == WorkerState.COMPLETED
    again = job.createNodes(undo)
    segmentation = result.segmentationNode.GetSegmentation()
    assert again.segmentationNode is result.segmentationNode and segmentation.GetNumberOfSegments() == 2
    assert dice(again.mask.astype(bool), second) > 0.8
    assert undo.undo() is result.segmentationNode
    labels, _, segments = labelmapFromSegmentation(result.segmentationNode, image)
    assert len(segments) == 1 and np.array_equal(labels > 0, result.mask.astype(bool))
    assert undo.undo() is result.segmentationNode and result.segmentationNode.GetScene() is None
    assert not undo.available and undo.undo() is None


def test_prompt_job_refuses_bad_prompts_and_cancel_adds_nothing(nuclei):
    scene, image, (first, _), session = nuclei
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError):
        PromptJob(session)  # no prompt
    outside = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    outside.SetCenterWorld(5000.0, 5000.0, 0.0)
    outside.SetSizeWorld(10.0, 10.0, 1.0)
    with pytest.raises(MedAIInputError):
        PromptJob(session, roiNode=outside)
    roi = boxAround(scene, image, first)
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(MedAIInputError, match="no segment"):
        PromptJob(session, roiNode=roi, segmentationNode=segmentationNode, segmentId="missing")
    count = scene.GetNumberOfNodes()
    assert runInThread(PromptJob(session, roiNode=roi), cancel=True).state == WorkerState.CANCELLED
    assert scene.GetNumberOfNodes() == count


def test_model_section_offers_the_shipped_segmentation_networks():
    ids = [card.id for card in segmentationModelCards()]
    assert {"BrainExtractionT1", "NucleiFluorescence2D", "HeadCTBone"} <= set(ids) and "LiteMedSAM" not in ids
