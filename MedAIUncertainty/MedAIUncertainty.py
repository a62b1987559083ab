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
from MedAICommonLib.threadjob import ThreadJob
from MedAIUncertaintyLib.explainlogic import ExplainJob
from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic as LibLogic

UNCERTAINTY_METHODS = ["mc-dropout", "tta", "ensemble"]
UNCERTAINTY_MEASURES = ["entropy", "variance", "mutual-information"]
SALIENCY_METHODS = ["gradcam", "gradcampp", "occlusion", "smoothgrad"]
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
    referenceSegmentation - optional truth for calibration and error detection.
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
    referenceSegmentation: vtkMRMLSegmentationNode
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
                output = self.logic.finishJob(self._parameterNode, status.result)
                foreground = getattr(output, "heatmapVolumeNode", None) or output.uncertaintyVolumeNode
                slicer.util.setSliceViewerLayers(
                    background=self._parameterNode.inputVolume, foreground=foreground, foregroundOpacity=0.5
                )
                self.ui.statusLabel.text = self.logic.summary(output)
        self.onParameterNodeModified()


#
# MedAIUncertaintyLogic
#


class MedAIUncertaintyLogic(ScriptedLoadableModuleLogic, MedAILogicMixin, LibLogic):
    """The Lib's logic (``estimateUncertainty``, ``explain``) plus the parameter-node adapters of the panel.

    Console: ``MedAIUncertaintyLogic().estimateUncertainty(volume, "BrainExtractionT1", "mc-dropout", 10)``.
    No algorithm lives here. Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    # The issue that brings each task; a task leaves this table when its algorithm lands in the Lib.
    PENDING_ISSUES = {}

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedAIUncertaintyParameterNode(super().getParameterNode())

    def whyCannotRun(self, parameterNode, task: str) -> str:
        """The first thing that stops ``task`` ("uncertainty" or "saliency"), in the user's words; empty when it can run."""
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
        """Check the parameters, read the inputs and load the model (main thread); return the thread job that computes.

        Raises:
            MedAIInputError: an input is missing or unsuitable (nothing is added to the scene).
        """
        reason = self.whyCannotRun(parameterNode, task)
        if reason:
            raise MedAIInputError(reason)
        p = parameterNode
        if task == "saliency":
            job = self.prepareExplanation(
                p.inputVolume, p.modelId.strip(), p.saliencyMethod, p.targetLabel,
                heatmapVolumeNode=p.heatmapVolume, device=p.device,
            )  # fmt: skip
        else:
            job = self.prepareUncertainty(
                p.inputVolume, p.modelId.strip(), p.method, p.samples, p.measure, p.device,
                referenceSegmentationNode=p.referenceSegmentation, outputSegmentationNode=p.outputSegmentation,
                uncertaintyVolumeNode=p.uncertaintyVolume,
            )  # fmt: skip

        def compute(progress, cancelToken):
            job.compute(progress, cancelToken)  # torch and numpy only: no Qt, no node of the scene is touched
            return job

        return ThreadJob(compute, name=f"MedAI {task}")

    def finishJob(self, parameterNode, job):
        """Add a computed job's nodes to the scene (main thread) and select them in the panel."""
        output = job.createNodes()
        if parameterNode is None:
            return output
        if isinstance(job, ExplainJob):
            parameterNode.heatmapVolume = output.heatmapVolumeNode
        else:
            parameterNode.outputSegmentation = output.segmentationNode
            parameterNode.uncertaintyVolume = output.uncertaintyVolumeNode
        return output

    def summary(self, output) -> str:
        """One status line: the heatmap's sanity checks, or the uncertain volume and the calibration."""
        if hasattr(output, "checks"):
            return output.checks
        uncertain = sum(row["uncertainVolumeMm3"] for row in output.summary[1:])
        text = _("Done in {seconds:.1f} s; uncertain volume in the segments {volume:.0f} mm3.").format(
            seconds=output.seconds, volume=uncertain
        )
        if output.metrics:
            text += " " + _("ECE {ece:.3f}, Brier {brier:.3f}, AUC of entropy against errors {auc:.2f}.").format(
                ece=output.metrics["ece"], brier=output.metrics["brier"], auc=output.metrics["errorAuc"]["entropy"]
            )
        return text


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
        self.test_HeatmapThroughThePanelJob()
        self.setUp()
        self.test_UncertaintyJobAndCancel()

    def test_SampleVolumeGeometry(self):
        """Colin27, the brain that the uncertainty examples use, loads with the grid its manifest documents."""
        from MedAICommonLib import sampledata

        info = sampledata.sampleDataInfo("Colin27")
        volumeNode = sampledata.loadSampleData(slicer.mrmlScene, "Colin27")
        self.assertEqual(list(volumeNode.GetImageData().GetDimensions()), info["size"])
        for spacing, expected in zip(volumeNode.GetSpacing(), info["spacingMm"]):
            self.assertAlmostEqual(spacing, expected, places=4)

    def _runBlocking(self, job):
        job.start()
        self.assertTrue(job.wait(600))
        return job.poll()

    def test_HeatmapThroughThePanelJob(self):
        """The shipped classifier explains the nuclei image through the panel's thread job; a bad label is refused."""
        from MedAICommonLib import sampledata
        from MedAICommonLib.volumes import arrayFromVolume

        logic = MedAIUncertaintyLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = sampledata.loadSampleData(slicer.mrmlScene, "NucleiImage2D")
        parameterNode.modelId = "NucleusPatchClassifier2D"
        parameterNode.targetLabel = 7
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(MedAIInputError):
            logic.startJob(parameterNode, "saliency")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        parameterNode.targetLabel = 1
        status = self._runBlocking(logic.startJob(parameterNode, "saliency"))
        self.assertEqual(status.state, WorkerState.COMPLETED, status.errorMessage)
        output = logic.finishJob(parameterNode, status.result)
        self.assertIs(parameterNode.heatmapVolume, output.heatmapVolumeNode)
        self.assertAlmostEqual(float(arrayFromVolume(output.heatmapVolumeNode).max()), 1.0, places=5)
        self.assertIn("randomisation", output.checks)

    def test_UncertaintyJobAndCancel(self):
        """MC dropout of a small network runs in a thread job; a cancelled job adds nothing."""
        import numpy as np
        import torch
        from monai.networks.blocks import Convolution

        from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray
        from MedAIUncertaintyLib.modelaccess import NetworkModel

        network = torch.nn.Sequential(
            Convolution(3, 1, 4, norm="batch", dropout=0.3), Convolution(3, 4, 2, conv_only=True, kernel_size=1)
        ).eval()
        model = NetworkModel(network, [("Object", 1, (1.0, 0.5, 0.0))])
        array = np.random.default_rng(0).normal(size=(9, 17, 13)).astype(np.float32)
        volume = createVolumeFromArray(slicer.mrmlScene, array, np.diag([0.7, 0.7, 3.0, 1.0]), "image")
        logic = MedAIUncertaintyLogic()
        count = slicer.mrmlScene.GetNumberOfNodes()
        job = ThreadJob(
            lambda progress, token: logic.prepareUncertainty(volume, model, samples=4).compute(progress, token)
        )
        job.cancel()
        self.assertEqual(self._runBlocking(job).state, WorkerState.CANCELLED)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        output = logic.estimateUncertainty(volume, model, "mc-dropout", samples=4)
        self.assertGreater(float(arrayFromVolume(output.volumes["variance"]).max()), 0.0)
        self.assertTrue(all(not module.training for module in network.modules()))
