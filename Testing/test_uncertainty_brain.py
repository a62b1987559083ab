"""The shipped brain model's MC dropout uncertainty on Colin27 (never seen in training) finds its errors.

Runs only where the registry has ``BrainExtractionT1`` (issue #4); five samples at the model's own spacing.
"""

from __future__ import annotations

import pytest

from MedAICommonLib import sampledata
from MedAICommonLib.models import ModelRegistry
from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic

pytestmark = pytest.mark.skipif(
    "BrainExtractionT1" not in ModelRegistry.load(),
    reason="the shipped brain model (issue #4) is not in the registry yet",
)


def test_uncertainty_is_higher_where_the_brain_model_is_wrong(scene, tmp_path):
    image = sampledata.loadSampleData(scene, "Colin27")
    reference = sampledata.loadSampleData(scene, "Colin27BrainMask")
    output = MedAIUncertaintyLogic().estimateUncertainty(
        image, "BrainExtractionT1", "mc-dropout", 5, device="cpu", referenceSegmentationNode=reference,
        chartPngPath=tmp_path / "reliability.png",
    )  # fmt: skip
    metrics = output.metrics
    assert metrics["errorAuc"]["entropy"] >= 0.75, metrics["errorAuc"]
    assert 0 < metrics["errorRate"] < 0.1 and metrics["ece"] < 0.1
    assert (tmp_path / "reliability.png").is_file()
