"""Segmentation training: a tiny configuration on the real nuclei image, synthesis, instances, bad configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from MedAICommonLib.errors import MedAIInputError  # noqa: E402
from MedAICommonLib.modelcards import cardFromEntry  # noqa: E402
from MedAISegmentationLib.brainsynthesis import make_template, synthesize_head  # noqa: E402
from MedAISegmentationLib.networks import buildNetwork  # noqa: E402
from MedAISegmentationLib.trainingcard import addCardToRegistry  # noqa: E402
from MedAISegmentationLib.trainingdata import labelsFromInstances  # noqa: E402
from MedAISegmentationLib.traininginstances import instancesFromProbabilities  # noqa: E402

TINY = {
    "id": "TinyNuclei",
    "title": "Tiny nuclei test model",
    "modality": "Microscopy",
    "data": {
        "source": "sample",
        "image": "NucleiImage2D",
        "labels": "NucleiMask2D",
        "target": "foreground-boundary",
        "trainRegion": {"axis": 0, "start": 0.0, "stop": 0.75},
        "heldOut": {"region": {"axis": 0, "start": 0.75, "stop": 1.0}},
        "evaluation": {"method": "instances", "baseline": "watershed"},
    },
    "spatialDims": 2,
    "spacingMm": [1.0, 1.0],
    "patchSizePx": [48, 48],
    "inputChannels": [{"name": "Fluorescence"}],
    "outChannels": 3,
    "labels": [
        {"name": "Nucleus", "value": 1, "color": [0.2, 0.8, 0.3]},
        {"name": "Nucleus boundary", "value": 2, "color": [0.9, 0.9, 0.2]},
    ],
    "intensity": {"method": "percentile", "lower": 0.5, "upper": 99.5},
    "network": {"architecture": "unet", "channels": [8, 16], "dropout": 0.1},
    "augmentation": {"flipAxes": [0, 1]},
    "postprocessing": {
        "function": "MedAISegmentationLib.traininginstances:instancesFromProbabilities",
        "arguments": {},
    },
    "training": {"iterations": 24, "batchSize": 4, "learningRate": 0.01, "seed": 3, "threads": 2},
}


def writeConfig(folder, **changes):
    config = json.loads(json.dumps(TINY))
    config.update(changes)
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from MedAISegmentationLib.training import trainSegmentation

    folder = tmp_path_factory.mktemp("training")
    return trainSegmentation(writeConfig(folder), folder / "out", evaluate=True), folder


def test_tiny_training_lowers_the_loss_and_writes_weights_that_load_back(trained):
    result, _ = trained
    assert len(result.losses) == TINY["training"]["iterations"]
    assert np.mean(result.losses[-6:]) < np.mean(result.losses[:6])
    network = buildNetwork(**result.card["networkArguments"])
    network.load_state_dict(torch.load(result.weightsPath, weights_only=True))
    logits = network.eval()(torch.rand(1, 1, 48, 48))
    assert logits.shape == (1, 3, 48, 48)
    log = (result.weightsPath.parent / "TinyNuclei.log.jsonl").read_text().splitlines()
    assert len(log) == TINY["training"]["iterations"]


def test_card_is_a_valid_registry_entry_with_held_out_scores_and_baseline(trained, tmp_path):
    result, _ = trained
    card = cardFromEntry(result.card, "test card", result.weightsPath.parent)
    assert card.format == "state_dict" and card.spatialDims == 2 and card.roiSizePx == (48, 48)
    assert card.postprocessing["function"].endswith(":instancesFromProbabilities")
    assert result.card["weights"]["sizeBytes"] == result.weightsPath.stat().st_size
    for scores in (result.card["measuredAccuracy"], result.card["baselines"]):
        assert scores[0]["metric"] == "instance F1 at IoU 0.5" and 0.0 <= scores[0]["value"] <= 1.0
    # The classical watershed finds most nuclei of the held-out quarter.
    assert result.card["baselines"][0]["value"] > 0.6
    registry = tmp_path / "models.json"
    registry.write_text('{\n  "schemaVersion": 1,\n  "models": [\n    {"id": "Other", "keep": [1,2]}\n  ]\n}\n')
    addCardToRegistry(result.card, registry)
    addCardToRegistry(result.card, registry)
    text = registry.read_text()
    assert '{"id": "Other", "keep": [1,2]}' in text
    assert [m["id"] for m in json.loads(text)["models"]] == ["Other", "TinyNuclei"]


def test_the_same_seed_gives_the_same_weights(trained):
    from MedAISegmentationLib.training import trainSegmentation

    result, folder = trained
    again = trainSegmentation(writeConfig(folder), folder / "again", evaluate=False)
    assert again.losses[:4] == result.losses[:4]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"network": {"architecture": "vnet"}}, "network.architecture"),
        ({"patchSizePx": [49, 48]}, "multiple of 2"),
        ({"spatialDims": 4}, "spatialDims"),
        ({"data": {"source": "internet"}}, "data.source"),
        ({"data": {"source": "sample", "image": "NucleiImage2D"}}, "trainRegion"),
        ({"training": {"iterations": 0, "seed": 1, "learningRate": 0.1}}, "iterations"),
        ({"outChannels": 1}, "outChannels"),
        ({"intensity": {"method": "magic"}}, "intensity.method"),
    ],
)
def test_bad_configurations_raise_one_clear_input_error_and_write_nothing(tmp_path, changes, words):
    from MedAISegmentationLib.training import trainSegmentation

    with pytest.raises(MedAIInputError, match=words):
        trainSegmentation(writeConfig(tmp_path, **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_or_broken_configuration_files_are_refused(tmp_path):
    from MedAISegmentationLib.training import trainSegmentation

    with pytest.raises(MedAIInputError, match="does not exist"):
        trainSegmentation(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(MedAIInputError, match="not valid JSON"):
        trainSegmentation(broken)


def test_command_line_reports_a_bad_configuration_with_status_2(tmp_path, capsys):
    from medai.cli import main

    path = writeConfig(tmp_path, spatialDims=5)
    assert main(["train", "segmentation", str(path), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: spatialDims must be 2 or 3")
    assert main(["train", "registration", str(path)]) == 2


def test_synthetic_heads_surround_the_brain_and_are_reproducible():
    grid = np.indices((40, 44, 36)).astype(float)
    brain = (((grid[0] - 20) / 12) ** 2 + ((grid[1] - 22) / 14) ** 2 + ((grid[2] - 18) / 10) ** 2) <= 1.0
    t1 = brain * (0.5 + 0.5 * (grid[0] > 20))
    template = make_template(t1, brain * 0.6, brain * 0.4, spacing_mm=2.0, padding_mm=20.0)
    image, mask = synthesize_head(template, np.random.default_rng(5), shape=(48, 48, 48))
    again, _ = synthesize_head(template, np.random.default_rng(5), shape=(48, 48, 48))
    other, _ = synthesize_head(template, np.random.default_rng(6), shape=(48, 48, 48))
    assert image.shape == mask.shape == (48, 48, 48)
    assert np.array_equal(image, again) and not np.array_equal(image, other)
    assert 0 < mask.sum() <= brain.sum()
    from scipy import ndimage

    shell = ndimage.binary_dilation(mask, iterations=3) & ~mask.astype(bool)
    # The head around the brain is not empty: the shells carry intensity.
    assert np.mean(image[shell] > 0.01) > 0.9


def test_boundary_classes_split_touching_objects_and_instances_come_back():
    instances = np.zeros((40, 60), dtype=np.int32)
    grid = np.indices(instances.shape)
    for label, centre in ((1, (20, 18)), (2, (20, 33)), (3, (8, 50))):
        instances[((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) <= 8**2] = label
    classes = labelsFromInstances(instances, "foreground-boundary")
    assert set(np.unique(classes)) == {0, 1, 2}
    assert np.array_equal(labelsFromInstances(instances, "foreground") > 0, instances > 0)
    probabilities = np.stack([classes == value for value in (0, 1, 2)]).astype(np.float32)
    objects = instancesFromProbabilities(probabilities[:, None], spacingMm=(1.0, 1.0, 1.0))
    assert objects.shape == (1, 40, 60)
    assert objects.max() == 3
    for label in (1, 2, 3):
        found = np.unique(objects[0][instances == label])
        assert len(found[found > 0]) == 1
