"""What the Segmentation panel shows for its parameter node, and the status line after a job (Slicer side, no Qt).

:func:`showParameters` shows the sections and settings of the chosen method and selects the segments
kept by the logic's ``extra*`` methods; :func:`keepSelection` keeps what the user picks in a selector
that no typed parameter fits; :func:`summary` is the one line the status label shows after a job.
"""

from slicer.i18n import tr as _

from MedAISegmentationLib.logic import EvaluationOutput, WatershedPreview

from .modeljob import ModelRun

__all__ = ["EXTRA_SELECTORS", "keepSelection", "showParameters", "summary"]

# Panel selectors whose value no typed field fits: segment selectors (segment ID) and node selectors of two classes.
EXTRA_SELECTORS = [
    ("foregroundSegmentSelector", "foregroundSegmentId"),
    ("backgroundSegmentSelector", "backgroundSegmentId"),
    ("promptSegmentSelector", "promptSegmentId"),
    ("referenceSelector", "evaluationReference"),
    ("predictionSelector", "evaluationPrediction"),
]
# Rows of the Outputs section (label, field) and the methods they apply to.
OUTPUT_ROWS = [
    (("label_17", "outputTypeComboBox"), ("watershed",)),
    (("label_19", "outputLabelMapSelector"), ("watershed",)),
    (("label_20", "objectTableSelector"), ("watershed",)),
    (("label_21", "outputProbabilityVolumeSelector"), ("model",)),
]


def showParameters(ui, logic, parameters) -> None:
    """Show the sections and settings that apply to ``parameters`` and the segments the logic keeps."""
    method = parameters.method
    ui.watershedCollapsibleButton.visible = method == "watershed"
    ui.modelCollapsibleButton.visible = method == "model"
    ui.promptCollapsibleButton.visible = method == "prompt"
    ui.deviceLabel.visible = ui.deviceComboBox.visible = method != "watershed"
    for names, methods in OUTPUT_ROWS:
        for name in names:
            getattr(ui, name).visible = method in methods
    thresholded = not parameters.foregroundSegmentation
    ui.thresholdMethodComboBox.enabled = thresholded
    ui.thresholdSpinBox.enabled = thresholded and parameters.thresholdMethod == "value"
    ui.smoothingSpinBox.enabled = not parameters.autoSmoothing
    ui.minSeedDistanceSpinBox.enabled = parameters.seedDepthMm == 0
    ui.outputSegmentationSelector.enabled = method != "watershed" or parameters.outputType == "segmentation"
    ui.outputLabelMapSelector.enabled = parameters.outputType == "labelmap"
    ui.outputProbabilityVolumeSelector.enabled = parameters.keepProbabilities
    ui.iouThresholdSpinBox.enabled = parameters.instanceLevel
    segmentations = {
        "foregroundSegmentId": parameters.foregroundSegmentation,
        "backgroundSegmentId": parameters.seedsSegmentation,
        "promptSegmentId": parameters.outputSegmentation,
    }
    for name, key in EXTRA_SELECTORS:
        selector, segmentation = getattr(ui, name), segmentations.get(key)
        selector.setCurrentNode(logic.extraNode(key) if key.startswith("evaluation") else segmentation)
        if segmentation is not None:
            selector.setCurrentSegmentID(logic.extraParameter(key) or "")
            # The selector falls back on the first segment when the kept one is gone: keep what it shows.
            if (selector.currentSegmentID() or None) != logic.extraParameter(key):
                logic.setExtraParameter(key, selector.currentSegmentID())
    ui.foregroundSegmentSelector.enabled = bool(parameters.foregroundSegmentation)
    ui.backgroundSegmentSelector.enabled = bool(parameters.seedsSegmentation)
    ui.promptSegmentSelector.enabled = bool(parameters.outputSegmentation)


def keepSelection(logic, selector, key: str, value) -> None:
    """Keep the segment ID or node the user picked in ``selector`` on the parameter node under ``key``."""
    if isinstance(value, str):
        if selector.currentNode():  # no segmentation: nothing to remember
            logic.setExtraParameter(key, value)
    else:
        logic.setExtraNode(key, value)


def summary(output) -> str:
    """One line on a job's output (watershed, preview, model, prompt or evaluation), for the status label."""
    if isinstance(output, WatershedPreview):
        text = _("{count} seeds: Apply would find {count} objects (estimated object radius {radius:.2f} mm).")
        return text.format(count=output.seedCount, radius=output.objectRadiusMm)
    if isinstance(output, ModelRun):
        segmentation = output.segmentationNode
        return _("{count} segments in '{name}' ({seconds:.1f} s on {device}).").format(
            count=segmentation.GetSegmentation().GetNumberOfSegments(),
            name=segmentation.GetName(),
            seconds=output.seconds,
            device=output.device,
        )
    if hasattr(output, "sliceIndices"):  # a prompt's PromptResult
        return _(
            "Segment '{segment}' of '{name}': {count} {view} slice(s) written; Undo restores the previous state."
        ).format(
            segment=output.segmentationNode.GetSegmentation().GetSegment(output.segmentId).GetName(),
            name=output.segmentationNode.GetName(),
            count=len(output.sliceIndices),
            view=output.sliceView,
        )
    if not isinstance(output, EvaluationOutput):
        return _("{count} objects found (estimated object radius {radius:.2f} mm).").format(
            count=output.objectCount, radius=output.objectRadiusMm
        )
    dice = [row["dice"] for row in output.segments if row["dice"] == row["dice"]]  # NaN: undefined
    text = _("{count} segments compared; mean Dice {dice:.3f}.").format(
        count=len(output.segments), dice=sum(dice) / len(dice) if dice else float("nan")
    )
    if output.instances:
        text += _(" Objects: {matched} of {reference_count} matched, F1 {f1:.3f}.").format(**output.instances)
    return text
