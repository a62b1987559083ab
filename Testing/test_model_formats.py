"""Bring your own model: TorchScript with a card file, MONAI bundle, nnU-Net v2 folder; 2D, multi-channel and
sequence inputs; ``medai segment model`` on files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from medai.cli import main
from MedAICommonLib import sceneio
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.models import resolveModel
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, metaTensorFromVolume
from MedAISegmentationLib.logic import MedAISegmentationLogic
from MedAISegmentationLib.modelbundle import nnUNetCard
from MedAISegmentationLib.modelinference import loadSegmentationModel, predictProbabilities
from MedAISegmentationLib.networks import buildNetwork


class Difference(torch.nn.Module):
    """Class 1 where channel 0 is brighter than channel 1 (after normalisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), 40.0 * (x[:, :1] - x[:, -1:])], 1)


class Threshold(torch.nn.Module):
    """Class 1 where the normalised intensity exceeds 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), 40.0 * (x[:, :1] - 0.5)], 1)


def scripted(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))
    return path


def card(path: Path, channels=("T1",), labels=("Blob",), **fields) -> Path:
    entry = {
        "inputChannels": [{"name": name} for name in channels],
        "inputSpacingMm": [2.0, 2.0, 2.0],
        "orientation": "RAS",
        "roiSizePx": [32, 32, 32],
        "intensity": {"method": "window", "minimum": 0, "maximum": 100},
        "labels": [{"name": n, "value": i + 1, "color": [0.1, 0.8, 0.3]} for i, n in enumerate(labels)],
    }
    path.write_text(json.dumps(entry | fields), encoding="utf-8")
    return path


def ramp(scene, shapeKji=(24, 30, 28), spacing=1.5, name="image", axis=2):
    """Intensity 0-100 rising along one array axis (i by default), with a 45-degree oblique twist on j."""
    k, j, i = np.meshgrid(*[np.linspace(0, 1, n) for n in shapeKji], indexing="ij")
    values = 100 * [k, j, i][axis]
    ijkToRas = np.diag([spacing, spacing, spacing, 1.0])
    ijkToRas[:3, 3] = [-20, -15, 5]
    return createVolumeFromArray(scene, values.astype(np.float32), ijkToRas, name)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    return {
        "difference": scripted(Difference(), folder / "difference.ts"),
        "threshold": scripted(Threshold(), folder / "threshold.ts"),
        "folder": folder,
    }


def test_multichannel_inputs_follow_the_card_order_and_may_lie_on_other_grids(models, scene):
    first = ramp(scene, axis=2, name="rising in i")
    second = ramp(scene, (12, 15, 14), 3.0, "rising in j", axis=1)
    cardFile = card(models["folder"] / "two.json", channels=("T1", "T2"))
    model = loadSegmentationModel(models["difference"], "cpu", cardFile=cardFile)
    forward = predictProbabilities(model, [metaTensorFromVolume(first), metaTensorFromVolume(second)]).argmax(0)
    backward = predictProbabilities(model, [metaTensorFromVolume(second), metaTensorFromVolume(first)])
    assert forward.shape == (24, 30, 28) and backward.shape == (2, 12, 15, 14)
    # At voxel (k, j, i) of the first grid the first image is 100 i / 27, the second 100 (1.5 j) / 42.
    _, j, i = np.meshgrid(*[np.arange(n) for n in (24, 30, 28)], indexing="ij")
    expected = i / 27 > 1.5 * j / 42
    agreement = (forward.astype(bool) == expected).mean()
    assert agreement > 0.95, agreement
    assert (backward.argmax(0) == 1).mean() < 0.6  # swapped channels: the complement, on the second grid
    with pytest.raises(MedAIInputError, match=r"takes 2 input volume\(s\) \(T1, T2\), got 1"):
        predictProbabilities(model, metaTensorFromVolume(first))


def test_a_monai_bundle_folder_gives_labels_spacing_window_and_network(models, scene, tmp_path):
    bundle = tmp_path / "blob_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    inference = {
        "bundle_root": ".",
        "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1},
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [2.0, 2.0, 2.0]},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 100, "b_min": 0, "b_max": 1},
            ],
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "overlap": 0.25},
    }
    metadata = {
        "network_data_format": {
            "inputs": {"image": {"num_channels": 1, "spatial_shape": [32, 32, 32]}},
            "outputs": {"pred": {"channel_def": {"0": "background", "1": "bright half"}}},
        }
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference), encoding="utf-8")
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    network = torch.nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        network.weight.copy_(torch.tensor([0.0, 40.0]).reshape(2, 1, 1, 1, 1))
        network.bias.copy_(torch.tensor([0.0, -20.0]))
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    model = loadSegmentationModel(bundle, "cpu")
    assert model.card.format == "monai-bundle" and model.card.inputSpacingMm == (2.0, 2.0, 2.0)
    assert model.card.intensity["method"] == "window" and model.card.roiSizePx == (32, 32, 32)
    assert [label.name for label in model.card.labels] == ["bright half"] and model.card.orientation == "RAS"
    image = ramp(scene)
    result = MedAISegmentationLogic().segmentWithModel(image, model=str(bundle), device="cpu")
    labels, _, segments = labelmapFromSegmentation(result.segmentationNode, image)
    assert [s.name for s in segments] == ["bright half"]
    assert (labels[..., 16:] == 1).mean() > 0.95 and (labels[..., :12] == 0).mean() > 0.95
    torch.save({"conv.weight": torch.zeros(1)}, bundle / "models" / "model.pt")
    with pytest.raises(MedAIInputError, match="do not fit the network of bundle"):
        loadSegmentationModel(bundle, "cpu")


def test_an_nnunet_results_folder_is_recognised_and_names_the_package(tmp_path):
    folder = tmp_path / "Dataset001_Brain" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    dataset = {"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "brain": 1, "lesion": 2}}
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    plans = {"configurations": {"3d_fullres": {"patch_size": [128, 128, 128], "spacing": [1.0, 1.0, 1.0]}}}
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    resolved = nnUNetCard(resolveModel(folder.parent))
    assert resolved.format == "nnunetv2" and resolved.spatialDims == 3
    assert [(label.name, label.value) for label in resolved.labels] == [("brain", 1), ("lesion", 2)]
    assert [channel["name"] for channel in resolved.inputChannels] == ["T1", "FLAIR"]
    pytest.importorskip("torch")
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        with pytest.raises(MedAIInputError, match="nnU-Net v2 results folder; install the 'nnunetv2' package"):
            loadSegmentationModel(folder, "cpu")


def test_a_2d_model_segments_a_single_slice_and_refuses_a_volume(tmp_path, scene):
    arguments = {"architecture": "unet", "spatialDims": 2, "inChannels": 1, "outChannels": 2, "channels": [4, 8]}
    torch.manual_seed(1)
    network = buildNetwork(**arguments)
    torch.save(network.state_dict(), tmp_path / "nuclei.pt")
    fields = {"format": "state_dict", "builder": "MedAISegmentationLib.networks:buildNetwork", "spatialDims": 2}
    cardFile = card(tmp_path / "nuclei.json", labels=("Nucleus",), networkArguments=arguments, **fields)
    cardFile = card(cardFile, labels=("Nucleus",), networkArguments=arguments, inputSpacingMm=[0.5, 0.5], **fields)
    json.loads(cardFile.read_text())  # a valid card file
    entry = json.loads(cardFile.read_text()) | {"roiSizePx": [32, 32], "orientation": None}
    cardFile.write_text(json.dumps(entry), encoding="utf-8")
    model = loadSegmentationModel(tmp_path / "nuclei.pt", "cpu", configFile=None, cardFile=cardFile)
    image = createVolumeFromArray(
        scene, np.random.default_rng(0).random((1, 40, 50)).astype(np.float32) * 100, np.eye(4), "x"
    )
    probabilities = predictProbabilities(model, metaTensorFromVolume(image))
    assert probabilities.shape == (2, 1, 40, 50)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    volume = createVolumeFromArray(scene, np.arange(8000, dtype=np.float32).reshape(20, 20, 20), np.eye(4), "v")
    with pytest.raises(MedAIInputError, match="is 3D .* but model 'nuclei.pt' is 2D"):
        predictProbabilities(model, metaTensorFromVolume(volume))


def test_a_sequence_is_segmented_frame_by_frame(models, scene):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    for frame in range(3):
        node = ramp(scene, name=f"frame {frame}", axis=2)
        values = arrayFromVolume(node) * (0.6 + 0.4 * frame)  # the bright part grows with the frame
        sequence.SetDataNodeAtValue(createVolumeFromArray(scene, values, np.eye(4), "f"), str(frame))
    cardFile = card(models["folder"] / "one.json")
    model = loadSegmentationModel(models["threshold"], "cpu", cardFile=cardFile)
    before = scene.GetNumberOfNodes()
    result = MedAISegmentationLogic().segmentWithModel(sequence, model, keepProbabilities=True)
    assert result.segmentationNode.IsA("vtkMRMLSequenceNode") and result.segmentationNode.GetNumberOfDataNodes() == 3
    assert result.probabilityVolumeNode.GetNumberOfDataNodes() == 3
    assert scene.GetNumberOfNodes() == before + 2  # the two output sequences, nothing else
    brightShare = []
    for frame in range(3):
        segmentation = result.segmentationNode.GetNthDataNode(frame)
        assert segmentation.IsA("vtkMRMLSegmentationNode") and result.segmentationNode.GetNthIndexValue(frame) == str(
            frame
        )
        assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "Blob"
        scalars = result.probabilityVolumeNode.GetNthDataNode(frame).GetImageData().GetPointData().GetScalars()
        probabilities = np.frombuffer(memoryview(scalars), dtype=np.float32).reshape(-1, 2)
        brightShare.append(float((probabilities[:, 1] > 0.5).mean()))
    assert 0.05 < brightShare[0] < brightShare[1] < brightShare[2] < 0.9, brightShare


# --- medai segment model ---------------------------------------------------------------------


def test_cli_segments_with_own_torchscript_and_card(models, tmp_path, capsys):
    scene = sceneio.createScene()
    image = sceneio.saveNode(ramp(scene), tmp_path / "image.nrrd")
    cardFile = card(tmp_path / "own.json")
    output, probabilities = tmp_path / "out.seg.nrrd", tmp_path / "p.nrrd"
    arguments = ["segment", "model", str(image), "-o", str(output), "--model-path", str(models["threshold"])]
    assert main([*arguments, "--card", str(cardFile), "--device", "cpu", "--probabilities", str(probabilities)]) == 0
    assert "1 segment(s) from model 'threshold.ts'" in capsys.readouterr().out
    loaded = sceneio.createScene()
    segmentation = sceneio.loadSegmentation(loaded, output)
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "Blob"
    import SimpleITK as sitk

    kept = sitk.ReadImage(str(probabilities))
    assert kept.GetNumberOfComponentsPerPixel() == 2 and kept.GetSize() == (28, 30, 24)
    labelmap = tmp_path / "labels.nii.gz"
    assert main([*arguments, "--card", str(cardFile), "--device", "cpu", "--fast", "-o", str(labelmap)]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labelmap)))
    assert set(np.unique(labels)) == {0, 1} and (labels[..., 18:] == 1).all() and (labels[..., :10] == 0).all()


def test_cli_bad_input_exits_2_and_writes_nothing(models, tmp_path, capsys):
    scene = sceneio.createScene()
    image = sceneio.saveNode(ramp(scene), tmp_path / "image.nrrd")
    output = tmp_path / "out.seg.nrrd"
    cardFile = card(tmp_path / "own.json")
    own = ["--model-path", str(models["threshold"]), "--card", str(cardFile), "--device", "cpu"]
    cases = [
        ([str(image), str(image), "-o", str(output), *own], r"takes 1 input volume\(s\) \(T1\), got 2"),
        ([str(image), "-o", str(output), "--model", "NoSuchModel"], "neither a registered model id"),
        ([str(image), "-o", str(tmp_path / "out.txt"), *own], "must end with one of"),
        (
            [str(image), "-o", str(output), "--model", "LiteMedSAM", "--card", str(cardFile)],
            "give it with --model-path",
        ),
    ]
    for arguments, message in cases:
        assert main(["segment", "model", *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and __import__("re").search(message, error), error
    assert not output.exists() and not (tmp_path / "out.txt").exists()
