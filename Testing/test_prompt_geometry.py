"""Prompts land on the right slice and voxel, whatever the volume's storage; bad prompts change nothing.

No network here: these tests run the geometry, the crops and the propagation loop without the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from test_watershed import _randomRotation, _storedAs

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.volumes import createVolumeFromArray
from MedAISegmentationLib.promptlogic import planPrompts, segmentFromPrompts
from MedAISegmentationLib.promptorientations import ORIENTATIONS, SINGLE_ORIENTATION, _orient_points, _unorient_image
from MedAISegmentationLib.promptsegment import BOX_MARGIN_MODEL_PX, propagate_through_slices
from MedAISegmentationLib.promptslices import display_slice, prompt_region

SHAPE_KJI = (11, 53, 37)  # odd sizes, 37 x 53 x 11 in IJK
TARGET_KJI = (4, 31, 9)


def _grid(rng, spacingIjk, oblique: bool, flips: tuple[int, ...] = ()) -> np.ndarray:
    rotation = _randomRotation(rng) if oblique else np.eye(3)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(spacingIjk, dtype=float)
    matrix[:3, 3] = rng.uniform(-40.0, 40.0, size=3)
    for axis in flips:
        matrix[:3, 2 - axis] *= -1
    return matrix


GEOMETRIES = {
    "plain": dict(spacingIjk=(1.0, 1.0, 1.0), oblique=False),
    "anisotropic-0.7x0.7x3": dict(spacingIjk=(0.7, 0.7, 3.0), oblique=False),
    "anisotropic-3x0.7x0.7": dict(spacingIjk=(3.0, 0.7, 0.7), oblique=False),
    "oblique-flipped": dict(spacingIjk=(0.9, 1.3, 2.0), oblique=True, flips=(0, 2)),
}


def _volume(scene, rng, geometry: str, order=(0, 1, 2), flips=()):
    """A volume of distinct random values (so a voxel is recognised by its value), stored as asked."""
    voxels = rng.permutation(np.prod(SHAPE_KJI)).reshape(SHAPE_KJI).astype(np.int32)
    ijkToRas = _grid(rng, **GEOMETRIES[geometry])
    targetValue = voxels[TARGET_KJI]
    targetRas = (ijkToRas @ np.r_[TARGET_KJI[::-1], 1.0])[:3]
    stored, matrix = _storedAs(voxels, ijkToRas, order, flips)
    return createVolumeFromArray(scene, stored, matrix, "volume"), targetValue, targetRas, ijkToRas


def _points(scene, positions, labels=None):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    for index, position in enumerate(positions):
        node.AddControlPointWorld(*position)
        if labels:
            node.SetNthControlPointLabel(index, labels[index])
    return node


def _roi(scene, centerRas, sizeMm, directions=None):
    directions = np.eye(3) if directions is None else directions
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    matrix = vtk.vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, directions[row, column])
        matrix.SetElement(row, 3, centerRas[row])
    node.SetAndObserveObjectToNodeMatrix(matrix)
    node.SetSize(*sizeMm)
    return node


def _nodeIds(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_point_lands_on_its_voxel(scene, rng, geometry, view):
    """A point at a voxel's centre falls on that voxel of the display slice, for any storage order."""
    for order, flips in (((0, 1, 2), ()), ((2, 0, 1), (1,)), ((1, 2, 0), (0, 2))):
        volumeNode, value, targetRas, _ = _volume(scene, np.random.default_rng(7), geometry, order, flips)
        plan = planPrompts(volumeNode, pointsNode=_points(scene, [targetRas]), sliceView=view)
        image, _ = display_slice(plan.volume, plan.axis, plan.sliceIndex)
        row, col = np.round(plan.pointsRc[0]).astype(int)
        assert np.allclose(plan.pointsRc[0], (row, col), atol=1e-6)
        assert image[row, col] == value, (geometry, view, order, flips)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_box_covers_exactly_the_voxels_inside_it(scene, rng, geometry):
    """An ROI aligned with the volume, 5 voxels wide around the target, covers those 5x5 pixels."""
    volumeNode, value, targetRas, ijkToRas = _volume(scene, rng, geometry, order=(2, 1, 0), flips=(1,))
    spacing = np.linalg.norm(ijkToRas[:3, :3], axis=0)
    directions = ijkToRas[:3, :3] / spacing
    size = spacing * 4.9
    size[2] = spacing[2] * 0.2  # thin across the axial-like slices of the volume's K axis
    plan = planPrompts(volumeNode, roiNode=_roi(scene, targetRas, size, directions))
    image, _ = display_slice(plan.volume, plan.axis, plan.sliceIndex)
    (r0, c0), (r1, c1) = plan.boxRc.astype(int)
    assert (r1 - r0, c1 - c0) == (4, 4)
    assert image[(r0 + r1) // 2, (c0 + c1) // 2] == value


def test_display_slice_is_independent_of_storage(scene, rng):
    """The same physical volume stored permuted and flipped gives identical display slices."""
    first, _, targetRas, _ = _volume(scene, np.random.default_rng(3), "oblique-flipped")
    second, _, _, _ = _volume(scene, np.random.default_rng(3), "oblique-flipped", order=(1, 0, 2), flips=(0, 1, 2))
    points = _points(scene, [targetRas])
    for view in ("axial", "coronal", "sagittal"):
        planA = planPrompts(first, pointsNode=points, sliceView=view)
        planB = planPrompts(second, pointsNode=points, sliceView=view)
        imageA, spacingA = display_slice(planA.volume, planA.axis, planA.sliceIndex)
        imageB, spacingB = display_slice(planB.volume, planB.axis, planB.sliceIndex)
        assert np.array_equal(imageA, imageB) and np.allclose(spacingA, spacingB)


def test_bad_prompts_are_refused_and_leave_the_scene_unchanged(scene, rng):
    volumeNode, _, targetRas, ijkToRas = _volume(scene, rng, "plain")
    far = targetRas + 500.0
    cases = {
        "outside": dict(roiNode=_roi(scene, far, (5.0, 5.0, 1.0))),
        "zero size": dict(roiNode=_roi(scene, targetRas, (0.0, 5.0, 1.0)), sliceView="axial"),
        "on no slice": dict(pointsNode=_points(scene, [targetRas + [0.0, 0.0, 200.0]]), sliceView="axial"),
        "another slice": dict(
            roiNode=_roi(scene, targetRas, (5.0, 5.0, 0.5)),
            pointsNode=_points(scene, [targetRas + [0.0, 0.0, 3.0]]),
            sliceView="axial",
        ),
        "no prompt": dict(pointsNode=_points(scene, [])),
        "unknown view": dict(pointsNode=_points(scene, [targetRas]), sliceView="oblique"),
    }
    before = _nodeIds(scene)
    for name, prompts in cases.items():
        with pytest.raises(MedAIInputError):
            segmentFromPrompts(volumeNode, **prompts)
        assert _nodeIds(scene) == before, name


def test_small_boxes_get_a_shared_crop_and_large_boxes_the_whole_slice():
    shape, spacing = (512, 512), (0.5, 0.5)
    small = np.array([[100.0, 200.0], [112.0, 211.0]])
    region = prompt_region(shape, spacing, small)
    assert region.r0 <= 100 and region.r1 > 112 and region.c0 <= 200 and region.c1 > 211
    assert 64 <= region.r1 - region.r0 <= 64 * 2  # 4x the box, a power of two in pixels
    # Crops snap to a grid with half-crop steps: a prompt moving 16 pixels sideways shares at most 2 embeddings.
    moved = [small + [0.0, shift] for shift in range(16)]
    assert len({prompt_region(shape, spacing, box) for box in moved}) <= 2
    for box in moved:
        inside = prompt_region(shape, spacing, box)
        assert inside.r0 <= box[0, 0] and inside.r1 > box[1, 0] and inside.c0 <= box[0, 1] and inside.c1 > box[1, 1]
    assert prompt_region(shape, spacing, np.array([[10.0, 10.0], [400.0, 300.0]])).r1 == 512


def test_orientations_map_back_exactly(rng):
    image = rng.random((7, 12))
    point = np.array([[2.0, 9.0]])
    for orientation in ORIENTATIONS:
        moved = _orient_points(point, image.shape, orientation)[0].astype(int)
        oriented = image.T if orientation[0] else image
        oriented = oriented[:: -1 if orientation[1] else 1, :: -1 if orientation[2] else 1]
        assert oriented[tuple(moved)] == image[2, 9]
        assert np.array_equal(_unorient_image(np.ascontiguousarray(oriented), orientation), image)


def test_propagation_follows_the_object_and_stops_where_it_ends():
    """Each slice is prompted with the previous slice's box; the ROI range and the object's end stop it."""
    z, y, x = np.mgrid[:40, :60, :60]
    ball = ((z - 20) / 12.0) ** 2 + ((y - 30) / 20.0) ** 2 + ((x - 30) / 20.0) ** 2 <= 1.0
    prompts = []

    def segmentSlice(index, box):
        prompts.append(index)
        (r0, c0), (r1, c1) = box.astype(int)
        inside = np.zeros_like(ball[index])
        inside[r0 : r1 + 1, c0 : c1 + 1] = True
        return ball[index] & inside

    masks = propagate_through_slices(segmentSlice, 20, ball[20], 0, 39)
    assert sorted(masks) == [i for i in range(40) if ball[i].sum() >= 20]
    assert max(prompts) <= 33 and min(prompts) >= 7  # one slice past each end, no further
    limited = propagate_through_slices(segmentSlice, 20, ball[20], 15, 22)
    assert sorted(limited) == list(range(15, 23))


def test_propagation_range_is_the_slices_whose_centres_the_roi_contains(scene, rng):
    volumeNode, _, targetRas, ijkToRas = _volume(scene, rng, "anisotropic-0.7x0.7x3")
    low = ijkToRas @ np.r_[5 - 2.5, 20 - 2.5, 3 - 0.5, 1.0]  # IJK faces around K slices 3 to 6
    high = ijkToRas @ np.r_[5 + 2.5, 20 + 2.5, 6 + 0.5, 1.0]
    roi = _roi(scene, (low + high)[:3] / 2, np.abs(high - low)[:3])
    plan = planPrompts(volumeNode, roiNode=roi, sliceView="axial")
    assert plan.sliceRange == (3, 6) and plan.sliceIndex in (4, 5)


class _DecoderInputs:
    """A prompt model that records what reaches its decoder (the real one is tested in test_prompt_model)."""

    model_id, device, input_size = "recorder", "cpu", 256

    def encode(self, model_input):
        import torch

        return torch.zeros(1, 1, 1, 1)

    def decode_batch(self, embeddings, boxes, points, labels):
        self.boxes = boxes
        return np.zeros((len(embeddings), 256, 256), np.float32), np.zeros(len(embeddings))


@pytest.mark.parametrize(
    ("box_rc", "expected_xy"),
    [
        # Orientation 7 maps display (row, col) to (255 - col, 255 - row); the model takes (x, y) = (col, row).
        (
            [[20, 30], [230, 200]],
            [25 - BOX_MARGIN_MODEL_PX, 55 - BOX_MARGIN_MODEL_PX, 235 + BOX_MARGIN_MODEL_PX, 225 + BOX_MARGIN_MODEL_PX],
        ),
        ([[0, 0], [255, 255]], [0, 0, 255, 255]),  # clipped to the model's frame
    ],
)
def test_box_prompts_reach_the_decoder_widened_by_the_margin(box_rc, expected_xy):
    from MedAISegmentationLib.promptsegment import EmbeddingCache, segment_display_image

    assert SINGLE_ORIENTATION == (True, True, True)
    recorder = _DecoderInputs()
    segment_display_image(recorder, np.zeros((256, 256), np.float32), (1.0, 1.0), box_rc=box_rc, cache=EmbeddingCache())
    np.testing.assert_allclose(recorder.boxes[0], expected_xy, atol=1e-6)
