"""The MedAISegmentation steps of ``medai demo``: watershed of touching nuclei, and its evaluation.

Registered with :func:`medai.demo.demoStep` when :func:`medai.demo.runDemo` imports this file, so
they run after the foundation's steps, on the same scene.
"""

from __future__ import annotations

from .demo import DemoContext, demoStep

__all__: list[str] = []

# The floor for touching nuclei with default parameters (instance F1 at IoU 0.5).
NUCLEI_F1_FLOOR = 0.88


@demoStep("Segmentation: seeded watershed of touching nuclei, with default parameters, and its evaluation")
def _watershedNuclei(context: DemoContext) -> None:
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    logic = MedAISegmentationLogic()
    image, reference = context.nodes["NucleiImage2D"], context.nodes["NucleiMask2D"]
    watershed = logic.runWatershed(inputVolumeNode=image, outputName="Nuclei objects (watershed)")
    context.nodes[watershed.outputNode.GetName()] = watershed.outputNode
    context.log(
        f"  {watershed.objectCount} objects; estimated object radius {watershed.objectRadiusMm:.1f} mm, "
        f"object table '{watershed.tableNode.GetName()}'"
    )
    scores = logic.evaluateSegmentation(reference, watershed.outputNode, instanceLevel=True)
    instances = scores.report()["instances"]
    context.check(
        f"NucleiImage2D: instance F1 at IoU 0.5 against NucleiMask2D is at least {NUCLEI_F1_FLOOR}",
        instances["f1"] >= NUCLEI_F1_FLOOR,
        f"F1 {instances['f1']:.3f} (precision {instances['precision']:.3f}, recall {instances['recall']:.3f}; "
        f"{instances['prediction_count']} objects found for {instances['reference_count']})",
    )
    context.picture(
        "nuclei_watershed.png", image, f"Watershed, defaults: {watershed.objectCount} objects, F1 {instances['f1']:.3f}",
        segmentationNode=watershed.outputNode, orientations=("Axial",), sizePx=512,
    )  # fmt: skip
