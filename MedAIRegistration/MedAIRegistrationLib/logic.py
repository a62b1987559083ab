"""MedAIRegistrationLogic: registration on MRML nodes, without Qt.

The result's transform node holds the modeling transform "to parent" in RAS: putting the moving
volume under it aligns it with the fixed volume. The SimpleITK transform of the result, and the ITK
files written from it, follow the resampling convention in LPS (fixed point -> moving point).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import subProgress
from MedAICommonLib.transforms import (
    createTransformNodeFromSitkTransform,
    sitkTransformFromTransformNode,
    updateTransformNodeFromSitkTransform,
)
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume

from .assessment import assessTransform
from .pipeline import register_images
from .presets import NON_LINEAR, TRANSFORM_TYPES, load_preset
from .quality import inverse_consistency_error_mm
from .reporting import createMetricTable, embedIn3D, to2D

__all__ = ["RegistrationResult", "MedAIRegistrationLogic"]


@dataclass
class RegistrationResult:
    """What :meth:`MedAIRegistrationLogic.registerVolumes` made.

    Attributes:
        transformNode: moves the moving volume onto the fixed one (modeling "to parent", RAS).
        transform: the same as a ``SimpleITK`` resampling transform (fixed LPS -> moving LPS); 2D for
            2D images (one-slice volumes), 3D otherwise.
        resampledVolumeNode: the moving volume on the fixed grid, or None.
        tableNode, chartNode: the metric per iteration (columns stage, transform, level, iteration,
            metric) and its plot.
        jacobianVolumeNode: the Jacobian determinant map on the fixed grid, or None.
        quality: numbers (see :func:`MedAIRegistrationLib.assessment.assessTransform`) plus
            ``elapsedS``, ``iterations`` and ``finalMetric``.
    """

    transformNode: Any
    transform: Any
    resampledVolumeNode: Any = None
    tableNode: Any = None
    chartNode: Any = None
    jacobianVolumeNode: Any = None
    quality: dict = field(default_factory=dict)

    def nodes(self) -> list:
        """Every node of the result that exists."""
        candidates = (self.transformNode, self.resampledVolumeNode, self.tableNode, self.chartNode)
        return [n for n in (*candidates, self.jacobianVolumeNode) if n is not None]


class MedAIRegistrationLogic:
    """Registers volumes and measures the result; every method takes the nodes it works on."""

    def registerVolumes(
        self,
        fixedVolumeNode: Any,
        movingVolumeNode: Any,
        transformType: str = "rigid",
        metric: str | None = None,
        optimizer: str | None = None,
        initialization: str = "geometry",
        linearStages: bool = True,
        presetFile: str | None = None,
        samplingPercentage: float | None = None,
        fixedMaskNode: Any = None,
        movingMaskNode: Any = None,
        initialTransformNode: Any = None,
        outputTransformNode: Any = None,
        resampledVolumeNode: Any = None,
        createResampledVolume: bool = False,
        createJacobianVolume: bool = False,
        fixedLabelsNode: Any = None,
        movingLabelsNode: Any = None,
        fixedLandmarksNode: Any = None,
        movingLandmarksNode: Any = None,
        inverseConsistency: bool = False,
        progress: Any = None,
        cancelToken: Any = None,
    ) -> RegistrationResult:
        """Register the moving volume onto the fixed volume.

        Args:
            fixedVolumeNode, movingVolumeNode: scalar volumes (a one-slice volume is a 2D image; both
                must then be 2D). Linear parent transforms are honoured, non-linear ones refused.
            transformType: translation, rigid, similarity, affine, bspline or deformable (the last two
                run rigid and affine stages first unless ``linearStages`` is False); projective is
                refused for 3D volumes.
            metric: mse, ncc or mi for every stage that has a metric; None keeps the preset's.
            optimizer: overrides the optimiser of the linear stages (see ``registration.OPTIMIZERS``).
            initialization: geometry (image centres), moments (centres of mass) or none.
            linearStages, presetFile: see :func:`MedAIRegistrationLib.presets.load_preset`.
            samplingPercentage: share (0-1] of fixed voxels the metric samples, for every stage.
            fixedMaskNode, movingMaskNode: label map or scalar volumes on the fixed/moving grid;
                only non-zero voxels count in the metric.
            initialTransformNode: a linear transform node to start from (modeling, RAS).
            outputTransformNode: an existing transform node to receive the result; None creates one.
            resampledVolumeNode, createResampledVolume: receive (or create) the moving volume
                resampled onto the fixed grid.
            createJacobianVolume: also add the Jacobian determinant map as a volume.
            fixedLabelsNode, movingLabelsNode, fixedLandmarksNode, movingLandmarksNode: for the Dice
                of propagated labels and the landmark error (mm) in ``quality``.
            inverseConsistency: also register the fixed volume onto the moving one with the same
                stages and report ``inverseConsistencyMm``, the mean round-trip error over the fixed
                grid (takes twice as long).
            progress: ``progress(fraction, message)``; cancelToken: a ``CancelToken``.

        Returns:
            A :class:`RegistrationResult`.

        Raises:
            MedAIInputError: bad input, named in one sentence; nothing is added to the scene.
            MedAICancelledError: the user cancelled; nothing is added and the output nodes are unchanged.
        """
        started = time.monotonic()
        for node, what in ((fixedVolumeNode, "fixed volume"), (movingVolumeNode, "moving volume")):
            checkVolumeNode(node, what, allowConstant=False)
        if transformType not in TRANSFORM_TYPES:
            raise MedAIInputError(
                f"Unknown transform type '{transformType}'; choose one of {', '.join(TRANSFORM_TYPES)}."
            )
        fixed3D, moving3D = sitkImageFromVolume(fixedVolumeNode), sitkImageFromVolume(movingVolumeNode)
        flat = [image.GetSize()[2] == 1 for image in (fixed3D, moving3D)]
        if flat[0] != flat[1]:
            raise MedAIInputError(
                "One volume is a 2D image (a single slice) and the other a 3D volume; register 2D with 2D, 3D with 3D."
            )
        is2D = flat[0]
        if transformType == "projective" and not is2D:
            raise MedAIInputError(
                "A projective (perspective) transform is for 2D images only; use affine for 3D volumes."
            )
        if (
            outputTransformNode is not None
            and outputTransformNode.IsA("vtkMRMLLinearTransformNode")
            and transformType in NON_LINEAR
        ):
            raise MedAIInputError(
                f"The linear transform node '{outputTransformNode.GetName()}' cannot hold a {transformType} result; "
                "select a general transform node or create a new one."
            )
        stages = self._stages(transformType, metric, optimizer, linearStages, presetFile, samplingPercentage)
        fixed, moving = (to2D(fixed3D), to2D(moving3D)) if is2D else (fixed3D, moving3D)
        fixedMask = self._maskOnGrid(fixedMaskNode, fixed3D, "fixed mask", is2D)
        movingMask = self._maskOnGrid(movingMaskNode, moving3D, "moving mask", is2D)
        initial = None
        if initialTransformNode is not None:
            initial = sitkTransformFromTransformNode(initialTransformNode)
            initial = to2D(initial) if is2D else initial
        forwardEnd = 0.45 if inverseConsistency else 0.9
        transform, history = register_images(
            fixed, moving, stages, initialization, fixedMask, movingMask, initial,
            subProgress(progress, 0.0, forwardEnd), cancelToken,
        )  # fmt: skip
        roundTripMm = None
        if inverseConsistency:
            backward, _ = register_images(
                moving, fixed, stages, initialization, movingMask, fixedMask,
                None if initial is None else initial.GetInverse(), subProgress(progress, forwardEnd, 0.9), cancelToken,
            )  # fmt: skip
            roundTripMm = inverse_consistency_error_mm(transform, backward, fixed)
        transform3D = embedIn3D(transform, fixed, fixed3D) if is2D else transform
        quality, jacobian = assessTransform(
            transform3D, fixedVolumeNode, movingVolumeNode,
            fixedLabelsNode, movingLabelsNode, fixedLandmarksNode, movingLandmarksNode,
        )  # fmt: skip
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        if roundTripMm is not None:
            quality["inverseConsistencyMm"] = roundTripMm
        quality.update(
            elapsedS=time.monotonic() - started,
            iterations=len(history),
            finalMetric=history[-1].metric_value if history else None,
        )
        result = self._createOutputs(
            fixedVolumeNode, movingVolumeNode, transform, transform3D, history, jacobian, outputTransformNode,
            resampledVolumeNode, createResampledVolume, createJacobianVolume, moving3D, fixed3D,
        )  # fmt: skip
        result.quality = quality
        if progress is not None:
            progress(1.0, "Registration done.")
        return result

    @staticmethod
    def _stages(transformType, metric, optimizer, linearStages, presetFile, samplingPercentage):
        stages = load_preset(transformType, metric, linearStages, presetFile)
        changes = {}
        if samplingPercentage is not None:
            changes["sampling_percentage"] = float(samplingPercentage)
        stages = [dataclasses.replace(s, **changes) for s in stages]
        if optimizer is not None:
            stages = [
                dataclasses.replace(s, optimizer=optimizer) if s.transform not in NON_LINEAR else s for s in stages
            ]
        return stages

    @staticmethod
    def _maskOnGrid(maskNode: Any, image3D: Any, what: str, is2D: bool) -> Any:
        if maskNode is None:
            return None
        import SimpleITK as sitk

        mask = sitkImageFromVolume(maskNode)
        if mask.GetSize() != image3D.GetSize():
            mask = sitk.Resample(mask, image3D, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        mask = sitk.Cast(mask != 0, sitk.sitkUInt8)
        if not sitk.GetArrayViewFromImage(mask).any():
            raise MedAIInputError(f"The {what} is empty on its image's grid (no voxel inside).")
        return to2D(mask) if is2D else mask

    def _createOutputs(
        self, fixedVolumeNode, movingVolumeNode, transform, transform3D, history, jacobian, outputTransformNode,
        resampledVolumeNode, createResampledVolume, createJacobianVolume, moving3D, fixed3D,
    ) -> RegistrationResult:  # fmt: skip
        """Create the result nodes; on any failure remove what was created, so the scene is as it was."""
        import SimpleITK as sitk

        from MedAICommonLib.volumes import setVolumeIjkToRas, updateVolumeFromArray

        scene = fixedVolumeNode.GetScene()
        created: list = []
        try:
            name = f"{movingVolumeNode.GetName()}_to_{fixedVolumeNode.GetName()}"
            result = RegistrationResult(transformNode=outputTransformNode, transform=transform)
            if outputTransformNode is None:
                result.transformNode = createTransformNodeFromSitkTransform(scene, transform3D, name)
                created.append(result.transformNode)
            result.tableNode, result.chartNode, seriesNode = createMetricTable(scene, history, f"{name} metric")
            created += [result.tableNode, seriesNode, result.chartNode]
            if resampledVolumeNode is not None or createResampledVolume:
                resampled = sitk.Resample(moving3D, fixed3D, transform3D, sitk.sitkLinear, 0.0, moving3D.GetPixelID())
                if resampledVolumeNode is None:
                    resampledVolumeNode = createVolumeFromSitkImage(scene, resampled, f"{name} resampled")
                    created.append(resampledVolumeNode)
                else:
                    updateVolumeFromArray(resampledVolumeNode, sitk.GetArrayFromImage(resampled))
                    setVolumeIjkToRas(resampledVolumeNode, _ijkToRas(fixedVolumeNode))
                result.resampledVolumeNode = resampledVolumeNode
            if createJacobianVolume:
                result.jacobianVolumeNode = createVolumeFromSitkImage(scene, jacobian, f"{name} Jacobian")
                created.append(result.jacobianVolumeNode)
            if outputTransformNode is not None:
                updateTransformNodeFromSitkTransform(outputTransformNode, transform3D)
            return result
        except BaseException:
            for node in created:
                _removeNode(scene, node)
            raise


def _ijkToRas(volumeNode: Any):
    from MedAICommonLib.volumes import ijkToRasFromVolume

    return ijkToRasFromVolume(volumeNode)


def _removeNode(scene: Any, node: Any) -> None:
    for getter in ("GetDisplayNode", "GetStorageNode"):
        extra = getattr(node, getter, lambda: None)()
        if extra is not None:
            scene.RemoveNode(extra)
    scene.RemoveNode(node)
