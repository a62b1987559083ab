"""Seeded watershed on real MRML nodes and real data: quality, geometry, bad input and cancel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.resampling import resampleLabelsNearest
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap, labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume, sameGeometry
from MedAISegmentationLib import watershed
from MedAISegmentationLib.evaluation import instance_metrics, segment_metrics
from MedAISegmentationLib.logic import MedAISegmentationLogic


@pytest.fixture
def logic():
    return MedAISegmentationLogic()


def _nodeIds(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def _randomRotation(rng):
    """A rotation by 5-30 degrees about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(5.0, 30.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _storedAs(array, ijkToRas, order=(0, 1, 2), flips=()):
    """The same physical volume stored with its KJI axes permuted (``order``) and then flipped."""
    array = array.transpose(order)
    columns = [2 - order[2 - n] for n in range(3)]  # IJK column n of the new grid was this column
    matrix = ijkToRas.copy()
    matrix[:, :3] = ijkToRas[:, columns]
    for axis in flips:
        column = 2 - axis
        matrix[:3, 3] += matrix[:3, column] * (array.shape[axis] - 1)
        matrix[:3, column] *= -1
    return np.ascontiguousarray(np.flip(array, flips)), matrix


# ---------------------------------------------------------------- quality on real data


def test_touching_nuclei_are_split_with_default_parameters(scene, logic):
    """Quality bar of the issue: instance F1 at IoU 0.5 >= 0.88 on the 125 stardist nuclei, no tuning."""
    imageNode = loadSampleData(scene, "NucleiImage2D")
    maskNode = loadSampleData(scene, "NucleiMask2D")
    result = logic.runWatershed(imageNode)
    scores = logic.evaluateSegmentation(maskNode, result.outputNode, instanceLevel=True, createTables=False).instances
    textbook = logic.runWatershed(imageNode, threshold="otsu", createTable=False)
    textbookScores = logic.evaluateSegmentation(maskNode, textbook.outputNode, instanceLevel=True, createTables=False)
    print(f"\nNuclei: default F1@0.5 {scores['f1']:.3f} (precision {scores['precision']:.3f}, recall "
          f"{scores['recall']:.3f}, {scores['prediction_count']} objects for {scores['reference_count']}), "
          f"mean F1 0.5-0.95 {scores['f1_mean']:.3f}, mean matched IoU {scores['mean_matched_iou']:.3f}; "
          f"global Otsu F1@0.5 {textbookScores.instances['f1']:.3f}")  # fmt: skip
    assert scores["reference_count"] == 125
    assert scores["f1"] >= 0.88
    assert scores["mean_matched_iou"] >= 0.75
    # The adaptive foreground is what recovers the dim nuclei that a global threshold loses.
    assert scores["f1"] > textbookScores.instances["f1"] + 0.1


def test_seed_choices_behave_as_documented(scene):
    """A larger seed distance merges more; h-maxima seeds and the gradient landscape also split nuclei."""
    image = arrayFromVolume(loadSampleData(scene, "NucleiImage2D"))
    reference = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    counts = [
        watershed.watershed_objects(image, (1.0, 1.0, 1.0), watershed.WatershedSettings(min_seed_distance_mm=d)).object_count
        for d in (4.0, 10.0, 25.0)
    ]  # fmt: skip
    assert counts[0] > counts[1] > counts[2]
    for settings in (watershed.WatershedSettings(seed_depth_mm=1.0), watershed.WatershedSettings(landscape="gradient")):
        labels = watershed.watershed_objects(image, (1.0, 1.0, 1.0), settings).labels
        assert instance_metrics(reference, labels)["f1"] >= 0.8


def test_spacing_is_in_millimetres(scene):
    """The same pixels with half the pixel size give the same objects, with a quarter of the area."""
    image = arrayFromVolume(loadSampleData(scene, "NucleiImage2D"))
    full = watershed.watershed_objects(image, (1.0, 1.0, 1.0))
    half = watershed.watershed_objects(image, (7.0, 0.5, 0.5))
    np.testing.assert_array_equal(full.labels, half.labels)
    assert half.object_radius_mm == pytest.approx(full.object_radius_mm / 2)
    np.testing.assert_allclose(half.volumes_mm, full.volumes_mm / 4)
    assert full.unit == half.unit == "mm2"


def test_manual_seeds_refine_a_rough_brain_mask_in_3d(scene, logic):
    """Real 3D MRI (2x2x3 mm): a seed inside the brain and one outside the head find the brain's border."""
    imageNode = loadSampleData(scene, "KmeansT1")
    brain = labelmapFromSegmentation(loadSampleData(scene, "KmeansT1BrainMask"), imageNode)[0] > 0
    spacingKji = (3.0, 2.0, 2.0)
    ball = np.ones((3, 5, 5), bool)  # about 10 mm across
    inner = ndimage.binary_erosion(brain, ball, iterations=2)
    outer = ~ndimage.binary_dilation(brain, ball, iterations=1)
    seeds = np.where(inner, 1, np.where(outer, 2, 0)).astype(np.uint8)
    segments = [SegmentInfo("Brain", (1.0, 0.8, 0.6), 1), SegmentInfo("Outside", (0.2, 0.2, 0.9), 2)]
    seedNode = createSegmentationFromLabelmap(scene, seeds, ijkToRasFromVolume(imageNode), segments, "Seeds")
    before = arrayFromVolume(imageNode)
    result = logic.runWatershed(
        imageNode,
        landscape="gradient",
        seedSegmentationNode=seedNode,
        backgroundSegmentId=seedNode.GetSegmentation().GetNthSegmentID(1),
    )
    found, _, found_segments = labelmapFromSegmentation(result.outputNode, imageNode)
    assert [segment.name for segment in found_segments] == ["Brain"]
    dice = segment_metrics(brain, found == 1, spacingKji)["dice"]
    roughDice = segment_metrics(brain, ~outer, spacingKji)["dice"]
    print(f"\nKmeansT1 brain from rough seeds: Dice {dice:.3f} (the dilated seed band: {roughDice:.3f})")
    assert dice >= 0.9 and dice > roughDice + 0.03
    assert result.volumeUnit == "mm3" and result.objectCount == 1
    assert result.volumesMm[0] == pytest.approx(np.count_nonzero(found == 1) * 12.0)
    np.testing.assert_array_equal(arrayFromVolume(imageNode), before)


def test_markup_points_seed_named_objects(scene, logic):
    """Each control point (RAS) seeds one object named after it, lying on that point's nucleus."""
    import vtk

    imageNode = loadSampleData(scene, "NucleiImage2D")
    reference = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    ijkToRas = ijkToRasFromVolume(imageNode)
    values = [v for v in np.unique(reference) if v][:3]
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    for value in values:
        k, j, i = np.round(ndimage.center_of_mass(reference == value)).astype(int)
        points.AddControlPointWorld(vtk.vtkVector3d(*(ijkToRas @ [i, j, k, 1])[:3]), f"Nucleus {value}")
    result = logic.runWatershed(imageNode, seedMarkupsNode=points, outputType="labelmap")
    labels = arrayFromVolume(result.outputNode)
    table = result.tableNode
    assert [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())] == [f"Nucleus {v}" for v in values]
    for objectValue, value in enumerate(values, start=1):
        overlap = np.count_nonzero((labels == objectValue) & (reference == value))
        assert overlap >= 0.5 * np.count_nonzero(reference == value)


def test_single_point_seeds_flood_their_whole_basin(scene, logic):
    """A point seed on a slope of the gradient still grows (markers are imposed minima): one point in
    the brain and one in the air of a real 3D MRI give an object holding the brain."""
    import vtk

    imageNode = loadSampleData(scene, "KmeansT1")
    brain = labelmapFromSegmentation(loadSampleData(scene, "KmeansT1BrainMask"), imageNode)[0] > 0
    ijkToRas = ijkToRasFromVolume(imageNode)
    points, air = (scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name) for name in ("Brain", "Air"))
    points.AddControlPointWorld(vtk.vtkVector3d(*(ijkToRas @ [64, 64, 31, 1])[:3]), "Brain")
    air.AddControlPointWorld(vtk.vtkVector3d(*(ijkToRas @ [2, 2, 2, 1])[:3]), "Air")
    result = logic.runWatershed(
        imageNode, landscape="gradient", seedMarkupsNode=points, backgroundMarkupsNode=air, outputType="labelmap"
    )
    found = arrayFromVolume(result.outputNode) == 1
    assert result.objectCount == 1
    assert np.count_nonzero(found & brain) >= 0.9 * np.count_nonzero(brain)
    assert np.count_nonzero(found) < 0.5 * found.size


# ---------------------------------------------------------------- output on the input's grid


def test_output_segmentation_lies_on_the_input_grid_under_its_transform(scene, logic, rng):
    import slicer
    import vtk

    image = arrayFromVolume(loadSampleData(scene, "NucleiImage3D"))
    ijkToRas = np.diag([0.7, 0.7, 3.0, 1.0])
    ijkToRas[:3, :3] = _randomRotation(rng) @ ijkToRas[:3, :3]
    ijkToRas[:3, 3] = rng.uniform(-50, 50, 3)
    imageNode = createVolumeFromArray(scene, image, ijkToRas, "Oblique nuclei")
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 12.5)
    transformNode.SetMatrixTransformToParent(matrix)
    imageNode.SetAndObserveTransformNodeID(transformNode.GetID())
    result = logic.runWatershed(imageNode)
    segmentation = result.outputNode.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    assert names == [f"Object {n}" for n in range(1, result.objectCount + 1)] and result.objectCount >= 10
    colours = {tuple(np.round(segmentation.GetNthSegment(n).GetColor(), 3)) for n in range(len(names))}
    assert len(colours) == len(names)
    assert result.outputNode.GetTransformNodeID() == transformNode.GetID()
    labels, outputIjkToRas, _ = labelmapFromSegmentation(result.outputNode, imageNode)
    assert labels.shape == image.shape
    labelmapResult = logic.runWatershed(imageNode, outputType="labelmap", createTable=False)
    assert isinstance(labelmapResult.outputNode, slicer.vtkMRMLLabelMapVolumeNode)
    assert sameGeometry(labelmapResult.outputNode, imageNode)
    np.testing.assert_array_equal(arrayFromVolume(labelmapResult.outputNode), labels)
    assert result.tableNode.GetNumberOfRows() == result.objectCount
    volumes = [
        result.tableNode.GetTable().GetValueByName(row, "Volume").ToDouble() for row in range(result.objectCount)
    ]
    assert sum(volumes) == pytest.approx(np.count_nonzero(labels) * 0.7 * 0.7 * 3.0)
    assert result.tableNode.GetColumnUnitLabel("Volume") == "mm3"
    reused = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Reused")
    reused.CreateDefaultDisplayNodes()
    nodesBefore = _nodeIds(scene)
    again = logic.runWatershed(imageNode, outputNode=reused, tableNode=result.tableNode)
    assert again.outputNode is reused and again.tableNode is result.tableNode and _nodeIds(scene) == nodesBefore
    np.testing.assert_array_equal(labelmapFromSegmentation(reused, imageNode)[0], labels)
    kji = np.argwhere(labels == 2).mean(axis=0)
    expectedRas = (ijkToRasFromVolume(imageNode) @ [*kji[::-1], 1.0])[:3]
    table = result.tableNode.GetTable()
    centroid = [table.GetValueByName(1, f"Centroid {axis}").ToDouble() for axis in "RAS"]
    np.testing.assert_allclose(centroid, expectedRas, atol=1e-6)


@pytest.mark.parametrize(
    "caseName, order, flips, inTransform",
    [
        ("permuted, 3.0x0.7x0.7 storage", (2, 0, 1), (), False),
        ("flipped", (0, 1, 2), (0, 2), False),
        ("permuted and flipped", (1, 2, 0), (1,), False),
        ("rotation held by a parent transform", (0, 1, 2), (), True),
    ],
)
def test_same_objects_whatever_the_storage(scene, logic, rng, caseName, order, flips, inTransform):
    """Orientation invariance: identical voxels after resampling onto one grid."""
    import vtk

    image = arrayFromVolume(loadSampleData(scene, "NucleiImage3D"))  # 57x61x31, odd sizes
    rotation = _randomRotation(rng)
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = rotation @ np.diag([0.7, 0.7, 3.0])
    ijkToRas[:3, 3] = [-20.0, 31.0, 7.5]
    referenceNode = createVolumeFromArray(scene, image, ijkToRas, "Reference")
    expected = arrayFromVolume(logic.runWatershed(referenceNode, outputType="labelmap", createTable=False).outputNode)
    assert len(np.unique(expected)) > 10

    array, matrix = _storedAs(image, ijkToRas, order, flips)
    if inTransform:
        matrix = np.linalg.inv(np.block([[rotation, np.zeros((3, 1))], [np.zeros((1, 3)), 1]])) @ matrix
    variantNode = createVolumeFromArray(scene, array, matrix, caseName)
    if inTransform:
        transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        toParent = vtk.vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                toParent.SetElement(r, c, rotation[r, c])
        transformNode.SetMatrixTransformToParent(toParent)
        variantNode.SetAndObserveTransformNodeID(transformNode.GetID())
    output = logic.runWatershed(variantNode, outputType="labelmap", createTable=False).outputNode
    found = resampleLabelsNearest(arrayFromVolume(output), ijkToRasFromVolume(output), expected.shape, ijkToRas)
    np.testing.assert_array_equal(found, expected)


# ---------------------------------------------------------------- bad input, cancel


def _volume(scene, array, name="Input"):
    return createVolumeFromArray(scene, array, np.diag([0.8, 0.8, 2.0, 1.0]), name)


def _nucleiCrop(scene):
    return arrayFromVolume(loadSampleData(scene, "NucleiImage2D"))[:, :200, :200].astype(np.float32)


@pytest.mark.parametrize(
    "caseName, makeArray, parameters, message",
    [
        ("constant image", lambda s: np.full((1, 40, 50), 7.0, np.float32), {}, "constant"),
        ("NaN voxels", lambda s: np.where(_nucleiCrop(s) > 100, np.nan, _nucleiCrop(s)), {}, "NaN"),
        ("threshold above every voxel", _nucleiCrop, {"threshold": 1e6}, "leaves no voxel in the foreground"),
        ("threshold below every voxel", _nucleiCrop, {"threshold": -1e6}, "leaves no background"),
        ("unknown threshold method", _nucleiCrop, {"threshold": "triangle"}, "threshold must be"),
        ("unknown landscape", _nucleiCrop, {"landscape": "height"}, "landscape must be"),
        ("negative seed distance", _nucleiCrop, {"minSeedDistanceMm": -2.0}, "non-negative"),
        ("unknown output type", _nucleiCrop, {"outputType": "mesh"}, "outputType"),
    ],
)
def test_bad_input_leaves_no_node_and_the_input_unchanged(scene, logic, caseName, makeArray, parameters, message):
    array = makeArray(scene)
    imageNode = _volume(scene, array)
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match=message):
        logic.runWatershed(imageNode, **parameters)
    assert _nodeIds(scene) == nodesBefore
    np.testing.assert_array_equal(arrayFromVolume(imageNode), array)


def test_empty_volume_and_seeds_outside_are_refused(scene, logic):
    import vtk

    emptyNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")
    imageNode = _volume(scene, _nucleiCrop(scene))
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
    points.AddControlPointWorld(vtk.vtkVector3d(10.0, 10.0, 0.0), "inside")
    points.AddControlPointWorld(vtk.vtkVector3d(500.0, 10.0, 0.0), "far away")
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match="no image data"):
        logic.runWatershed(emptyNode)
    with pytest.raises(MedAIInputError, match="Seed point 'far away' .* outside the input volume"):
        logic.runWatershed(imageNode, seedMarkupsNode=points)
    with pytest.raises(MedAIInputError, match="background seed needs object seeds"):
        logic.runWatershed(imageNode, backgroundMarkupsNode=points)
    farAway = np.diag([0.8, 0.8, 2.0, 1.0])
    farAway[:3, 3] = [0.0, 0.0, 100.0]
    seedLabels = np.zeros((1, 30, 30), np.uint8)
    seedLabels[0, 10:15, 10:15] = 1
    seedNode = createSegmentationFromLabelmap(scene, seedLabels, farAway, [SegmentInfo("Lost", (1, 0, 0), 1)], "Seeds")
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match="Seed segment 'Lost' has no voxel inside the input volume"):
        logic.runWatershed(imageNode, seedSegmentationNode=seedNode)
    assert _nodeIds(scene) == nodesBefore


@pytest.mark.parametrize("cancelAt", ["Finding the foreground", "Flooding", "Done"])
def test_cancel_leaves_the_scene_unchanged(scene, logic, cancelAt):
    imageNode = loadSampleData(scene, "NucleiImage2D")
    nodesBefore = _nodeIds(scene)
    token = CancelToken()
    messages = []

    def progress(fraction, message):
        messages.append(message)
        if message == cancelAt:
            token.cancel()

    with pytest.raises(MedAICancelledError):
        logic.runWatershed(imageNode, progress=progress, cancelToken=token)
    assert cancelAt in messages
    assert _nodeIds(scene) == nodesBefore


# ---------------------------------------------------------------- command line


def _watershedParser():
    import argparse

    from medai.segment_commands import addWatershedParser

    parser = argparse.ArgumentParser(prog="medai segment")
    addWatershedParser(parser.add_subparsers())
    return parser


def test_command_line_writes_objects_table_and_report(tmp_path, capsys):
    import json

    from MedAICommonLib import sceneio
    from MedAICommonLib.sampledata import sampleDataPath

    output, table, report = tmp_path / "objects.seg.nrrd", tmp_path / "objects.csv", tmp_path / "objects.json"
    arguments = _watershedParser().parse_args(
        [
            "watershed",
            str(sampleDataPath("NucleiImage2D")),
            "-o",
            str(output),
            "--table",
            str(table),
            "--report",
            str(report),
        ]
    )
    assert arguments.run(arguments) == 0
    summary = json.loads(report.read_text())
    assert f"{summary['objectCount']} objects" in capsys.readouterr().out
    scene = sceneio.createScene()
    segmentation = sceneio.loadSegmentation(scene, output).GetSegmentation()
    assert segmentation.GetNumberOfSegments() == summary["objectCount"] >= 100
    assert segmentation.GetNthSegment(0).GetName() == "Object 1"
    assert sceneio.loadTable(scene, table).GetNumberOfRows() == summary["objectCount"]
    assert summary["volumeUnit"] == "mm2" and len(summary["volumesMm"]) == summary["objectCount"]


def test_command_line_bad_input_writes_nothing(tmp_path):
    from MedAICommonLib.sampledata import sampleDataPath

    image = str(sampleDataPath("NucleiImage2D"))
    parser = _watershedParser()
    for argv, message in (
        (["-o", str(tmp_path / "out.seg.nrrd"), "--threshold", "1e9"], "leaves no voxel"),
        (["-o", str(tmp_path / "out.png")], "must end with one of"),
        (["-o", str(tmp_path / "missing" / "out.nii.gz")], "does not exist"),
        (["-o", str(tmp_path / "out.nii.gz"), "--background-segment", "Outside"], "needs --seeds"),
    ):
        arguments = parser.parse_args(["watershed", image, *argv, "--report", str(tmp_path / "r.json")])
        with pytest.raises(MedAIInputError, match=message):
            arguments.run(arguments)
    assert list(tmp_path.iterdir()) == []


def test_failure_after_node_creation_removes_every_helper_node(scene, logic, monkeypatch):
    """A failure while adding the outputs (here: the table) removes the output and its display nodes too."""
    from MedAISegmentationLib import watershedoutput

    imageNode = _volume(scene, _nucleiCrop(scene))
    nodesBefore = _nodeIds(scene)

    def brokenTable(tableNode, columns):
        raise RuntimeError("disk full")

    monkeypatch.setattr(watershedoutput, "fillTable", brokenTable)
    with pytest.raises(RuntimeError, match="disk full"):
        logic.runWatershed(imageNode)
    assert _nodeIds(scene) == nodesBefore
