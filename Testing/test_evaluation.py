"""Segmentation evaluation: MONAI agreement, known values, empty masks, optimal matching, MRML grids and tables."""

from __future__ import annotations

import json
import threading
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import ConfusionMatrixMetric, DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDistanceMetric

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken, WorkerState
from MedAICommonLib.resampling import resampleLabelsNearest
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap, labelmapFromSegmentation
from MedAICommonLib.threadjob import ThreadJob
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray
from MedAISegmentationLib import evaluation
from MedAISegmentationLib.logic import MedAISegmentationLogic

SPACING_KJI = (3.0, 2.0, 2.0)


@pytest.fixture
def logic():
    return MedAISegmentationLogic()


def _nodeIds(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def _storedAs(array, ijkToRas, order, flips):
    """The same physical label map stored with its KJI axes permuted and flipped."""
    array = array.transpose(order)
    matrix = ijkToRas.copy()
    matrix[:, :3] = ijkToRas[:, [2 - order[2 - n] for n in range(3)]]
    for axis in flips:
        matrix[:3, 3] += matrix[:3, 2 - axis] * (array.shape[axis] - 1)
        matrix[:3, 2 - axis] *= -1
    return np.ascontiguousarray(np.flip(array, flips)), matrix


# ---------------------------------------------------------------- numbers


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_segment_metrics_agree_with_monai_on_the_whole_image(scene):
    """Cropping and the true-negative correction change nothing: same numbers as MONAI's classes on the full grid."""
    imageNode = loadSampleData(scene, "KmeansT1")
    brain = labelmapFromSegmentation(loadSampleData(scene, "KmeansT1BrainMask"), imageNode)[0] > 0
    tissue = arrayFromVolume(loadSampleData(scene, "KmeansT1Labels"))
    prediction = np.isin(tissue, (1, 4, 5, 6)) & np.roll(brain, 2, axis=1)
    ours = evaluation.segment_metrics(brain, prediction, SPACING_KJI)

    y = torch.from_numpy(brain[None, None].astype(np.float32))
    yPred = torch.from_numpy(prediction[None, None].astype(np.float32))
    confusion = ConfusionMatrixMetric(include_background=True, metric_name=["sensitivity", "specificity", "precision"])
    confusion(yPred, y)
    sensitivity, specificity, precision = (float(value) for value in confusion.aggregate())
    spacing = list(SPACING_KJI)
    expected = {
        "dice": float(DiceMetric(include_background=True)(yPred, y)),
        "iou": float(MeanIoU(include_background=True)(yPred, y)),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "hausdorff_mm": float(HausdorffDistanceMetric(include_background=True)(yPred, y, spacing=spacing)),
        "hausdorff95_mm": float(
            HausdorffDistanceMetric(include_background=True, percentile=95)(yPred, y, spacing=spacing)
        ),
        "average_surface_distance_mm": float(
            SurfaceDistanceMetric(include_background=True, symmetric=True)(yPred, y, spacing=spacing)
        ),
    }
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert 0.5 < ours["dice"] < 0.99
    assert ours["reference_volume"] == np.count_nonzero(brain) * 12.0


def test_overlap_and_volumes_of_two_boxes():
    reference = np.zeros((20, 30, 40), bool)
    prediction = np.zeros_like(reference)
    reference[5:10, 10:20, 10:30] = True
    prediction[5:10, 10:20, 13:33] = True  # 3 voxels further along I, 17 of 20 shared
    result = evaluation.segment_metrics(reference, prediction, (2.0, 0.5, 0.7))
    assert result["dice"] == pytest.approx(17 / 20)
    assert result["iou"] == pytest.approx(17 / 23)
    assert result["sensitivity"] == pytest.approx(17 / 20)
    assert result["precision"] == pytest.approx(17 / 20)
    assert result["specificity"] == pytest.approx(1 - 150 / (reference.size - 1000))
    assert result["reference_volume"] == pytest.approx(1000 * 0.7)
    assert result["volume_difference"] == pytest.approx(0.0)


@pytest.mark.parametrize("axis, expectedMm", [(0, 6.0), (1, 1.5), (2, 2.1)])
def test_distances_use_the_spacing_of_each_axis(axis, expectedMm):
    """Two single voxels 3 voxels apart along one axis: every distance is 3 x that axis's spacing."""
    reference = np.zeros((10, 11, 12), bool)
    prediction = np.zeros_like(reference)
    reference[2, 3, 4] = True
    position = [2, 3, 4]
    position[axis] += 3
    prediction[tuple(position)] = True
    result = evaluation.segment_metrics(reference, prediction, (2.0, 0.5, 0.7))
    for name in ("hausdorff_mm", "hausdorff95_mm", "average_surface_distance_mm"):
        assert result[name] == pytest.approx(expectedMm, rel=1e-6)
    assert result["dice"] == 0.0


@pytest.mark.parametrize(
    "case, referenceFilled, predictionFilled, expected",
    [
        ("both empty", False, False, {"dice": 1.0, "iou": 1.0, "hausdorff_mm": 0.0, "sensitivity": None, "precision": None}),
        ("reference empty", False, True, {"dice": 0.0, "iou": 0.0, "hausdorff_mm": None, "sensitivity": None, "precision": 0.0}),
        ("prediction empty", True, False, {"dice": 0.0, "iou": 0.0, "hausdorff_mm": None, "sensitivity": 0.0, "precision": None}),
    ],
)  # fmt: skip
def test_empty_masks_follow_the_documented_convention(case, referenceFilled, predictionFilled, expected):
    reference = np.zeros((1, 30, 40), bool)
    prediction = np.zeros_like(reference)
    reference[0, 5:10, 5:12] = referenceFilled
    prediction[0, 8:20, 6:9] = predictionFilled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero, no "may result in nan/inf" from MONAI
        result = evaluation.segment_metrics(reference, prediction, (1.0, 0.5, 0.5))
        instances = evaluation.instance_metrics(reference.astype(np.uint8), prediction.astype(np.uint8))
    for name, value in expected.items():
        if value is None:
            assert np.isnan(result[name]), name
        else:
            assert result[name] == value, name
    assert instances["f1"] == expected["dice"]
    assert np.isnan(instances["mean_matched_iou"])


def test_instance_matching_is_optimal_not_greedy():
    """Greedy matching by best IoU finds one pair at IoU 0.29; the optimal one-to-one matching finds two."""
    reference = np.zeros((1, 1, 20), np.uint8)
    prediction = np.zeros_like(reference)
    reference[..., 0:10], reference[..., 10:20] = 1, 2
    prediction[..., 3:15], prediction[..., 0:3] = 7, 9
    iou, referenceIds, predictionIds = evaluation.iou_matrix(reference, prediction)
    assert referenceIds.tolist() == [1, 2] and predictionIds.tolist() == [7, 9]
    np.testing.assert_allclose(iou, [[7 / 15, 3 / 10], [5 / 17, 0.0]])
    rows, columns = evaluation.match_instances(iou, threshold=0.29)
    assert sorted(zip(rows.tolist(), columns.tolist())) == [(0, 1), (1, 0)]
    result = evaluation.instance_metrics(reference, prediction, iou_threshold=0.29)
    assert (result["matched"], result["f1"]) == (2, 1.0)
    assert evaluation.instance_metrics(reference, prediction)["matched"] == 0


def test_instance_metrics_on_the_real_nuclei(scene, rng):
    mask = arrayFromVolume(loadSampleData(scene, "NucleiMask2D"))
    values = np.unique(mask)[1:]
    relabel = np.zeros(mask.max() + 1, np.int32)
    relabel[values] = rng.permutation(len(values)) + 500
    renumbered = relabel[mask]
    same = evaluation.instance_metrics(mask, renumbered)
    assert (same["reference_count"], same["matched"], same["f1"], same["f1_mean"]) == (125, 125, 1.0, 1.0)
    assert same["mean_matched_iou"] == 1.0
    oneMissing = evaluation.instance_metrics(mask, np.where(mask == values[10], 0, mask))
    assert (oneMissing["false_negatives"], oneMissing["false_positives"]) == (1, 0)
    assert oneMissing["recall"] == pytest.approx(124 / 125) and oneMissing["precision"] == 1.0


# ---------------------------------------------------------------- MRML: grids, pairing, tables


def _obliqueNuclei3D(scene, rng):
    labels = arrayFromVolume(loadSampleData(scene, "NucleiMask3D"))
    angle = np.deg2rad(rng.uniform(5, 30))
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    ) @ np.diag([0.7, 0.7, 3.0])
    ijkToRas[:3, 3] = [4.0, -9.0, 30.0]
    return labels, ijkToRas


def test_prediction_on_another_storage_of_the_same_grid_scores_perfectly(scene, logic, rng):
    labels, ijkToRas = _obliqueNuclei3D(scene, rng)
    referenceNode = createVolumeFromArray(scene, labels, ijkToRas, "Reference", labelmap=True)
    permuted, matrix = _storedAs(labels, ijkToRas, (2, 0, 1), (0, 1))
    predictionVolume = createVolumeFromArray(scene, permuted, matrix, "Prediction", labelmap=True)
    predictionSegmentation = createSegmentationFromLabelmap(scene, permuted, matrix, name="Prediction segmentation")
    for predictionNode in (predictionVolume, predictionSegmentation):
        result = logic.evaluateSegmentation(referenceNode, predictionNode, createTables=False)
        assert len(result.segments) == len(np.unique(labels)) - 1
        assert all(row["dice"] == 1.0 and row["hausdorff_mm"] == 0.0 for row in result.segments)
    instances = logic.evaluateSegmentation(referenceNode, predictionVolume, instanceLevel=True, createTables=False)
    assert instances.instances["f1"] == 1.0 and instances.segments[0]["segment"] == "All objects"


def test_prediction_on_a_coarser_grid_is_resampled_onto_the_reference(scene, logic, rng):
    labels, ijkToRas = _obliqueNuclei3D(scene, rng)
    referenceNode = createVolumeFromArray(scene, labels, ijkToRas, "Reference", labelmap=True)
    coarse = ijkToRas.copy()
    coarse[:3, :3] *= 2.0
    coarseShape = tuple((np.array(labels.shape) + 1) // 2)
    coarseLabels = resampleLabelsNearest(labels, ijkToRas, coarseShape, coarse)
    predictionNode = createVolumeFromArray(scene, coarseLabels, coarse, "Coarse", labelmap=True)
    result = logic.evaluateSegmentation(referenceNode, predictionNode, instanceLevel=True, createTables=False)
    union = result.segments[0]
    assert 0.7 < union["dice"] < 1.0
    assert union["reference_volume"] == pytest.approx(np.count_nonzero(labels) * 0.7 * 0.7 * 3.0)
    assert 0.5 < result.instances["f1"] <= 1.0


def test_segments_are_paired_by_name_and_results_go_into_tables(scene, logic):
    import vtk

    grid = np.zeros((6, 40, 50), np.uint8)
    grid[2:4, 5:20, 5:20] = 1
    grid[2:4, 22:35, 25:45] = 2
    ijkToRas = np.diag([0.5, 0.5, 2.0, 1.0])
    reference = createSegmentationFromLabelmap(
        scene, grid, ijkToRas, [SegmentInfo("Left", (1, 0, 0), 1), SegmentInfo("Right", (0, 1, 0), 2)], "Reference"
    )
    swapped = np.select([grid == 1, grid == 2], [9, 5], 0).astype(np.uint8)
    swapped[0, :3, :3] = 3
    segments = [
        SegmentInfo("Right", (0, 1, 0), 5),
        SegmentInfo("Left", (1, 0, 0), 9),
        SegmentInfo("Extra", (0, 0, 1), 3),
    ]
    prediction = createSegmentationFromLabelmap(scene, swapped, ijkToRas, segments, "Prediction")
    existingTable = scene.AddNewNodeByClass("vtkMRMLTableNode", "My metrics")
    nodesBefore = _nodeIds(scene)
    result = logic.evaluateSegmentation(reference, prediction, tableNode=existingTable)
    assert _nodeIds(scene) == nodesBefore
    rows = {row["segment"]: row for row in result.segments}
    assert rows["Left"]["dice"] == 1.0 and rows["Right"]["dice"] == 1.0
    assert rows["Extra"]["reference_label"] is None and rows["Extra"]["dice"] == 0.0
    table = result.tableNode
    assert table is existingTable and table.GetNumberOfRows() == 3
    assert [table.GetCellText(r, 0) for r in range(3)] == ["Left", "Right", "Extra"]
    assert table.GetColumnUnitLabel("Reference volume") == "mm3"
    assert table.GetColumnUnitLabel("Hausdorff 95%") == "mm"
    assert isinstance(table.GetTable().GetColumnByName("Dice"), vtk.vtkDoubleArray)
    report = json.loads(json.dumps(result.report(), allow_nan=False))
    assert report["segments"][2]["sensitivity"] is None and report["volumeUnit"] == "mm3"
    withInstances = logic.evaluateSegmentation(reference, prediction, instanceLevel=True)
    instanceTable = withInstances.instanceTableNode
    metrics = {
        instanceTable.GetCellText(r, 0): float(instanceTable.GetCellText(r, 1))
        for r in range(instanceTable.GetNumberOfRows())
    }
    assert metrics["reference_count"] == 2 and metrics["prediction_count"] == 3 and metrics["matched"] == 2


def test_bad_input_and_cancel_add_no_node(scene, logic):
    labels = np.zeros((3, 20, 20), np.uint8)
    labels[1, 5:10, 5:10] = 1
    referenceNode = createVolumeFromArray(scene, labels, np.eye(4), "Reference", labelmap=True)
    floatNode = createVolumeFromArray(scene, labels * np.float32(0.8), np.eye(4), "Probabilities")
    wholeNumbers = createVolumeFromArray(scene, labels.astype(np.float32), np.eye(4), "Float labels")
    assert logic.evaluateSegmentation(referenceNode, wholeNumbers, createTables=False).segments[0]["dice"] == 1.0
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match="both a reference and a prediction"):
        logic.evaluateSegmentation(referenceNode, None)
    with pytest.raises(MedAIInputError, match="float32 voxels that are not labels"):
        logic.evaluateSegmentation(referenceNode, floatNode)
    token = CancelToken()
    token.cancel()
    with pytest.raises(MedAICancelledError):
        logic.evaluateSegmentation(referenceNode, referenceNode, cancelToken=token)
    assert _nodeIds(scene) == nodesBefore


# ---------------------------------------------------------------- job steps: prepare, compute in a thread, create


def _boxes(count, shift=0):
    """A label map of ``count`` boxes (labels 1..count) along J; ``shift`` moves every box along I."""
    labels = np.zeros((5, 12, 8 * count), np.uint8)
    for n in range(count):
        labels[1:4, 2:10, 8 * n + 1 + shift : 8 * n + 6 + shift] = n + 1
    return labels


def _runInThread(function):
    job = ThreadJob(function, name="test evaluation")
    job.start()
    assert job.wait(60)
    return job.poll()


def test_prepare_compute_create_in_a_thread_gives_the_numbers_of_one_call(scene, logic, rng):
    """Voxels are read at prepare time: compute runs in another thread after the input nodes left the scene."""
    labels, ijkToRas = _obliqueNuclei3D(scene, rng)
    referenceNode = createVolumeFromArray(scene, labels, ijkToRas, "Reference", labelmap=True)
    coarse = ijkToRas.copy()
    coarse[:3, :3] *= 2.0
    coarseLabels = resampleLabelsNearest(labels, ijkToRas, tuple((np.array(labels.shape) + 1) // 2), coarse)
    predictionNode = createVolumeFromArray(scene, coarseLabels, coarse, "Coarse", labelmap=True)
    oneCall = logic.evaluateSegmentation(referenceNode, predictionNode, instanceLevel=True)

    job = logic.prepareEvaluation(referenceNode, predictionNode, instanceLevel=True)
    scene.RemoveNode(predictionNode)  # compute must not need the nodes any more
    nodesBefore = _nodeIds(scene)
    threads = set()

    def compute(progress, cancelToken):
        threads.add(threading.get_ident())
        return job.compute(progress, cancelToken)

    status = _runInThread(compute)
    assert status.state == WorkerState.COMPLETED, status.errorMessage
    assert threads and threading.get_ident() not in threads
    assert status.fraction == 1.0 and status.result is job.output
    assert status.result.tableNode is None and _nodeIds(scene) == nodesBefore
    output = job.createNodes()
    assert json.dumps(output.report()) == json.dumps(oneCall.report())
    assert 0.7 < output.segments[0]["dice"] < 1.0
    assert len(_nodeIds(scene)) == len(nodesBefore) + 2
    rows = {
        output.instanceTableNode.GetCellText(r, 0): output.instanceTableNode.GetCellText(r, 1)
        for r in range(output.instanceTableNode.GetNumberOfRows())
    }
    assert float(rows["reference_count"]) == oneCall.instances["reference_count"]


def test_cancel_between_segments_in_a_thread_adds_nothing(scene, logic):
    referenceNode = createVolumeFromArray(scene, _boxes(8), np.diag([0.7, 0.7, 3.0, 1.0]), "Boxes", labelmap=True)
    predictionNode = createVolumeFromArray(scene, _boxes(8, shift=1), np.diag([0.7, 0.7, 3.0, 1.0]), "Moved")
    nodesBefore = _nodeIds(scene)
    job = logic.prepareEvaluation(referenceNode, predictionNode)
    compared = []

    def compute(progress, cancelToken):
        def cancelAfterThree(fraction, message):
            compared.append(message)
            progress(fraction, message)
            if len(compared) == 3:
                cancelToken.cancel()  # as the panel's Cancel button does, while segment 3 is computed

        return job.compute(cancelAfterThree, cancelToken)

    status = _runInThread(compute)
    assert status.state == WorkerState.CANCELLED
    assert compared == ["Comparing Label 1", "Comparing Label 2", "Comparing Label 3"]
    with pytest.raises(RuntimeError, match="compute"):
        job.createNodes()
    assert _nodeIds(scene) == nodesBefore
    full = _runInThread(job.compute)
    assert full.state == WorkerState.COMPLETED and len(full.result.segments) == 8
    assert all(row["dice"] == pytest.approx(0.8) for row in full.result.segments)


def test_repeated_object_evaluations_refill_one_instance_table(scene, logic):
    ijkToRas = np.diag([0.7, 0.7, 3.0, 1.0])
    referenceNode = createVolumeFromArray(scene, _boxes(6), ijkToRas, "Boxes", labelmap=True)
    fewer = _boxes(6)
    fewer[fewer >= 5] = 0
    predictionNode = createVolumeFromArray(scene, fewer, ijkToRas, "Four boxes", labelmap=True)
    first = logic.evaluateSegmentation(referenceNode, referenceNode, instanceLevel=True)
    nodesBefore = _nodeIds(scene)
    second = logic.evaluateSegmentation(
        referenceNode,
        predictionNode,
        instanceLevel=True,
        tableNode=first.tableNode,
        instanceTableNode=first.instanceTableNode,
    )
    assert _nodeIds(scene) == nodesBefore
    assert second.instanceTableNode is first.instanceTableNode and second.tableNode is first.tableNode
    table = second.instanceTableNode
    values = {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}
    assert (values["prediction_count"], values["matched"]) == (4, 4)
    assert values["recall"] == pytest.approx(4 / 6) and first.instances["recall"] == 1.0
    # Per segment, an instance table is left alone; a new one is made only when none is given.
    perSegment = logic.evaluateSegmentation(referenceNode, predictionNode, instanceTableNode=table)
    assert perSegment.instanceTableNode is None and table.GetNumberOfRows() == len(values)
    third = logic.evaluateSegmentation(referenceNode, predictionNode, instanceLevel=True)
    assert third.instanceTableNode is not table and third.instanceTableNode.GetScene() is scene


def test_bad_table_arguments_are_refused_before_anything_changes(scene, logic):
    referenceNode = createVolumeFromArray(scene, _boxes(2), np.eye(4), "Boxes", labelmap=True)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Metrics")
    nodesBefore = _nodeIds(scene)
    with pytest.raises(MedAIInputError, match="two different tables"):
        logic.prepareEvaluation(referenceNode, referenceNode, True, 0.5, table, table)
    with pytest.raises(MedAIInputError, match="object metrics table must be a table node"):
        logic.evaluateSegmentation(referenceNode, referenceNode, instanceLevel=True, instanceTableNode=referenceNode)
    with pytest.raises(MedAIInputError, match="IoU threshold"):
        logic.prepareEvaluation(referenceNode, referenceNode, instanceLevel=True, iouThreshold=0.0)
    assert _nodeIds(scene) == nodesBefore and table.GetNumberOfRows() == 0


# ---------------------------------------------------------------- command line


def test_command_line_report_and_bad_input(tmp_path, capsys):
    import argparse

    from medai.segment_commands import addEvaluateParser
    from MedAICommonLib.sampledata import sampleDataPath

    parser = argparse.ArgumentParser(prog="medai")
    addEvaluateParser(parser.add_subparsers())
    mask = str(sampleDataPath("NucleiMask2D"))
    report = tmp_path / "scores.json"
    arguments = parser.parse_args(["evaluate", mask, mask, "--instances", "--report", str(report)])
    assert arguments.run(arguments) == 0
    scores = json.loads(report.read_text())
    assert scores["instances"]["f1"] == 1.0 and scores["segments"][0]["dice"] == 1.0
    assert scores["segments"][0]["reference_label"] is None and scores["volumeUnit"] == "mm2"
    assert "125 reference, 125 predicted, 125 matched" in capsys.readouterr().out
    markups = tmp_path / "points.mrk.json"
    markups.write_text('{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, 2, 3]}]}]}')
    arguments = parser.parse_args(["evaluate", str(markups), mask, "--report", str(tmp_path / "bad.json")])
    with pytest.raises(MedAIInputError, match="markups"):
        arguments.run(arguments)
    assert not (tmp_path / "bad.json").exists()
