"""The model steps of ``medai demo``: a shipped U-Net, its uncertainty, and a box prompt.

Registered with :func:`medai.demo.demoStep` when :func:`medai.demo.runDemo` imports this file. All
three run on ``Colin27``, which no shipped model saw in training, against ``Colin27BrainMask``.
"""

from __future__ import annotations

import numpy as np

from .demo import DemoContext, demoStep

__all__: list[str] = []

# Floors from the issues: brain extraction Dice, error-detection AUC of uncertainty, box-prompt Dice.
BRAIN_DICE_FLOOR = 0.90
UNCERTAINTY_AUC_FLOOR = 0.75
BOX_DICE_FLOOR = 0.90


def _brainDice(context: DemoContext, segmentationNode) -> float:
    """Dice of the first segment against Colin27BrainMask, on Colin27's grid."""
    from MedAICommonLib.segmentations import labelmapFromSegmentation

    reference = context.nodes["Colin27BrainMask"]
    referenceLabels, _, _ = labelmapFromSegmentation(reference, context.nodes["Colin27"])
    labels, _, segments = labelmapFromSegmentation(segmentationNode, context.nodes["Colin27"])
    predicted, truth = labels == segments[0].labelValue, referenceLabels > 0
    return float(2 * np.sum(predicted & truth) / max(1, predicted.sum() + truth.sum()))


@demoStep("Segmentation: the shipped brain-extraction U-Net on Colin27 (never seen in training)")
def _brainModel(context: DemoContext) -> None:
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    output = MedAISegmentationLogic().segmentWithModel(
        context.nodes["Colin27"], model="BrainExtractionT1", device="cpu", outputName="Brain (U-Net)"
    )
    context.nodes["Brain (U-Net)"] = output.segmentationNode
    dice = _brainDice(context, output.segmentationNode)
    context.check(
        f"BrainExtractionT1 on Colin27: Dice against Colin27BrainMask is at least {BRAIN_DICE_FLOOR}",
        dice >= BRAIN_DICE_FLOOR,
        f"Dice {dice:.3f} in {output.seconds:.1f} s on {output.device}",
    )
    context.picture(
        "brain_unet.png", context.nodes["Colin27"], f"Brain extraction U-Net on Colin27: Dice {dice:.3f}",
        segmentationNode=output.segmentationNode,
    )  # fmt: skip


@demoStep("Uncertainty: Monte Carlo dropout of the brain U-Net, and where it points at errors")
def _brainUncertainty(context: DemoContext) -> None:
    from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic

    chartPath = context._newFile("brain_reliability.png")
    output = MedAIUncertaintyLogic().estimateUncertainty(
        context.nodes["Colin27"], "BrainExtractionT1", method="mc-dropout", samples=5, device="cpu",
        referenceSegmentationNode=context.nodes["Colin27BrainMask"], chartPngPath=str(chartPath),
    )  # fmt: skip
    output.uncertaintyVolumeNode.SetName("Brain uncertainty")
    context.nodes["Brain uncertainty"] = output.uncertaintyVolumeNode
    metrics = output.metrics or {}
    auc = float(metrics.get("errorAuc", {}).get("entropy", float("nan")))
    context.check(
        f"uncertainty is higher where the model is wrong (ROC AUC at least {UNCERTAINTY_AUC_FLOOR})",
        auc >= UNCERTAINTY_AUC_FLOOR,
        f"AUC {auc:.3f}, expected calibration error {float(metrics.get('ece', float('nan'))):.3f}, "
        f"5 samples in {output.seconds:.1f} s",
    )
    context.picture(
        "brain_uncertainty.png", context.nodes["Colin27"],
        f"Predictive entropy of 5 MC-dropout samples (AUC {auc:.2f} against wrong voxels)",
        foregroundVolumeNode=output.uncertaintyVolumeNode, foregroundOpacity=0.7,
    )  # fmt: skip


@demoStep("Segmentation: a LiteMedSAM box prompt on the middle axial slice of Colin27")
def _boxPrompt(context: DemoContext) -> None:
    from MedAICommonLib.segmentations import labelmapFromSegmentation
    from MedAICommonLib.volumes import ijkToRasFromVolume
    from MedAISegmentationLib.promptsession import PromptSession

    colin = context.nodes["Colin27"]
    labels, ijkToRas, _ = labelmapFromSegmentation(context.nodes["Colin27BrainMask"], colin)
    middle = labels.shape[0] // 2
    rows, columns = np.nonzero(labels[middle])
    # The box around the mask on that slice, given as an ROI in RAS as a user would draw it.
    cornersIjk = np.array([[columns.min(), rows.min(), middle, 1], [columns.max(), rows.max(), middle, 1]], float)
    cornersRas = (ijkToRasFromVolume(colin) @ cornersIjk.T).T[:, :3]
    roi = context.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Brain box")
    roi.SetXYZ(*cornersRas.mean(axis=0))
    roi.SetRadiusXYZ(*(np.abs(cornersRas[1] - cornersRas[0]) / 2))
    result = PromptSession(colin, model="LiteMedSAM", device="cpu").segment(roiNode=roi, sliceView="axial")
    result.segmentationNode.SetName("Brain (box prompt)")
    context.nodes["Brain (box prompt)"] = result.segmentationNode
    predicted, truth = result.mask[middle] > 0, labels[middle] > 0
    dice = float(2 * np.sum(predicted & truth) / max(1, predicted.sum() + truth.sum()))
    context.check(
        f"a box around the brain on one axial slice gives Dice at least {BOX_DICE_FLOOR} on that slice",
        dice >= BOX_DICE_FLOOR,
        f"Dice {dice:.3f} on slice {middle}",
    )
    context.picture(
        "brain_box_prompt.png", colin, f"LiteMedSAM box prompt, one axial slice: Dice {dice:.3f}",
        segmentationNode=result.segmentationNode, orientations=("Axial",),
    )  # fmt: skip
