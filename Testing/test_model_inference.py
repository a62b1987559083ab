"""Model inference on real MRML nodes with small real networks saved as the weights of temporary model cards.

Geometry: the same physical image stored permuted, flipped, oblique and anisotropic gives masks that
agree in physical space; probabilities lie on the input grid and sum to one. Bad input, cancel and
out-of-memory fallback leave the scene as it was.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.models import ModelRegistry
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import createVolumeFromArray, metaTensorFromVolume
from MedAISegmentationLib.logic import MedAISegmentationLogic
from MedAISegmentationLib.modelinference import (
    loadSegmentationModel,
    predictProbabilities,
    prepareInput,
    slidingWindowProbabilities,
)
from MedAISegmentationLib.networks import buildNetwork

UNET = {"architecture": "unet", "spatialDims": 3, "inChannels": 1, "outChannels": 3, "channels": [4, 8], "dropout": 0.1}
LABELS = [
    {"name": "Brain", "value": 1, "color": [0.9, 0.7, 0.5]},
    {"name": "Rim", "value": 2, "color": [0.2, 0.4, 1.0]},
]


class Threshold(torch.nn.Module):
    """logits (0, 40 (x - 0.5)): class 1 where the normalised intensity exceeds 0.5, smoothly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), 40.0 * (x[:, :1] - 0.5)], 1)


def entryFor(tmp: Path, weights: Path, **fields) -> dict:
    data = weights.read_bytes()
    entry = {
        "id": "Tiny",
        "title": "tiny test network",
        "task": "segmentation",
        "modality": "MR",
        "architecture": "unet",
        "format": "state_dict",
        "builder": "MedAISegmentationLib.networks:buildNetwork",
        "networkArguments": UNET,
        "spatialDims": 3,
        "inputChannels": [{"name": "T1 MRI"}],
        "inputSpacingMm": [2.0, 2.0, 2.0],
        "fastSpacingMm": [4.0, 4.0, 4.0],
        "roiSizePx": [16, 16, 16],
        "orientation": "RAS",
        "intensity": {"method": "percentile", "lower": 0.5, "upper": 99.5},
        "weights": {"location": weights.name, "sha256": hashlib.sha256(data).hexdigest(), "sizeBytes": len(data)},
        "licence": "Apache-2.0",
        "trainingData": "none (untrained)",
        "labels": LABELS,
    }
    return entry | fields


def registryWith(tmp: Path, *entries) -> ModelRegistry:
    path = tmp / "models.json"
    path.write_text(json.dumps({"schemaVersion": 1, "models": list(entries)}), encoding="utf-8")
    return ModelRegistry.load(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A registry with an untrained small U-Net ("Tiny") and a threshold TorchScript network ("Threshold")."""
    tmp = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    torch.save(buildNetwork(**UNET).state_dict(), tmp / "tiny.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(Threshold()).save(str(tmp / "threshold.ts"))
    threshold = entryFor(tmp, tmp / "threshold.ts", id="Threshold", format="torchscript", builder=None)
    threshold.update(intensity={"method": "window", "minimum": 0, "maximum": 100}, labels=LABELS[:1])
    threshold.pop("builder"), threshold.pop("networkArguments")
    return registryWith(tmp, entryFor(tmp, tmp / "tiny.pt"), threshold)


def blob(ras: np.ndarray) -> np.ndarray:
    """A smooth off-centre ellipsoid (0-100) in RAS mm: the same physical object on every grid."""
    scaled = (ras - np.array([[3.0], [-4.0], [2.0]])) / np.array([[14.0], [11.0], [12.0]])
    return 100.0 / (1.0 + np.exp(3.0 * (np.sqrt((scaled**2).sum(0)) - 1.0)))


def volumeOnGrid(scene, ijkToRas: np.ndarray, shapeIjk, name="image"):
    indices = np.stack(np.meshgrid(*[np.arange(n) for n in shapeIjk], indexing="ij")).reshape(3, -1)
    ras = ijkToRas[:3, :3] @ indices + ijkToRas[:3, 3:]
    array = blob(ras).reshape(shapeIjk).transpose(2, 1, 0).astype(np.float32)
    return createVolumeFromArray(scene, np.ascontiguousarray(array), ijkToRas, name)


def grid(directions, spacing, shapeIjk, centreRas=(0.0, 0.0, 0.0)) -> np.ndarray:
    """IJK-to-RAS of a grid centred on ``centreRas``."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions, float) @ np.diag(spacing)
    matrix[:3, 3] = np.asarray(centreRas) - matrix[:3, :3] @ ((np.asarray(shapeIjk) - 1) / 2.0)
    return matrix


def nodeCount(scene) -> int:
    return scene.GetNumberOfNodes()


GEOMETRIES = {
    "permuted and flipped": (np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]]), (1.0, 1.0, 1.0), (48, 40, 40)),
    "oblique": (Rotation.from_euler("xyz", [17, -9, 24], degrees=True).as_matrix(), (1.0, 1.0, 1.0), (41, 45, 39)),
    "anisotropic 0.7x0.7x3": (np.eye(3), (0.7, 0.7, 3.0), (58, 64, 14)),
    "anisotropic 3x0.7x0.7, LPS": (np.diag([-1.0, -1.0, 1.0]), (3.0, 0.7, 0.7), (14, 64, 52)),
}


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_masks_agree_in_physical_space_whatever_the_storage(case, tiny, scene):
    directions, spacing, shape = GEOMETRIES[case]
    reference = volumeOnGrid(scene, grid(np.eye(3), (1.0, 1.0, 1.0), (40, 48, 40)), (40, 48, 40), "reference")
    stored = volumeOnGrid(scene, grid(directions, spacing, shape), shape, case)
    logic = MedAISegmentationLogic()
    masks = []
    for node in (reference, stored):
        result = logic.segmentWithModel(node, model=tiny.get("Threshold"), device="cpu")
        # Compared at the voxel centres of the stored grid: each mask is sampled at the same points.
        labels, _, segments = labelmapFromSegmentation(result.segmentationNode, stored)
        assert [s.name for s in segments] == ["Brain"]
        masks.append(labels > 0)
    assert 500 < masks[0].sum() and masks[0].mean() < 0.5
    dice = 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum())
    assert dice >= (0.999 if case == "permuted and flipped" else 0.95), dice


def test_permuted_flipped_storage_gives_identical_unet_probabilities(tiny, scene):
    straightGrid = grid(np.eye(3), (1.0, 1.0, 1.0), (30, 34, 26))
    flippedGrid = grid(np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]]), (1.0, 1.0, 1.0), (34, 26, 30))
    straight, flipped = volumeOnGrid(scene, straightGrid, (30, 34, 26)), volumeOnGrid(scene, flippedGrid, (34, 26, 30))
    model = loadSegmentationModel("Tiny", "cpu", registry=tiny)
    first = predictProbabilities(model, metaTensorFromVolume(straight))
    second = predictProbabilities(model, metaTensorFromVolume(flipped))
    # The flipped-storage voxel at the same RAS point as each straight voxel.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (30, 34, 26)], indexing="ij")).reshape(3, -1)
    other = np.rint(np.linalg.solve(flippedGrid, straightGrid @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3]).astype(
        int
    )
    moved = second[:, other[2], other[1], other[0]].reshape(3, 30, 34, 26).transpose(0, 3, 2, 1)
    np.testing.assert_allclose(first, moved, atol=1e-5)


def test_probabilities_lie_on_the_input_grid_and_sum_to_one(tiny, scene):
    ijkToRas = grid(Rotation.from_euler("zyx", [12, 6, -20], degrees=True).as_matrix(), (0.9, 1.1, 2.5), (37, 53, 11))
    node = volumeOnGrid(scene, ijkToRas, (37, 53, 11))
    model = loadSegmentationModel("Tiny", "cpu", registry=tiny)
    prepared = prepareInput(model, metaTensorFromVolume(node))
    assert prepared.tensor.shape[:2] == (1, 1) and np.allclose(np.abs(prepared.modelIjkToRas[:3, :3]).sum(0), 2.0)
    onModelGrid = slidingWindowProbabilities(model, prepared.tensor)
    probabilities = prepared.toInputGrid(onModelGrid)
    assert probabilities.shape == (3, 11, 53, 37) and probabilities.dtype == np.float32
    np.testing.assert_array_equal(prepared.labelsOnInputGrid(onModelGrid), probabilities.argmax(0))
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    assert probabilities.min() >= 0
    result = MedAISegmentationLogic().segmentWithModel(node, tiny.get("Tiny"), device="cpu", keepProbabilities=True)
    kept = result.probabilityVolumeNode
    assert kept.IsA("vtkMRMLVectorVolumeNode") and kept.GetImageData().GetNumberOfScalarComponents() == 3
    assert kept.GetImageData().GetDimensions() == (37, 53, 11)
    array = torch.as_tensor(np.asarray(kept.GetImageData().GetPointData().GetScalars())).numpy().reshape(11, 53, 37, 3)
    np.testing.assert_allclose(array.sum(-1), 1.0, atol=1e-5)
    labels, _, segments = labelmapFromSegmentation(result.segmentationNode, node)
    np.testing.assert_array_equal(labels, probabilities.argmax(0))
    assert [(s.name, s.labelValue) for s in segments] == [("Brain", 1), ("Rim", 2)]
    assert result.seconds > 0 and result.device == "cpu"


def test_segments_carry_card_names_colours_and_terminology(tiny, scene):
    node = volumeOnGrid(scene, grid(np.eye(3), (2.0, 2.0, 2.0), (20, 24, 20)), (20, 24, 20))
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    result = MedAISegmentationLogic().segmentWithModel(
        node, tiny.get("Threshold"), "cpu", outputSegmentationNode=output
    )
    assert result.segmentationNode is output
    segment = output.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Brain" and np.allclose(segment.GetColor(), (0.9, 0.7, 0.5))
    assert "SCT^12738006^Brain" in segment.GetTerminology()
    labels, _, _ = labelmapFromSegmentation(output, node)
    assert labels.any()


def test_fast_mode_uses_the_coarser_spacing(tiny, scene):
    node = volumeOnGrid(scene, grid(np.eye(3), (1.0, 1.0, 1.0), (40, 48, 40)), (40, 48, 40))
    model = loadSegmentationModel("Tiny", "cpu", registry=tiny)
    assert tuple(prepareInput(model, metaTensorFromVolume(node)).tensor.shape[2:]) == (20, 24, 20)
    fast = prepareInput(model, metaTensorFromVolume(node), fast=True)
    assert tuple(fast.tensor.shape[2:]) == (10, 12, 10)
    assert fast.toInputGrid(slidingWindowProbabilities(model, fast.tensor)).shape == (3, 40, 48, 40)
    threshold = loadSegmentationModel("Threshold", "cpu", registry=tiny)
    coarse = prepareInput(threshold, metaTensorFromVolume(node), fast=True)
    onModelGrid = slidingWindowProbabilities(threshold, coarse.tensor)
    labels = coarse.labelsOnInputGrid(onModelGrid)  # two classes: only the foreground near the blob is interpolated
    np.testing.assert_array_equal(labels, coarse.toInputGrid(onModelGrid).argmax(0))
    assert 0.02 < labels.mean() < 0.5


# --- bad input, cancel, fallback: nothing is left behind ---------------------------------------


def test_bad_inputs_are_refused_before_the_scene_changes(tiny, scene):
    logic = MedAISegmentationLogic()
    flat = createVolumeFromArray(scene, np.ones((1, 30, 30), np.float32), np.eye(4), "slice")
    constant = createVolumeFromArray(scene, np.full((20, 20, 20), 7, np.int16), np.eye(4), "constant")
    good = volumeOnGrid(scene, grid(np.eye(3), (2.0, 2.0, 2.0), (20, 20, 20)), (20, 20, 20))
    before = nodeCount(scene)
    cases = [
        (flat, "is 2D .* but model 'Tiny' is 3D"),
        (constant, "Input 1 is empty: all its voxels are 7"),
        ([good, good], r"takes 1 input volume\(s\) \(T1 MRI\), got 2"),
    ]
    for inputs, message in cases:
        with pytest.raises(MedAIInputError, match=message):
            logic.segmentWithModel(inputs, tiny.get("Tiny"), device="cpu")
    assert nodeCount(scene) == before


def test_missing_corrupt_or_mismatched_weights_are_refused(tiny, tmp_path):
    weights = tmp_path / "tiny.pt"
    weights.write_bytes((Path(tiny.path).parent / "tiny.pt").read_bytes())
    entry = entryFor(tmp_path, weights)
    corrupt = bytearray(weights.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    weights.write_bytes(bytes(corrupt))
    with pytest.raises(MedAIInputError, match="is corrupt or not the expected file"):
        loadSegmentationModel("Tiny", "cpu", registry=registryWith(tmp_path, entry))
    weights.unlink()
    with pytest.raises(MedAIInputError, match="does not exist"):
        loadSegmentationModel("Tiny", "cpu", registry=registryWith(tmp_path, entry))
    torch.save(buildNetwork(**(UNET | {"channels": [4, 8, 16]})).state_dict(), weights)
    other = entryFor(tmp_path, weights)
    with pytest.raises(MedAIInputError, match="do not fit the network of model 'Tiny'"):
        loadSegmentationModel("Tiny", "cpu", registry=registryWith(tmp_path, other))
    twoChannels = entryFor(tmp_path, weights, inputChannels=[{"name": "T1"}, {"name": "T2"}])
    with pytest.raises(MedAIInputError, match="lists 2 input channels but its network takes 1"):
        loadSegmentationModel("Tiny", "cpu", registry=registryWith(tmp_path, twoChannels))


def test_cancel_between_windows_leaves_the_scene_as_it_was(tiny, scene):
    node = volumeOnGrid(scene, grid(np.eye(3), (1.0, 1.0, 1.0), (48, 48, 48)), (48, 48, 48))
    token, seen = CancelToken(), []

    def progress(fraction, message):
        seen.append(message)
        if "Window batch 2" in message:
            token.cancel()

    before = nodeCount(scene)
    with pytest.raises(MedAICancelledError):
        MedAISegmentationLogic().segmentWithModel(node, tiny.get("Tiny"), "cpu", progress=progress, cancelToken=token)
    assert nodeCount(scene) == before
    assert seen[-1].startswith("Window batch 2 of ") and int(seen[-1].split()[-1]) > 2


def test_out_of_memory_retries_with_a_smaller_window(tiny, scene):
    node = volumeOnGrid(scene, grid(np.eye(3), (2.0, 2.0, 2.0), (32, 32, 32)), (32, 32, 32))
    model = loadSegmentationModel("Tiny", "cpu", registry=tiny)
    model.card.roiSizePx = (32, 32, 32)
    prepared = prepareInput(model, metaTensorFromVolume(node))
    windows, messages = [], []

    def tightPredictor(tensor):
        windows.append(tuple(tensor.shape[2:]))
        if tensor.shape[-1] > 24:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by a predictor with a small budget)")
        return model.network(tensor)

    probabilities = slidingWindowProbabilities(model, prepared.tensor, tightPredictor, log=messages.append)
    assert windows[0] == (32, 32, 32) and set(windows[1:]) == {(24, 24, 24)}
    assert "ran out of memory" in messages[0]
    torch.testing.assert_close(probabilities.sum(1), torch.ones_like(probabilities[:, 0]))


@pytest.mark.parametrize("rotationDeg", [0.0, 17.0])
def test_resampling_to_the_model_grid_reproduces_a_linear_intensity(rotationDeg):
    """Trilinear resampling is exact for a linear function of RAS, on axis-parallel and oblique grids."""
    from MedAISegmentationLib.modelgrid import modelGrid, resampleTensor

    directions = Rotation.from_euler("z", rotationDeg, degrees=True).as_matrix() @ np.diag([1.0, -1.0, 1.0])
    ijkToRas = grid(directions, (0.7, 0.9, 3.0), (37, 53, 11), (4.0, -3.0, 2.0))
    indices = np.stack(np.meshgrid(*[np.arange(n) for n in (37, 53, 11)], indexing="ij")).reshape(3, -1)

    def linear(ras):
        return 0.3 * ras[0] - 0.2 * ras[1] + 0.5 * ras[2]

    values = torch.as_tensor(linear(ijkToRas[:3, :3] @ indices + ijkToRas[:3, 3:]).reshape(37, 53, 11))[None]
    modelAffine, modelShape = modelGrid(ijkToRas, (37, 53, 11), "RAS", (1.5, 1.5, 1.5))
    onModel = resampleTensor(values.float(), ijkToRas, modelAffine, modelShape, "border")[0].numpy()
    modelIndices = np.stack(np.meshgrid(*[np.arange(n) for n in modelShape], indexing="ij")).reshape(3, -1)
    modelRas = modelAffine[:3, :3] @ modelIndices + modelAffine[:3, 3:]
    inputIndices = np.linalg.solve(ijkToRas[:3, :3], modelRas - ijkToRas[:3, 3:])
    inside = np.all((inputIndices >= 0) & (inputIndices <= np.array([[36], [52], [10]])), axis=0)
    assert inside.mean() > 0.3
    np.testing.assert_allclose(onModel.ravel()[inside], linear(modelRas)[inside], atol=1e-3)
