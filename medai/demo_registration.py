"""The registration steps of ``medai demo``: a multi-modal rigid registration with a known answer.

Registered with :func:`medai.demo.demoStep` when :func:`medai.demo.runDemo` imports this file.
"""

from __future__ import annotations

import numpy as np

from .demo import DemoContext, demoStep

__all__: list[str] = []

# The tolerance for a rotation recovered on the ITK 2D pairs, in millimetres at the points below.
ROTATION_TOLERANCE_MM = 0.2
FIXED, MOVING = "BrainT1SliceBorder20", "BrainProtonDensitySliceR10X13Y17"


@demoStep("Registration: a proton-density slice, rotated 10 degrees and shifted, onto a T1 slice (mutual information)")
def _multiModalRigid(context: DemoContext) -> None:
    from MedAICommonLib.sampledata import knownTransform, loadSampleData
    from MedAIRegistrationLib.logic import MedAIRegistrationLogic

    fixed, moving = (loadSampleData(context.scene, name) for name in (FIXED, MOVING))
    context.picture(
        "registration_before.png", fixed, "Before: T1 slice (grey) with the moved proton-density slice (50% overlay)",
        foregroundVolumeNode=moving, orientations=("Axial",), sizePx=384,
    )  # fmt: skip
    result = MedAIRegistrationLogic().registerVolumes(
        fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="rigid", metric="mi",
        createResampledVolume=True,
    )  # fmt: skip
    # The known transform maps fixed points (LPS mm) onto the moving image; so must the result.
    known = knownTransform(MOVING).transform
    grid = np.stack(np.meshgrid(np.linspace(40, 200, 9), np.linspace(40, 200, 9)), axis=-1).reshape(-1, 2)
    errors = [np.linalg.norm(np.subtract(result.transform.TransformPoint(p), known.TransformPoint(p))) for p in grid]
    context.check(
        f"the known rotation and shift are recovered within {ROTATION_TOLERANCE_MM} mm over the brain",
        max(errors) <= ROTATION_TOLERANCE_MM,
        f"mean {np.mean(errors):.3f} mm, max {max(errors):.3f} mm over 81 points; "
        f"{result.tableNode.GetNumberOfRows()} metric values in '{result.tableNode.GetName()}'",
    )
    moving.SetAndObserveTransformNodeID(result.transformNode.GetID())
    context.picture(
        "registration_after.png", fixed, "After: the proton-density slice under the found rigid transform",
        foregroundVolumeNode=moving, orientations=("Axial",), sizePx=384,
    )  # fmt: skip
