"""Common helpers moved out of the segmentation logic: label resampling between grids, grid
comparison, node removal with display and storage nodes, and table filling."""

from __future__ import annotations

import numpy as np
import pytest
from test_geometry_volumes import randomRotation

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.resampling import resampleLabelsNearest, sameGrid
from MedAICommonLib.sceneio import removeNodes
from MedAICommonLib.segmentations import createSegmentationFromLabelmap
from MedAICommonLib.tables import fillTable
from MedAICommonLib.volumes import createVolumeFromArray


def _grid(rotation, spacingMm, originRas, flips=(1, 1, 1)) -> np.ndarray:
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = rotation @ np.diag(np.asarray(spacingMm) * np.asarray(flips))
    ijkToRas[:3, 3] = originRas
    return ijkToRas


def _expectedNearest(labels, ijkToRas, shape, targetIjkToRas):
    """Nearest-neighbour resampling written out voxel by voxel in numpy, plus a mask of exact ties."""
    k, j, i = np.indices(shape).reshape(3, -1)
    world = targetIjkToRas @ np.vstack([i, j, k, np.ones_like(i)])
    sourceIjk = np.linalg.solve(ijkToRas, world)[:3]
    nearest = np.round(sourceIjk).astype(int)
    inside = np.all((nearest >= 0) & (nearest < np.array(labels.shape[::-1])[:, None]), axis=0)
    expected = np.zeros(i.size, dtype=np.int32)
    expected[inside] = labels[nearest[2, inside], nearest[1, inside], nearest[0, inside]]
    ties = np.any(np.abs(np.abs(sourceIjk - np.floor(sourceIjk)) - 0.5) < 1e-6, axis=0)
    return expected.reshape(shape), ties.reshape(shape)


@pytest.mark.parametrize(
    ("sourceSpacing", "targetSpacing", "targetFlips"),
    [((0.7, 0.7, 3.0), (3.0, 0.7, 0.7), (-1, 1, -1)), ((3.0, 0.7, 0.7), (1.1, 1.3, 0.9), (1, -1, 1))],
)
def test_resample_labels_nearest_follows_world_positions_on_oblique_flipped_grids(
    rng, sourceSpacing, targetSpacing, targetFlips
):
    labels = rng.integers(0, 40000, size=(11, 53, 37)).astype(np.int32)  # KJI of a 37x53x11 grid
    source = _grid(randomRotation(rng), sourceSpacing, rng.uniform(-20, 20, 3))
    centre = source @ np.array([18.0, 26.0, 5.0, 1.0])
    targetRotation = randomRotation(rng)
    targetShape = (17, 29, 23)
    target = _grid(targetRotation, targetSpacing, [0, 0, 0], targetFlips)
    target[:3, 3] = centre[:3] - target[:3, :3] @ (np.array(targetShape[::-1]) - 1) / 2

    found = resampleLabelsNearest(labels, source, targetShape, target)
    expected, ties = _expectedNearest(labels, source, targetShape, target)

    assert found.shape == targetShape and found.dtype == np.int32
    assert np.array_equal(found[~ties], expected[~ties])
    assert (found == 0).any() and (found > 255).any()  # partly outside the source; large labels kept


def test_resample_onto_the_same_grid_flipped_is_the_flipped_array(rng):
    labels = rng.integers(0, 7, size=(11, 53, 37)).astype(np.uint16)
    original = labels.copy()
    source = _grid(randomRotation(rng), (0.7, 0.7, 3.0), rng.uniform(-20, 20, 3))
    assert np.array_equal(resampleLabelsNearest(labels, source, labels.shape, source), labels)
    # The same voxel centres, with the i axis stored backwards: the array comes out flipped along i.
    flippedI = source.copy()
    flippedI[:3, 0] *= -1
    flippedI[:3, 3] = source[:3, 3] + source[:3, 0] * (labels.shape[2] - 1)
    assert np.array_equal(resampleLabelsNearest(labels, source, labels.shape, flippedI), labels[:, :, ::-1])
    assert np.array_equal(labels, original)


def test_resample_refuses_bad_input(rng):
    grid = _grid(np.eye(3), (1, 1, 1), (0, 0, 0))
    with pytest.raises(MedAIInputError, match="whole numbers"):
        resampleLabelsNearest(np.full((3, 4, 5), 0.5), grid, (3, 4, 5), grid)
    sheared = grid.copy()
    sheared[0, 1] = 0.5
    with pytest.raises(MedAIInputError, match="shears"):
        resampleLabelsNearest(np.ones((3, 4, 5), dtype=int), grid, (3, 4, 5), sheared)
    with pytest.raises(MedAIInputError, match="3D"):
        resampleLabelsNearest(np.ones((4, 5), dtype=int), grid, (4, 5), grid)


def test_same_grid_compares_voxel_centres(rng):
    shape = (11, 53, 37)
    grid = _grid(randomRotation(rng), (0.7, 0.7, 3.0), rng.uniform(-20, 20, 3))
    nudged = grid.copy()
    nudged[:3, 3] += 5e-5
    moved = grid.copy()
    moved[:3, 3] += 0.01
    flipped = grid.copy()
    flipped[:3, 0] *= -1
    flipped[:3, 3] = grid[:3, 3] + grid[:3, 0] * (shape[2] - 1)
    assert sameGrid(shape, grid, shape, nudged)
    assert not sameGrid(shape, grid, shape, moved)
    assert sameGrid(shape, grid, shape, moved, toleranceMm=0.02)
    assert not sameGrid(shape, grid, shape, flipped)  # same centres, other voxel order
    assert not sameGrid(shape, grid, (11, 53, 36), grid)


def _nodeIds(scene) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def test_remove_nodes_takes_display_and_storage_nodes_along(scene, rng):
    before = _nodeIds(scene)
    labels = rng.integers(0, 3, size=(5, 6, 7)).astype(np.int16)
    grid = _grid(randomRotation(rng), (0.7, 0.7, 3.0), (1, 2, 3))
    volume = createVolumeFromArray(scene, labels, grid, "Labels", labelmap=True)
    volume.CreateDefaultDisplayNodes()
    volume.AddDefaultStorageNode()
    segmentation = createSegmentationFromLabelmap(scene, labels, grid, name="Objects")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Metrics")
    assert volume.GetDisplayNode() is not None and volume.GetStorageNode() is not None
    assert segmentation.GetDisplayNode() is not None

    removeNodes(scene, [volume, None, segmentation, table, table])
    assert _nodeIds(scene) == before

    # Why the helper exists: a plain RemoveNode on slicer-core leaves the display node behind.
    again = createSegmentationFromLabelmap(scene, labels, grid, name="Objects")
    displayId = again.GetDisplayNode().GetID()
    scene.RemoveNode(again)
    assert displayId in _nodeIds(scene)


def test_fill_table_replaces_columns_and_refuses_ragged_input(scene):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Objects")
    fillTable(table, [("Old", "int", [1, 2, 3], "")])
    fillTable(
        table,
        [
            ("Object", "string", ["a", "b"], ""),
            ("Label", "int", [4, 9], ""),
            ("Volume", "double", [1.5, np.nan], "mm3"),
        ],
    )
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == ["Object", "Label", "Volume"]
    assert table.GetNumberOfRows() == 2 and table.GetCellText(1, 1) == "9"
    assert table.GetColumnUnitLabel("Volume") == "mm3"
    assert np.isnan(table.GetTable().GetColumnByName("Volume").GetValue(1))
    with pytest.raises(MedAIInputError, match="different lengths"):
        fillTable(table, [("A", "int", [1], ""), ("B", "int", [1, 2], "")])
    with pytest.raises(MedAIInputError, match="unknown column kinds"):
        fillTable(table, [("A", "float", [1.0], "")])
    assert table.GetNumberOfColumns() == 3
