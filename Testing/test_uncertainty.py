"""Uncertainty maps: MC dropout, test-time augmentation and ensembles on real MRML nodes, with tiny networks."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import CancelToken
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume
from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic
from MedAIUncertaintyLib.modelaccess import NetworkModel
from MedAIUncertaintyLib.sampling import mcDropoutMode, mcDropoutPredictor, splitSamples, ttaPredictor
from MedAIUncertaintyLib.uncertaintymeasures import (
    brierScore,
    errorDetectionAuc,
    expectedCalibrationError,
    riskCoverage,
    sampleStatistics,
)


class TinyUNet(torch.nn.Module):
    """Two levels from MONAI blocks; dropout only in the decoder, like MedAI's shipped U-Net."""

    def __init__(self, dims: int = 3, dropout: float = 0.3) -> None:
        from monai.networks.blocks import Convolution

        super().__init__()
        self.down1 = Convolution(dims, 1, 8, strides=1, norm="batch")
        self.down2 = Convolution(dims, 8, 16, strides=2, norm="batch")
        self.up = Convolution(dims, 16, 8, strides=2, is_transposed=True, norm="batch", dropout=dropout)
        self.out = Convolution(dims, 16, 2, conv_only=True, kernel_size=1)

    def encode(self, x):
        first = self.down1(x)
        return [first, self.down2(first)]

    def decode(self, features):
        return self.out(torch.cat([features[0], self.up(features[1])], 1))

    def forward(self, x):
        return self.decode(self.encode(x))


@pytest.fixture(autouse=True)
def oneThread():
    """Two shared cores: one torch thread per test is faster than two fighting over them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainedBlobNetwork(dropout: float = 0.3, seed: int = 0) -> TinyUNet:
    """A TinyUNet fitted for a few steps to 'bright voxels are the object' (a fresh copy each call)."""
    return copy.deepcopy(_cachedBlobNetwork(dropout, seed))


@functools.cache
def _cachedBlobNetwork(dropout: float, seed: int) -> TinyUNet:
    torch.manual_seed(seed)
    network = TinyUNet(dropout=dropout)
    optimiser = torch.optim.Adam(network.parameters(), 0.02)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(25):
        x = torch.randn(2, 1, 16, 16, 8, generator=generator)
        loss = torch.nn.functional.cross_entropy(network(x), (x[:, 0] > 0.5).long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()


def _volume(scene, rng, shape=(11, 37, 29), spacing=(0.7, 0.7, 3.0)):
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = rotation @ np.diag(spacing)
    ijkToRas[:3, 3] = rng.normal(size=3) * 20
    return createVolumeFromArray(scene, rng.normal(size=shape).astype(np.float32), ijkToRas, "image")


def _model(network, **options) -> NetworkModel:
    return NetworkModel(network, [("Object", 1, (1.0, 0.5, 0.0))], roiSizePx=(16, 16, 8), **options)


def _snapshot(network):
    return {k: v.clone() for k, v in network.state_dict().items()}, [m.training for m in network.modules()]


def test_one_sample_or_agreeing_samples_give_exactly_zero_spread(rng):
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], size=(9, 7)).transpose(2, 0, 1).astype(np.float32)
    one = sampleStatistics(probabilities[None])
    three = sampleStatistics(np.stack([probabilities] * 3))
    for stats in (one, three):
        assert np.count_nonzero(stats["variance"]) == 0 and np.count_nonzero(stats["mutual-information"]) == 0
        np.testing.assert_array_equal(stats["mean"], probabilities)
    uniform = sampleStatistics(np.full((1, 4, 2, 2), 0.25, np.float32))["entropy"]
    np.testing.assert_allclose(uniform, 1.0, rtol=1e-6)
    disagree = sampleStatistics(np.stack([[[1.0], [0.0]], [[0.0], [1.0]]]).astype(np.float32))
    np.testing.assert_allclose(disagree["mutual-information"], 1.0, rtol=1e-6)  # sure samples that contradict
    np.testing.assert_allclose(disagree["variance"], 0.25, rtol=1e-6)


def test_calibration_and_error_detection_on_known_cases(rng):
    reference = rng.integers(0, 2, size=(40, 50))
    perfect = np.stack([reference == 0, reference == 1]).astype(np.float32)
    assert expectedCalibrationError(perfect, reference) == 0.0 and brierScore(perfect, reference) == 0.0
    # Predicted 0.8 everywhere for the true class: every voxel right, confidence 0.8 -> ECE 0.2.
    soft = np.where(perfect > 0, 0.8, 0.2).astype(np.float32)
    assert expectedCalibrationError(soft, reference) == pytest.approx(0.2, abs=1e-6)
    assert brierScore(soft, reference) == pytest.approx(0.08, abs=1e-6)
    wrong = rng.random(reference.shape) < 0.1
    predicted = np.where(wrong, 1 - reference, reference)
    mean = np.stack([predicted == 0, predicted == 1]).astype(np.float32)
    assert errorDetectionAuc(wrong.astype(float), mean, reference) == 1.0
    assert errorDetectionAuc(rng.random(reference.shape), mean, reference) == pytest.approx(0.5, abs=0.06)
    curve = riskCoverage(wrong.astype(float), mean, reference)
    assert curve["risk"][0] == 0 and curve["risk"][-1] == pytest.approx(wrong.mean())


def test_mc_dropout_maps_on_the_input_grid_and_model_unchanged(scene, rng):
    network = _trainedBlobNetwork()
    network.down1.train()  # a mode the user set must survive the run
    before, modes = _snapshot(network)
    volume = _volume(scene, rng)
    output = MedAIUncertaintyLogic().estimateUncertainty(volume, _model(network), "mc-dropout", samples=6)
    after, modesAfter = _snapshot(network)
    assert modes == modesAfter and all(torch.equal(before[k], after[k]) for k in before)
    for measure, node in output.volumes.items():
        assert np.allclose(ijkToRasFromVolume(node), ijkToRasFromVolume(volume))
        values = arrayFromVolume(node)
        assert values.shape == (11, 37, 29) and values.min() >= 0
        assert values.max() > 0, measure
    assert output.uncertaintyVolumeNode is output.volumes["entropy"]
    segmentation = output.segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Object", "Review"]
    assert not output.segmentationNode.GetDisplayNode().GetSegmentVisibility2DFill(output.reviewSegmentId)
    assert [row["segment"] for row in output.summary] == ["Background", "Object"]
    assert output.summaryTableNode.GetNumberOfRows() == 2


def test_decoder_runs_batched_after_one_encoder_pass():
    network = _trainedBlobNetwork()
    calls = []
    network.down2.register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    network.up.register_forward_hook(lambda module, inputs, output: calls.append(("decoder", output.shape[0])))
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad(), mcDropoutMode(network):
        logits = mcDropoutPredictor(network, 5)(x)
    assert logits.shape == (1, 10, 16, 16, 8)
    # encoderHasDropout's probe + the encoder once, then one decoder pass on the 5 samples batched.
    assert calls == [1, 1, ("decoder", 5)]
    samples = splitSamples(torch.softmax(logits, 1), 5)
    assert not torch.allclose(samples[0], samples[1])  # dropout really sampled
    torch.testing.assert_close(samples.sum(1), torch.ones(5, 16, 16, 8))


@pytest.mark.parametrize(("method", "samples"), [("mc-dropout", 1), ("ensemble", 1), ("tta", 1)])
def test_one_sample_or_one_member_gives_zero_maps(scene, rng, method, samples):
    output = MedAIUncertaintyLogic().estimateUncertainty(
        _volume(scene, rng), _model(_trainedBlobNetwork()), method, samples
    )
    assert np.count_nonzero(arrayFromVolume(output.volumes["variance"])) == 0
    assert np.count_nonzero(arrayFromVolume(output.volumes["mutual-information"])) == 0


def test_ensemble_of_the_same_checkpoint_twice_gives_zero_maps_and_of_two_differs(scene, rng):
    volume = _volume(scene, rng)
    same = _trainedBlobNetwork(seed=0)
    twice = MedAIUncertaintyLogic().estimateUncertainty(volume, _model(same, members=[same, same]), "ensemble")
    assert np.count_nonzero(arrayFromVolume(twice.volumes["mutual-information"])) == 0
    other = _trainedBlobNetwork(seed=1)
    pair = MedAIUncertaintyLogic().estimateUncertainty(volume, _model(same, members=[same, other]), "ensemble")
    assert arrayFromVolume(pair.volumes["mutual-information"]).max() > 0


def test_flip_augmentations_are_inverted_exactly():
    network = torch.nn.Conv3d(1, 2, 1).eval()  # flip-equivariant: exact inverses give identical samples
    predictor = ttaPredictor(network, 4, 3, flipAxes=(0, 1, 2), maxRotationDeg=0, maxScale=0, intensityChange=0)
    x = torch.randn(1, 1, 9, 8, 7)
    with torch.no_grad():
        samples = splitSamples(torch.softmax(predictor(x), 1), 4)
    for k in range(1, 4):
        assert torch.equal(samples[k], samples[0])
    rotated = ttaPredictor(network, 3, 3, maxRotationDeg=4, maxScale=0.04, intensityChange=0)
    with torch.no_grad():
        smooth = torch.nn.functional.avg_pool3d(torch.randn(1, 1, 24, 24, 24), 5, 1, 2)
        logits = rotated(smooth).reshape(1, 3, 2, 24, 24, 24)
    inner = (slice(None), slice(None), slice(None), slice(6, -6), slice(6, -6), slice(6, -6))
    spread = (logits[:, 1:] - logits[:, :1])[inner].abs().max()
    assert spread < 0.25 * logits[inner].abs().max()  # the affine's inverse puts every voxel back (up to interpolation)


def test_reference_gives_calibration_charts_and_png(scene, rng, tmp_path):
    volume = _volume(scene, rng, shape=(8, 24, 20), spacing=(3.0, 0.7, 0.7))
    truth = (arrayFromVolume(volume) > 0.5).astype(np.uint8)
    reference = createSegmentationFromLabelmap(
        scene, truth, ijkToRasFromVolume(volume), [SegmentInfo("object", (0, 1, 0), 1)]
    )
    output = MedAIUncertaintyLogic().estimateUncertainty(
        volume,
        _model(_trainedBlobNetwork()),
        "mc-dropout",
        8,
        referenceSegmentationNode=reference,
        chartPngPath=tmp_path / "rel.png",
    )
    metrics = output.metrics
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= 2
    assert set(metrics["errorAuc"]) == {"entropy", "variance", "mutual-information"}
    assert metrics["errorAuc"]["entropy"] > 0.6  # errors of a model that learned "bright" sit on the border
    assert output.chartNodes["reliability"].GetNumberOfPlotSeriesNodes() == 2
    assert (tmp_path / "rel.png").stat().st_size > 1000


def test_outputs_reuse_given_nodes(scene, rng):
    volume = _volume(scene, rng)
    logic = MedAIUncertaintyLogic()
    first = logic.estimateUncertainty(volume, _model(_trainedBlobNetwork()), "tta", 3, measure="variance")
    count = scene.GetNumberOfNodes()
    second = logic.estimateUncertainty(
        volume, _model(_trainedBlobNetwork()), "tta", 3, measure="variance",
        outputSegmentationNode=first.segmentationNode, uncertaintyVolumeNode=first.uncertaintyVolumeNode,
    )  # fmt: skip
    assert (
        second.segmentationNode is first.segmentationNode
        and second.uncertaintyVolumeNode is first.uncertaintyVolumeNode
    )
    assert first.segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    assert scene.GetNumberOfNodes() - count == 5  # entropy and MI volumes (with display nodes) + the summary table


@pytest.mark.parametrize(
    ("method", "samples", "dropout", "message"),
    [("mc-dropout", 5, 0.0, "no dropout"), ("mc-dropout", 0, 0.3, "at least 1"), ("bayes", 5, 0.3, "Unknown")],
)
def test_bad_input_is_refused_before_anything_is_made(scene, rng, method, samples, dropout, message):
    volume = _volume(scene, rng)
    network = _trainedBlobNetwork(dropout=dropout)
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError, match=message):
        MedAIUncertaintyLogic().estimateUncertainty(volume, _model(network), method, samples)
    assert scene.GetNumberOfNodes() == count


def test_cancel_leaves_the_scene_as_it_was(scene, rng):
    volume = _volume(scene, rng)
    token = CancelToken()
    token.cancel()
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAICancelledError):
        MedAIUncertaintyLogic().estimateUncertainty(volume, _model(_trainedBlobNetwork()), "tta", 2, cancelToken=token)
    assert scene.GetNumberOfNodes() == count


def test_medai_uncertainty_refuses_bad_input_without_writing(tmp_path, capsys):
    from medai.cli import main
    from MedAICommonLib import sampledata

    image = str(sampledata.sampleDataPath("KmeansT1"))
    output, uncertainty = tmp_path / "seg.seg.nrrd", tmp_path / "u.nrrd"
    common = [
        "uncertainty",
        image,
        "--model",
        "NucleusPatchClassifier2D",
        "-o",
        str(output),
        "--uncertainty",
        str(uncertainty),
    ]
    assert main([*common, "--samples", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main([*common, "--reliability-png", str(tmp_path / "r.png")]) == 2
    assert "needs --reference" in capsys.readouterr().err
    assert not output.exists() and not uncertainty.exists()


def test_through_the_segmentation_inference_on_its_own_grid(scene, rng):
    """A card's model runs on its RAS grid at its spacing; the maps come back onto the (oblique) input grid."""
    from MedAICommonLib.modelcards import ModelCard, ModelLabel, ModelWeights
    from MedAISegmentationLib.modelloading import LoadedModel

    network = _trainedBlobNetwork()
    card = ModelCard(
        "tiny", "tiny", "segmentation", "any", "TinyUNet", "state_dict", ModelWeights("none"), "none", "none",
        [ModelLabel("Object", 1, (1.0, 0.5, 0.0))], inputSpacingMm=(1.5, 1.5, 1.5), roiSizePx=(16, 16, 16),
        orientation="RAS", intensity={"method": "zscore"},
    )  # fmt: skip
    loaded = LoadedModel(card, network, torch.device("cpu"), members=[network])
    volume = _volume(scene, rng, shape=(11, 37, 29), spacing=(3.0, 0.7, 0.7))
    output = MedAIUncertaintyLogic().estimateUncertainty(volume, loaded, "mc-dropout", 4)
    entropy = arrayFromVolume(output.volumes["entropy"])
    assert entropy.shape == (11, 37, 29) and entropy.max() > 0
    assert np.allclose(ijkToRasFromVolume(output.volumes["entropy"]), ijkToRasFromVolume(volume))
    one = MedAIUncertaintyLogic().estimateUncertainty(volume, loaded, "ensemble")
    assert np.count_nonzero(arrayFromVolume(one.volumes["mutual-information"])) == 0
