"""Saliency heatmaps with their sanity checks: the shipped nuclei classifier on the real image, a small segmentation network, bad input, and ``medai explain``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medai.cli import main
from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume
from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic
from MedAIUncertaintyLib.modelaccess import NetworkModel
from MedAIUncertaintyLib.saliency import RegionScore, computeHeatmap, defaultTargetLayer
from MedAIUncertaintyLib.saliencychecks import pointingGame, rankCorrelation

CLASSIFIER = "NucleusPatchClassifier2D"


@pytest.fixture(autouse=True)
def oneThread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def nuclei(scene):
    """The nuclei image, its nuclei as one reference segment, and nucleus pixels (i, j) of the held-back columns."""
    image = sampledata.loadSampleData(scene, "NucleiImage2D")
    mask = arrayFromVolume(sampledata.loadSampleData(scene, "NucleiMask2D")) > 0
    reference = createSegmentationFromLabelmap(
        scene, mask.astype(np.uint8), ijkToRasFromVolume(image), [SegmentInfo("Nucleus", (0, 1, 0), 1)]
    )
    j, i = np.nonzero(mask[0])
    inside = (i > 400) & (i < 495) & (j > 16) & (j < 495)
    return image, reference, np.stack([i[inside], j[inside]], 1), mask


def _ras(image, i, j):
    return (ijkToRasFromVolume(image) @ np.array([i, j, 0, 1.0]))[:3]


def test_rank_correlation_and_pointing_game_on_known_maps(rng):
    values = rng.random((20, 30))
    assert rankCorrelation(values, values * 3 + 1) == pytest.approx(1.0)
    assert rankCorrelation(values, -values) == pytest.approx(-1.0)
    assert rankCorrelation(values, np.zeros_like(values)) == 0.0
    mask = np.zeros((20, 30), bool)
    mask[5, 7] = True
    heat = np.zeros((20, 30))
    heat[5, 7] = 1
    assert pointingGame(heat, mask) and not pointingGame(heat, ~mask)


def test_gradcam_of_the_shipped_classifier_points_at_nuclei_and_is_checked(scene, nuclei):
    image, reference, pixels, mask = nuclei
    hits, correlations = [], []
    for i, j in pixels[:: max(1, len(pixels) // 6)][:6]:
        output = MedAIUncertaintyLogic().explain(
            image, CLASSIFIER, "gradcam", 1, centerRas=_ras(image, i, j), referenceSegmentationNode=reference
        )
        heatmap = arrayFromVolume(output.heatmapVolumeNode)
        assert heatmap.shape == (1, 512, 512) and np.allclose(
            ijkToRasFromVolume(output.heatmapVolumeNode), ijkToRasFromVolume(image)
        )
        assert heatmap.max() == pytest.approx(1.0) and heatmap[
            0, j - 16 : j + 16, i - 16 : i + 16
        ].sum() == pytest.approx(heatmap.sum())
        hits.append(output.pointingGameHit)
        correlations.append(output.randomisationCorrelation)
        assert "Model randomisation" in output.checks and "Pointing game" in output.checks
        scene.RemoveNode(output.heatmapVolumeNode)
    assert np.mean(hits) >= 0.8  # the model card reports 0.975 on 200 held-back nucleus patches
    assert all(-1 <= c <= 1 for c in correlations)


@pytest.mark.parametrize("method", ["gradcampp", "occlusion", "smoothgrad"])
def test_other_methods_give_a_heatmap_on_the_input_grid(scene, nuclei, method):
    image, reference, pixels, _mask = nuclei
    i, j = pixels[len(pixels) // 2]
    output = MedAIUncertaintyLogic().explain(
        image, CLASSIFIER, method, 1, centerRas=_ras(image, i, j), sanityChecks=False
    )
    heatmap = arrayFromVolume(output.heatmapVolumeNode)
    assert heatmap.shape == (1, 512, 512) and heatmap.max() == pytest.approx(1.0) and heatmap.min() >= 0


def test_segmentation_network_explained_over_its_region_and_left_unchanged(scene, rng):
    from monai.networks.blocks import Convolution

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        Convolution(3, 1, 8, strides=2, norm="batch"), Convolution(3, 8, 8, norm="batch"),
        torch.nn.Upsample(scale_factor=2), Convolution(3, 8, 3, conv_only=True, kernel_size=1),
    ).eval()  # fmt: skip
    before = {k: v.clone() for k, v in network.state_dict().items()}
    example = torch.zeros(1, 1, 16, 16, 8)
    layer = defaultTargetLayer(network, example)
    assert layer.startswith("1.") and layer.endswith(".A")  # the rectified output at the coarsest resolution
    ijkToRas = np.diag([0.7, 0.7, 3.0, 1.0])
    volume = createVolumeFromArray(scene, rng.normal(size=(8, 16, 16)).astype(np.float32), ijkToRas, "image")
    region = np.zeros((8, 16, 16), np.uint8)
    region[2:6, 4:12, 4:12] = 1
    regionNode = createSegmentationFromLabelmap(scene, region, ijkToRas, [SegmentInfo("Region", (1, 0, 0), 1)])
    model = NetworkModel(network, [("A", 1, (1, 0, 0)), ("B", 2, (0, 1, 0))])
    output = MedAIUncertaintyLogic().explain(volume, model, "gradcam", 2, regionSegmentationNode=regionNode)
    assert arrayFromVolume(output.heatmapVolumeNode).shape == (8, 16, 16)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert not any(module._forward_hooks or module._backward_hooks for module in network.modules())
    assert not any(module.training for module in network.modules())
    # The region score explains exactly the chosen voxels: a gradient only reaches the input through them.
    x = torch.randn(1, 1, 16, 16, 8, requires_grad=True)
    score = RegionScore(network, torch.from_numpy(region.transpose()[None, None].copy()))
    assert score(x).shape == (1, 3)
    smooth = computeHeatmap(score, x.detach(), 2, "smoothgrad")
    assert smooth.shape == (16, 16, 8)


def test_label_the_model_lacks_is_refused_and_nothing_is_added(scene, nuclei):
    image = nuclei[0]
    count = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError, match="no label 3"):
        MedAIUncertaintyLogic().explain(image, CLASSIFIER, "gradcam", 3)
    with pytest.raises(MedAIInputError, match="does not fit"):
        MedAIUncertaintyLogic().explain(image, CLASSIFIER, "gradcam", 1, centerRas=_ras(image, 2, 2))
    with pytest.raises(MedAIInputError, match="Unknown saliency method"):
        MedAIUncertaintyLogic().explain(image, CLASSIFIER, "lime", 1)
    assert scene.GetNumberOfNodes() == count


def test_medai_explain_writes_the_heatmap_and_prints_the_checks(tmp_path, capsys, nuclei):
    image, _reference, pixels, mask = nuclei
    i, j = pixels[0]
    ras = _ras(image, i, j)
    output, report = tmp_path / "heat.nrrd", tmp_path / "explain.json"
    imagePath = sampledata.sampleDataPath("NucleiImage2D")
    status = main(["explain", str(imagePath), "--model", CLASSIFIER, "--method", "gradcam", f"--center={','.join(map(str, ras))}",
                   "-o", str(output), "--report", str(report)])  # fmt: skip
    assert status == 0 and output.is_file()
    printed = capsys.readouterr().out
    assert "Model randomisation" in printed
    content = json.loads(report.read_text())
    assert content["layer"] == "features" and -1 <= content["randomisationCorrelation"] <= 1
    bad = tmp_path / "bad.nrrd"
    assert main(["explain", str(imagePath), "--model", CLASSIFIER, "--target", "5", "-o", str(bad)]) == 2
    assert not bad.exists() and "no label 5" in capsys.readouterr().err


def test_randomisation_draws_stop_when_cancelled():
    from MedAICommonLib.errors import MedAICancelledError
    from MedAICommonLib.jobs import CancelToken
    from MedAIUncertaintyLib.saliencychecks import randomisationCorrelations

    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))
    heatmap = np.arange(16.0).reshape(4, 4)
    token, drawn = CancelToken(), []

    def heatmapOf(randomNetwork):
        drawn.append(randomNetwork)
        token.cancel()  # the user presses Cancel during the first draw
        return heatmap

    with pytest.raises(MedAICancelledError):
        randomisationCorrelations(network, heatmap, heatmapOf, draws=5, cancelToken=token)
    assert len(drawn) == 1
    assert len(randomisationCorrelations(network, heatmap, lambda _n: heatmap, draws=3)) == 3
