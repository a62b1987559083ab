"""The shipped patch classifier: its training code on a tiny config, its metrics, and its card's held-back numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.models import ModelRegistry, checkedWeightsPath, resolveModel
from MedAIUncertaintyLib.classifierdata import loadNucleiImage, samplePatchSets
from MedAIUncertaintyLib.classifiermetrics import binaryMetrics, rocAuc, rocCurve
from MedAIUncertaintyLib.classifiertraining import (
    classifierScores,
    createClassifierReportNodes,
    evaluateClassifier,
    trainClassifierFromConfig,
)
from MedAIUncertaintyLib.modelaccess import loadModel


@pytest.fixture(autouse=True)
def oneThread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_auc_is_the_mann_whitney_probability_with_ties(rng):
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties
    labels = rng.random(300) < 0.4
    positives, negatives = scores[labels], scores[~labels]
    pairs = (positives[:, None] > negatives[None]).mean() + 0.5 * (positives[:, None] == negatives[None]).mean()
    assert rocAuc(scores, labels) == pytest.approx(pairs, abs=1e-12)
    fpRate, tpRate, _thresholds = rocCurve(scores, labels)
    assert (fpRate[0], tpRate[0], fpRate[-1], tpRate[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpRate) >= 0)
    with pytest.raises(ValueError):
        rocCurve(scores, np.ones(300, bool))


def test_binary_metrics_from_a_known_confusion_matrix():
    labels = np.array([1] * 10 + [0] * 20)
    scores = np.array([0.9] * 8 + [0.1] * 2 + [0.8] * 5 + [0.2] * 15)  # TP 8, FN 2, FP 5, TN 15
    metrics = binaryMetrics(scores, labels)
    assert metrics["confusionMatrix"] == [[15, 5], [2, 8]]
    assert metrics["accuracy"] == pytest.approx(23 / 30) and metrics["sensitivity"] == pytest.approx(0.8)
    assert metrics["specificity"] == pytest.approx(0.75) and metrics["precision"] == pytest.approx(8 / 13)
    assert metrics["npv"] == pytest.approx(15 / 17)


def test_training_from_a_tiny_config_writes_weights_and_report(tmp_path, scene):
    config = {"image": "NucleiImage2D", "mask": "NucleiMask2D", "patchSizePx": 32, "heldBackFromColumn": 384,
              "trainPatches": 400, "testPatches": 200, "iterations": 10, "batchSize": 32, "seed": 3,
              "network": {"channels": [4, 8, 8]}, "weightsFile": "tiny.pt", "saliencyChecks": 2}  # fmt: skip
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    progress = []
    report = trainClassifierFromConfig(path, tmp_path / "out", lambda f, m: progress.append(f))
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["weights"]["sha256"] == report["weights"]["sha256"] and (tmp_path / "out" / "tiny.pt").is_file()
    heldBack = written["heldBack"]
    assert heldBack["cases"] == 200 and sum(map(sum, heldBack["confusionMatrix"])) == 200
    assert {s["method"] for s in heldBack["saliency"]} == {"gradcam", "gradcampp"}
    assert progress[-1] == 1.0 and progress == sorted(progress)
    table, chart = createClassifierReportNodes(scene, report["heldBack"])
    assert table.GetNumberOfRows() == 10 and chart.GetNumberOfPlotSeriesNodes() == 1
    with pytest.raises(MedAIInputError, match="lacks"):
        path.write_text(json.dumps({"image": "NucleiImage2D"}))
        trainClassifierFromConfig(path, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_shipped_classifier_meets_its_card_on_the_held_back_region():
    card = resolveModel("NucleusPatchClassifier2D", ModelRegistry.load())
    checkedWeightsPath(card)  # size and sha256 of the shipped file
    model = loadModel("NucleusPatchClassifier2D")
    network = model.network
    before = [m.training for m in network.modules()]
    image, mask = loadNucleiImage()
    _training, heldBack = samplePatchSets(image, mask, 32, 384, 16000, 4000, seed=0)
    assert heldBack.centres[:, 1].min() >= 384 + 16  # no held-back pixel was ever in a training patch
    metrics = evaluateClassifier(network, heldBack)
    assert metrics["auc"] >= 0.95
    recorded = {entry["metric"]: entry["value"] for entry in card.measuredAccuracy}
    assert metrics["auc"] == pytest.approx(recorded["AUC"], abs=1e-3)
    assert metrics["confusionMatrix"] == recorded["confusion matrix [[TN, FP], [FN, TP]]"]
    assert [m.training for m in network.modules()] == before
    assert classifierScores(network, heldBack.patches[:5]).shape == (5,)


def test_gradcam_of_the_shipped_classifier_passes_both_sanity_checks():
    """Pointing game >= 0.8 and the randomisation correlation, averaged over draws, < 0.3 (issue #8)."""
    from MedAIUncertaintyLib.saliencychecks import classifierSaliencyChecks

    network = loadModel("NucleusPatchClassifier2D").network
    weights = {name: value.clone() for name, value in network.state_dict().items()}
    image, mask = loadNucleiImage()
    _training, heldBack = samplePatchSets(image, mask, 32, 384, 100, 400, seed=0)
    checks = classifierSaliencyChecks(network, heldBack, 40, "gradcam", draws=10)
    assert checks["cases"] == 40 and checks["pointingGame"] >= 0.8
    assert checks["randomisationCorrelation"] < 0.3
    low, high = checks["randomisationRange"]
    assert low < checks["randomisationCorrelation"] < high  # the draws really differ
    assert all(torch.equal(weights[name], value) for name, value in network.state_dict().items())
