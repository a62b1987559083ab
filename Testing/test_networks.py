"""MedAISegmentationLib.networks: shapes, encode/decode split, dropout placement and bad arguments."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from MedAICommonLib.errors import MedAIInputError  # noqa: E402
from MedAISegmentationLib.networks import ARCHITECTURES, buildNetwork, sizeMultiple  # noqa: E402

SMALL = (4, 8, 16)


@pytest.mark.parametrize(
    "dims, shape",
    [(2, (37, 53)), (2, (64, 32)), (3, (37, 53, 11)), (3, (16, 24, 32))],
)
def test_unet_keeps_the_spatial_shape_and_gives_one_channel_per_class(dims, shape):
    network = buildNetwork("unet", dims, 2, 3, channels=SMALL).eval()
    with torch.no_grad():
        logits = network(torch.rand(2, 2, *shape))
    assert logits.shape == (2, 3, *shape)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "architecture, dims, size, options",
    [
        ("segresnet", 3, 16, {}),
        ("segresnet", 2, 32, {}),
        ("unetr", 3, 16, {"imgSize": 16, "hiddenSize": 48, "numHeads": 4}),
        ("unetr", 2, 32, {"imgSize": [32, 32], "hiddenSize": 48, "numHeads": 4}),
        ("swinunetr", 2, 64, {}),
    ],
)
def test_other_architectures_build_and_run(architecture, dims, size, options):
    network = buildNetwork(architecture, dims, 1, 2, channels=(12, 24), dropout=0.1, **options).eval()
    with torch.no_grad():
        logits = network(torch.rand(1, 1, *(size,) * dims))
    assert logits.shape == (1, 2, *(size,) * dims)
    assert size % sizeMultiple(architecture, (12, 24)) == 0


def test_every_dropout_module_is_inside_the_decoder():
    network = buildNetwork("unet", 3, 1, 2, channels=SMALL, dropout=0.2)
    dropouts = [name for name, module in network.named_modules() if isinstance(module, torch.nn.Dropout)]
    assert len(dropouts) == len(SMALL) - 1
    assert all(name.startswith("decoder.") for name in dropouts)
    assert not any(isinstance(m, torch.nn.Dropout) for m in network.encoder.modules())
    assert all(m.p == pytest.approx(0.2) for m in network.modules() if isinstance(m, torch.nn.Dropout))


def test_dropout_samples_differ_in_train_mode_and_vanish_in_eval_mode():
    torch.manual_seed(0)
    network = buildNetwork("unet", 2, 1, 2, channels=SMALL, dropout=0.3)
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        network.train()
        first, second = network(image), network(image)
        network.eval()
        third, fourth = network(image), network(image)
    assert not torch.allclose(first, second)
    assert torch.equal(third, fourth)


def test_encoding_once_and_decoding_many_times_equals_forward_with_the_same_seed():
    network = buildNetwork("unet", 3, 1, 2, channels=SMALL, dropout=0.25).train()
    image = torch.rand(1, 1, 16, 20, 12)
    with torch.no_grad():
        torch.manual_seed(7)
        direct = [network(image) for _ in range(3)]
        torch.manual_seed(7)
        features = network.encode(image)
        decoded = [network.decode(features) for _ in range(3)]
        # Batched Monte Carlo: the features repeated along the batch axis, one decoder pass.
        batched = network.decode([f.expand(4, *f.shape[1:]) for f in features])
    for a, b in zip(direct, decoded):
        assert torch.allclose(a, b, atol=1e-6)
    assert batched.shape == (4, 2, 16, 20, 12)
    assert not torch.allclose(batched[0], batched[1])


def test_encoder_features_go_from_fine_to_coarse():
    network = buildNetwork("unet", 3, 1, 2, channels=SMALL).eval()
    features = network.encode(torch.rand(1, 1, 16, 16, 16))
    assert [f.shape[1] for f in features] == list(SMALL)
    assert [f.shape[2] for f in features] == [16, 8, 4]


def test_state_dict_loads_into_a_network_built_from_the_same_arguments():
    arguments = {"architecture": "unet", "spatialDims": 2, "inChannels": 1, "outChannels": 3, "channels": [4, 8]}
    first = buildNetwork(**arguments).eval()
    second = buildNetwork(**arguments).eval()
    second.load_state_dict(first.state_dict())
    image = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(first(image), second(image))


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"architecture": "resnet"}, "Unknown network architecture"),
        ({"spatialDims": 4}, "2 or 3 spatial dimensions"),
        ({"outChannels": 1}, "at least 1 input and 2 output"),
        ({"channels": [8]}, "at least two"),
        ({"dropout": 1.0}, "Dropout"),
        ({"subunitz": 2}, "Unknown option"),
        ({"architecture": "unetr"}, "imgSize"),
        ({"architecture": "unetr", "imgSize": 20}, "multiples of 16"),
    ],
)
def test_bad_arguments_raise_one_clear_input_error(arguments, words):
    settings = {"architecture": "unet", "spatialDims": 3, "inChannels": 1, "outChannels": 2, "channels": SMALL}
    settings.update(arguments)
    with pytest.raises(MedAIInputError, match=words):
        buildNetwork(**settings)


def test_architecture_names_are_the_contract():
    assert set(ARCHITECTURES) == {"unet", "segresnet", "swinunetr", "unetr"}
