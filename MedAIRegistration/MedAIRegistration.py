"""MedAI Registration: classical registration from translation to deformable, and learned registration.

The algorithms live in MedAIRegistrationLib (plain Python, no Qt); this file holds the Slicer module:
metadata, parameter node, panel, the logic adapter that turns the parameter node into Lib calls run
in a background worker, and the self-test.
"""

import os
from typing import Annotated

import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLTransformNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from MedAICommon import MedAILogicMixin, MedAIPanelMixin
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState

TRANSFORM_TYPES = ["translation", "rigid", "similarity", "affine", "projective", "bspline", "deformable", "learned"]
METRICS = ["mse", "ncc", "mi"]
# "by transform": the shipped chain of the transform type; the others are shipped presets of their own.
PRESETS = ["by transform", "deformable-lncc"]
# "preset": keep the optimiser of the preset's linear stages (MedAIRegistrationLib.settings.OPTIMIZERS).
OPTIMIZERS = ["preset", "gradient-descent", "line-search", "regular-step", "lbfgsb", "powell", "amoeba", "one-plus-one"]
INITIALIZATIONS = ["geometry", "moments", "none"]

#
# MedAIRegistration
#


class MedAIRegistration(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedAI Registration")
        self.parent.categories = ["MedAI"]
        self.parent.dependencies = ["MedAICommon"]
        self.parent.contributors = ["MedAI contributors"]
        self.parent.helpText = _("""
Aligns a moving image with a fixed image: translation, rigid, similarity, affine, projective (2D), B-spline, dense
deformable (diffeomorphic demons, or symmetric local correlation with the deformable-lncc preset) or a learned
(VoxelMorph-style) network, with mean squares, normalised cross-correlation or mutual information.
Put the moving volume under the output transform to see it aligned. Quality checks: Dice of propagated labels,
landmark error in mm, Jacobian determinant and folding.
See <a href="https://github.com/medai-slicer/SlicerMedAI#medairegistration">the module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on SimpleITK's registration framework, MONAI and PyTorch.
""")


#
# MedAIRegistrationParameterNode
#


@parameterNodeWrapper
class MedAIRegistrationParameterNode:
    """The settings of the Registration panel, saved with the scene.

    fixedVolume, movingVolume - the image that stays, and the image to align onto it.
    transformType - translation, rigid, similarity, affine, bspline, deformable or learned.
    metric - mse (mean squares), ncc (normalised cross-correlation) or mi (mutual information).
    fixedLabels, movingLabels - segmentations for the Dice of propagated labels.
    preset - "by transform" (the shipped chain of the transform type) or another shipped preset.
    optimizer - optimiser of the linear stages, or "preset" to keep the preset's.
    initialization - geometry (image centres), moments (centres of mass) or none.
    samplingPercent - share of fixed voxels the metric samples, per cent; 0 keeps the preset's.
    linearStages - bspline/deformable/projective: run rigid and affine stages first.
    fixedMask, movingMask - label maps; only voxels inside them count in the metric.
    initialTransform - a linear transform to start from (modeling, RAS).
    createJacobian, inverseConsistency - also add the Jacobian map; also register the other way.
    fixedLandmarks, movingLandmarks - paired points (RAS) for the target registration error in mm.
    outputTransform - moves the moving volume onto the fixed one (modeling transform "to parent").
    outputVolume - the moving volume resampled onto the fixed grid.
    reportTable - metric per iteration and the quality checks.
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    transformType: Annotated[str, Choice(TRANSFORM_TYPES)] = "rigid"
    metric: Annotated[str, Choice(METRICS)] = "mi"
    preset: Annotated[str, Choice(PRESETS)] = "by transform"
    optimizer: Annotated[str, Choice(OPTIMIZERS)] = "preset"
    initialization: Annotated[str, Choice(INITIALIZATIONS)] = "geometry"
    samplingPercent: float = 0.0
    linearStages: bool = True
    fixedMask: vtkMRMLLabelMapVolumeNode
    movingMask: vtkMRMLLabelMapVolumeNode
    initialTransform: vtkMRMLTransformNode
    createJacobian: bool = False
    inverseConsistency: bool = False
    fixedLabels: vtkMRMLSegmentationNode
    movingLabels: vtkMRMLSegmentationNode
    fixedLandmarks: vtkMRMLMarkupsFiducialNode
    movingLandmarks: vtkMRMLMarkupsFiducialNode
    outputTransform: vtkMRMLTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    reportTable: vtkMRMLTableNode


#
# MedAIRegistrationWidget
#


class MedAIRegistrationWidget(ScriptedLoadableModuleWidget, MedAIPanelMixin):
    """The panel; the plumbing shared by MedAI panels is in MedAICommon.MedAIPanelMixin."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.initPanel()

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel(self.resourcePath("UI/MedAIRegistration.ui"), MedAIRegistrationLogic())
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.cleanupPanel()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self.exitPanel()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: a running job would write into nodes about to vanish."""
        self.sceneStartClosePanel()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self.sceneEndClosePanel()

    def initializeParameterNode(self) -> None:
        """Called on setup, enter and scene close: makes sure a parameter node exists and is shown."""
        MedAIPanelMixin.initializeParameterNode(self)
        if not self._parameterNode.fixedVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.fixedVolume = firstVolumeNode

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Called after every parameter change: enables Apply, or says on its tooltip (and the status line) why not."""
        self.updateButtons(
            ((self.ui.applyButton, "registration", _("Register the moving volume to the fixed volume.")),)
        )
        pending = self.logic.pendingMessage(self._parameterNode.transformType) if self._parameterNode else ""
        if not self._jobRunner.running and pending:
            self.ui.statusLabel.text = pending

    def onApplyButton(self) -> None:
        """Called when the user clicks Apply; while a job runs, the same button cancels it."""
        self.startOrCancel(
            self.ui.applyButton, lambda: self.logic.startRegistration(self._parameterNode), _("registration")
        )

    def onJobEnded(self, status) -> None:
        """Called when the background registration ends: puts its results into the output nodes."""
        if status.state == WorkerState.COMPLETED:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the results."), waitCursor=True):
                self.ui.statusLabel.text = self.logic.finishJob(self._parameterNode, status.result)
        self.onParameterNodeModified()


#
# MedAIRegistrationLogic
#


class MedAIRegistrationLogic(ScriptedLoadableModuleLogic, MedAILogicMixin):
    """Turns the parameter node into MedAIRegistrationLib calls, run in a background worker.

    No algorithm lives here. Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    # The issue that brings each transform type; a type leaves this table when its algorithm lands in the Lib.
    PENDING_ISSUES = {
        "learned": 7,
    }

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedAIRegistrationParameterNode(super().getParameterNode())

    def whyCannotRun(self, parameterNode, task: str = "registration") -> str:
        """The first thing that stops a registration, in the user's words; empty when it can run.

        ``task`` is there for MedAIPanelMixin.updateButtons; the panel has one task, and what may be
        pending is the transform type.
        """
        if parameterNode is None:
            return _("The module has no parameter node yet.")
        if self.pendingMessage(parameterNode.transformType):
            return self.pendingMessage(parameterNode.transformType)
        if not (parameterNode.fixedVolume and parameterNode.movingVolume):
            return _("Select a fixed and a moving volume.")
        if parameterNode.fixedVolume.GetID() == parameterNode.movingVolume.GetID():
            return _("The fixed and moving volumes are the same node; select two different images.")
        if bool(parameterNode.fixedLabels) != bool(parameterNode.movingLabels):
            return _("Select both fixed and moving labels, or neither.")
        if bool(parameterNode.fixedLandmarks) != bool(parameterNode.movingLandmarks):
            return _("Select both fixed and moving landmarks, or neither.")
        return ""

    def startRegistration(self, parameterNode):
        """Check the parameters and return the worker (not started yet) that registers the volumes.

        Raises:
            MedAIInputError: the transform type is not available yet, or an input is missing.
        """
        reason = self.whyCannotRun(parameterNode)
        if reason:
            raise MedAIInputError(reason)
        return self._createWorker(parameterNode)

    def finishJob(self, parameterNode, result) -> str:
        """Put what a finished worker reported (``MEDAI_RESULT``) into the output nodes; returns a summary."""
        from MedAIRegistrationLib.worker import loadWorkerResult

        transformNode, volumeNode, tableNode, _chartNode, quality, _jacobianNode = loadWorkerResult(
            slicer.mrmlScene,
            result,
            parameterNode.outputTransform,
            parameterNode.outputVolume,
            parameterNode.reportTable,
        )
        parameterNode.outputTransform = transformNode
        parameterNode.reportTable = tableNode
        if volumeNode is not None:
            parameterNode.outputVolume = volumeNode
        summary = _("Done in {seconds:.1f} s; folded voxels {folding:.3f} %.").format(
            seconds=quality["elapsedS"], folding=100.0 * quality["foldingFraction"]
        )
        if "meanDice" in quality:
            summary += " " + _("Mean Dice {dice:.3f}.").format(dice=quality["meanDice"])
        if "meanTreMm" in quality:
            summary += " " + _("Mean landmark error {error:.2f} mm.").format(error=quality["meanTreMm"])
        if "inverseConsistencyMm" in quality:
            summary += " " + _("Round trip {error:.2f} mm.").format(error=quality["inverseConsistencyMm"])
        return summary

    def _createWorker(self, parameterNode):
        """The MedAICommonLib.jobs.WorkerProcess that registers the volumes in a separate Python process."""
        import MedAICommonLib
        from MedAIRegistrationLib.worker import createRegistrationWorker

        keys = ("fixedVolume", "movingVolume", "fixedLabels", "movingLabels", "fixedLandmarks", "movingLandmarks")
        nodes = {key: getattr(parameterNode, key) for key in (*keys, "fixedMask", "movingMask", "initialTransform")}
        p = parameterNode
        settings = {
            "transformType": p.transformType,
            "metric": p.metric,
            "presetFile": None if p.preset == PRESETS[0] else p.preset,
            "optimizer": None if p.optimizer == OPTIMIZERS[0] else p.optimizer,
            "initialization": p.initialization,
            "samplingPercentage": p.samplingPercent / 100.0 if p.samplingPercent > 0 else None,
            "linearStages": p.linearStages,
            "createResampledVolume": p.outputVolume is not None,
            "createJacobianVolume": p.createJacobian,
            "inverseConsistency": p.inverseConsistency,
        }
        # Both Lib packages must be importable in the child (PythonSlicer does not load the modules).
        pythonPaths = [os.path.dirname(__file__), os.path.dirname(os.path.dirname(MedAICommonLib.__file__))]
        return createRegistrationWorker(nodes, settings, pythonPaths)


#
# MedAIRegistrationTest
#


class MedAIRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (the pytest suite covers MedAIRegistrationLib without the application).

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Called before each test: starts from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Called by the Reload and Test button and by ctest."""
        self.setUp()
        self.test_SamplePairGeometry()
        self.setUp()
        self.test_PendingTransformsSayWhy()
        self.setUp()
        self.test_RegisterShiftedSlice()

    def test_SamplePairGeometry(self):
        """MNI152 and Colin27, the registration pair of the examples, load with the grids their manifest documents."""
        from MedAICommonLib import sampledata

        for name in ("MNI152T1", "Colin27"):
            info = sampledata.sampleDataInfo(name)
            volumeNode = sampledata.loadSampleData(slicer.mrmlScene, name)
            self.assertEqual(list(volumeNode.GetImageData().GetDimensions()), info["size"])
            for spacing, expected in zip(volumeNode.GetSpacing(), info["spacingMm"]):
                self.assertAlmostEqual(spacing, expected, places=4)

    def test_PendingTransformsSayWhy(self):
        """Until its issue lands, a transform type refuses to start and names the issue that brings it."""
        logic = MedAIRegistrationLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.fixedVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        parameterNode.movingVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        for transformType in TRANSFORM_TYPES:
            parameterNode.transformType = transformType
            if transformType not in logic.PENDING_ISSUES:
                continue
            self.assertIn(f"#{logic.PENDING_ISSUES[transformType]}", logic.whyCannotRun(parameterNode))
            with self.assertRaises(MedAIInputError):
                logic.startRegistration(parameterNode)

    def test_RegisterShiftedSlice(self):
        """The blocking variant of Apply recovers the (13, 17) mm shift of the ITK 2D pair."""
        from MedAICommonLib import sampledata
        from MedAIRegistrationLib.logic import MedAIRegistrationLogic as LibLogic

        fixed = sampledata.loadSampleData(slicer.mrmlScene, "BrainProtonDensitySliceBorder20")
        moving = sampledata.loadSampleData(slicer.mrmlScene, "BrainProtonDensitySliceShifted13x17y")
        result = LibLogic().registerVolumes(
            fixedVolumeNode=fixed, movingVolumeNode=moving, transformType="translation", metric="mse"
        )
        shift = [a - b for a, b in zip(result.transform.TransformPoint((100.0, 100.0)), (100.0, 100.0))]
        self.assertAlmostEqual(shift[0], 13.0, delta=0.05)
        self.assertAlmostEqual(shift[1], 17.0, delta=0.05)
