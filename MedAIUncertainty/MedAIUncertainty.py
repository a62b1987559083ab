"""MedAI Uncertainty: where a model does not know (uncertainty maps), and what it looked at (saliency).

The algorithms live in MedAIUncertaintyLib (plain Python, no Qt); this file holds the Slicer module:
metadata, parameter node, panel, the logic adapter that turns the parameter node into Lib calls run
in a background worker, and the self-test.
"""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from MedAICommon import MedAILogicMixin, MedAIPanelMixin
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState

UNCERTAINTY_METHODS = ["mc-dropout", "tta", "ensemble"]
UNCERTAINTY_MEASURES = ["entropy", "variance", "mutual-information"]
SALIENCY_METHODS = ["gradcam", "occlusion", "smoothgrad"]
DEVICES = ["auto", "cpu", "cuda"]

#
# MedAIUncertainty
#


class MedAIUncertainty(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedAI Uncertainty")
        self.parent.categories = ["MedAI"]
        self.parent.dependencies = ["MedAICommon"]
        self.parent.contributors = ["MedAI contributors"]
        self.parent.helpText = _("""
Shows where a model is unsure (Monte Carlo dropout, test-time augmentation or an ensemble; entropy, variance or
mutual information) and what it looked at (Grad-CAM, occlusion or SmoothGrad heatmaps, each with a sanity check).
A heatmap shows where a network looks, not why.
See <a href="https://github.com/medai-slicer/SlicerMedAI#medaiuncertainty">the module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on MONAI (including monai.visualize) and PyTorch.
""")


#
# MedAIUncertaintyParameterNode
#


@parameterNodeWrapper
class MedAIUncertaintyParameterNode:
    """The settings of the Uncertainty panel, saved with the scene.

    inputVolume - the image the model looks at.
    modelId, device - the model (registry id or path) and where it runs (auto, cpu, cuda).
    method, samples, measure - how predictions are sampled (mc-dropout, tta, ensemble), how many,
        and what is measured (entropy, variance, mutual-information).
    outputSegmentation, uncertaintyVolume - the mean prediction and the voxel-wise uncertainty.
    saliencyMethod, targetLabel, heatmapVolume - the heatmap method, the label value it explains, the heatmap.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    method: Annotated[str, Choice(UNCERTAINTY_METHODS)] = "mc-dropout"
    samples: Annotated[int, WithinRange(1, 100)] = 10
    measure: Annotated[str, Choice(UNCERTAINTY_MEASURES)] = "entropy"
    outputSegmentation: vtkMRMLSegmentationNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    saliencyMethod: Annotated[str, Choice(SALIENCY_METHODS)] = "gradcam"
    targetLabel: Annotated[int, WithinRange(0, 65535)] = 1
    heatmapVolume: vtkMRMLScalarVolumeNode


#
# MedAIUncertaintyWidget
#


class MedAIUncertaintyWidget(ScriptedLoadableModuleWidget, MedAIPanelMixin):
    """The panel; the plumbing shared by MedAI panels is in MedAICommon.MedAIPanelMixin."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.initPanel()

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel(self.resourcePath("UI/MedAIUncertainty.ui"), MedAIUncertaintyLogic())
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.explainButton.connect("clicked(bool)", self.onExplainButton)
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

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Called after every parameter change: enables both buttons, or says on their tooltips why not."""
        self.updateButtons(
            (
                (self.ui.applyButton, "uncertainty", _("Run the model several times and measure where it disagrees.")),
                (self.ui.explainButton, "saliency", _("Show what the model looked at for the target label.")),
            )
        )
        if not self._jobRunner.running and self.logic.pendingMessage("uncertainty"):
            self.ui.statusLabel.text = self.logic.pendingMessage("uncertainty")

    def onApplyButton(self) -> None:
        """Called when the user clicks Estimate uncertainty; while it runs, the same button cancels it."""
        self.startOrCancel(
            self.ui.applyButton, lambda: self.logic.startJob(self._parameterNode, "uncertainty"), _("job")
        )

    def onExplainButton(self) -> None:
        """Called when the user clicks Compute heatmap; while it runs, the same button cancels it."""
        self.startOrCancel(
            self.ui.explainButton, lambda: self.logic.startJob(self._parameterNode, "saliency"), _("job")
        )

    def onJobEnded(self, status) -> None:
        """Called when a background job ends: puts its results into the output nodes."""
        if status.state == WorkerState.COMPLETED:
            with slicer.util.tryWithErrorDisplay(_("Failed to load the results."), waitCursor=True):
                self.logic.finishJob(self._parameterNode, status.result)
                self.ui.statusLabel.text = _("Done.")
        self.onParameterNodeModified()


#
# MedAIUncertaintyLogic
#


class MedAIUncertaintyLogic(ScriptedLoadableModuleLogic, MedAILogicMixin):
    """Turns the parameter node into MedAIUncertaintyLib calls, run in a background worker.

    No algorithm lives here. Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    # The issue that brings each task; a task leaves this table when its algorithm lands in the Lib.
    PENDING_ISSUES = {"uncertainty": 8, "saliency": 8}

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedAIUncertaintyParameterNode(super().getParameterNode())

    def whyCannotRun(self, parameterNode, task: str) -> str:
        """The first thing that stops ``task``, in the user's words; empty when it can run."""
        if parameterNode is None:
            return _("The module has no parameter node yet.")
        if self.pendingMessage(task):
            return self.pendingMessage(task)
        if not parameterNode.inputVolume:
            return _("Select an input volume.")
        if not parameterNode.modelId.strip():
            return _("Enter a model id, or the path of a model file or folder.")
        return ""

    def startJob(self, parameterNode, task: str):
        """Check the parameters and return the worker (not started yet) that runs ``task``.

        Raises:
            MedAIInputError: the task is not available yet, or an input is missing.
        """
        reason = self.whyCannotRun(parameterNode, task)
        if reason:
            raise MedAIInputError(reason)
        return self._createWorker(task, parameterNode)

    def finishJob(self, parameterNode, result) -> None:
        """Put what a finished worker reported (``MEDAI_RESULT``) into the output nodes."""
        raise NotImplementedError(_("No MedAI Uncertainty task can produce results yet."))

    def _createWorker(self, task: str, parameterNode):
        """The MedAICommonLib.jobs.WorkerProcess of a task; each task's issue adds its own here."""
        raise NotImplementedError(self.pendingMessage(task) or task)


#
# MedAIUncertaintyTest
#


class MedAIUncertaintyTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (the pytest suite covers MedAIUncertaintyLib without the application).

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Called before each test: starts from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Called by the Reload and Test button and by ctest."""
        self.setUp()
        self.test_SampleVolumeGeometry()
        self.setUp()
        self.test_PendingTasksSayWhy()

    def test_SampleVolumeGeometry(self):
        """Colin27, the brain that the uncertainty examples use, loads with the grid its manifest documents."""
        from MedAICommonLib import sampledata

        info = sampledata.sampleDataInfo("Colin27")
        volumeNode = sampledata.loadSampleData(slicer.mrmlScene, "Colin27")
        self.assertEqual(list(volumeNode.GetImageData().GetDimensions()), info["size"])
        for spacing, expected in zip(volumeNode.GetSpacing(), info["spacingMm"]):
            self.assertAlmostEqual(spacing, expected, places=4)

    def test_PendingTasksSayWhy(self):
        """Until its issue lands, a task refuses to start and names the issue that brings it."""
        logic = MedAIUncertaintyLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        parameterNode.modelId = "any"
        for task, issue in logic.PENDING_ISSUES.items():
            self.assertIn(f"#{issue}", logic.whyCannotRun(parameterNode, task))
            with self.assertRaises(MedAIInputError):
                logic.startJob(parameterNode, task)
