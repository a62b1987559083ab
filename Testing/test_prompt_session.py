"""PromptSession, the desktop panel's object: slices prepared in a background thread, then prompted.

Real LiteMedSAM weights on the real nuclei image (one whole-slice embedding, no orientation
averaging, to stay fast on 2 CPU cores); each test brings its own embedding cache.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import slicer

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap, labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume, updateVolumeFromArray
from MedAISegmentationLib.promptsegment import EmbeddingCache
from MedAISegmentationLib.promptsession import PromptSession


def _boxRoi(scene, ijkToRas, lowKji, highKji):
    low = ijkToRas @ np.r_[np.asarray(lowKji, float)[::-1] - 0.5, 1.0]
    high = ijkToRas @ np.r_[np.asarray(highKji, float)[::-1] + 0.5, 1.0]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenterWorld(*((low + high)[:3] / 2))
    roi.SetSizeWorld(*np.abs(high - low)[:3])
    return roi


@pytest.fixture(scope="module")
def nuclei():
    scene = slicer.vtkMRMLScene()
    imageNode = loadSampleData(scene, "NucleiImage2D")
    labels = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    yield scene, imageNode, labels
    scene.Clear(1)


def _nodeIds(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_slice_prepared_in_a_thread_answers_prompts_without_new_embeddings(nuclei):
    scene, imageNode, labels = nuclei
    cache = EmbeddingCache()
    session = PromptSession(imageNode, cache=cache, augment=False)
    centre = ijkToRasFromVolume(imageNode) @ np.r_[256.0, 256.0, 0.0, 1.0]
    assert not session.isSlicePrepared("axial", centre[:3])
    counts = []
    thread = threading.Thread(target=lambda: counts.append(session.prepareSlice("axial", centre[:3])))
    thread.start()
    thread.join(timeout=120)
    assert counts == [1] and session.isSlicePrepared("axial", 0)
    assert session.prepareSlice("axial", 0) == 0  # already there

    # A large box (whole-slice embedding) into a new segment of an existing segmentation.
    mine = np.zeros(labels.shape, np.uint8)
    mine[0, 10:20, 10:30] = 1
    ijkToRas = ijkToRasFromVolume(imageNode)
    segmentationNode = createSegmentationFromLabelmap(scene, mine, ijkToRas, [SegmentInfo("mine", (0, 1, 0), 1)])
    roi = _boxRoi(scene, ijkToRasFromVolume(imageNode), [0, 100, 100], [0, 400, 420])
    misses = cache.misses
    result = session.segment(roiNode=roi, segmentationNode=segmentationNode)
    assert cache.misses == misses
    assert not result.createdNode and result.segmentationNode is segmentationNode
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    written, _, segments = labelmapFromSegmentation(segmentationNode, imageNode)
    assert np.array_equal(written == [s.labelValue for s in segments if s.name == "mine"][0], mine > 0)
    written = written == [s.labelValue for s in segments if s.name != "mine"][0]
    inBox = np.zeros(labels.shape, bool)
    inBox[0, 100:401, 100:421] = True
    assert written.sum() > 100 and not np.any(written[~inBox])
    assert np.array_equal(written, result.mask > 0)

    # The selected (existing) segment is replaced, not added to.
    again = session.segment(roiNode=roi, segmentationNode=segmentationNode, segmentId=result.segmentId)
    assert again.segmentId == result.segmentId and segmentationNode.GetSegmentation().GetNumberOfSegments() == 2


def test_changed_voxels_are_read_again(nuclei):
    scene, imageNode, labels = nuclei
    cache = EmbeddingCache()
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "copy")
    copy.CopyContent(imageNode)
    session = PromptSession(copy, cache=cache, augment=False)
    session.prepareSlice("axial", 0)
    assert session.isSlicePrepared("axial", 0)
    updateVolumeFromArray(copy, arrayFromVolume(copy)[:, ::-1].copy())  # the image changed under the session
    roi = _boxRoi(scene, ijkToRasFromVolume(copy), [0, 100, 100], [0, 400, 420])
    session.segment(roiNode=roi)
    assert cache.misses == 2  # the new voxels were encoded


def test_bad_slices_cancel_and_checkpoints_leave_nothing_behind(nuclei, tmp_path):
    scene, imageNode, labels = nuclei
    before = _nodeIds(scene)
    session = PromptSession(imageNode, cache=EmbeddingCache(), augment=False)
    with pytest.raises(MedAIInputError, match="not one of"):
        session.prepareSlice("axial", 3)
    with pytest.raises(MedAIInputError, match="no slice"):
        session.prepareSlice("axial", [0.0, 0.0, 50.0])
    with pytest.raises(MedAIInputError, match="oblique"):
        session.prepareSlice("oblique", 0)
    token = CancelToken()
    token.cancel()
    with pytest.raises(MedAICancelledError):
        session.prepareSlice("axial", 0, cancelToken=token)
    with pytest.raises(MedAIInputError, match="does not exist"):
        PromptSession(imageNode, model=str(tmp_path / "missing.pth"))
    assert _nodeIds(scene) == before
